"""A fixed-result pipeline for testing the write-back core and the job machinery.

It returns the same lab values for any source, stamped with a test model marked as random
weights: what it writes is labelled as test output, never clinical.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal

from plugin.jobs import JobContext
from plugin.results import (
    Coding,
    MeasuredValue,
    ModelInfo,
    Narrative,
    PipelineResult,
    ReferenceRange,
    ReportGroup,
    SourceRef,
    TextEvidence,
)

COLLECTED = datetime(2026, 11, 20, 8, 15, tzinfo=UTC)


def fixed_result(source: SourceRef, *, model_version: str = "1") -> PipelineResult:
    values = (
        MeasuredValue(key="glucose", name="Glucose", value=Decimal("112"), unit="mg/dL",
                      reference_range=ReferenceRange(Decimal("70"), Decimal("99"), "70-99"),
                      panel="Basic metabolic panel", effective=COLLECTED,
                      evidence=(TextEvidence(page=1, start=120, end=147,
                                             quote="Glucose 112 mg/dL 70-99 H"),)),
        MeasuredValue(key="potassium", name="Potassium", value=Decimal("4.1"), unit="mmol/L",
                      reference_range=ReferenceRange(Decimal("3.5"), Decimal("5.1"), "3.5-5.1"),
                      panel="Basic metabolic panel", effective=COLLECTED,
                      evidence=(TextEvidence(page=1, start=148, end=175,
                                             quote="Potassium 4.1 mmol/L 3.5-5.1"),)),
        MeasuredValue(key="hba1c", name="Hemoglobin A1c", value=Decimal("6.8"), unit="%",
                      reference_range=ReferenceRange(None, Decimal("5.7"), "<5.7"),
                      interpretation="H", effective=COLLECTED,
                      evidence=(TextEvidence(page=2, start=10, end=40,
                                             quote="Hemoglobin A1c 6.8 % <5.7 H"),)),
    )
    summary = Narrative(key="summary", kind="summary", title="Lab report summary",
                        text="3 values read from the report; 2 abnormal (glucose, HbA1c).")
    report = ReportGroup(key="bmp", code=Coding("http://loinc.org", "51990-0",
                                                "Basic metabolic panel - Blood"),
                         category="LAB", item_keys=("glucose", "potassium"), effective=COLLECTED)
    return PipelineResult(
        pipeline="test-fixed", pipeline_version="1", source=source,
        model=ModelInfo(name="chartlight-test/fixed-results", version=model_version,
                        kinds=("Deterministic-AI",), test_weights=True),
        items=(*values, summary), reports=(report,),
    )


def fixed_pipeline(*, model_version: str = "1", delay_s: float = 0.0):  # type: ignore[no-untyped-def]
    def run(context: JobContext) -> PipelineResult:
        source = context.source
        context.report_progress(0.1, "pretending to read")
        time.sleep(delay_s)
        ref = SourceRef(source["resourceType"], source["id"], source["meta"]["versionId"])
        return fixed_result(ref, model_version=model_version)
    return run
