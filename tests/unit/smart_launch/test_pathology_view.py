"""The app's whole-slide patch view without a server: the patch evidence (level, frames) read back
from the extensions fhir_mappers writes, the numbering of the cited patches, a level's box placed
on the overview, and slide studies listed against the pathology pipeline."""

from __future__ import annotations

from typing import Any

from cds_hooks.ai_results import AiResult
from fhir_mappers.evidence import evidence_extension
from fhir_mappers.systems import EXT_EVIDENCE_IMAGE
from plugin.pipelines.registry import InstalledPipeline
from plugin.results import Box, ImageEvidence
from smart_launch.views.inputs import patient_inputs
from smart_launch.views.pathology import cited_patches, overview_box, patches_of, subject_is
from smart_launch.views.results import ImageSpot, ReviewItem, evidence_of

STUDY, SERIES, LEVEL1 = "1.2.826.0.1.1", "1.2.826.0.1.1.2", "1.2.826.0.1.1.2.3"


def _spot_extension(**parts: Any) -> dict[str, Any]:
    """An evidence-image extension written by hand, as docs/pathology.md shows it."""
    types = {"study": "valueId", "series": "valueId", "instance": "valueId", "box": "valueString",
             "level": "valueInteger", "frames": "valueString", "frame": "valueInteger"}
    return {"url": EXT_EVIDENCE_IMAGE, "extension": [{"url": k, types[k]: v} for k, v in parts.items()]}


def test_patch_evidence_carries_its_level_and_frames() -> None:
    written = evidence_extension(ImageEvidence(STUDY, SERIES, LEVEL1, box=Box(256, 128, 512, 384),
                                               frames=(12, 7, 8, 11), level=1))
    by_hand = _spot_extension(study=STUDY, series=SERIES, instance=LEVEL1, box="0,0,896,896", level=0,
                              frames="1, 2")
    (from_mapper, from_hand) = evidence_of({"extension": [written, by_hand]})
    assert from_mapper == ImageSpot(STUDY, SERIES, LEVEL1, None, None, Box(256, 128, 512, 384),
                                    level=1, frames=(7, 8, 11, 12))
    assert from_hand.level == 0 and from_hand.frames == (1, 2)


def test_imaging_spots_keep_no_level_and_malformed_frames_are_skipped() -> None:
    imaging = _spot_extension(study=STUDY, series=SERIES, instance=LEVEL1, frame=3, box="1,2,3,4")
    bad = [_spot_extension(study=STUDY, instance=LEVEL1, box="0,0,9,9", level=1, frames=f)
           for f in ("a,b", "0,1", "3,,4")]
    (spot,) = evidence_of({"extension": [imaging, *bad]})
    assert spot == ImageSpot(STUDY, SERIES, LEVEL1, 3, None, Box(1, 2, 3, 4))
    assert spot.level is None and spot.frames == ()


def _item(reference: str, *boxes: tuple[int, int, int, int]) -> ReviewItem:
    spots = tuple(ImageSpot(STUDY, SERIES, LEVEL1, None, None, Box(*b), level=1, frames=(1,)) for b in boxes)
    result = AiResult(reference=reference, resource={"resourceType": "Observation", "id": reference[12:]},
                      kind="finding", name="finding", value="text")
    return ReviewItem(result=result, evidence=spots, state="awaiting review", ai_original="", model=None)


def test_cited_patches_are_numbered_once_in_citation_order() -> None:
    first = _item("Observation/1", (0, 0, 10, 10), (20, 0, 30, 10))
    second = _item("Observation/2", (40, 0, 50, 10), (20, 0, 30, 10))
    frame_spot = ImageSpot(STUDY, SERIES, "9.9", 1, None, Box(0, 0, 5, 5))  # an imaging spot: no level
    second = ReviewItem(second.result, (frame_spot, *second.evidence), second.state, "", None)
    patches = cited_patches([first, second])
    assert [(p.number, p.spot.box) for p in patches] == [
        (1, Box(0, 0, 10, 10)), (2, Box(20, 0, 30, 10)), (3, Box(40, 0, 50, 10))]
    # Each finding's patches: (number on the page, index of the spot in the URL, spot).
    assert [(n, i) for n, i, _ in patches_of(second, patches)] == [(3, 2), (2, 3)]


def test_a_level_box_lands_where_the_base_region_lies_on_the_thumbnail() -> None:
    # A 40000 x 30000 base with a level at downsample 2 (20000 x 15000) and a thumbnail at 64
    # (ceil: 625 x 469), as plugin/sandbox/synthetic/slide.py makes it.
    level, thumb = (20000, 15000), (625, 469)
    region = Box(5000, 3000, 5896, 3896)  # level-1 pixels: base 10000..11792, 6000..7792
    placed = overview_box(region, level, thumb)
    truth = (10000 / 64, 6000 / 64, 11792 / 64, 7792 / 64)
    assert all(abs(a - b) < 0.2 for a, b in zip((placed.x0, placed.y0, placed.x1, placed.y1), truth,
                                                 strict=True))
    # A base-level region of the same numbers lies half as far in (the level is not ignored).
    as_base = overview_box(region, (40000, 30000), thumb)
    assert abs(as_base.x0 - placed.x0 / 2) < 0.01 and abs(as_base.y1 - placed.y1 / 2) < 0.01
    # The axes scale apart: a non-square overview of a level.
    assert overview_box(Box(0, 0, 100, 100), (1000, 400), (250, 200)) == Box(0, 0, 25, 50)


def test_subject_is_the_patient_in_context_on_the_launch_s_server() -> None:
    base = "https://ehr.example/fhir"
    assert subject_is({"subject": {"reference": "Patient/12"}}, "12", base_url=base)
    assert subject_is({"subject": {"reference": "https://ehr.example/fhir/Patient/12"}}, "12", base_url=base)
    # the same id on another server is another person
    assert not subject_is({"subject": {"reference": "https://other.example/fhir/Patient/12"}}, "12",
                          base_url=base)
    assert not subject_is({"subject": {"reference": "Patient/112"}}, "12", base_url=base)
    assert not subject_is({}, "12", base_url=base)


class _Search:
    """The one FHIR call patient_inputs makes without an imaging pipeline: the patient's studies."""

    def __init__(self, studies: list[dict[str, Any]]) -> None:
        self.studies = studies

    def search(self, resource_type: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        assert resource_type == "ImagingStudy"
        return self.studies


def test_slide_studies_are_listed_for_the_pathology_pipeline_once() -> None:
    slide = {"resourceType": "ImagingStudy", "id": "7", "meta": {"versionId": "2"}, "description": "Slide"}
    ct = {"resourceType": "ImagingStudy", "id": "8", "meta": {"versionId": "1"}, "description": "CT"}
    pathology = InstalledPipeline("pathology", "whole-slide", lambda client, patient: [slide],
                                  run=lambda context: None)  # type: ignore[arg-type,return-value]
    rows = patient_inputs(_Search([slide, ct]), {"pathology": pathology}, "1")  # type: ignore[arg-type]
    assert [(r.kind, r.reference, r.pipeline, r.key) for r in rows] == [
        ("imaging", "ImagingStudy/7", "pathology", "pathology:ImagingStudy/7"),
        ("imaging", "ImagingStudy/8", "", "none:ImagingStudy/8")]
    assert rows[0].unavailable == "" and rows[1].unavailable == "no imaging pipeline is installed here"
