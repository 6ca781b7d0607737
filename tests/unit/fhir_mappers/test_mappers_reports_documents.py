"""DiagnosticReport, narrative DocumentReference and the structured-results DocumentReference."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from fhir_mappers import (
    item_identifier,
    report_identifier,
    structured_results_identifier,
    to_diagnostic_report,
    to_document_reference,
    to_structured_results_document,
)
from plugin.results import ModelInfo, Narrative, PipelineResult, ReportGroup, SourceRef

RoundTrip = Callable[[dict[str, Any]], dict[str, Any]]
INLINE = "http://hl7.org/fhir/uv/security-label-ds4p/StructureDefinition/extension-inline-sec-label"
MARKER = "TEST OUTPUT, not clinical (random-weight test model)"


def _security(resource: dict[str, Any]) -> list[str]:
    return [s["code"] for s in resource["meta"]["security"]]


def _report(result: PipelineResult, group: ReportGroup, model: ModelInfo | None = None,
            refs: list[str] | None = None) -> dict[str, Any]:
    return to_diagnostic_report(group, subject="Patient/p1", source=result.source,
                                identifier=report_identifier(result, group),
                                model=model or result.model,
                                result_refs=["urn:uuid:7d8e"] if refs is None else refs)


def _attachment_bytes(resource: dict[str, Any], index: int) -> bytes:
    return base64.b64decode(resource["content"][index]["attachment"]["data"])


# ---- DiagnosticReport ---------------------------------------------------------------------------


def test_diagnostic_report(result: PipelineResult, lab_group: ReportGroup,
                           round_trip: RoundTrip) -> None:
    report = round_trip(_report(result, lab_group, refs=["urn:uuid:7d8e", "Observation/12"]))
    assert report["status"] == "preliminary"
    assert report["category"] == [{"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB",
        "display": "Laboratory"}]}]
    assert report["code"]["coding"][0]["code"] == "51990-0"
    assert report["effectiveDateTime"] == "2025-03-04T09:30:00Z"
    assert report["result"] == [{"reference": "urn:uuid:7d8e"}, {"reference": "Observation/12"}]
    assert report["conclusion"] == "Mild hyperglycaemia."
    # The model wrote the conclusion: labelled inline, announced in meta.security.
    assert report["_conclusion"] == {"extension": [{"url": INLINE, "valueCoding": {
        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "AIAST",
        "display": "artificial intelligence asserted"}}]}
    assert _security(report) == ["PROCESSINLINELABEL", "AIAST"]
    assert report["extension"] == [{
        "url": "https://chartlight.dev/fhir/StructureDefinition/derived-from",
        "valueReference": {"reference": "DocumentReference/lab-1"}}]
    assert "presentedForm" not in report and "basedOn" not in report


def test_report_without_conclusion_has_no_inline_label(
        result: PipelineResult, lab_group: ReportGroup, round_trip: RoundTrip) -> None:
    report = round_trip(_report(result, replace(lab_group, conclusion="", effective=None),
                                refs=[]))
    assert _security(report) == ["AIAST"]
    assert "conclusion" not in report and "_conclusion" not in report
    assert "result" not in report and "effectiveDateTime" not in report


def test_report_of_test_model_says_so_in_the_conclusion(
        result: PipelineResult, lab_group: ReportGroup, test_model: ModelInfo,
        round_trip: RoundTrip) -> None:
    report = round_trip(_report(result, lab_group, test_model))
    assert report["conclusion"] == f"[{MARKER}] Mild hyperglycaemia."
    assert report["meta"]["tag"][0]["code"] == "test-weights"
    bare = round_trip(_report(result, replace(lab_group, conclusion=""), test_model))
    assert bare["conclusion"] == f"[{MARKER}]"
    assert "_conclusion" not in bare


def test_report_is_deterministic(result: PipelineResult, lab_group: ReportGroup) -> None:
    assert json.dumps(_report(result, lab_group)) == json.dumps(_report(result, lab_group))


# ---- narrative DocumentReference -----------------------------------------------------------------


def _doc(narrative: Narrative, source: SourceRef, model: ModelInfo,
         date: datetime | None = None) -> dict[str, Any]:
    return to_document_reference(narrative, subject="Patient/p1", source=source,
                                 identifier={"system": "https://x", "value": "1"}, model=model,
                                 date=date)


def test_dictated_transcript(dictation: Narrative, source: SourceRef, model: ModelInfo,
                             round_trip: RoundTrip) -> None:
    doc = round_trip(_doc(dictation, source, model, datetime(2025, 3, 4, 10, tzinfo=UTC)))
    assert _security(doc) == ["AIAST", "DICTAST"]
    assert doc["status"] == "current" and doc["docStatus"] == "preliminary"
    assert doc["type"]["coding"] == [
        {"system": "http://loinc.org", "code": "34109-9", "display": "Note"},
        {"system": "https://chartlight.dev/fhir/CodeSystem/document-kind", "code": "transcript",
         "display": "Transcript of dictation"}]
    assert doc["date"] == "2025-03-04T10:00:00Z"
    assert doc["description"] == "Dictated progress note"
    text = dictation.text.encode("utf-8")
    attachment = doc["content"][0]["attachment"]
    assert attachment["contentType"] == "text/plain; charset=utf-8"
    assert _attachment_bytes(doc, 0) == text
    assert attachment["size"] == len(text)
    assert attachment["hash"] == base64.b64encode(
        hashlib.sha1(text, usedforsecurity=False).digest()).decode()
    assert attachment["title"] == "Dictated progress note"
    details = doc["content"][1]["attachment"]
    assert details["contentType"] == "application/json"
    assert json.loads(_attachment_bytes(doc, 1))["words"][0]["w"] == "Patient"
    # The source is a DocumentReference: both links.
    assert doc["relatesTo"] == [{"code": "transforms",
                                 "target": {"reference": "DocumentReference/lab-1"}}]
    assert doc["context"] == {"related": [{"reference": "DocumentReference/lab-1"}]}
    [audio] = doc["extension"]
    assert audio["url"] == "https://chartlight.dev/fhir/StructureDefinition/evidence-audio"


def test_summary_of_other_source_has_no_relates_to_and_no_dictast(
        source: SourceRef, model: ModelInfo, round_trip: RoundTrip) -> None:
    summary = Narrative("s", "summary", "Summary", "# Findings\nStable.", "text/markdown")
    media = SourceRef("Media", "m-1", "2")
    doc = round_trip(_doc(summary, media, model))
    assert _security(doc) == ["AIAST"]
    assert "relatesTo" not in doc and "date" not in doc and "extension" not in doc
    assert doc["context"] == {"related": [{"reference": "Media/m-1"}]}
    assert doc["content"][0]["attachment"]["contentType"] == "text/markdown; charset=utf-8"
    assert len(doc["content"]) == 1
    assert doc["type"]["coding"][1]["code"] == "summary"


def test_report_draft_type_and_test_marker(source: SourceRef, test_model: ModelInfo,
                                           round_trip: RoundTrip) -> None:
    draft = Narrative("d", "report-draft", "CT chest draft", "No acute findings.")
    doc = round_trip(_doc(draft, source, test_model))
    assert doc["type"]["coding"][0] == {"system": "http://loinc.org", "code": "18748-4",
                                        "display": "Diagnostic imaging study"}
    assert doc["description"] == f"[{MARKER}] CT chest draft"
    assert doc["meta"]["tag"][0]["code"] == "test-weights"


def test_date_must_have_a_zone(dictation: Narrative, source: SourceRef, model: ModelInfo) -> None:
    with pytest.raises(ValueError, match="timezone"):
        _doc(dictation, source, model, datetime(2025, 3, 4, 10))


# ---- structured results (the degraded path) ------------------------------------------------------


def test_structured_results_document(result: PipelineResult, round_trip: RoundTrip) -> None:
    doc = round_trip(to_structured_results_document(
        result, subject="Patient/p1", identifier=structured_results_identifier(result),
        date=None))
    assert doc["identifier"] == [structured_results_identifier(result)]
    assert _security(doc) == ["AIAST", "DICTAST"]  # the result holds a dictated narrative
    assert doc["type"]["coding"][0]["code"] == "11502-2"  # it holds lab values
    assert doc["type"]["coding"][1]["code"] == "structured-results"
    assert doc["description"] == "AI-extracted results: 1 value, 1 finding"
    assert doc["context"] == {"related": [{"reference": "DocumentReference/lab-1"},
                                          {"reference": "ImagingStudy/prior-1"}]}
    summary = _attachment_bytes(doc, 0).decode("utf-8")
    assert "- Glucose: 105.5 mg/dL (reference 70-99) [High]" in summary
    assert "Right lower lobe opacity" in summary and "[Abnormal, Worse]" in summary
    assert "- page 2: no text found" in summary
    data = json.loads(_attachment_bytes(doc, 1))
    assert data["format"] == "chartlight-structured-results/1"
    assert data["source"]["reference"] == "DocumentReference/lab-1/_history/3"
    glucose = data["items"][0]
    assert glucose["type"] == "MeasuredValue"
    assert glucose["value"] == "105.5"  # exact decimal text
    assert glucose["reference_range"]["text"] == "70-99"
    assert glucose["evidence"][0] == {"type": "TextEvidence", "page": 1, "start": 120,
                                      "end": 141, "quote": "Glucose 105.5 mg/dl H",
                                      "box": {"type": "Box", "x0": 100, "y0": 200.5,
                                              "x1": 340, "y1": 220}}
    assert glucose["fhir"]["code"]["coding"][0]["code"] == "2345-7"
    assert glucose["fhir"]["ucum"] == "mg/dL"
    assert glucose["fhir"]["interpretation"] == ["H"]
    assert data["items"][1]["evidence"][0]["instance_uid"] == "1.2.3.4.5"
    assert data["problems"] == [{"type": "InputProblem", "where": "page 2",
                                 "reason": "no text found"}]
    assert data["model"]["version"] == "rev-1"


def test_structured_results_are_deterministic_and_keyed_by_origin(result: PipelineResult) -> None:
    def make(r: PipelineResult) -> str:
        return json.dumps(to_structured_results_document(
            r, subject="Patient/p1", identifier=structured_results_identifier(r), date=None))

    assert make(result) == make(result)
    newer = replace(result, model=replace(result.model, version="rev-2"))
    assert json.loads(make(newer))["identifier"] == json.loads(make(result))["identifier"]
    assert make(newer) != make(result)  # the content records the model that produced it
    assert item_identifier(result, "structured-results") == structured_results_identifier(result)
