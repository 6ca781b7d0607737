"""The pathology pipeline on slides prepared by hand (tests/support/prepared_slides.py: no PACS)
with a scripted engine: the prompt's context and patch labels, answers read with their patch
citations (forged, unknown and missing ones dropped or withheld and listed, unreadable answers
reported and never turned into findings), and the FHIR resources made of it all: Observations
whose evidence names level, frames and region, a PAT DiagnosticReport, a Provenance naming the
frames, the narrative draft."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from PIL import Image

from fhir_mappers.evidence import evidence_extension
from fhir_mappers.systems import EXT_DICOM_FRAMES, EXT_EVIDENCE_IMAGE
from plugin.errors import ConfigError, InputError
from plugin.fhir import FhirClient
from plugin.jobs import Job, JobContext, JobState
from plugin.pipelines.pathology.pipeline import PathologyPipeline, slide_result
from plugin.pipelines.pathology.prompts import FINDINGS, slide_parts
from plugin.pipelines.pathology.slide import PreparedSlide, SlideContext
from plugin.results import Box, Finding, ImageEvidence, ModelInfo, Narrative, PipelineResult
from plugin.writeback import WriteOutcome, build_transaction, plan_resources
from tests.support.prepared_slides import PATCHES, prepared_slide

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
MODEL = ModelInfo("google/medgemma-1.5-4b-it", "scripted", ("Vision-Language-Models",))
GOOD = json.dumps({"findings": [
    {"finding": "Invasive ductal carcinoma, grade 2", "abnormal": True, "patches": [2, 3]},
    {"finding": "Benign fibrofatty breast stroma", "abnormal": False, "patches": ["PATCH 1"]},
], "impression": "Invasive ductal carcinoma."})


class ScriptedEngine:
    def __init__(self, answer: str, *, test_weights: bool = False, available: bool = True) -> None:
        self.answer, self.test_weights, self._available = answer, test_weights, available
        self.turns: list[list[Image.Image | str]] = []

    def available(self) -> bool:
        return self._available

    def why_unavailable(self) -> str:
        return "no model weights at /models/medgemma"

    def model_info(self) -> ModelInfo:
        return ModelInfo(MODEL.name, MODEL.version, MODEL.kinds, test_weights=self.test_weights)

    def generate(self, parts: Sequence[Image.Image | str], *, max_new_tokens: int = 1024) -> str:
        self.turns.append(list(parts))
        return self.answer


RESOURCE: dict[str, Any] = {"resourceType": "ImagingStudy", "id": "slide-1", "meta": {"versionId": "1"},
                            "subject": {"reference": "Patient/p1"}}


def context(progress: list[tuple[float, str]] | None = None) -> JobContext:
    job = Job(id=1, pipeline="pathology", source_type="ImagingStudy", source_id="slide-1",
              source_version="1", subject="Patient/p1", fhir_base_url="http://fhir.invalid/fhir",
              state=JobState.RUNNING, progress=0.0, progress_text="", attempts=1,
              next_attempt_at=NOW, error="", summary={}, created_at=NOW, updated_at=NOW)
    seen = progress if progress is not None else []
    return JobContext(job=job, client=FhirClient(job.fhir_base_url), source=RESOURCE,
                      report_progress=lambda fraction, text: seen.append((fraction, text)))


def run(answer: str, slide: PreparedSlide | None = None, **engine: Any
        ) -> tuple[PipelineResult, ScriptedEngine]:
    prepared = slide or prepared_slide()
    scripted = ScriptedEngine(answer, **engine)
    pipeline = PathologyPipeline(scripted, prepare=lambda client, study, options, progress=None: prepared,
                                 preparation=object())
    return pipeline(context()), scripted


def findings(result: PipelineResult) -> list[Finding]:
    return [i for i in result.items if isinstance(i, Finding)]


def narrative(result: PipelineResult) -> str:
    (draft,) = [i for i in result.items if isinstance(i, Narrative)]
    return draft.text


def reasons(result: PipelineResult) -> str:
    return "\n".join(p.reason for p in result.problems)


# ---- the prompt -------------------------------------------------------------------------------

def test_the_prompt_gives_the_header_context_as_written_and_labels_each_patch() -> None:
    _, engine = run(GOOD)
    (turn,) = engine.turns
    intro = turn[0]
    assert isinstance(intro, str)
    assert "3 patches" in intro
    for line in ("Specimen: Core needle biopsy, left breast", "Stain: hematoxylin, eosin",
                 "Body site: Breast", "Slide: S26-0042 A1"):
        assert line in intro
    # image, label, image, label ... then the request
    images = [p for p in turn if isinstance(p, Image.Image)]
    assert len(images) == 3
    labels = [turn[i + 1] for i, p in enumerate(turn) if isinstance(p, Image.Image)]
    assert labels == ["PATCH 1 (0.5 µm/px, region x 0-256, y 0-256 of pyramid level 1)",
                      "PATCH 2 (0.5 µm/px, region x 256-512, y 128-384 of pyramid level 1)",
                      "PATCH 3 (0.5 µm/px, region x 128-384, y 0-256 of pyramid level 1)"]
    assert turn[-1] == FINDINGS


def test_parts_the_header_leaves_out_are_not_invented() -> None:
    slide = prepared_slide(context=SlideContext(specimen="", stain="", body_site=""))
    level = slide.patches[0].level
    bare = prepared_slide(context=SlideContext(specimen="", stain="", body_site=""))
    no_spacing = type(level)(**{**level.__dict__, "pixel_spacing_mm": None})
    patches = tuple(type(p)(**{**p.__dict__, "level": no_spacing}) for p in bare.patches)
    levels = (bare.levels[0], no_spacing, bare.levels[2])
    unspaced = type(bare)(**{**bare.__dict__, "patches": patches, "levels": levels})
    intro, _, label = slide_parts(unspaced)[:3]
    assert isinstance(intro, str) and "header" not in intro and "Stain" not in intro
    assert label == "PATCH 1 (resolution not stated, region x 0-256, y 0-256 of pyramid level 1)"


def test_the_remote_engine_sends_each_patch_with_its_label_in_order() -> None:
    from plugin.engines.openai_chat import OpenAIChatEngine
    from tests.support.chat_completions import ChatServer, chat_server

    server = ChatServer(MODEL.name, answers=["```json\n" + GOOD + "\n```"])
    slide = prepared_slide()
    with chat_server(server) as url:
        pipeline = PathologyPipeline(OpenAIChatEngine(url, MODEL.name, timeout_s=10), preparation=object(),
                                     prepare=lambda client, study, options, progress=None: slide)
        result = pipeline(context())
    assert server.shape_errors == []
    (request,) = server.requests
    assert [p["type"] for p in request.parts] == ["text", *["image_url", "text"] * 3, "text"]
    labels = [p["text"] for p in request.parts if p["type"] == "text"][1:4]
    assert [label.split(" (")[0] for label in labels] == ["PATCH 1", "PATCH 2", "PATCH 3"]
    assert [image.getpixel((0, 0)) for image in request.images()] == [
        patch.image.getpixel((0, 0)) for patch in slide.patches]
    assert [f.text for f in findings(result)] == ["Invasive ductal carcinoma, grade 2",
                                                  "Benign fibrofatty breast stroma"]


# ---- reading the answer -----------------------------------------------------------------------

def test_findings_cite_their_patches_level_frames_and_region() -> None:
    result, _ = run(GOOD)
    carcinoma, stroma = findings(result)
    assert carcinoma.text == "Invasive ductal carcinoma, grade 2" and carcinoma.abnormal is True
    assert carcinoma.category == "pathology" and carcinoma.body_site == "Breast"
    slide = prepared_slide()
    level1 = slide.levels[1]
    assert carcinoma.evidence == (
        ImageEvidence(slide.study_uid, slide.series_uid, level1.instance_uid, box=PATCHES[1][0],
                      frames=PATCHES[1][1], level=1),
        ImageEvidence(slide.study_uid, slide.series_uid, level1.instance_uid, box=PATCHES[2][0],
                      frames=PATCHES[2][1], level=1))
    assert stroma.evidence == (ImageEvidence(slide.study_uid, slide.series_uid, level1.instance_uid,
                                             box=Box(0, 0, 256, 256), frames=(1, 2, 5, 6), level=1),)
    assert not result.problems
    assert result.instances_used == (level1.instance_uid,)
    assert result.frames_used == ((level1.instance_uid, (1, 2, 3, 5, 6, 7, 8, 11, 12)),)


def test_a_forged_patch_citation_is_dropped_and_listed_and_the_rest_kept() -> None:
    answer = json.dumps({"findings": [
        {"finding": "Carcinoma in situ", "patches": [2, 9, "patch three"]}]})
    result, _ = run(answer)
    (finding,) = findings(result)
    assert [e.box for e in finding.evidence if isinstance(e, ImageEvidence)] == [PATCHES[1][0]]
    assert "cites PATCH 9, 'patch three': not a patch the model was shown" in reasons(result)
    assert "PATCH 9" in narrative(result)


def test_a_finding_citing_nothing_shown_is_withheld_and_listed() -> None:
    answer = json.dumps({"findings": [
        {"finding": "Lymphovascular invasion", "patches": [4, 0]},
        {"finding": "Necrosis"},
        {"finding": "Mitoses", "patches": [1]}], "impression": "See findings."})
    result, _ = run(answer)
    assert [f.text for f in findings(result)] == ["Mitoses"]
    assert "finding #1 (Lymphovascular invasion) is withheld" in reasons(result)
    assert "finding #2 (Necrosis) is withheld" in reasons(result)
    # the report lists only what is kept
    (report,) = result.reports
    assert report.item_keys == ("pathology/3",)


def test_an_impression_whose_findings_were_all_withheld_is_not_written() -> None:
    answer = json.dumps({"findings": [{"finding": "Invasive adenocarcinoma", "patches": []}],
                         "impression": "Invasive adenocarcinoma of the colon."})
    result, _ = run(answer)
    assert findings(result) == [] and result.reports == ()
    assert "impression (Invasive adenocarcinoma of the colon.) not used" in reasons(result)
    assert "#### Impression" not in narrative(result)


def test_an_unreadable_answer_writes_no_finding_and_says_so() -> None:
    result, _ = run("The slide shows carcinoma in patches 2 and 3.")
    assert findings(result) == []
    assert result.reports == ()
    assert "could not be read" in reasons(result)
    assert "could not be read, so nothing was taken from it" in narrative(result)


def test_a_slide_the_reader_refuses_fails_with_its_reason_and_the_model_is_not_called() -> None:
    def refuse(client: Any, study: Any, options: Any, progress: Any = None) -> PreparedSlide:
        raise InputError("ImagingStudy/slide-1", "the slide has no thumbnail level")

    engine = ScriptedEngine(GOOD)
    with pytest.raises(InputError, match="no thumbnail level"):
        PathologyPipeline(engine, prepare=refuse, preparation=object())(context())
    empty = type(prepared_slide())(**{**prepared_slide().__dict__, "patches": ()})
    with pytest.raises(InputError, match="no patch of tissue"):
        run(GOOD, empty)
    assert engine.turns == []


def test_test_weights_are_marked_and_an_absent_model_refuses_to_run() -> None:
    result, _ = run(GOOD, test_weights=True)
    assert "TEST OUTPUT, not clinical" in narrative(result)
    with pytest.raises(ConfigError, match="no model weights"):
        run(GOOD, available=False)


def test_the_narrative_lists_context_preparation_patches_and_cited_patches() -> None:
    text = narrative(run(GOOD)[0])
    assert "**Stain** (DICOM header): hematoxylin, eosin" in text
    assert "patches from pyramid level 1 of 3 (512 x 384 px, 0.5 µm/px)" in text
    assert "tissue mask otsu-saturation, threshold 21, 40.0% of the slide tissue; sampling seed 7" in text
    assert "| 2 | 1 | 0.5 µm/px | 256–512, 128–384 | 7, 8, 11, 12 | 70% |" in text
    assert "- Invasive ductal carcinoma, grade 2 (abnormal) — patches 2, 3" in text


def test_timings_in_the_preparation_record_do_not_change_the_draft() -> None:
    slide = prepared_slide()
    timed = [type(slide)(**{**slide.__dict__, "choices": {**slide.choices, "decode_s": seconds,
                                                          "fetch": {"frames": 9, "elapsed_ms": seconds}}})
             for seconds in (0.8, 1.7)]
    first, second = (narrative(run(GOOD, t)[0]) for t in timed)
    assert first == second and "elapsed" not in first and "decode" not in first


# ---- FHIR -------------------------------------------------------------------------------------

def planned(result: PipelineResult) -> dict[str, dict[str, Any]]:
    return {p.key: p.resource for p in plan_resources(result, subject="Patient/p1")}


def test_a_pat_diagnostic_report_with_laboratory_observations() -> None:
    result, _ = run(GOOD)
    resources = planned(result)
    report = resources["report/pathology"]
    assert report["category"][0]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "PAT",
        "display": "Pathology (gross & histopath, not surgical)"}
    assert report["code"]["coding"][0]["code"] == "60567-5"
    assert report["status"] == "preliminary"
    assert report["conclusion"] == "Invasive ductal carcinoma."
    assert any(s["code"] == "AIAST" for s in report["meta"]["security"])
    assert report["result"] == [{"reference": "@pathology/1"}, {"reference": "@pathology/2"}]
    observation = resources["pathology/1"]
    assert observation["category"][0]["coding"][0]["code"] == "laboratory"
    assert observation["code"]["coding"][0]["code"] == "22635-7"
    evidence = [e for e in observation["extension"] if e["url"] == EXT_EVIDENCE_IMAGE]
    assert len(evidence) == 2
    parts = {p["url"]: next(v for k, v in p.items() if k.startswith("value"))
             for p in evidence[0]["extension"]}
    assert parts["box"] == "256,128,512,384" and parts["frames"] == "7,8,11,12" and parts["level"] == 1
    assert parts["instance"] == prepared_slide().levels[1].instance_uid


def test_a_study_procedure_code_is_kept_as_the_report_code() -> None:
    coded = {**RESOURCE, "procedureCode": [{"coding": [{"system": "http://loinc.org", "code": "11526-1",
                                                        "display": "Pathology study"}]}]}
    result = slide_result(prepared_slide(), GOOD, MODEL, coded)
    assert result.reports[0].code.code == "11526-1"


def test_imaging_evidence_is_written_as_before() -> None:
    written = evidence_extension(ImageEvidence("1.2", "1.2.3", "1.2.3.4", frame=1, box=Box(1, 2, 3, 4)))
    assert [p["url"] for p in written["extension"]] == ["study", "series", "instance", "frame", "box"]


def test_the_provenance_names_the_instances_and_their_frames() -> None:
    result, _ = run(GOOD)
    bundle = build_transaction(result, plan_resources(result, subject="Patient/p1"), {},
                               WriteOutcome(path="observations"), base_url="http://fhir.invalid/fhir",
                               now=NOW)
    assert bundle is not None
    (provenance,) = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Provenance"]
    level1 = prepared_slide().levels[1].instance_uid
    (entity,) = [e for e in provenance["entity"] if "identifier" in e["what"]]
    assert entity["what"]["identifier"]["value"] == f"urn:oid:{level1}"
    assert entity["what"]["display"] == "DICOM SOP Instance, frames 1,2,3,5,6,7,8,11,12"
    assert entity["extension"] == [{"url": EXT_DICOM_FRAMES, "valueString": "1,2,3,5,6,7,8,11,12"}]
    activity = provenance["activity"]["text"]
    assert "chartlight pathology pipeline" in activity
    assert "slide: patches from pyramid level 1 of 3" in activity
