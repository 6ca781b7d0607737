"""Whole slides as the reporting half of pathology receives them, made by hand for its tests: a
PreparedSlide whose three patches lie on level 1 of a three-level pyramid, and that level as a
real tiled DICOM VL Whole Slide Microscopy instance (pydicom, uncompressed RGB tiles) to store in
the PACS. Every number here (regions, frames, spacings) is written out, not computed by the code
under test: tile size 128, level 1 is 512 x 384 px = 4 x 3 tiles, frame = row * 4 + column + 1.
"""

from __future__ import annotations

from datetime import UTC, datetime
from io import BytesIO

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from plugin.pipelines.pathology.slide import Patch, PreparedSlide, PyramidLevel, SlideContext
from plugin.results import Box, SourceRef

WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"  # VL Whole Slide Microscopy Image Storage
TILE = 128

# (region on level 1, the frames of level 1 it covers), by hand from the tile grid above.
PATCHES: tuple[tuple[Box, tuple[int, ...]], ...] = (
    (Box(0, 0, 256, 256), (1, 2, 5, 6)),
    (Box(256, 128, 512, 384), (7, 8, 11, 12)),
    (Box(128, 0, 384, 256), (2, 3, 6, 7)),
)


def slide_uids(tag: str) -> tuple[str, str, tuple[str, str, str]]:
    """(study, series, (base, level 1, thumbnail) instance UIDs), fresh for each `tag`."""
    study = generate_uid(entropy_srcs=["chartlight-test-slide", tag, "study"])
    series = generate_uid(entropy_srcs=["chartlight-test-slide", tag, "series"])
    instances = tuple(generate_uid(entropy_srcs=["chartlight-test-slide", tag, name])
                      for name in ("base", "level1", "thumbnail"))
    return study, series, (instances[0], instances[1], instances[2])


def prepared_slide(tag: str = "unit", *, study_id: str = "slide-1", version: str = "1",
                   endpoint: str = "", context: SlideContext | None = None) -> PreparedSlide:
    study, series, (base_uid, level1_uid, thumb_uid) = slide_uids(tag)
    base = PyramidLevel(base_uid, series, "VOLUME", 1024, 768, TILE, TILE, 48, "TILED_FULL",
                        (0.00025, 0.00025), photometric="RGB")
    level1 = PyramidLevel(level1_uid, series, "VOLUME", 512, 384, TILE, TILE, 12, "TILED_FULL",
                          (0.0005, 0.0005), photometric="RGB")
    thumb = PyramidLevel(thumb_uid, series, "THUMBNAIL", 128, 96, TILE, TILE, 1, "TILED_FULL",
                         (0.002, 0.002), photometric="RGB")
    patches = tuple(
        Patch(number=n, image=Image.new("RGB", (64, 64), (200, 60 * n, 180)), level=level1,
              region=region, base_region=Box(region.x0 * 2, region.y0 * 2, region.x1 * 2, region.y1 * 2),
              frames=frames, tissue_fraction=0.5 + 0.1 * n)
        for n, (region, frames) in enumerate(PATCHES, 1))
    # The keys prepare_slide records (plugin/pipelines/pathology/prepare.py).
    choices: dict[str, object] = {
        "level_um_per_px": 0.5, "seed": 7,
        "mask": {"method": "otsu-saturation", "threshold": 21, "tissue_fraction": 0.4}}
    if endpoint:
        choices["endpoint"] = endpoint
    return PreparedSlide(
        source=SourceRef("ImagingStudy", study_id, version, "cc" * 32), study_uid=study,
        series_uid=series, levels=(base, level1, thumb), thumbnail_level=thumb,
        context=context or SlideContext(specimen="Core needle biopsy, left breast",
                                        stain="hematoxylin, eosin", body_site="Breast",
                                        container="S26-0042 A1"),
        patches=patches, started=datetime(2026, 10, 2, 9, 30, tzinfo=UTC), choices=choices)


def level1_instance(tag: str, *, patient_id: str, patient_name: str = "Test^Slide") -> bytes:
    """Level 1 of `prepared_slide(tag)` as a Part-10 VL WSI instance (12 uncompressed tiles)."""
    study, series, (_, level1_uid, _) = slide_uids(tag)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = WSI_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = level1_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = WSI_SOP_CLASS, level1_uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=["chartlight-test-slide", tag, "frame"])
    ds.PatientID, ds.PatientName = patient_id, patient_name
    ds.PatientBirthDate, ds.PatientSex = "19700101", "F"
    ds.StudyDate, ds.StudyTime, ds.StudyID = "20261002", "093000", "1"
    ds.AccessionNumber, ds.ReferringPhysicianName = "", ""
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "SM", 1, 2
    ds.Manufacturer = "chartlight tests"
    ds.ImageType = ["DERIVED", "PRIMARY", "VOLUME", "RESAMPLED"]
    ds.Rows = ds.Columns = TILE
    ds.TotalPixelMatrixColumns, ds.TotalPixelMatrixRows = 512, 384
    ds.NumberOfFrames = 12
    ds.DimensionOrganizationType = "TILED_FULL"
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.ContainerIdentifier = "S26-0042 A1"
    measures = Dataset()
    measures.PixelSpacing = [0.0005, 0.0005]
    measures.SliceThickness = 0.004
    shared = Dataset()
    shared.PixelMeasuresSequence = Sequence([measures])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    rng = np.random.default_rng(7)
    tiles = rng.integers(120, 255, size=(12, TILE, TILE, 3), dtype=np.uint8)
    ds.PixelData = tiles.tobytes()
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def level1_header(tag: str, *, patient_id: str = "P-SLIDE") -> Dataset:
    """The header of `level1_instance(tag)` without its pixels (what WADO-RS metadata gives)."""
    return pydicom.dcmread(BytesIO(level1_instance(tag, patient_id=patient_id)), stop_before_pixels=True)
