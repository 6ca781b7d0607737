"""The example transaction Bundles of docs/fhir-profile.md, one per pipeline.

The values are written by hand to show the shape of what chartlight sends (they are not model
output). `python -m plugin.sandbox.profile_examples` rewrites docs/examples/*.json; a test checks
the files are current and that the sandbox's validation accepts each Bundle.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from plugin.results import (
    AudioEvidence,
    Box,
    Coding,
    Finding,
    ImageEvidence,
    InputProblem,
    MeasuredValue,
    ModelInfo,
    Narrative,
    PipelineResult,
    ReferenceRange,
    ReportGroup,
    SourceRef,
    TextEvidence,
)
from plugin.writeback import WriteOutcome, build_transaction, plan_resources

SUBJECT = "Patient/example-patient"
BASE_URL = "https://ehr.example.org/fhir"
WRITTEN_AT = datetime(2026, 11, 21, 11, 0, tzinfo=UTC)
COLLECTED = datetime(2026, 11, 20, 8, 15, tzinfo=UTC)
EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "docs" / "examples"


def documents_example() -> PipelineResult:
    source = SourceRef("DocumentReference", "example-lab-pdf", "1", "9f2c" * 16)
    glucose = MeasuredValue(
        key="glucose/p1", name="Glucose", value=Decimal("112"), unit="mg/dL",
        reference_range=ReferenceRange(Decimal("70"), Decimal("99"), "70-99"), interpretation="H",
        panel="Basic metabolic panel", effective=COLLECTED,
        evidence=(TextEvidence(page=1, start=612, end=639, quote="Glucose 112 mg/dL 70-99 H",
                               box=Box(212, 1080, 1490, 1112)),))
    potassium = MeasuredValue(
        key="potassium/p1", name="Potassium", value=Decimal("4.1"), unit="mmol/L",
        reference_range=ReferenceRange(Decimal("3.5"), Decimal("5.1"), "3.5-5.1"),
        panel="Basic metabolic panel", effective=COLLECTED,
        evidence=(TextEvidence(page=1, start=640, end=668, quote="Potassium 4.1 mmol/L 3.5-5.1"),))
    summary = Narrative(
        key="summary", kind="summary", title="Lab report: what was read", media_type="text/markdown",
        text="Read 1 page (text layer). Extracted 2 values; 1 abnormal (Glucose 112 mg/dL, H).\n\n"
             "Not verified against the page: none.")
    return PipelineResult(
        pipeline="documents", pipeline_version="layout-1", source=source,
        model=ModelInfo("chartlight/lab-layout-extractor", "1", ("Deterministic-AI",),
                        display="chartlight lab-report layout extractor"),
        items=(glucose, potassium, summary),
        reports=(ReportGroup("panel/bmp", Coding("http://loinc.org", "51990-0",
                                                 "Basic metabolic panel - Blood"),
                             "LAB", ("glucose/p1", "potassium/p1"), effective=COLLECTED),),
        problems=(InputProblem("page 2", "no lab values found"),))


def speech_example() -> PipelineResult:
    source = SourceRef("Media", "example-dictation", "1", "41aa" * 16)
    words = [{"word": "chest", "start": 0.52, "end": 0.84}, {"word": "ct", "start": 0.88, "end": 1.2}]
    transcript = Narrative(
        key="transcript", kind="transcript", title="Dictation transcript", dictated=True,
        text="Chest CT without contrast.\nFindings: a 2 cm nodule in the right lower lobe.",
        details_json=json.dumps({"words": words}, sort_keys=True),
        evidence=(AudioEvidence(0.0, 55.2),))
    return PipelineResult(
        pipeline="speech", pipeline_version="1", source=source,
        model=ModelInfo("google/medasr", "example-revision", ("Deep-Learning-Models",),
                        display="MedASR"),
        items=(transcript,))


def imaging_example() -> PipelineResult:
    study = "1.2.826.0.1.3680043.8.498.1"
    source = SourceRef("ImagingStudy", "example-cxr-current", "1", "77c1" * 16)
    prior = SourceRef("ImagingStudy", "example-cxr-prior", "1", "03de" * 16)
    opacity = Finding(
        key="finding/1", text="Round opacity in the right lower zone, larger than on the prior study",
        body_site="right lower lobe", change="worsened", abnormal=True,
        evidence=(ImageEvidence(study, study + ".1", study + ".1.1", frame=1,
                                box=Box(301.5, 655.0, 372.5, 726.0)),))
    read = Narrative(key="report", kind="report-draft", title="Chest X-ray comparison (draft)",
                     text="Comparison with 2025-05-12: the right lower zone opacity has grown.")
    prior_instance = "1.2.826.0.1.3680043.8.498.2.1.1"
    return PipelineResult(
        pipeline="imaging", pipeline_version="1", source=source, other_sources=(prior,),
        instances_used=(study + ".1.1", prior_instance),
        model=ModelInfo("google/medgemma-1.5-4b-it", "example-revision",
                        ("Vision-Language-Models", "Large-Language-Models"), display="MedGemma 1.5 4B"),
        items=(opacity, read),
        reports=(ReportGroup("cxr", Coding("http://loinc.org", "36643-5", "XR Chest 2 Views"), "RAD",
                             ("finding/1",), conclusion="Right lower zone opacity, enlarging."),))


def pathology_example() -> PipelineResult:
    study = "1.2.826.0.1.3680043.8.498.3"
    series, level1 = study + ".1", study + ".1.2"  # level 1 of the slide's pyramid, 256 px tiles
    source = SourceRef("ImagingStudy", "example-breast-slide", "1", "5be0" * 16)
    carcinoma = Finding(
        key="pathology/1", text="Invasive ductal carcinoma, moderately differentiated",
        category="pathology", body_site="breast", abnormal=True,
        # 512 px patches: frame = row x 64 tiles across + column + 1
        evidence=(ImageEvidence(study, series, level1, box=Box(4096, 2048, 4608, 2560),
                                frames=(529, 530, 593, 594), level=1),
                  ImageEvidence(study, series, level1, box=Box(6144, 3072, 6656, 3584),
                                frames=(793, 794, 857, 858), level=1)))
    draft = Narrative(key="pathology/report", kind="report-draft",
                      title="Whole-slide pathology: findings (AI draft)", media_type="text/markdown",
                      text="### Whole-slide pathology: findings (AI draft)\n\n- Invasive ductal carcinoma, "
                           "moderately differentiated (abnormal) — patches 2, 5\n")
    return PipelineResult(
        pipeline="pathology", pipeline_version="1", source=source,
        instances_used=(level1,), frames_used=((level1, (529, 530, 593, 594, 793, 794, 857, 858)),),
        preparation=("slide: patches from pyramid level 1 of 4 (16384 x 12288 px, 0.5 µm/px)",),
        model=ModelInfo("google/medgemma-1.5-4b-it", "example-revision",
                        ("Vision-Language-Models", "Large-Language-Models"), display="MedGemma 1.5 4B"),
        items=(carcinoma, draft),
        reports=(ReportGroup("pathology", Coding("http://loinc.org", "60567-5",
                                                 "Comprehensive pathology report panel"), "PAT",
                             ("pathology/1",), conclusion="Invasive ductal carcinoma."),))


EXAMPLES = {"documents": documents_example, "speech": speech_example, "imaging": imaging_example,
            "pathology": pathology_example}


def example_bundle(pipeline: str) -> dict[str, Any]:
    """The transaction chartlight would send for the example result to an empty server."""
    result = EXAMPLES[pipeline]()
    bundle = build_transaction(result, plan_resources(result, subject=SUBJECT), {},
                               WriteOutcome(path="observations"), base_url=BASE_URL, now=WRITTEN_AT,
                               on_behalf_of="Practitioner/example-clinician")
    assert bundle is not None
    return bundle


def render(pipeline: str) -> str:
    return json.dumps(example_bundle(pipeline), indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    EXAMPLES_DIR.mkdir(parents=True, exist_ok=True)
    for pipeline in EXAMPLES:
        (EXAMPLES_DIR / f"{pipeline}-bundle.json").write_text(render(pipeline), encoding="utf-8")


if __name__ == "__main__":
    main()
