"""The imaging pipeline on studies prepared here (no PACS) with a scripted engine: each task's
findings and their evidence, the prior study of a comparison, boxes back in pixels, unreadable
answers reported and never turned into findings, and the resources the mappers make of it all."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from PIL import Image

from fhir_mappers.systems import EXT_EVIDENCE_IMAGE
from plugin.errors import ConfigError, InputError
from plugin.fhir import FhirClient
from plugin.jobs import Job, JobContext, JobState
from plugin.pipelines.imaging import PROMPT_VERSION, ImagingPipeline, ImagingTask
from plugin.pipelines.imaging.prepared import PreparedImage, PreparedStudy
from plugin.results import Box, Finding, ImageEvidence, ModelInfo, Narrative, PipelineResult, SourceRef
from plugin.writeback import WriteOutcome, build_transaction, plan_resources

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
STUDY_UID = "1.2.826.0.1.3680043.8.498.10"


class ScriptedEngine:
    """Answers with canned text and keeps every turn it was sent."""

    def __init__(self, answer: str, *, test_weights: bool = False, available: bool = True) -> None:
        self.answer = answer
        self.test_weights = test_weights
        self._available = available
        self.turns: list[list[Image.Image | str]] = []

    def available(self) -> bool:
        return self._available

    def why_unavailable(self) -> str:
        return "no model weights at /models/medgemma"

    def model_info(self) -> ModelInfo:
        return ModelInfo("google/medgemma-1.5-4b-it", "scripted", ("Vision-Language-Models",),
                         test_weights=self.test_weights)

    def generate(self, parts: Sequence[Image.Image | str], *, max_new_tokens: int = 1024) -> str:
        self.turns.append(list(parts))
        return self.answer


def imaging_study(study_id: str, started: str, modality: str) -> dict[str, Any]:
    return {"resourceType": "ImagingStudy", "id": study_id, "meta": {"versionId": "1"},
            "subject": {"reference": "Patient/p1"}, "started": started,
            "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{STUDY_UID}.{study_id}"}],
            "modality": [{"code": modality}],
            "series": [{"uid": f"{STUDY_UID}.{study_id}.1", "modality": {"code": modality},
                        "bodySite": {"system": "http://snomed.info/sct", "code": "51185008"}}]}


def ct_volume(slices: int = 4) -> PreparedStudy:
    series = f"{STUDY_UID}.ct.1"
    images = tuple(PreparedImage(image=Image.new("RGB", (16, 16), (n * 40, 0, 0)), series_uid=series,
                                 instance_uid=f"{series}.{n * 10}", frame=1, label=f"SLICE {n + 1}",
                                 original_size=(16, 16), slice_index=n * 10)
                   for n in range(slices))
    return PreparedStudy(source=SourceRef("ImagingStudy", "ct", "1", "aa" * 32), study_uid=STUDY_UID,
                         kind="ct-volume", modality="CT", body_part="CHEST",
                         started=datetime(2026, 6, 1, tzinfo=UTC), images=images,
                         choices={"sampled": [n * 10 for n in range(slices)]})


def radiograph(study_id: str, started: datetime) -> PreparedStudy:
    series = f"{STUDY_UID}.{study_id}.1"
    image = PreparedImage(image=Image.new("RGB", (500, 500)), series_uid=series,
                          instance_uid=f"{series}.1", frame=1, label="", original_size=(400, 500),
                          padding=(50, 0))
    return PreparedStudy(source=SourceRef("ImagingStudy", study_id, "1", "bb" * 32),
                         study_uid=f"{STUDY_UID}.{study_id}", kind="projection", modality="CR",
                         body_part="CHEST", started=started, images=(image,))


class FakePacs:
    """prepare_study/find_imaging_studies for studies made here."""

    def __init__(self, prepared: dict[str, PreparedStudy], studies: list[dict[str, Any]]) -> None:
        self.prepared = prepared
        self.studies = studies
        self.calls: list[str] = []

    def prepare(self, client: FhirClient, study: dict[str, Any], options: Any, *,
                progress: Any = None) -> PreparedStudy:
        self.calls.append(study["id"])
        if progress is not None:
            progress(0.5, "instances fetched 1/1")
        return self.prepared[study["id"]]

    def find(self, client: FhirClient, patient_id: str) -> list[dict[str, Any]]:
        assert patient_id == "p1"
        return self.studies


def context(resource: dict[str, Any], progress: list[tuple[float, str]] | None = None) -> JobContext:
    job = Job(id=1, pipeline="imaging", source_type="ImagingStudy", source_id=resource["id"],
              source_version="1", subject="Patient/p1", fhir_base_url="http://fhir.invalid/fhir",
              state=JobState.RUNNING, progress=0.0, progress_text="", attempts=1,
              next_attempt_at=NOW, error="", summary={}, created_at=NOW, updated_at=NOW)
    seen = progress if progress is not None else []
    return JobContext(job=job, client=FhirClient(job.fhir_base_url), source=resource,
                      report_progress=lambda fraction, text: seen.append((fraction, text)))


CT = imaging_study("ct", "2026-06-01T09:00:00Z", "CT")
CXR_NOW = imaging_study("cxr-now", "2026-06-01T09:00:00Z", "CR")
CXR_BEFORE = imaging_study("cxr-before", "2025-05-12T09:00:00Z", "DX")


def pacs() -> FakePacs:
    return FakePacs({"ct": ct_volume(), "cxr-now": radiograph("cxr-now", datetime(2026, 6, 1, tzinfo=UTC)),
                     "cxr-before": radiograph("cxr-before", datetime(2025, 5, 12, tzinfo=UTC))},
                    [CXR_NOW, CT, CXR_BEFORE])


def run(engine: ScriptedEngine, resource: dict[str, Any], task: ImagingTask | None = None,
        fake: FakePacs | None = None, progress: list[tuple[float, str]] | None = None) -> PipelineResult:
    fake = fake or pacs()
    pipeline = ImagingPipeline(engine, task=task, prepare=fake.prepare, find_studies=fake.find)
    return pipeline(context(resource, progress))


def findings_of(result: PipelineResult) -> list[Finding]:
    return [item for item in result.items if isinstance(item, Finding)]


def narrative_of(result: PipelineResult) -> Narrative:
    (narrative,) = [item for item in result.items if isinstance(item, Narrative)]
    return narrative


def test_ct_findings_cite_the_slices_they_were_seen_on() -> None:
    engine = ScriptedEngine('{"findings": [{"finding": "8 mm nodule", "body_site": "right lung", '
                            '"abnormal": true, "slices": [2, 9]}, {"finding": "No effusion", '
                            '"abnormal": false}], "impression": "Right lung nodule."}')
    progress: list[tuple[float, str]] = []
    result = run(engine, CT, progress=progress)
    study = ct_volume()
    nodule, effusion = findings_of(result)
    assert (nodule.key, nodule.text, nodule.body_site, nodule.abnormal) == (
        "findings/1", "8 mm nodule", "right lung", True)
    # SLICE 2 is the second slice shown (position 10 in the series); SLICE 9 was never shown.
    assert nodule.evidence == (ImageEvidence(STUDY_UID, study.images[1].series_uid,
                                             study.images[1].instance_uid, frame=1, slice_index=10),)
    assert effusion.evidence == (ImageEvidence(STUDY_UID, study.images[0].series_uid, ""),)
    assert [p.reason for p in result.problems] == [
        "finding #1 cites SLICE 9, which the model was not shown; that citation is left out"]
    (report,) = result.reports
    assert (report.category, report.item_keys, report.conclusion) == (
        "RAD", ("findings/1", "findings/2"), "Right lung nodule.")
    assert report.code.code == "18748-4" and report.effective == study.started
    assert result.instances_used == study.instances_used and len(result.instances_used) == 4
    assert result.pipeline == "imaging" and result.pipeline_version == f"1+prompt.{PROMPT_VERSION}"
    (turn,) = engine.turns
    assert sum(not isinstance(p, str) for p in turn) == 4 and turn[2] == "SLICE 1"
    assert any(text == "model call 1 of 1 (4 images)" for _, text in progress)
    assert any(text == "instances fetched 1/1" for _, text in progress)
    text = narrative_of(result).text
    assert "8 mm nodule (right lung; abnormal) — slice 11 of the series" in text
    assert "Right lung nodule." in text


def test_the_resources_carry_evidence_the_report_and_the_instances_used() -> None:
    engine = ScriptedEngine('{"findings": [{"finding": "8 mm nodule", "body_site": "right lung", '
                            '"abnormal": true, "slices": [3]}], "impression": "Nodule."}')
    result = run(engine, CT)
    planned = plan_resources(result, subject="Patient/p1")
    kinds = [p.resource["resourceType"] for p in planned]
    assert kinds == ["Observation", "DocumentReference", "DiagnosticReport"]
    observation = planned[0].resource
    assert observation["category"][0]["coding"][0]["code"] == "imaging"
    assert observation["bodySite"]["coding"][0]["code"] == "3341006"  # right lung
    assert observation["derivedFrom"] == [{"reference": "ImagingStudy/ct"}]
    (evidence,) = [e for e in observation["extension"] if e["url"] == EXT_EVIDENCE_IMAGE]
    parts = {p["url"]: next(v for k, v in p.items() if k.startswith("value")) for p in evidence["extension"]}
    assert parts == {"study": STUDY_UID, "series": f"{STUDY_UID}.ct.1", "instance": f"{STUDY_UID}.ct.1.20",
                     "frame": 1, "slice": 20}
    report = planned[2].resource
    assert report["status"] == "preliminary" and report["conclusion"] == "Nodule."
    assert report["category"][0]["coding"][0]["code"] == "RAD"
    bundle = build_transaction(result, planned, {}, WriteOutcome(path="observations"),
                               base_url="http://fhir.invalid/fhir", now=NOW)
    assert bundle is not None
    (provenance,) = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Provenance"]
    named = [e["what"] for e in provenance["entity"]]
    assert named[0] == {"reference": "ImagingStudy/ct/_history/1"}
    assert [w["identifier"]["value"] for w in named[1:]] == [
        f"urn:oid:{uid}" for uid in ct_volume().instances_used]
    assert {w["identifier"]["system"] for w in named[1:]} == {"urn:dicom:uid"}


def test_an_unreadable_answer_is_reported_and_no_finding_is_invented() -> None:
    engine = ScriptedEngine("<unused94>hmm<unused95>ÿ the the lung lung {{ [", test_weights=True)
    result = run(engine, CT)
    assert findings_of(result) == [] and result.reports == ()
    (problem,) = result.problems
    assert problem.where == "ImagingStudy/ct" and "could not be read" in problem.reason
    narrative = narrative_of(result)
    assert "could not be read" in narrative.text and "random test weights" in narrative.text
    assert narrative.kind == "report-draft" and narrative.key == "findings/report"
    (document,) = [p.resource for p in plan_resources(result, subject="Patient/p1")]
    assert document["meta"]["tag"][0]["code"] == "test-weights"
    assert document["description"].startswith("[TEST OUTPUT, not clinical")


def test_a_comparison_reads_the_prior_radiograph_first_and_codes_each_change() -> None:
    engine = ScriptedEngine('```json\n{"findings": [{"finding": "Right lower zone opacity", '
                            '"body_site": "right lung", "change": "worsened"}, {"finding": "Heart size", '
                            '"change": "stable"}], "impression": "Opacity larger than before."}\n```')
    fake = pacs()
    result = run(engine, CXR_NOW, ImagingTask("compare"), fake)
    assert fake.calls == ["cxr-now", "cxr-before"]
    prior = fake.prepared["cxr-before"]
    current = fake.prepared["cxr-now"]
    (turn,) = engine.turns
    assert turn[0] is prior.images[0].image and turn[1] is current.images[0].image
    opacity, heart = findings_of(result)
    assert (opacity.key, opacity.change, heart.change) == ("compare/1", "worsened", "stable")
    assert opacity.evidence == (ImageEvidence(current.study_uid, current.images[0].series_uid,
                                              current.images[0].instance_uid, frame=1),)
    assert result.other_sources == (prior.source,)
    assert result.instances_used == (current.images[0].instance_uid, prior.images[0].instance_uid)
    observation = plan_resources(result, subject="Patient/p1")[0].resource
    assert observation["component"][0]["valueCodeableConcept"]["coding"][0]["code"] == "worsened"
    assert [c["coding"][0]["code"] for c in observation["interpretation"]] == ["W"]
    assert "Prior study:** ImagingStudy/cxr-before/_history/1" in narrative_of(result).text


def test_no_comparable_prior_study_fails_the_input_with_its_reason() -> None:
    fake = FakePacs(pacs().prepared, [CXR_NOW, CT])
    engine = ScriptedEngine("{}")
    with pytest.raises(InputError, match="no earlier ImagingStudy of the same modality and body part"):
        run(engine, CXR_NOW, ImagingTask("compare"), fake)
    assert engine.turns == [] and fake.calls == []  # nothing fetched without a prior


def test_boxes_come_back_in_pixels_of_the_original_radiograph() -> None:
    engine = ScriptedEngine('[{"box_2d": [100, 200, 600, 700], "label": "Left lung"},'
                            ' {"box_2d": [0, 0, 1000, 90], "label": "nodule"},'
                            ' {"box_2d": [5, 5], "label": "heart"}]')
    task = ImagingTask("localize", find=("left lung", "heart", "nodule"))
    result = run(engine, CXR_NOW, task)
    (lung,) = findings_of(result)
    image = pacs().prepared["cxr-now"].images[0]
    assert (lung.key, lung.text, lung.body_site) == (f"{task.key}/1", "Left lung", "Left lung")
    assert lung.evidence == (ImageEvidence(f"{STUDY_UID}.cxr-now", image.series_uid, image.instance_uid,
                                           frame=1, box=Box(x0=50.0, y0=50.0, x1=300.0, y1=300.0)),)
    reasons = [p.reason for p in result.problems]
    assert reasons == [
        "box #2 (nodule) not used: box_2d [0, 0, 1000, 90] lies in the padding, outside the image",
        "box #3 (heart) not used: box_2d must be four numbers [y0, x0, y1, x1], got [5, 5]"]
    assert result.reports[0].conclusion == "Left lung"
    text = narrative_of(result).text
    assert "box x 50–300, y 50–300 px" in text and "Not located: heart, nodule." in text
    box = [e for e in plan_resources(result, subject="Patient/p1")[0].resource["extension"]
           if e["url"] == EXT_EVIDENCE_IMAGE][0]["extension"]
    assert {"url": "box", "valueString": "50,50,300,300"} in box


def test_localisation_of_a_volume_is_refused() -> None:
    with pytest.raises(InputError, match="localisation needs a projection image"):
        run(ScriptedEngine("[]"), CT, ImagingTask("localize", find=("liver",)))


def test_a_question_is_answered_in_the_narrative_without_a_report() -> None:
    task = ImagingTask("question", question="Is there a pneumothorax?")
    result = run(ScriptedEngine("No pneumothorax is seen."), CXR_NOW, task)
    assert findings_of(result) == [] and result.reports == () and result.problems == ()
    narrative = narrative_of(result)
    assert narrative.key == f"{task.key}/report"
    assert "#### Answer\n\nNo pneumothorax is seen." in narrative.text
    assert "question: “Is there a pneumothorax?”" in narrative.text


def test_without_the_model_the_pipeline_refuses_before_fetching_anything() -> None:
    fake = pacs()
    pipeline = ImagingPipeline(ScriptedEngine("", available=False), prepare=fake.prepare,
                               find_studies=fake.find)
    assert "no model weights at /models/medgemma" in pipeline.unavailable_reason()
    with pytest.raises(ConfigError, match="MedGemma cannot run here"):
        pipeline(context(CT))
    assert fake.calls == []


def test_each_task_runs_on_the_studies_it_applies_to() -> None:
    from plugin.pipelines.imaging.pipeline import task_sources

    studies = [CXR_NOW, CT, CXR_BEFORE]
    assert task_sources(ImagingTask(), studies) == studies
    assert task_sources(ImagingTask("compare"), studies) == [CXR_NOW]  # the only one with a prior
    assert task_sources(ImagingTask("localize", find=("heart",)), studies) == [CXR_NOW, CXR_BEFORE]


def test_the_provenance_says_how_the_images_were_turned() -> None:
    turned = replace(ct_volume(), choices={"orientation": {
        "text": "axial: flipped upside down to the standard display orientation"}})
    fake = FakePacs({"ct": turned}, [CT])
    result = run(ScriptedEngine('{"findings": [], "impression": "Normal."}'), CT, fake=fake)
    planned = plan_resources(result, subject="Patient/p1")
    bundle = build_transaction(result, planned, {}, WriteOutcome(path="observations"),
                               base_url="http://fhir.invalid/fhir", now=NOW)
    assert bundle is not None
    (provenance,) = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Provenance"]
    assert provenance["activity"]["text"] == (
        f"chartlight imaging pipeline 1+prompt.{PROMPT_VERSION}; study images: axial: flipped upside "
        "down to the standard display orientation")


def test_the_provenance_names_the_pacs_when_its_metadata_lost_the_geometry() -> None:
    cause = ("the PACS at http://pacs/dicom-web sent series metadata with ImagePositionPatient empty; "
             "the instances' own headers have them, so they were read from the instances")
    fake = FakePacs({"ct": replace(ct_volume(), choices={"metadata_fallback": {"cause": cause}})}, [CT])
    result = run(ScriptedEngine('{"findings": [], "impression": "Normal."}'), CT, fake=fake)
    assert result.preparation == (f"study: {cause}",)
