"""Attachment resolution rules: inline data, hash/size checks, which hosts may be contacted."""

from __future__ import annotations

import base64
import hashlib

import pytest

from plugin.errors import AttachmentRefused, InputError
from plugin.fhir import FhirClient, resolve_attachment
from tests.support.fake_transport import Reply, ScriptedAdapter, session_with

BASE = "https://ehr.example.org/fhir"


def make_client(adapter: ScriptedAdapter) -> FhirClient:
    return FhirClient(BASE, token="tok", session=session_with(adapter), max_response_bytes=1000)


def test_inline_data_with_matching_hash_and_size() -> None:
    data = b"hello"
    attachment = {"data": base64.b64encode(data).decode(), "size": 5,
                  "hash": base64.b64encode(hashlib.sha1(data, usedforsecurity=False).digest()).decode()}
    assert resolve_attachment(make_client(ScriptedAdapter([])), attachment, source="a") == data


@pytest.mark.parametrize("attachment, reason", [
    ({"data": "!!!not base64"}, "not valid base64"),
    ({"data": base64.b64encode(b"hello").decode(), "size": 6}, "declares 6 bytes"),
    ({"data": base64.b64encode(b"hello").decode(), "hash": "AAAA"}, "hash"),
    ({"data": "A" * 2000}, "larger than"),
    ({"contentType": "application/pdf"}, "neither data nor url"),
])
def test_bad_inline_attachments_name_the_input_and_reason(attachment: dict, reason: str) -> None:
    with pytest.raises(InputError, match=reason) as err:
        resolve_attachment(make_client(ScriptedAdapter([])), attachment, source="DocumentReference/7")
    assert err.value.source == "DocumentReference/7"


@pytest.mark.parametrize("url", [
    "https://evil.example.com/Binary/1",
    "https://ehr.example.org.evil.example.com/fhir/Binary/1",
    "https://ehr.example.org/other/Binary/1",
    "http://ehr.example.org/fhir/Binary/1",  # same host, other scheme
    "file:///etc/passwd",
])
def test_urls_off_the_fhir_base_are_refused_before_any_request(url: str) -> None:
    adapter = ScriptedAdapter([])
    with pytest.raises(AttachmentRefused):
        resolve_attachment(make_client(adapter), {"url": url}, source="x")
    assert adapter.requests == []


def test_relative_binary_url_is_read_from_the_fhir_base_with_the_token() -> None:
    adapter = ScriptedAdapter([Reply(body=b"%PDF", headers={"Content-Type": "application/pdf"})])
    got = resolve_attachment(make_client(adapter), {"url": "Binary/5", "contentType": "application/pdf"},
                             source="x")
    assert got == b"%PDF"
    assert adapter.requests[0].url == f"{BASE}/Binary/5"
    assert adapter.requests[0].headers["Accept"] == "application/pdf"
    assert adapter.requests[0].headers["Authorization"] == "Bearer tok"
