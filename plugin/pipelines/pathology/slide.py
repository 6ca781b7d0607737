"""What slide preparation hands the model step: the patches exactly as the model sees them, each
traced back to the pyramid level, the frames (tiles) and the pixel region of the slide they came
from, and the slide's context from its DICOM header.

Coordinates: a region is a Box in the *total pixel matrix* of the level named (0-based pixel
columns x, rows y; x1/y1 exclusive), the frame space DICOM WSI uses (PS3.3 C.8.12.4.1.2); the
same region in base-level pixels is `base_region`, scaled by the level's downsample factors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from plugin.results import Box, SourceRef

if TYPE_CHECKING:
    from PIL.Image import Image

Organization = Literal["TILED_FULL", "TILED_SPARSE"]


@dataclass(frozen=True)
class PyramidLevel:
    """One instance of the slide's pyramid (a resolution level, or a thumbnail/label/overview)."""

    instance_uid: str
    series_uid: str
    image_type: str  # the third value of ImageType: VOLUME, THUMBNAIL, LABEL, OVERVIEW
    total_columns: int  # TotalPixelMatrixColumns (width)
    total_rows: int  # TotalPixelMatrixRows (height)
    tile_columns: int  # Columns of one frame
    tile_rows: int  # Rows of one frame
    frames: int  # NumberOfFrames
    organization: Organization  # DimensionOrganizationType
    pixel_spacing_mm: tuple[float, float] | None  # (row spacing, column spacing), None: absent
    transfer_syntax: str = ""  # as the PACS declared it in the metadata ("" = unknown)
    photometric: str = ""  # PhotometricInterpretation
    optical_path: str = ""  # OpticalPathIdentifier (the first, when several)
    # TILED_SPARSE: the (column, row) tile of each frame, in frame order (frame n is index n-1);
    # empty for TILED_FULL, whose frame order is implied (row by row, columns fastest).
    sparse_tiles: tuple[tuple[int, int], ...] = field(default=(), repr=False, compare=False)

    @property
    def tiles_across(self) -> int:
        return -(-self.total_columns // self.tile_columns)

    @property
    def tiles_down(self) -> int:
        return -(-self.total_rows // self.tile_rows)


@dataclass(frozen=True)
class SlideContext:
    """The slide's context from its DICOM header, as written there ("" where absent)."""

    specimen: str  # SpecimenDescriptionSequence: short/detailed description, specimen id
    stain: str  # the staining substance(s) of the specimen preparation steps, e.g. "hematoxylin, eosin"
    body_site: str  # the primary anatomic structure (or BodyPartExamined)
    container: str = ""  # ContainerIdentifier (the slide's id)


@dataclass(frozen=True)
class Patch:
    """One patch as the model sees it (RGB `image`), numbered in prompt order from 1."""

    number: int
    image: Image
    level: PyramidLevel  # the level its pixels came from
    region: Box  # in that level's total pixel matrix
    base_region: Box  # the same region in base-level pixels
    frames: tuple[int, ...]  # 1-based frame numbers of `level` fetched for it
    tissue_fraction: float  # of the region, by the tissue mask


@dataclass(frozen=True)
class PreparedSlide:
    """A slide made ready for the model: `patches` in prompt order."""

    source: SourceRef  # the ImagingStudy at its exact version
    study_uid: str
    series_uid: str
    levels: tuple[PyramidLevel, ...]  # the resolution levels, base (largest) first
    thumbnail_level: PyramidLevel  # the level the tissue mask was computed on
    context: SlideContext
    patches: tuple[Patch, ...]
    started: datetime | None = None
    # Every choice, JSON-serialisable: levels found, level used and its µm/px, mask method and
    # threshold, tissue fraction, patch grid and sampling seed, frames and bytes fetched.
    choices: dict[str, Any] = field(default_factory=dict)

    @property
    def instances_used(self) -> tuple[str, ...]:
        """SOP Instance UIDs whose pixels went to the model, in prompt order, without repeats."""
        return tuple(dict.fromkeys(p.level.instance_uid for p in self.patches))

    @property
    def frames_used(self) -> dict[str, tuple[int, ...]]:
        """instance UID -> the frames of it whose pixels went to the model (sorted)."""
        found: dict[str, set[int]] = {}
        for patch in self.patches:
            found.setdefault(patch.level.instance_uid, set()).update(patch.frames)
        return {uid: tuple(sorted(frames)) for uid, frames in found.items()}
