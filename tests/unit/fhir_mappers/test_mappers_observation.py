"""Observation from measured values and findings: codes, values, units, ranges, evidence,
labels, determinism, and validity against the R4B models."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from fhir_mappers import result_identifier, to_observation
from plugin.results import (
    AudioEvidence,
    Coding,
    Finding,
    ImageEvidence,
    MeasuredValue,
    ModelInfo,
    ReferenceRange,
    SourceRef,
)

RoundTrip = Callable[[dict[str, Any]], dict[str, Any]]
UCUM = "http://unitsofmeasure.org"
EXT = "https://chartlight.dev/fhir/StructureDefinition/"


def _map(item: MeasuredValue | Finding, source: SourceRef, model: ModelInfo,
         **kwargs: Any) -> dict[str, Any]:
    return to_observation(item, subject="Patient/p1", source=source, model=model,
                          identifier=result_identifier(source, "documents", item.key), **kwargs)


def _ext(resource: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [e for e in resource.get("extension", []) if e["url"] == EXT + name]


def test_lab_value(glucose: MeasuredValue, source: SourceRef, model: ModelInfo,
                   round_trip: RoundTrip) -> None:
    obs = round_trip(_map(glucose, source, model))
    assert obs["status"] == "preliminary"
    assert obs["identifier"] == [result_identifier(source, "documents", "p1/glucose")]
    assert obs["category"][0]["coding"][0]["code"] == "laboratory"
    assert obs["code"] == {"coding": [{"system": "http://loinc.org", "code": "2345-7",
                                       "display": "Glucose [Mass/volume] in Serum or Plasma"}],
                           "text": "Glucose"}
    assert obs["subject"] == {"reference": "Patient/p1"}
    assert obs["effectiveDateTime"] == "2025-03-01T07:45:00Z"
    assert obs["valueQuantity"] == {"value": 105.5, "unit": "mg/dL", "system": UCUM,
                                    "code": "mg/dL"}
    assert obs["referenceRange"] == [{
        "low": {"value": 70, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"},
        "high": {"value": 99, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"},
        "text": "70-99"}]
    assert [c["coding"][0]["code"] for c in obs["interpretation"]] == ["H"]
    assert obs["derivedFrom"] == [{"reference": "DocumentReference/lab-1"}]
    [text] = _ext(obs, "evidence-text")
    assert text["extension"] == [
        {"url": "page", "valueInteger": 1}, {"url": "start", "valueInteger": 120},
        {"url": "end", "valueInteger": 141},
        {"url": "quote", "valueString": "Glucose 105.5 mg/dl H"},
        {"url": "box", "valueString": "100,200.5,340,220"}]
    assert _ext(obs, "confidence") == [{"url": EXT + "confidence", "valueDecimal": 0.91}]


def test_ai_label_only_and_no_test_marker_for_a_real_model(
        glucose: MeasuredValue, source: SourceRef, model: ModelInfo) -> None:
    obs = _map(glucose, source, model)
    assert obs["meta"] == {"security": [{
        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "AIAST",
        "display": "artificial intelligence asserted"}]}
    assert "note" not in obs
    assert "test" not in json.dumps(obs).lower()


def test_test_weights_are_tagged_and_said_in_the_note(
        glucose: MeasuredValue, source: SourceRef, test_model: ModelInfo,
        round_trip: RoundTrip) -> None:
    obs = round_trip(_map(glucose, source, test_model))
    assert obs["meta"]["tag"] == [{"system": "https://chartlight.dev/fhir/CodeSystem/run-kind",
                                   "code": "test-weights",
                                   "display": "TEST OUTPUT, not clinical (random-weight test model)"}]
    assert obs["note"] == [{"text": "TEST OUTPUT, not clinical (random-weight test model)"}]
    assert [s["code"] for s in obs["meta"]["security"]] == ["AIAST"]


def test_same_input_same_bytes_and_identifier_unchanged_by_model_version(
        glucose: MeasuredValue, source: SourceRef, model: ModelInfo) -> None:
    first = json.dumps(_map(glucose, source, model))
    assert json.dumps(_map(glucose, source, model)) == first
    newer = _map(glucose, source, replace(model, version="rev-2"))
    assert newer["identifier"] == json.loads(first)["identifier"]


@pytest.mark.parametrize("value, expected", [
    (Decimal("5.4"), 5.4), (Decimal("140"), 140), (Decimal("6.0"), 6.0),
    (Decimal("0.001"), 0.001), (Decimal("1E+3"), 1000), (Decimal("-2.5"), -2.5),
])
def test_decimal_values_are_exact_json_numbers(value: Decimal, expected: float,
                                               source: SourceRef, model: ModelInfo) -> None:
    obs = _map(MeasuredValue("k", "Sodium", value, "mmol/L"), source, model)
    written = obs["valueQuantity"]["value"]
    assert written == expected and type(written) is type(expected)
    assert Decimal(json.dumps(written)) == value


def test_a_decimal_a_double_cannot_hold_is_refused(source: SourceRef, model: ModelInfo) -> None:
    with pytest.raises(ValueError, match="digits"):
        _map(MeasuredValue("k", "Sodium", Decimal("1.00000000000000000001"), "mmol/L"),
             source, model)


def test_text_result_unknown_test_and_unknown_unit(source: SourceRef, model: ModelInfo,
                                                  round_trip: RoundTrip) -> None:
    obs = round_trip(_map(MeasuredValue("k", "Anti-TPO Ab", "Positive", "IU/mL"), source, model))
    assert obs["valueString"] == "Positive"
    assert obs["code"] == {"coding": [{
        "system": "https://chartlight.dev/fhir/CodeSystem/lab-test-name", "code": "anti-tpo-ab",
        "display": "Anti-TPO Ab"}], "text": "Anti-TPO Ab"}
    odd = round_trip(_map(MeasuredValue("k", "Sodium", Decimal("140"), "mmol per litre"),
                          source, model))
    assert odd["valueQuantity"] == {"value": 140, "unit": "mmol per litre"}
    assert odd["code"]["coding"][0]["system"] == "https://chartlight.dev/fhir/CodeSystem/lab-test-name"


def test_below_detection_limit_is_a_quantity_with_comparator(
        source: SourceRef, model: ModelInfo, round_trip: RoundTrip) -> None:
    obs = round_trip(_map(MeasuredValue("k", "Troponin I", "<0.01", "ng/mL"), source, model))
    assert obs["valueQuantity"] == {"value": 0.01, "comparator": "<", "unit": "ng/mL",
                                    "system": UCUM, "code": "ng/mL"}
    assert obs["code"]["coding"][0]["code"] == "10839-9"
    assert "interpretation" not in obs


def test_given_code_is_kept_and_loinc_display_filled(source: SourceRef, model: ModelInfo) -> None:
    item = MeasuredValue("k", "TSH 3rd gen", Decimal("2.1"), "mIU/L",
                         code=Coding("http://loinc.org", "3016-3"))
    assert _map(item, source, model)["code"] == {"coding": [{
        "system": "http://loinc.org", "code": "3016-3",
        "display": "Thyrotropin [Units/volume] in Serum or Plasma"}], "text": "TSH 3rd gen"}


def test_urinalysis_item_gets_the_dipstick_code(source: SourceRef, model: ModelInfo) -> None:
    item = MeasuredValue("k", "Glucose", "Negative", panel="Urinalysis")
    assert _map(item, source, model)["code"]["coding"][0]["code"] == "25428-4"


def test_naive_time_keeps_only_its_date(source: SourceRef, model: ModelInfo) -> None:
    item = MeasuredValue("k", "Sodium", Decimal("140"), "mmol/L",
                         effective=datetime(2025, 1, 2, 8, 30))
    assert _map(item, source, model)["effectiveDateTime"] == "2025-01-02"


def test_imaging_finding(finding: Finding, source: SourceRef, model: ModelInfo,
                         round_trip: RoundTrip) -> None:
    study = SourceRef("ImagingStudy", "ct-1", "1", "f" * 64)
    obs = round_trip(_map(finding, study, model,
                          effective=datetime.fromisoformat("2025-02-01T10:00:00+01:00")))
    assert obs["category"][0]["coding"][0]["code"] == "imaging"
    assert obs["code"] == {"coding": [{"system": "http://loinc.org", "code": "18782-3",
                                       "display": "Radiology Study observation (narrative)"}]}
    assert obs["valueString"] == finding.text
    assert obs["effectiveDateTime"] == "2025-02-01T10:00:00+01:00"
    assert obs["bodySite"] == {"coding": [{"system": "http://snomed.info/sct", "code": "3341006",
                                           "display": "Right lung structure"}],
                               "text": "right lung"}
    assert [c["coding"][0]["code"] for c in obs["interpretation"]] == ["A", "W"]
    assert obs["component"] == [{
        "code": {"coding": [{"system": "https://chartlight.dev/fhir/CodeSystem/finding-aspect",
                             "code": "change-from-prior", "display": "Change from prior study"}]},
        "valueCodeableConcept": {"coding": [{
            "system": "https://chartlight.dev/fhir/CodeSystem/change-from-prior",
            "code": "worsened", "display": "Worsened since prior study"}]}}]
    assert obs["derivedFrom"] == [{"reference": "ImagingStudy/ct-1"}]
    [image] = _ext(obs, "evidence-image")
    assert image["extension"] == [
        {"url": "study", "valueId": "1.2.840.113619.2.55.3.1"},
        {"url": "series", "valueId": "1.2.3.4"}, {"url": "instance", "valueId": "1.2.3.4.5"},
        {"url": "frame", "valueInteger": 1}, {"url": "box", "valueString": "10,20,110.5,220"}]


def test_finding_site_not_in_the_table_stays_text(source: SourceRef, model: ModelInfo) -> None:
    obs = _map(Finding("f", "Effusion", body_site="left elbow", category="exam",
                       code=Coding("http://snomed.info/sct", "60046008", "Pleural effusion")),
               source, model)
    assert obs["bodySite"] == {"text": "left elbow"}
    assert obs["code"]["coding"][0]["code"] == "60046008"
    assert obs["category"][0]["coding"][0]["code"] == "exam"
    assert "component" not in obs and "interpretation" not in obs


def test_other_evidence_kinds(source: SourceRef, model: ModelInfo, round_trip: RoundTrip) -> None:
    item = Finding("f", "Wheeze", category="exam", evidence=(
        AudioEvidence(1.5, 3.25, "expiratory wheeze"),
        ImageEvidence("1.2.3", "1.2.3.4", "not a uid!", slice_index=12)))
    obs = round_trip(_map(item, source, model))
    [audio] = _ext(obs, "evidence-audio")
    assert audio["extension"] == [{"url": "start", "valueDecimal": 1.5},
                                  {"url": "end", "valueDecimal": 3.25},
                                  {"url": "quote", "valueString": "expiratory wheeze"}]
    [image] = _ext(obs, "evidence-image")
    assert {"url": "instance", "valueString": "not a uid!"} in image["extension"]
    assert {"url": "slice", "valueInteger": 12} in image["extension"]
    assert obs["code"]["coding"][0]["code"] == "29545-1"


def test_source_that_derivedfrom_cannot_name_goes_in_our_extension(
        glucose: MeasuredValue, model: ModelInfo, round_trip: RoundTrip) -> None:
    report = SourceRef("DiagnosticReport", "dr-9", "4")
    obs = round_trip(_map(glucose, report, model))
    assert "derivedFrom" not in obs
    assert _ext(obs, "derived-from") == [{"url": EXT + "derived-from",
                                          "valueReference": {"reference": "DiagnosticReport/dr-9"}}]


def test_status_is_passed_through(glucose: MeasuredValue, source: SourceRef,
                                  model: ModelInfo) -> None:
    assert _map(glucose, source, model, status="final")["status"] == "final"


def test_empty_text_is_left_out(source: SourceRef, model: ModelInfo,
                                round_trip: RoundTrip) -> None:
    obs = round_trip(_map(MeasuredValue("k", "Sodium", " ", "",
                                        reference_range=ReferenceRange(text=" ")), source, model))
    assert "valueString" not in obs and "referenceRange" not in obs
