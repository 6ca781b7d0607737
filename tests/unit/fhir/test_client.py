"""Unit tests of FhirClient behaviour that a real server cannot be made to show on demand."""

from __future__ import annotations

import base64
import json

import pytest
import requests

from plugin.errors import FhirError, FhirResponseError, FhirTransportError, ResponseTooLarge
from plugin.fhir import FhirClient
from tests.support.fake_transport import Reply, ScriptedAdapter, session_with

BASE = "https://ehr.example.org/fhir"


def client(adapter: ScriptedAdapter, **kwargs: object) -> FhirClient:
    return FhirClient(BASE, token="tok", session=session_with(adapter), sleep=lambda s: None,
                      **kwargs)  # type: ignore[arg-type]


def fhir_json(resource: dict, status: int = 200) -> Reply:
    return Reply(status=status, body=json.dumps(resource).encode())


def test_sends_fhir_json_headers_and_bearer_token() -> None:
    adapter = ScriptedAdapter([fhir_json({"resourceType": "Patient", "id": "1"})])
    client(adapter).read("Patient", "1")
    sent = adapter.requests[0]
    assert sent.url == f"{BASE}/Patient/1"
    assert sent.headers["Accept"] == "application/fhir+json"
    assert sent.headers["Authorization"] == "Bearer tok"


def test_connection_errors_on_reads_are_retried_then_raised() -> None:
    adapter = ScriptedAdapter([requests.ConnectionError("down")] * 4)
    with pytest.raises(FhirTransportError):
        client(adapter, max_retries=3).read("Patient", "1")
    assert len(adapter.requests) == 4


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_retryable_statuses_are_retried_for_get(status: int) -> None:
    adapter = ScriptedAdapter([Reply(status=status, body=b""),
                               fhir_json({"resourceType": "Patient", "id": "1"})])
    assert client(adapter).read("Patient", "1")["id"] == "1"
    assert len(adapter.requests) == 2


def test_500_and_posts_are_not_retried() -> None:
    adapter = ScriptedAdapter([Reply(status=500, body=b"")])
    with pytest.raises(FhirResponseError):
        client(adapter).read("Patient", "1")
    adapter = ScriptedAdapter([Reply(status=503, body=b"")])
    with pytest.raises(FhirResponseError):
        client(adapter).create({"resourceType": "Patient"})
    assert len(adapter.requests) == 1


def test_operation_outcome_is_kept_on_the_error() -> None:
    outcome = {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "processing", "diagnostics": "HAPI-0450: bad thing"}]}
    adapter = ScriptedAdapter([fhir_json(outcome, status=422)])
    with pytest.raises(FhirResponseError) as err:
        client(adapter).create({"resourceType": "Patient"})
    assert err.value.status == 422
    assert err.value.outcome == outcome
    assert "HAPI-0450: bad thing" in err.value.diagnostics
    assert "HAPI-0450" in str(err.value)


def test_body_over_the_limit_is_refused_while_streaming() -> None:
    big = Reply(body=b"x" * 5000, headers={"Content-Type": "application/pdf"})  # no length header
    with pytest.raises(ResponseTooLarge):
        client(ScriptedAdapter([big]), max_response_bytes=4096).read_binary("Binary/1", "application/pdf")
    declared = Reply(body=b"", headers={"Content-Type": "application/pdf", "Content-Length": "99999"})
    with pytest.raises(ResponseTooLarge):
        client(ScriptedAdapter([declared]), max_response_bytes=4096).read_binary("Binary/1", None)


def test_binary_falls_back_to_fhir_json_when_raw_type_is_refused() -> None:
    binary = {"resourceType": "Binary", "contentType": "image/tiff",
              "data": base64.b64encode(b"II*\x00").decode()}
    adapter = ScriptedAdapter([Reply(status=406, body=b""), fhir_json(binary)])
    assert client(adapter).read_binary("Binary/9", "image/tiff") == b"II*\x00"
    assert [r.headers["Accept"] for r in adapter.requests] == ["image/tiff", "application/fhir+json"]


def test_binary_answered_as_json_is_decoded() -> None:
    binary = {"resourceType": "Binary", "contentType": "application/pdf",
              "data": base64.b64encode(b"%PDF").decode()}
    assert client(ScriptedAdapter([fhir_json(binary)])).read_binary("Binary/9", "application/pdf") == b"%PDF"


def test_next_link_off_the_fhir_base_is_not_followed() -> None:
    page = {"resourceType": "Bundle", "type": "searchset", "entry": [],
            "link": [{"relation": "next", "url": "https://evil.example.com/fhir?page=2"}]}
    adapter = ScriptedAdapter([fhir_json(page)])
    with pytest.raises(FhirError, match="refusing to send credentials"):
        list(client(adapter).search("Patient"))
    assert len(adapter.requests) == 1


def test_token_never_in_repr() -> None:
    assert "tok" not in repr(client(ScriptedAdapter([])))
