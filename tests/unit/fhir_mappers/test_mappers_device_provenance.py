"""The model's Device and the Provenance of writes and reviews."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from fhir_mappers import device_identifier, to_device, to_provenance, to_review_provenance
from plugin.results import ModelInfo, SourceRef

RoundTrip = Callable[[dict[str, Any]], dict[str, Any]]
AI_CS = "http://hl7.org/fhir/uv/aitransparency/CodeSystem/AIdeviceTypeCS"
AI_KIND = "http://hl7.org/fhir/uv/aitransparency/StructureDefinition/aitransparency.AIKind"
PARTICIPANT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
WHEN = datetime(2025, 3, 4, 9, 30, tzinfo=UTC)


def test_device(model: ModelInfo, round_trip: RoundTrip) -> None:
    device = round_trip(to_device(model))
    assert device["identifier"] == [device_identifier(model)]
    assert device["status"] == "active"
    assert device["type"] == {"coding": [{"system": AI_CS, "code": "Artificial-Intelligence",
                                          "display": "All kinds of Artificial Intelligence"}]}
    assert [e["valueCodeableConcept"]["coding"][0]["code"] for e in device["extension"]
            if e["url"] == AI_KIND] == ["Vision-Language-Models", "Non-Deterministic-AI"]
    assert device["deviceName"] == [
        {"name": "google/medgemma-1.5-4b-it", "type": "model-name"},
        {"name": "MedGemma", "type": "user-friendly-name"}]
    assert device["version"] == [{"value": "rev-1"}]
    assert "meta" not in device and "note" not in device
    assert json.dumps(to_device(model)) == json.dumps(device)


def test_test_weights_device_says_so(test_model: ModelInfo, round_trip: RoundTrip) -> None:
    device = round_trip(to_device(test_model))
    assert device["note"] == [{"text": "TEST OUTPUT, not clinical (random-weight test model)"}]
    assert device["meta"]["tag"][0]["code"] == "test-weights"
    assert device["deviceName"] == [{"name": "chartlight/tiny-medgemma", "type": "model-name"}]


def test_write_provenance(round_trip: RoundTrip) -> None:
    sources = [SourceRef("DocumentReference", "lab-1", "3"), SourceRef("ImagingStudy", "p", "1")]
    provenance = round_trip(to_provenance(
        targets=["urn:uuid:1", "Observation/5"], device="urn:uuid:dev", sources=sources,
        recorded=WHEN, on_behalf_of="Practitioner/7", activity_text="chartlight documents v7"))
    assert provenance["target"] == [{"reference": "urn:uuid:1"}, {"reference": "Observation/5"}]
    assert provenance["occurredDateTime"] == provenance["recorded"] == "2025-03-04T09:30:00Z"
    assert provenance["reason"] == [{"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "AIAST",
        "display": "artificial intelligence asserted"}]}]
    assert provenance["activity"]["text"] == "chartlight documents v7"
    assert provenance["agent"] == [{
        "type": {"coding": [{"system": PARTICIPANT, "code": "author", "display": "Author"}]},
        "role": [{"coding": [{"system": AI_CS, "code": "Artificial-Intelligence",
                              "display": "All kinds of Artificial Intelligence"}]}],
        "who": {"reference": "urn:uuid:dev"},
        "onBehalfOf": {"reference": "Practitioner/7"}}]
    assert provenance["entity"] == [
        {"role": "source", "what": {"reference": "DocumentReference/lab-1/_history/3"}},
        {"role": "source", "what": {"reference": "ImagingStudy/p/_history/1"}}]


def test_write_provenance_without_user_and_with_occurred(round_trip: RoundTrip) -> None:
    earlier = datetime(2025, 3, 4, 10, 0, tzinfo=timezone(timedelta(hours=1)))
    provenance = round_trip(to_provenance(
        targets=["Observation/5"], device="Device/1", sources=[], recorded=WHEN,
        on_behalf_of=None, activity_text="", occurred=earlier))
    assert "onBehalfOf" not in provenance["agent"][0]
    assert "entity" not in provenance
    assert provenance["occurredDateTime"] == "2025-03-04T10:00:00+01:00"


def test_provenance_needs_a_target_and_an_aware_time() -> None:
    with pytest.raises(ValueError, match="target"):
        to_provenance(targets=[], device="Device/1", sources=[], recorded=WHEN,
                      on_behalf_of=None, activity_text="")
    with pytest.raises(ValueError, match="timezone"):
        to_provenance(targets=["Observation/1"], device="Device/1", sources=[],
                      recorded=datetime(2025, 1, 1), on_behalf_of=None, activity_text="")


def test_review_provenance(round_trip: RoundTrip) -> None:
    approve = round_trip(to_review_provenance(
        target="Observation/5/_history/2", clinician="Practitioner/7", recorded=WHEN,
        decision="approve", reason=None))
    assert approve["target"] == [{"reference": "Observation/5/_history/2"}]
    assert approve["agent"] == [{
        "type": {"coding": [{"system": PARTICIPANT, "code": "verifier", "display": "Verifier"}]},
        "who": {"reference": "Practitioner/7"}}]
    assert approve["activity"]["coding"][0]["code"] == "approve"
    assert "reason" not in approve
    reject = round_trip(to_review_provenance(
        target="Observation/5/_history/2", clinician="Practitioner/7", recorded=WHEN,
        decision="reject", reason="Value belongs to another patient"))
    assert reject["activity"]["coding"][0]["code"] == "reject"
    assert reject["reason"] == [{"text": "Value belongs to another patient"}]
    assert "AIAST" not in json.dumps(reject)
