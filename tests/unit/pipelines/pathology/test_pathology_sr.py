"""The DICOM SR of a pathology read (plugin.pipelines.imaging.dicom_sr on a slide's result), re-read
with highdicom from its Part-10 bytes: one planar ROI per cited patch, on the level instance the
patch came from, naming the patch's frames, its polyline in the level's total pixel matrix (pixel
origin interpretation VOLUME) and equal to the FHIR box; the procedure coded for pathology. The
source header is a tiled VL Whole Slide Microscopy instance made by tests/support/prepared_slides.py."""

from __future__ import annotations

import io

import highdicom as hd

from plugin.pipelines.imaging.dicom_sr import build_sr, sr_identity
from plugin.pipelines.pathology.pipeline import slide_result
from plugin.results import Finding, ImageEvidence, PipelineResult
from tests.support.prepared_slides import PATCHES, level1_header, prepared_slide
from tests.support.sr_regions import SrRegion, sr_regions
from tests.unit.pipelines.pathology.test_pathology_pipeline import GOOD, MODEL, RESOURCE


def sr_of(result: PipelineResult, tag: str) -> hd.sr.Comprehensive3DSR:
    sr = build_sr(result, result.reports[0],
                  identity=sr_identity("1.2.826.0.1.3680043.99", "https://chartlight.dev/fhir/sid/result|p",
                                       result, server="https://ehr.test/fhir"),
                  evidence=[level1_header(tag)], device_uid="1.2.826.0.1.3680043.99.1",
                  device_serial="device-1")
    buffer = io.BytesIO()
    sr.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    again = hd.sr.srread(buffer)
    assert isinstance(again, hd.sr.Comprehensive3DSR)
    return again


def test_each_cited_patch_is_a_volume_region_on_its_level_with_its_frames() -> None:
    slide = prepared_slide("sr-unit")
    result = slide_result(slide, GOOD, MODEL, RESOURCE)
    level1 = slide.levels[1].instance_uid
    regions = sr_regions(sr_of(result, "sr-unit"))
    assert regions == [
        SrRegion("finding 1.1: Invasive ductal carcinoma, grade 2", level1, PATCHES[1][1], "VOLUME",
                 (256.0, 128.0, 512.0, 384.0)),
        SrRegion("finding 1.2: Invasive ductal carcinoma, grade 2", level1, PATCHES[2][1], "VOLUME",
                 (128.0, 0.0, 384.0, 256.0)),
        SrRegion("finding 2: Benign fibrofatty breast stroma", level1, PATCHES[0][1], "VOLUME",
                 (0.0, 0.0, 256.0, 256.0)),
    ]
    # the same boxes as the FHIR evidence
    fhir_boxes = [(e.box.x0, e.box.y0, e.box.x1, e.box.y1) for item in result.items
                  if isinstance(item, Finding) for e in item.evidence
                  if isinstance(e, ImageEvidence) and e.box is not None]
    assert [r.box for r in regions] == fhir_boxes


def test_the_procedure_is_the_pathology_report_and_the_sr_is_preliminary() -> None:
    result = slide_result(prepared_slide("sr-unit"), GOOD, MODEL, RESOURCE)
    sr = sr_of(result, "sr-unit")
    procedures = [item.ConceptCodeSequence[0] for item in sr.ContentSequence
                  if item.ValueType == "CODE"
                  and item.ConceptNameCodeSequence[0].CodeMeaning == "Procedure reported"]
    assert [(c.CodeValue, c.CodingSchemeDesignator) for c in procedures] == [("60567-5", "LN")]
    assert (sr.CompletionFlag, sr.VerificationFlag) == ("PARTIAL", "UNVERIFIED")
    assert sr.StudyInstanceUID == prepared_slide("sr-unit").study_uid
