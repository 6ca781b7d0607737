"""Prefetch templates: token rendering and what counts as sent, missing or unfetchable."""

from __future__ import annotations

import pytest

from cds_hooks.errors import PrefetchUnavailable
from cds_hooks.prefetch import render, resolve, resources, split_query
from cds_hooks.services import PATIENT_VIEW_PREFETCH

CONTEXT = {
    "userId": "PractitionerRole/77",
    "patientId": "123",
    "encounterId": "e 1",
    "draftOrders": {"resourceType": "Bundle"},
}
BUNDLE = {
    "resourceType": "Bundle",
    "type": "searchset",
    "entry": [
        {"resource": {"resourceType": "Observation", "id": "1"}},
        {"resource": {"resourceType": "Patient", "id": "p"}, "search": {"mode": "include"}},
    ],
}


def test_tokens_are_filled_from_the_context_and_the_user() -> None:
    assert render("Patient/{{context.patientId}}", CONTEXT) == "Patient/123"
    assert render("Encounter/{{context.encounterId}}", CONTEXT) == "Encounter/e%201"
    assert render("PractitionerRole?_id={{userPractitionerRoleId}}", CONTEXT) == "PractitionerRole?_id=77"


@pytest.mark.parametrize(
    "template",
    [
        "Practitioner/{{userPractitionerId}}",  # the user is a PractitionerRole
        "Bundle/{{context.draftOrders}}",  # not a primitive
        "X/{{context.nothing}}",
    ],
)
def test_tokens_without_a_value_make_the_query_unusable(template: str) -> None:
    assert render(template, CONTEXT) is None


def test_queries_split_into_type_id_and_parameters() -> None:
    assert split_query("Patient/123") == ("Patient", "123", {})
    assert split_query("Observation?patient=1&identifier=https://x/sid%7C&_count=2") == (
        "Observation",
        None,
        {"patient": "1", "identifier": "https://x/sid|", "_count": "2"},
    )
    with pytest.raises(ValueError):
        split_query("https://evil.example.org/Observation")


def test_everything_prefetched_needs_no_server() -> None:
    sent = dict.fromkeys(PATIENT_VIEW_PREFETCH, BUNDLE)
    sent["chartlightDevices"] = None  # "no data"
    data = resolve(PATIENT_VIEW_PREFETCH, sent, CONTEXT, client=None)
    assert data["chartlightDevices"] is None
    assert [r["id"] for r in resources(data["chartlightObservations"], "Observation")] == ["1"]


@pytest.mark.parametrize(
    "broken",
    [
        {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "timeout"}]},
        "not a resource",
    ],
)
def test_missing_or_failed_keys_without_a_server_are_unavailable(broken: object) -> None:
    sent = dict.fromkeys(PATIENT_VIEW_PREFETCH, BUNDLE)
    sent["chartlightReports"] = broken
    with pytest.raises(PrefetchUnavailable, match="chartlightReports"):
        resolve(PATIENT_VIEW_PREFETCH, sent, CONTEXT, client=None)
    del sent["chartlightReports"]
    with pytest.raises(PrefetchUnavailable, match="chartlightReports"):
        resolve(PATIENT_VIEW_PREFETCH, sent, CONTEXT, client=None)
