"""Synthetic whole-slide images for the pathology tests and benchmark: a tiled multi-resolution DICOM
VL Whole Slide Microscopy series (one instance per pyramid level, JPEG baseline tiles, TILED_FULL or
TILED_SPARSE, optionally a single-frame THUMBNAIL image), with the tissue truth alongside.

Made apart from the reader (nothing here imports plugin.pipelines.pathology): the picture is a pure
function of base-level coordinates (`SyntheticSlide.render`), so a test can compare what the reader
returns for a region with what was drawn there. Tissue is a few ellipses ("blobs") of pink stroma
with purple nuclei on a white background; tiles that touch no blob share one encoded JPEG, which
keeps a 40k x 30k slide quick to make. `bad` builds the broken slides the bad-input tests need.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import JPEGBaseline8Bit, generate_uid

from plugin.sandbox.synthetic.dicom_file import part10_bytes

WSI_STORAGE = "1.2.840.10008.5.1.4.1.1.77.1.6"  # VL Whole Slide Microscopy Image Storage
BACKGROUND = (242, 242, 242)
STROMA = np.array([226.0, 158.0, 196.0])
NUCLEUS = np.array([118.0, 62.0, 150.0])
# The broken slides (SlideSpec.bad):
#   "frames"        the second level has one frame fewer than its tiles (TILED_FULL)
#   "spacing"       the second level's pixel spacing is that of a 3x downsample, its size 2x... 4x
#   "missing_frame" the second level's metadata lists more frames than its pixel data holds
#   "no_thumbnail"  no THUMBNAIL image and no small level (the smallest level is big)
BAD_CASES = ("frames", "spacing", "missing_frame", "no_thumbnail")


@dataclass(frozen=True)
class Blob:
    """An ellipse of tissue in base-level pixels."""

    cx: float
    cy: float
    rx: float
    ry: float

    def bounds(self) -> tuple[float, float, float, float]:
        return self.cx - self.rx, self.cy - self.ry, self.cx + self.rx, self.cy + self.ry


DEFAULT_BLOBS = (Blob(9000, 9000, 5200, 4000), Blob(27000, 11000, 4200, 5600),
                 Blob(16000, 22500, 6500, 3200), Blob(34500, 25000, 2200, 2000))


@dataclass(frozen=True)
class SlideSpec:
    columns: int = 40000  # base level TotalPixelMatrixColumns
    rows: int = 30000
    tile: int = 512
    downsamples: tuple[int, ...] = (1, 2, 8, 32)  # VOLUME levels, base first
    thumbnail_downsample: int = 64  # a single-frame THUMBNAIL image; 0: none
    base_spacing_mm: float = 0.00025  # 0.25 µm/px at the base ("40x")
    blobs: tuple[Blob, ...] = DEFAULT_BLOBS
    organization: str = "TILED_FULL"
    name: str = "slide"  # seeds the UIDs
    bad: str = ""
    quality: int = 90
    patient_id: str = "WSI-TEST-1"

    @property
    def study_uid(self) -> str:
        return generate_uid(entropy_srcs=["wsi-study", self.name])

    @property
    def series_uid(self) -> str:
        return generate_uid(entropy_srcs=["wsi-series", self.name])


@dataclass(frozen=True)
class LevelMade:
    instance_uid: str
    image_type: str  # VOLUME or THUMBNAIL
    downsample: int
    columns: int
    rows: int
    frames: int  # NumberOfFrames as written in the header
    tile_positions: tuple[tuple[int, int], ...]  # (column, row) of each frame's tile, frame order


@dataclass(frozen=True)
class SyntheticSlide:
    spec: SlideSpec
    files: tuple[bytes, ...] = field(repr=False)
    levels: tuple[LevelMade, ...]

    def level(self, downsample: int, image_type: str = "VOLUME") -> LevelMade:
        (found,) = [lv for lv in self.levels if lv.downsample == downsample and lv.image_type == image_type]
        return found

    def render(self, downsample: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """The RGB pixels drawn at a level of this downsample, region [x0,x1) x [y0,y1) of its
        total pixel matrix (before JPEG)."""
        return render(self.spec, downsample, x0, y0, x1, y1)

    def tissue(self, downsample: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """The tissue truth (bool) at that level and region."""
        u, v = _coords(downsample, x0, y0, x1, y1)
        return _inside(self.spec.blobs, u, v)


def _coords(downsample: int, x0: int, y0: int, x1: int, y1: int) -> tuple[np.ndarray, np.ndarray]:
    """Base-level coordinates of the centres of a level's pixels."""
    u = (np.arange(x0, x1, dtype=np.float64) + 0.5) * downsample
    v = (np.arange(y0, y1, dtype=np.float64) + 0.5) * downsample
    return u[None, :], v[:, None]


def _inside(blobs: tuple[Blob, ...], u: np.ndarray, v: np.ndarray) -> np.ndarray:
    mask = np.zeros((v.shape[0], u.shape[1]), dtype=bool)
    for blob in blobs:
        bx0, by0, bx1, by1 = blob.bounds()
        if bx1 < u[0, 0] or bx0 > u[0, -1] or by1 < v[0, 0] or by0 > v[-1, 0]:
            continue  # this blob is nowhere near the region
        mask |= ((u - blob.cx) / blob.rx) ** 2 + ((v - blob.cy) / blob.ry) ** 2 <= 1.0
    return mask


def render(spec: SlideSpec, downsample: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    u, v = _coords(downsample, x0, y0, x1, y1)
    tissue = _inside(spec.blobs, u, v)
    out = np.empty((v.shape[0], u.shape[1], 3), dtype=np.uint8)
    out[:] = BACKGROUND
    if tissue.any():
        # Nuclei: a lattice of 12 µm period (48 base px); stroma shaded by a slow wave. Both are
        # outer products of 1-D waves, cheap enough to draw a 40k x 30k slide in seconds.
        nuclei = np.sin(u * (2 * np.pi / 48.0)) * np.sin(v * (2 * np.pi / 48.0)) > 0.55
        shade = (0.9 + 0.1 * np.sin(u / 700.0) * np.cos(v / 900.0)).astype(np.float32)
        colour = (shade[..., None] * STROMA.astype(np.float32)).astype(np.uint8)
        colour[nuclei] = NUCLEUS.astype(np.uint8)
        out[tissue] = colour[tissue]
    return out


def _jpeg(pixels: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _touches_tissue(spec: SlideSpec, downsample: int, col: int, row: int, size: int) -> bool:
    x0, y0 = col * size * downsample, row * size * downsample
    x1, y1 = x0 + size * downsample, y0 + size * downsample
    return any(bx0 < x1 and bx1 > x0 and by0 < y1 and by1 > y0
               for bx0, by0, bx1, by1 in (b.bounds() for b in spec.blobs))


def make_slide(spec: SlideSpec = SlideSpec()) -> SyntheticSlide:
    """The slide's Part-10 files (one per level, then the thumbnail) and what was written."""
    files, made = [], []
    background = _jpeg(np.full((spec.tile, spec.tile, 3), BACKGROUND, dtype=np.uint8), spec.quality)
    plan = [("VOLUME", d) for d in spec.downsamples]
    if spec.thumbnail_downsample and spec.bad != "no_thumbnail":
        plan.append(("THUMBNAIL", spec.thumbnail_downsample))
    for number, (image_type, downsample) in enumerate(plan, start=1):
        columns, rows = -(-spec.columns // downsample), -(-spec.rows // downsample)
        if image_type == "THUMBNAIL":
            tile_w, tile_h = columns, rows  # one frame: the whole image
        else:
            tile_w = tile_h = spec.tile
        across, down = -(-columns // tile_w), -(-rows // tile_h)
        sparse = spec.organization == "TILED_SPARSE" and image_type == "VOLUME"
        positions, frames = [], []
        for row in range(down):
            for col in range(across):
                touches = _touches_tissue(spec, downsample, col, row, tile_w) if tile_w == tile_h else True
                if sparse and not touches:
                    continue
                positions.append((col, row))
                if not touches and tile_w == spec.tile:
                    frames.append(background)
                else:
                    x0, y0 = col * tile_w, row * tile_h
                    frames.append(_jpeg(render(spec, downsample, x0, y0, x0 + tile_w, y0 + tile_h),
                                        spec.quality))
        declared = len(frames)
        second = number == 2
        if spec.bad == "frames" and second:
            frames, positions = frames[:-1], positions[:-1]
            declared = len(frames)
        if spec.bad == "missing_frame" and second:
            declared = len(frames)
            frames = frames[:-1]  # the header still says `declared`
        spacing = spec.base_spacing_mm * downsample
        if spec.bad == "spacing" and second:
            spacing = spec.base_spacing_mm * (downsample * 1.5)
        uid = generate_uid(entropy_srcs=["wsi-instance", spec.name, image_type, str(downsample)])
        ds = _level_dataset(spec, uid, number, image_type, columns, rows, tile_w, tile_h, spacing,
                            declared, positions if sparse else None)
        ds.PixelData = encapsulate(frames, has_bot=True)
        files.append(part10_bytes(ds, JPEGBaseline8Bit))
        made.append(LevelMade(uid, image_type, downsample, columns, rows, declared, tuple(positions)))
    return SyntheticSlide(spec, tuple(files), tuple(made))


def _item(**values: object) -> Dataset:
    ds = Dataset()
    for key, value in values.items():
        setattr(ds, key, value)
    return ds


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    return _item(CodeValue=value, CodingSchemeDesignator=scheme, CodeMeaning=meaning)


def _substance(code: str, meaning: str) -> Dataset:
    """A staining step's "Using substance" content item (SCT 424361007)."""
    name = _code("424361007", "SCT", "Using substance")
    return _item(ValueType="CODE", ConceptNameCodeSequence=Sequence([name]),
                 ConceptCodeSequence=Sequence([_code(code, "SCT", meaning)]))


def _level_dataset(spec: SlideSpec, uid: str, number: int, image_type: str, columns: int, rows: int,
                   tile_w: int, tile_h: int, spacing: float, frames: int,
                   sparse_positions: list[tuple[int, int]] | None) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = WSI_STORAGE, uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID = spec.study_uid, spec.series_uid
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=["wsi-frame", spec.name])
    ds.Modality, ds.PatientID, ds.PatientName = "SM", spec.patient_id, "Test^Slide"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID = "20260101", "120000", "", "1"
    ds.SeriesNumber, ds.InstanceNumber = 1, number
    ds.Manufacturer = "chartlight tests"
    ds.ImageType = ["ORIGINAL" if number == 1 else "DERIVED", "PRIMARY", image_type, "NONE"]
    ds.ContentDate, ds.ContentTime = "20260101", "120000"
    ds.ContainerIdentifier = f"SLIDE-{spec.name}"
    ds.SpecimenDescriptionSequence = Sequence([_item(
        SpecimenIdentifier=f"S-{spec.name}", SpecimenUID=generate_uid(entropy_srcs=["wsi-spec", spec.name]),
        SpecimenShortDescription="Colon, biopsy",
        PrimaryAnatomicStructureSequence=Sequence([_code("71854001", "SCT", "Colon")]),
        SpecimenPreparationSequence=Sequence([_item(SpecimenPreparationStepContentItemSequence=Sequence([
            _substance("12710003", "hematoxylin stain"), _substance("36879007", "water soluble eosin stain"),
        ]))]))])
    ds.Rows, ds.Columns = tile_h, tile_w
    ds.TotalPixelMatrixColumns, ds.TotalPixelMatrixRows = columns, rows
    ds.NumberOfFrames = frames
    ds.DimensionOrganizationType = "TILED_SPARSE" if sparse_positions is not None else "TILED_FULL"
    ds.TotalPixelMatrixFocalPlanes = 1
    ds.NumberOfOpticalPaths = 1
    ds.ImagedVolumeWidth = spec.columns * spec.base_spacing_mm
    ds.ImagedVolumeHeight = spec.rows * spec.base_spacing_mm
    ds.ImagedVolumeDepth = 0.001
    ds.OpticalPathSequence = Sequence([_item(
        OpticalPathIdentifier="1", OpticalPathDescription="brightfield",
        IlluminationTypeCodeSequence=Sequence([_code("111744", "DCM", "Brightfield illumination")]),
        IlluminationColorCodeSequence=Sequence([_code("414298005", "SCT", "Full Spectrum")]))])
    ds.SharedFunctionalGroupsSequence = Sequence([_item(
        PixelMeasuresSequence=Sequence([_item(PixelSpacing=[spacing, spacing], SliceThickness=0.001)]),
        OpticalPathIdentificationSequence=Sequence([_item(OpticalPathIdentifier="1")]))])
    if sparse_positions is not None:
        ds.PerFrameFunctionalGroupsSequence = Sequence([_item(PlanePositionSlideSequence=Sequence([_item(
            ColumnPositionInTotalImagePixelMatrix=col * tile_w + 1,
            RowPositionInTotalImagePixelMatrix=row * tile_h + 1,
            XOffsetInSlideCoordinateSystem=0.0, YOffsetInSlideCoordinateSystem=0.0,
            ZOffsetInSlideCoordinateSystem=0.0)]))
            for col, row in sparse_positions])
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "YBR_FULL_422", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.LossyImageCompression, ds.LossyImageCompressionMethod = "01", "ISO_10918_1"
    ds.BurnedInAnnotation, ds.SpecimenLabelInImage, ds.FocusMethod = "NO", "NO", "AUTO"
    ds.ExtendedDepthOfField = "NO"
    return ds


def huge_slide_files(name: str = "huge", side: int = 100_000) -> tuple[SlideSpec, tuple[bytes, ...]]:
    """A slide whose base level declares side x side pixels (TILED_SPARSE, a handful of frames:
    the pixel budget must refuse it from the metadata alone)."""
    spec = SlideSpec(columns=side, rows=side, tile=512, downsamples=(1,), thumbnail_downsample=0,
                     blobs=(Blob(1000, 1000, 600, 600),), organization="TILED_SPARSE", name=name)
    return spec, make_slide(spec).files


def series_metadata(files: tuple[bytes, ...]) -> list[dict[str, object]]:
    """The DICOM JSON a WADO-RS series metadata call answers for these files (pixel data left out),
    by pydicom's own JSON writer, for unit tests that have no PACS."""
    from pydicom import dcmread
    from pydicom.filebase import DicomBytesIO

    found = []
    for data in files:
        ds = dcmread(DicomBytesIO(data))
        del ds.PixelData
        found.append(ds.to_json_dict())
    return found
