"""URL normalisation and the dot-segment rule, and that the FHIR client, attachments and imaging
Endpoints all apply it before deciding where a token may go."""

from __future__ import annotations

import pytest

from plugin.errors import AttachmentRefused, FhirError
from plugin.fhir import FhirClient, resolve_attachment
from plugin.fhir.urls import UnsafeUrl, check_relative, is_under, normalise_url
from plugin.pipelines.imaging.sources import is_trusted
from tests.support.fake_transport import Reply, ScriptedAdapter, session_with

BASE = "https://ehr.example.org/tenant-a/fhir"
OTHER_TENANT = [
    "https://ehr.example.org/tenant-a/fhir/../../tenant-b/fhir/Binary/1",
    "https://ehr.example.org/tenant-a/fhir/%2e%2e/%2E%2E/tenant-b/fhir/Binary/1",
    "https://ehr.example.org/tenant-a/fhir/.%2E/.%2e/tenant-b/fhir/Binary/1",
    "https://ehr.example.org/tenant-a/fhir/%252e%252e/%252e%252e/tenant-b/fhir/Binary/1",
    "https://ehr.example.org/tenant-a/fhir/..%2f..%2ftenant-b/fhir/Binary/1",
    "https://ehr.example.org/tenant-a/fhir/..\\..\\tenant-b/fhir/Binary/1",
    "https://ehr.example.org/tenant-a/fhir/./Binary/1",
]


@pytest.mark.parametrize("url", OTHER_TENANT)
def test_dot_segments_literal_or_encoded_are_refused(url: str) -> None:
    with pytest.raises(UnsafeUrl):
        normalise_url(url)
    with pytest.raises(UnsafeUrl):
        is_under(url, BASE)


@pytest.mark.parametrize(("url", "expected"), [
    ("HTTPS://EHR.Example.org:443/tenant-a/fhir/Binary/1", "https://ehr.example.org/tenant-a/fhir/Binary/1"),
    ("http://127.0.0.1:80/fhir?x=1#frag", "http://127.0.0.1/fhir?x=1"),
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080/"),
    ("https://[::1]:8443/fhir", "https://[::1]:8443/fhir"),
    ("https://ehr.example.org/fhir/Binary/a.b..c", "https://ehr.example.org/fhir/Binary/a.b..c"),
])
def test_normalised_spelling(url: str, expected: str) -> None:
    assert normalise_url(url) == expected


@pytest.mark.parametrize("url", ["https://user:pw@ehr.example.org/fhir", "ftp://ehr.example.org/fhir",
                                 "https://ehr.example.org/fh ir", "https:///fhir",
                                 "https://ehr.example.org:99999/fhir"])
def test_credentials_other_schemes_whitespace_and_bad_ports_are_refused(url: str) -> None:
    with pytest.raises(UnsafeUrl):
        normalise_url(url)


def test_relative_references_with_dot_segments_are_refused() -> None:
    check_relative("Binary/7")
    for reference in ("Binary/../../tenant-b/fhir/Binary/7", "Binary/%2e%2e/x", "..", "Binary\\7"):
        with pytest.raises(UnsafeUrl):
            check_relative(reference)


def test_is_under_takes_whole_segments_after_normalising() -> None:
    assert is_under("HTTPS://ehr.example.org:443/tenant-a/fhir/Patient/1", BASE)
    assert is_under(BASE + "/", BASE)
    assert not is_under("https://ehr.example.org/tenant-a/fhirx/Patient/1", BASE)
    assert not is_under("https://ehr.example.org/tenant-b/fhir/Patient/1", BASE)
    assert not is_under("https://ehr.example.org.evil.test/tenant-a/fhir", BASE)
    assert not is_under(BASE, "https://ehr.example.org/x/../tenant-a/fhir")  # unsafe prefix: no match


@pytest.mark.parametrize("url", OTHER_TENANT[:5])
def test_the_client_sends_nothing_to_a_url_that_climbs_out_of_its_base(url: str) -> None:
    adapter = ScriptedAdapter([])
    client = FhirClient(BASE, token="tok", session=session_with(adapter))
    assert client.is_on_fhir_server(url) is False
    with pytest.raises(FhirError, match="dot-segment|encoded"):
        client.read_binary(url, "application/pdf")
    with pytest.raises(FhirError, match="dot-segment"):
        client.read("Binary", "..")
    assert adapter.requests == []


@pytest.mark.parametrize("url", OTHER_TENANT + ["Binary/%2e%2e/%2e%2e/tenant-b/fhir/Binary/1"])
def test_attachments_with_dot_segments_are_refused_before_any_request(url: str) -> None:
    adapter = ScriptedAdapter([])
    client = FhirClient(BASE, token="tok", session=session_with(adapter))
    with pytest.raises(AttachmentRefused, match="refused") as err:
        resolve_attachment(client, {"url": url, "contentType": "application/pdf"},
                           source="DocumentReference/9 content[0]",
                           allowed_hosts=("ehr.example.org",))
    assert err.value.source == "DocumentReference/9 content[0]"
    assert adapter.requests == []


def test_an_attachment_on_the_base_in_another_spelling_is_read_with_the_token() -> None:
    adapter = ScriptedAdapter([Reply(body=b"%PDF", headers={"Content-Type": "application/pdf"})])
    client = FhirClient(BASE, token="tok", session=session_with(adapter))
    data = resolve_attachment(client, {"url": "HTTPS://EHR.example.org:443/tenant-a/fhir/Binary/1",
                                       "contentType": "application/pdf"}, source="d")
    assert data == b"%PDF"
    assert adapter.requests[0].url == "https://ehr.example.org/tenant-a/fhir/Binary/1"
    assert adapter.requests[0].headers["Authorization"] == "Bearer tok"


@pytest.mark.parametrize("address", [
    "https://pacs.example.org/dicom-web/../../other/dicom-web",
    "https://pacs.example.org/dicom-web/%2e%2e/other",
    "https://pacs.example.org/dicom-web/..%2Fother",
])
def test_an_endpoint_address_that_climbs_out_of_a_trusted_prefix_is_not_trusted(address: str) -> None:
    assert is_trusted(address, ("https://pacs.example.org/dicom-web",)) is False
