"""The FHIR client against the real HAPI FHIR sandbox (and real loopback servers beside it)."""

from __future__ import annotations

import base64
import hashlib
import random
from urllib.parse import urlsplit

import pytest

from plugin.errors import AttachmentRefused, FhirResponseError
from plugin.fhir import FhirClient, resolve_attachment
from tests.support.loopback import ServerState, loopback_server

pytestmark = pytest.mark.sandbox

TAG = "https://chartlight.dev/fhir/sid/test-run"


def _patient(run_id: str, n: int) -> dict:
    return {"resourceType": "Patient", "identifier": [{"system": TAG, "value": f"{run_id}-{n}"}],
            "name": [{"family": f"Pager{n}"}], "meta": {"tag": [{"system": TAG, "code": run_id}]}}


def _observation(run_id: str, n: int, status: str = "final") -> dict:
    return {"resourceType": "Observation", "status": status,
            "identifier": [{"system": TAG, "value": f"{run_id}-obs-{n}"}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
            "valueQuantity": {"value": 5.4, "unit": "mmol/L", "system": "http://unitsofmeasure.org",
                              "code": "mmol/L"}}


def _transaction(resources: list[dict]) -> dict:
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": r, "request": {"method": "POST", "url": r["resourceType"]}} for r in resources]}


def test_search_follows_next_links_across_pages(fhir: FhirClient, run_id: str) -> None:
    fhir.transaction(_transaction([_patient(run_id, n) for n in range(7)]))
    pages = list(fhir.search_pages("Patient", {"_tag": f"{TAG}|{run_id}", "_count": 3}))
    assert len(pages) == 3
    ids = [e["resource"]["id"] for page in pages for e in page.get("entry", [])]
    assert len(ids) == len(set(ids)) == 7
    assert len(list(fhir.search("Patient", {"_tag": f"{TAG}|{run_id}", "_count": 3}))) == 7


def test_binary_round_trip_of_20_mb_is_byte_identical(fhir: FhirClient) -> None:
    data = random.Random(20).randbytes(20 * 1024 * 1024)
    stored = fhir.create_binary(data, "application/pdf")
    attachment = {"contentType": "application/pdf", "url": f"Binary/{stored['id']}",
                  "size": len(data),
                  "hash": base64.b64encode(hashlib.sha1(data, usedforsecurity=False).digest()).decode()}
    got = resolve_attachment(fhir, attachment, source="test attachment")
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    # The absolute form of the same url, on the FHIR base, resolves the same way.
    absolute = dict(attachment, url=f"{fhir.base_url}/Binary/{stored['id']}")
    assert resolve_attachment(fhir, absolute, source="absolute") == data


def test_binary_posted_as_fhir_json_reads_back_raw(fhir: FhirClient) -> None:
    data = b"%PDF-1.4 tiny"
    stored = fhir.create({"resourceType": "Binary", "contentType": "application/pdf",
                          "data": base64.b64encode(data).decode()})
    assert fhir.read_binary(f"Binary/{stored['id']}", "application/pdf") == data


def test_conditional_create_returns_the_existing_resource(fhir: FhirClient, run_id: str) -> None:
    query = f"identifier={TAG}|{run_id}-0"
    first = fhir.create(_patient(run_id, 0), if_none_exist=query)
    second = fhir.create(_patient(run_id, 0), if_none_exist=query)
    assert second["id"] == first["id"]
    assert second["meta"]["versionId"] == first["meta"]["versionId"] == "1"
    assert len(list(fhir.search("Patient", {"identifier": f"{TAG}|{run_id}-0"}))) == 1


def test_update_with_stale_if_match_is_refused(fhir: FhirClient, run_id: str) -> None:
    created = fhir.create(_patient(run_id, 1))
    changed = dict(created, name=[{"family": "Renamed"}])
    updated = fhir.update(changed, if_match=created["meta"]["versionId"])
    assert updated["meta"]["versionId"] == "2"
    with pytest.raises(FhirResponseError) as err:
        fhir.update(changed, if_match="1")
    assert err.value.status in (409, 412)


def test_transaction_is_all_or_nothing(fhir: FhirClient, run_id: str) -> None:
    bundle = _transaction([_observation(run_id, 1), _observation(run_id, 2),
                           _observation(run_id, 3, status="bogus")])
    with pytest.raises(FhirResponseError) as err:
        fhir.transaction(bundle)
    assert 400 <= err.value.status < 500
    assert err.value.outcome is not None and err.value.diagnostics
    assert "bogus" in err.value.diagnostics
    for n in (1, 2, 3):
        assert list(fhir.search("Observation", {"identifier": f"{TAG}|{run_id}-obs-{n}"})) == []


def test_invalid_resource_is_rejected_by_request_validation(fhir: FhirClient) -> None:
    with pytest.raises(FhirResponseError) as err:
        fhir.create({"resourceType": "Observation", "status": "final"})  # no code: required
    assert err.value.status in (400, 422)
    assert "code" in err.value.diagnostics


def test_foreign_attachment_host_is_refused_without_any_request(sandbox_url: str) -> None:
    state = ServerState(body=b"foreign bytes")
    with loopback_server(state) as foreign:
        client = FhirClient(sandbox_url, token="secret-token")
        attachment = {"contentType": "application/pdf", "url": f"{foreign}/files/report.pdf"}
        with pytest.raises(AttachmentRefused):
            resolve_attachment(client, attachment, source="DocumentReference/x content[0]")
        assert state.seen == []
        # Allow-listed: fetched, and still without the token.
        host = urlsplit(foreign).netloc
        got = resolve_attachment(client, attachment, source="x", allowed_hosts=[host])
        assert got == b"foreign bytes"
        assert len(state.seen) == 1
        assert "Authorization" not in state.seen[0].headers


def test_503_is_retried_for_reads_but_not_for_posts(sandbox_url: str, run_id: str) -> None:
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(sandbox_url))
    direct = FhirClient(sandbox_url)
    patient = direct.create(_patient(run_id, 9))

    state = ServerState(upstream=origin, fail_first=2, fail_status=503)
    with loopback_server(state) as proxy:
        client = FhirClient(proxy + "/fhir", token="t0k", retry_backoff_s=0.01, max_retries=3)
        assert client.read("Patient", patient["id"])["id"] == patient["id"]
        assert len(state.seen) == 3  # two 503s, then the real answer
        assert all(s.headers.get("Authorization") == "Bearer t0k" for s in state.seen)

        state.seen.clear()
        state.fail_first = 1
        with pytest.raises(FhirResponseError) as err:
            client.create(_patient(run_id, 10))
        assert err.value.status == 503
        assert len(state.seen) == 1  # a POST is never repeated
    assert list(direct.search("Patient", {"identifier": f"{TAG}|{run_id}-10"})) == []
