"""What image preparation hands the model step: the images exactly as the model sees them, each
traced back to the DICOM instance and frame it came from, and every choice made on the way (for
Provenance and for people to check)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from plugin.pipelines.imaging.orientation import AS_STORED, Reorientation
from plugin.results import SourceRef

if TYPE_CHECKING:
    from PIL.Image import Image

StudyKind = Literal["ct-volume", "mr-volume", "projection"]


@dataclass(frozen=True)
class PreparedImage:
    """One image for the model (RGB), and where its pixels came from.

    `original_size` is (width, height) of the DICOM frame as stored; `reorientation` the flips
    and quarter turns that made it the displayed frame; `padding` is (left, top) pixels added to
    the displayed frame to make it square before any resize (the resize of a square is uniform).
    A box the model gives in 0..1000 of the padded square maps back to the stored frame's pixels
    with these (plugin.pipelines.imaging.boxes).
    """

    image: Image
    series_uid: str
    instance_uid: str
    frame: int  # 1-based frame number within the instance
    label: str  # text that follows the image in the prompt, e.g. "SLICE 12"; "" for none
    original_size: tuple[int, int]
    padding: tuple[int, int] = (0, 0)
    slice_index: int | None = None  # position in the ordered series (0-based), volumes only
    reorientation: Reorientation = AS_STORED


@dataclass(frozen=True)
class PreparedStudy:
    """A study made ready for the model: `images` in prompt order."""

    source: SourceRef  # the ImagingStudy at its exact version (content_sha256 of the bytes read)
    study_uid: str
    kind: StudyKind
    modality: str  # DICOM modality of the series used: CT, MR, CR, DX
    body_part: str  # BodyPartExamined / ImagingStudy body site, as given ("" if none)
    started: datetime | None
    images: tuple[PreparedImage, ...]
    # Every choice, JSON-serialisable: series chosen and why, slice count stored and sampled
    # indices, windows, inversion, padding, bytes read. Goes into the Provenance/narrative.
    choices: dict[str, Any] = field(default_factory=dict)

    @property
    def instances_used(self) -> tuple[str, ...]:
        """SOP Instance UIDs whose pixels went to the model, in prompt order, without repeats."""
        return tuple(dict.fromkeys(image.instance_uid for image in self.images))
