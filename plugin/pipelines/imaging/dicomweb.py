"""A small DICOMweb client: QIDO-RS series search, WADO-RS series metadata and instance retrieval.

One client per Endpoint address. The bearer token is given only when the caller decided the
endpoint is trusted (plugin.pipelines.imaging.sources); otherwise requests carry no
Authorization header. Bodies are streamed and cut off at a byte limit; every byte read is
counted (`bytes_read`) for the choices record and the benchmark. Failures are InputErrors that
name the request path (never the token) and the reason.
"""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from plugin.errors import InputError
from plugin.fhir.urls import UnsafeUrl, normalise_url

DICOM_JSON = "application/dicom+json"
# transfer-syntax=* asks for the instance exactly as stored: no transcoding on the server (Orthanc
# cannot transcode JPEG 2000 without its GDCM plugin) and the bytes hashed are the PACS's own.
INSTANCE_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
# A frame as stored, too: Orthanc 1.10 cannot transcode a JPEG 2000 frame to native (HTTP 500),
# and names the syntax it sends in the Content-Type's `type` parameter.
FRAME_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
NATIVE_SYNTAX = "1.2.840.10008.1.2.1"
_CHUNK = 64 * 1024

DicomJson = dict[str, Any]


class DicomWebClient:
    """WADO-RS/QIDO-RS reads against one DICOMweb base URL."""

    def __init__(self, base_url: str, *, token: str | None = None,
                 session: requests.Session | None = None, timeout_s: float = 30.0,
                 max_metadata_bytes: int = 32 * 1024 * 1024,
                 max_instance_bytes: int = 64 * 1024 * 1024) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._own_session = session is None
        self._session = session or requests.Session()
        self.timeout_s = timeout_s
        self.max_metadata_bytes = max_metadata_bytes
        self.max_instance_bytes = max_instance_bytes
        self.bytes_read = 0
        self.requests_made = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never show the token
        return f"DicomWebClient({self.base_url!r})"

    @property
    def sends_token(self) -> bool:
        return self._token is not None

    def close(self) -> None:
        """Close the connection pool, if this client made it."""
        if self._own_session:
            self._session.close()

    def study_series(self, study_uid: str) -> list[DicomJson]:
        """QIDO-RS: the series of a study (for an ImagingStudy that lists none)."""
        return self._json_list(f"studies/{_uid(study_uid)}/series")

    def series_metadata(self, study_uid: str, series_uid: str) -> list[DicomJson]:
        """WADO-RS: the DICOM JSON of every instance of a series, without pixel data."""
        return self._json_list(f"studies/{_uid(study_uid)}/series/{_uid(series_uid)}/metadata")

    def instance(self, study_uid: str, series_uid: str, instance_uid: str) -> bytes:
        """WADO-RS: one instance as its Part-10 bytes, in the transfer syntax it is stored in."""
        path = (f"studies/{_uid(study_uid)}/series/{_uid(series_uid)}/instances/"
                f"{_uid(instance_uid)}")
        body, content_type = self._get(path, INSTANCE_ACCEPT, self.max_instance_bytes)
        parts = multipart_parts(body, content_type, where=path)
        if len(parts) != 1:
            raise InputError(path, f"expected one DICOM part in the answer, got {len(parts)}")
        return parts[0]

    def frame(self, study_uid: str, series_uid: str, instance_uid: str, number: int, *,
              max_bytes: int) -> tuple[bytes, str]:
        """WADO-RS frame retrieval: frame `number` (1-based) of an instance, as stored, and its
        transfer syntax UID. At most `max_bytes` are read (the frame's budget)."""
        path = (f"studies/{_uid(study_uid)}/series/{_uid(series_uid)}/instances/"
                f"{_uid(instance_uid)}/frames/{int(number)}")
        body, content_type = self._get(path, FRAME_ACCEPT, min(max_bytes, self.max_instance_bytes))
        parts = multipart_parts(body, content_type, where=path)
        if len(parts) != 1:
            raise InputError(path, f"expected one frame in the answer, got {len(parts)}")
        return parts[0], frame_transfer_syntax(content_type)

    def frames(self, study_uid: str, series_uid: str, instance_uid: str, numbers: list[int], *,
               max_bytes_each: int) -> tuple[list[bytes], str]:
        """WADO-RS frame retrieval of several frames in one request (`…/frames/3,4,9`, PS3.18
        10.4.1.1.5), answered in the order asked, as stored, with their transfer syntax. At most
        `max_bytes_each` per frame are read (the answer as a whole: that many times the count)."""
        listed = ",".join(str(int(n)) for n in numbers)
        path = (f"studies/{_uid(study_uid)}/series/{_uid(series_uid)}/instances/"
                f"{_uid(instance_uid)}/frames/{listed}")
        body, content_type = self._get(path, FRAME_ACCEPT, max_bytes_each * len(numbers))
        parts = multipart_parts(body, content_type, where=path)
        if len(parts) != len(numbers):
            raise InputError(path, f"expected {len(numbers)} frames in the answer, got {len(parts)}")
        for number, part in zip(numbers, parts, strict=True):
            if len(part) > max_bytes_each:
                raise InputError(path, f"frame {number} is larger than the {max_bytes_each}-byte limit")
        return parts, frame_transfer_syntax(content_type)

    def _json_list(self, path: str) -> list[DicomJson]:
        body, _ = self._get(path, DICOM_JSON, self.max_metadata_bytes)
        if not body.strip():
            return []  # QIDO-RS answers 204 with no body when nothing matches
        try:
            parsed = json.loads(body)
        except ValueError:
            raise InputError(path, "the DICOMweb answer is not DICOM JSON") from None
        if not isinstance(parsed, list) or not all(isinstance(item, dict) for item in parsed):
            raise InputError(path, "the DICOMweb answer is not a list of DICOM JSON data sets")
        return parsed

    def _get(self, path: str, accept: str, limit: int) -> tuple[bytes, str]:
        try:
            # UIDs come from FHIR data: a UID of ".." would climb out of the endpoint's path.
            url = normalise_url(f"{self.base_url}/{path}")
        except UnsafeUrl as exc:
            raise InputError(path, f"refusing the DICOMweb URL ({exc})") from None
        headers = {"Accept": accept}
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        where = urlsplit(url).path
        try:
            response = self._session.get(url, headers=headers, timeout=self.timeout_s, stream=True,
                                         allow_redirects=False)
        except requests.RequestException as exc:
            raise InputError(where, f"the PACS at {self.base_url} did not answer "
                                    f"({type(exc).__name__})") from None
        with response:
            self._count(0, request=True)
            if response.status_code == 204:
                return b"", ""
            if response.status_code != 200:
                raise InputError(where, f"the PACS answered HTTP {response.status_code}")
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > limit:
                raise InputError(where, f"the answer is larger than the {limit}-byte limit")
            chunks, size = [], 0
            try:
                for chunk in response.iter_content(_CHUNK):
                    size += len(chunk)
                    self._count(len(chunk))
                    if size > limit:
                        raise InputError(where, f"the answer is larger than the {limit}-byte limit")
                    chunks.append(chunk)
            except requests.RequestException as exc:
                raise InputError(where, f"reading the answer failed ({type(exc).__name__})") from None
            return b"".join(chunks), response.headers.get("Content-Type", "")

    def _count(self, size: int, *, request: bool = False) -> None:
        with self._lock:
            self.bytes_read += size
            self.requests_made += int(request)


def multipart_parts(body: bytes, content_type: str, *, where: str) -> list[bytes]:
    """The bodies of a multipart/related answer (RFC 2046), in order."""
    boundary = _boundary(content_type)
    if boundary is None:
        raise InputError(where, f"expected a multipart/related answer, got {content_type or 'none'!r}")
    delimiter = b"--" + boundary.encode("latin-1")
    pieces = body.split(delimiter)
    parts = []
    # pieces[0] is the preamble; a piece starting with "--" is the close delimiter's tail.
    for piece in pieces[1:]:
        if piece.startswith(b"--"):
            break
        header_end = piece.find(b"\r\n\r\n")
        if header_end < 0:
            raise InputError(where, "a multipart part has no header/body separator")
        content = piece[header_end + 4:]
        if content.endswith(b"\r\n"):  # the CRLF belongs to the next delimiter
            content = content[:-2]
        parts.append(content)
    else:
        raise InputError(where, "the multipart answer ends without its closing delimiter")
    return parts


def frame_transfer_syntax(content_type: str) -> str:
    """The transfer syntax a frame answer names (`transfer-syntax=` in the Content-Type or its
    quoted `type`); application/octet-stream without one is native Explicit VR Little Endian
    (PS3.18 8.7.3.5)."""
    text = content_type.replace('"', ";")
    for param in text.split(";"):
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "transfer-syntax" and value.strip():
            return value.strip()
    return NATIVE_SYNTAX


def _boundary(content_type: str) -> str | None:
    media_type, _, params = content_type.partition(";")
    if media_type.strip().lower() != "multipart/related":
        return None
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "boundary":
            return value.strip().strip('"') or None
    return None


def _uid(uid: str) -> str:
    """A UID as a path segment; anything but digits and dots would be a malformed UID anyway."""
    return quote(uid, safe="")


def store_instances(base_url: str, files: list[bytes], *, session: requests.Session | None = None,
                    timeout_s: float = 120.0, batch: int = 50) -> int:
    """STOW-RS: store Part-10 files on a DICOMweb server, `batch` per request. Returns how many
    were stored. Used by the sandbox seed and the benchmark."""
    http = session or requests.Session()
    url = base_url.rstrip("/") + "/studies"
    for start in range(0, len(files), batch):
        chunk = files[start:start + batch]
        boundary = hashlib.sha256(b"".join(f[-64:] for f in chunk)).hexdigest()
        delimiter = b"--" + boundary.encode()
        body = b"".join(delimiter + b"\r\nContent-Type: application/dicom\r\n\r\n" + f + b"\r\n"
                        for f in chunk) + delimiter + b"--\r\n"
        headers = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                   "Accept": DICOM_JSON}
        try:
            response = http.post(url, data=body, headers=headers, timeout=timeout_s)
        except requests.RequestException as exc:
            raise InputError(url, f"the PACS did not answer ({type(exc).__name__})") from None
        if response.status_code != 200:
            raise InputError(url, f"STOW-RS -> HTTP {response.status_code}: {response.text[:300]}")
        failed = json.loads(response.content or b"{}").get("00081198", {}).get("Value")
        if failed:
            raise InputError(url, f"the PACS refused {len(failed)} instance(s)")
    return len(files)
