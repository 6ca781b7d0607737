"""Results to map, shared by the mapper tests, and the R4B model check every mapped resource
must pass."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.documentreference import DocumentReference
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.provenance import Provenance

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

MODELS = {
    "Observation": Observation,
    "DiagnosticReport": DiagnosticReport,
    "DocumentReference": DocumentReference,
    "Device": Device,
    "Provenance": Provenance,
}

WHEN = datetime(2025, 3, 4, 9, 30, tzinfo=UTC)


@pytest.fixture
def round_trip() -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Parse a mapped resource with the fhir.resources R4B model and re-serialise it: the JSON
    must come back equal (nothing dropped, renamed or reshaped), and json.dumps must take it."""

    def check(resource: dict[str, Any]) -> dict[str, Any]:
        json.dumps(resource)
        model = MODELS[resource["resourceType"]].model_validate(resource)
        again: dict[str, Any] = json.loads(model.model_dump_json())
        assert again == resource
        return again

    return check


@pytest.fixture
def source() -> SourceRef:
    return SourceRef("DocumentReference", "lab-1", "3", "a" * 64)


@pytest.fixture
def model() -> ModelInfo:
    return ModelInfo("google/medgemma-1.5-4b-it", "rev-1", ("Vision-Language-Models",
                                                            "Non-Deterministic-AI"), "MedGemma")


@pytest.fixture
def test_model() -> ModelInfo:
    return ModelInfo("chartlight/tiny-medgemma", "random-1", ("Vision-Language-Models",),
                     test_weights=True)


@pytest.fixture
def glucose() -> MeasuredValue:
    return MeasuredValue(
        key="p1/glucose", name="Glucose", value=Decimal("105.5"), unit="mg/dl",
        reference_range=ReferenceRange(text="70-99"), panel="Basic metabolic panel",
        effective=datetime(2025, 3, 1, 7, 45, tzinfo=UTC),
        evidence=(TextEvidence(page=1, start=120, end=141, quote="Glucose 105.5 mg/dl H",
                               box=Box(100, 200.5, 340, 220)),),
        confidence=0.91,
    )


@pytest.fixture
def finding() -> Finding:
    return Finding(
        key="opacity-1", text="Right lower lobe opacity, larger than on the prior study.",
        body_site="right lung", change="worsened", abnormal=True,
        evidence=(ImageEvidence(study_uid="1.2.840.113619.2.55.3.1", series_uid="1.2.3.4",
                                instance_uid="1.2.3.4.5", frame=1, box=Box(10, 20, 110.5, 220)),),
        confidence=0.62,
    )


@pytest.fixture
def dictation() -> Narrative:
    return Narrative(
        key="transcript", kind="transcript", title="Dictated progress note",
        text="Patient seen today. Blood pressure well controlled — continue lisinopril.",
        dictated=True, details_json='{"words": [{"w": "Patient", "start": 0.0, "end": 0.4}]}',
        evidence=(AudioEvidence(start_s=0.0, end_s=12.5, quote="Patient seen today"),),
    )


@pytest.fixture
def lab_group() -> ReportGroup:
    return ReportGroup(key="bmp", code=Coding("http://loinc.org", "51990-0",
                                              "Basic metabolic panel - Blood"),
                       category="LAB", item_keys=("p1/glucose",),
                       conclusion="Mild hyperglycaemia.", effective=WHEN)


@pytest.fixture
def result(source: SourceRef, model: ModelInfo, glucose: MeasuredValue, finding: Finding,
           dictation: Narrative, lab_group: ReportGroup) -> PipelineResult:
    return PipelineResult(
        pipeline="documents", pipeline_version="prompt-7", source=source, model=model,
        items=(glucose, finding, dictation), reports=(lab_group,),
        problems=(InputProblem(where="page 2", reason="no text found"),),
        other_sources=(SourceRef("ImagingStudy", "prior-1", "1"),),
    )
