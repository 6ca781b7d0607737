"""DICOMweb answer parsing, endpoint trust rules and how a study names its instances' origin."""

from __future__ import annotations

import pytest

from plugin.errors import InputError
from plugin.pipelines.imaging.dicomweb import DicomWebClient, multipart_parts
from plugin.pipelines.imaging.sources import endpoint_references, is_trusted, study_instance_uid
from tests.support.loopback import ServerState, loopback_server

CT = 'multipart/related; type="application/dicom"; boundary=abc'


def test_multipart_parts_are_split_on_the_boundary() -> None:
    body = (b"preamble\r\n--abc\r\nContent-Type: application/dicom\r\n\r\nFIRST\r\n--abc\r\n"
            b"Content-Type: application/dicom\r\nContent-Length: 6\r\n\r\nSEC\r\nD\r\n--abc--\r\n")
    assert multipart_parts(body, CT, where="w") == [b"FIRST", b"SEC\r\nD"]


def test_a_multipart_answer_without_its_close_delimiter_is_refused() -> None:
    with pytest.raises(InputError, match="closing delimiter"):
        multipart_parts(b"--abc\r\nContent-Type: x\r\n\r\nDATA", CT, where="w")


def test_a_non_multipart_answer_is_refused() -> None:
    with pytest.raises(InputError, match="expected a multipart/related answer"):
        multipart_parts(b"{}", "application/json", where="w")


@pytest.mark.parametrize(("address", "trusted"), [
    ("https://pacs.example.org/dicom-web", True),
    ("https://pacs.example.org/dicom-web/", True),
    ("https://pacs.example.org/dicom-web/sub", True),
    ("https://pacs.example.org/dicom-webx", False),
    ("https://pacs.example.org.evil.test/dicom-web", False),
    ("http://pacs.example.org/dicom-web", False),
])
def test_token_trust_is_by_whole_path_prefix(address: str, trusted: bool) -> None:
    assert is_trusted(address, ("https://pacs.example.org/dicom-web/",)) is trusted
    assert is_trusted(address, ()) is False


def test_study_uid_and_endpoints_come_from_the_imaging_study() -> None:
    study = {"identifier": [{"system": "urn:dicom:uid", "value": "urn:oid:1.2.3"}],
             "endpoint": [{"reference": "Endpoint/1"}],
             "series": [{"uid": "1.2.3.4", "endpoint": [{"reference": "Endpoint/1"}, {"reference": "#e2"}]}]}
    assert study_instance_uid(study) == "1.2.3"
    assert endpoint_references(study) == ["Endpoint/1", "#e2"]
    assert study_instance_uid({}) is None


def test_the_token_goes_only_where_the_caller_trusts_and_bytes_are_counted() -> None:
    state = ServerState(body=b"[]")
    with loopback_server(state) as base:
        DicomWebClient(base, token="tok").series_metadata("1.2", "1.2.3")
        anonymous = DicomWebClient(base)
        anonymous.series_metadata("1.2", "1.2.3")
    assert state.seen[0].headers.get("Authorization") == "Bearer tok"
    assert "Authorization" not in state.seen[1].headers
    assert state.seen[0].path == "/studies/1.2/series/1.2.3/metadata"
    assert anonymous.bytes_read == 2 and anonymous.requests_made == 1


def test_an_unreachable_pacs_is_an_input_error_naming_the_request() -> None:
    with loopback_server(ServerState()) as base:
        pass  # closed again: nothing listens on that port now
    with pytest.raises(InputError, match="did not answer") as caught:
        DicomWebClient(base, timeout_s=2).instance("1.2", "1.2.3", "1.2.3.4")
    assert caught.value.source == "/studies/1.2/series/1.2.3/instances/1.2.3.4"
    assert "tok" not in str(caught.value)
