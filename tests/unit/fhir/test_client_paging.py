"""Search paging is bounded: a page cap (setting fhir_max_pages) and loop detection."""

from __future__ import annotations

import json

import pytest
import requests

from plugin.app import service_fhir_client
from plugin.config import Settings
from plugin.errors import FhirError
from plugin.fhir import FhirClient
from tests.support.fake_transport import Reply, ScriptedAdapter, session_with

BASE = "https://ehr.example.org/fhir"


def page(next_url: str | None, n: int = 1) -> Reply:
    bundle = {"resourceType": "Bundle", "type": "searchset",
              "entry": [{"resource": {"resourceType": "Patient", "id": str(n)}}],
              "link": [{"relation": "next", "url": next_url}] if next_url else []}
    return Reply(body=json.dumps(bundle).encode())


def test_a_next_link_pointing_to_itself_fails_after_two_requests() -> None:
    adapter = ScriptedAdapter(lambda request: page(f"{BASE}/Patient?page=same"))
    client = FhirClient(BASE, session=session_with(adapter))
    with pytest.raises(FhirError, match="paging loop"):
        list(client.search("Patient"))
    assert len(adapter.requests) == 2


def test_a_loop_through_two_pages_is_detected() -> None:
    def answer(request: requests.PreparedRequest) -> Reply:
        return page(f"{BASE}/Patient?page={'b' if 'page=a' in (request.url or '') else 'a'}")

    adapter = ScriptedAdapter(answer)
    with pytest.raises(FhirError, match="paging loop"):
        list(FhirClient(BASE, session=session_with(adapter)).search("Patient"))
    assert len(adapter.requests) == 3


def test_never_ending_distinct_pages_stop_at_the_cap() -> None:
    counter = iter(range(10**6))
    adapter = ScriptedAdapter(lambda request: page(f"{BASE}/Patient?page={next(counter)}"))
    client = FhirClient(BASE, session=session_with(adapter), max_pages=5)
    found = []
    with pytest.raises(FhirError, match="more than 5 pages"):
        found.extend(client.search("Patient"))
    assert len(adapter.requests) == 5 and len(found) == 5


def test_a_search_within_the_cap_reads_every_page() -> None:
    adapter = ScriptedAdapter([page(f"{BASE}/Patient?page=2", 1), page(f"{BASE}/Patient?page=3", 2),
                               page(None, 3)])
    client = FhirClient(BASE, session=session_with(adapter), max_pages=3)
    assert [p["id"] for p in client.search("Patient")] == ["1", "2", "3"]


def test_a_next_link_with_dot_segments_is_not_followed() -> None:
    adapter = ScriptedAdapter([page(f"{BASE}/../other-tenant/fhir/Patient?page=2")])
    client = FhirClient(BASE, token="tok", session=session_with(adapter))
    with pytest.raises(FhirError, match="dot-segment"):
        list(client.search("Patient"))
    assert len(adapter.requests) == 1


def test_the_fhir_max_pages_setting_reaches_the_client() -> None:
    assert service_fhir_client(Settings(fhir_max_pages=7)).max_pages == 7
    assert service_fhir_client(Settings()).max_pages == 200
    with pytest.raises(Exception, match="fhir_max_pages"):
        Settings(fhir_max_pages=0)
