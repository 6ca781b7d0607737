"""Where an ImagingStudy's DICOM instances come from: its DICOMweb Endpoint (WADO-RS), or DICOM
files attached as Binary to a DocumentReference whose context.related names the study.

Both routes give the same two steps: headers of every instance first (no pixel data), then the
bytes of only the instances chosen. The FHIR bearer token goes to a DICOMweb endpoint only when
its address lies under a configured trusted prefix; otherwise requests carry no Authorization.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests

from plugin.budget import MemoryBudget
from plugin.errors import FhirError, InputError
from plugin.fhir import FhirClient
from plugin.fhir.attachments import resolve_attachment
from plugin.fhir.urls import UnsafeUrl, is_under, normalise_url
from plugin.pipelines.imaging.dicomweb import DicomWebClient
from plugin.pipelines.imaging.frames import frame_headers, has_functional_groups
from plugin.pipelines.imaging.instance_headers import (
    InstanceHeader,
    header_from_json,
    header_from_part10,
)

WADO_RS = "dicom-wado-rs"
GEOMETRY_TAGS = {"ImagePositionPatient": "00200032", "ImageOrientationPatient": "00200037"}
CHARACTER_SET_TAG = "00080005"
DICOM_CONTENT_TYPE = "application/dicom"
SERIES_UID_TAG = "0020000E"

Resource = dict[str, Any]


class InstanceSource(Protocol):
    """The instances of one study: headers first, then bytes of the chosen few."""

    route: str

    @property
    def bytes_read(self) -> int: ...

    def series_headers(self) -> dict[str, list[InstanceHeader]]: ...

    def fetch(self, header: InstanceHeader) -> bytes: ...

    def fetch_frame(self, header: InstanceHeader, max_bytes: int) -> tuple[bytes, str]: ...

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class SourceLimits:
    timeout_s: float
    max_metadata_bytes: int
    max_instance_bytes: int
    trusted_endpoints: tuple[str, ...] = ()
    # DICOMweb bases that may be contacted without the token. An Endpoint under neither list is
    # never called: its address comes from FHIR data, and anyone able to write one could
    # otherwise point the service at hosts it can reach and the writer cannot.
    allowed_endpoints: tuple[str, ...] = ()
    attachment_allowed_hosts: tuple[str, ...] = ()
    session: requests.Session | None = field(default=None, compare=False)
    # Everything one study may read; the Binary route checks it before each download.
    max_study_bytes: int = 1024 * 1024 * 1024
    # The job's memory budget: Binary files are held (charged) until the study is prepared.
    budget: MemoryBudget | None = field(default=None, compare=False)


class DicomWebSource:
    """A study on a DICOMweb server: WADO-RS series metadata, then single-instance retrieval."""

    route = "dicomweb"

    def __init__(self, client: DicomWebClient, study_uid: str, series_uids: Sequence[str], *,
                 max_study_bytes: int = 1024 * 1024 * 1024) -> None:
        self.client, self.study_uid, self.series_uids = client, study_uid, tuple(series_uids)
        self.max_study_bytes = max_study_bytes
        # Set when the PACS's metadata lacked what the instances' own headers have.
        self.metadata_fallback: dict[str, Any] = {}

    @property
    def bytes_read(self) -> int:
        return self.client.bytes_read

    def series_headers(self) -> dict[str, list[InstanceHeader]]:
        series_uids = self.series_uids or self._series_from_qido()
        found: dict[str, list[InstanceHeader]] = {}
        for series_uid in series_uids:
            where = f"series {series_uid}"
            if self.client.bytes_read >= self.max_study_bytes:
                # A study of very many series: stop before the next metadata request.
                raise InputError(where, f"the study's series metadata passes the {self.max_study_bytes}"
                                        "-byte study limit")
            items = self.client.series_metadata(self.study_uid, series_uid)
            headers: list[InstanceHeader] = []
            for item in items:
                header = header_from_json(item, source=where)
                if header.frames > 1 and has_functional_groups(item):
                    headers += frame_headers(header, item, source=f"{where} instance {header.instance_uid}")
                elif emptied_geometry(item, header):
                    headers.append(self._own_header(header, item, where))
                else:
                    headers.append(header)
            found[series_uid] = headers
        return found

    def _own_header(self, header: InstanceHeader, item: dict[str, Any], where: str) -> InstanceHeader:
        """The instance's own header, fetched, when the metadata has its geometry emptied (Orthanc
        1.10 empties multi-valued DS values of ISO 2022 IR 13 + IR 87 studies: in JIS X 0201 the
        value separator's byte is the yen sign). Within the study's byte limit; the instance is
        fetched again later if it is chosen (its bytes are not kept)."""
        if self.client.bytes_read >= self.max_study_bytes:
            raise InputError(where, f"reading the instances' own headers passes the {self.max_study_bytes}"
                                    "-byte study limit")
        data = self.client.instance(header.study_uid, header.series_uid, header.instance_uid)
        own = header_from_part10(data, source=f"{where} instance {header.instance_uid}")
        if own.position is None or own.orientation is None:
            return header  # the file lacks them too: not the PACS's doing
        emptied = [name for name, tag in GEOMETRY_TAGS.items() if _is_emptied(item, tag)]
        record = self.metadata_fallback.setdefault("instances", 0)
        self.metadata_fallback.update({
            "instances": record + 1, "attributes": emptied,
            "character_set": [str(v) for v in (item.get(CHARACTER_SET_TAG) or {}).get("Value") or []],
            "cause": f"the PACS at {self.client.base_url} sent series metadata with "
                     f"{' and '.join(emptied)} empty; the instances' own headers have them, so "
                     "they were read from the instances"})
        return own

    def fetch(self, header: InstanceHeader) -> bytes:
        return self.client.instance(header.study_uid, header.series_uid, header.instance_uid)

    def fetch_frame(self, header: InstanceHeader, max_bytes: int) -> tuple[bytes, str]:
        assert header.frame is not None
        return self.client.frame(header.study_uid, header.series_uid, header.instance_uid, header.frame,
                                 max_bytes=max_bytes)

    def describe(self) -> dict[str, Any]:
        described = {"route": self.route, "endpoint": self.client.base_url,
                     "token_sent": self.client.sends_token, "requests": self.client.requests_made}
        if self.metadata_fallback:
            described["metadata_fallback"] = dict(self.metadata_fallback)
        return described

    def close(self) -> None:
        self.client.close()

    def _series_from_qido(self) -> list[str]:
        uids = []
        for item in self.client.study_series(self.study_uid):
            values = item.get(SERIES_UID_TAG, {}).get("Value") or []
            if values:
                uids.append(str(values[0]))
        return uids


class BinarySource:
    """DICOM files attached to DocumentReferences (application/dicom). Headers need every file,
    so all are read once and held (charged to the budget); pixel data is still decoded only for
    the instances chosen. The study's byte limit is checked before each download, so a study of
    many large attachments stops at the limit instead of after reading them all."""

    route = "binary"

    def __init__(self, client: FhirClient, attachments: Sequence[tuple[str, Resource]],
                 allowed_hosts: Iterable[str] = (), *, max_study_bytes: int = 1024 * 1024 * 1024,
                 budget: MemoryBudget | None = None) -> None:
        self.client, self.attachments, self.allowed_hosts = client, tuple(attachments), tuple(allowed_hosts)
        self.max_study_bytes = max_study_bytes
        self.budget = budget or MemoryBudget("DICOM attachments")
        self.bytes_read = 0
        self._files: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def series_headers(self) -> dict[str, list[InstanceHeader]]:
        found: dict[str, list[InstanceHeader]] = {}
        for number, (where, attachment) in enumerate(self.attachments):
            self._check_room(where, attachment, number)
            try:
                data = resolve_attachment(self.client, attachment, source=where,
                                          allowed_hosts=self.allowed_hosts)
            except FhirError as exc:
                raise InputError(where, f"the DICOM attachment could not be read ({exc})") from None
            self.bytes_read += len(data)
            self.budget.charge(len(data), "holding the study's DICOM attachments")
            header = header_from_part10(data, source=where, budget=self.budget)
            self._files[header.instance_uid] = data
            found.setdefault(header.series_uid, []).append(header)
        return found

    def _check_room(self, where: str, attachment: Resource, number: int) -> None:
        """Refuse the next download when it would pass the study limit or the memory budget: by
        the size the attachment declares, and when the limit is already reached (an attachment
        without a size may still add up to max_response_bytes once)."""
        declared = attachment.get("size")
        size = int(declared) if isinstance(declared, int) and declared > 0 else 0
        if self.bytes_read >= self.max_study_bytes or self.bytes_read + size > self.max_study_bytes:
            raise InputError(where, f"the study's DICOM attachments pass the {self.max_study_bytes}-byte "
                                    f"study limit ({self.bytes_read} bytes read from {number} of "
                                    f"{len(self.attachments)} attachments before this one)")
        self.budget.check(size, "downloading a DICOM attachment")

    def fetch(self, header: InstanceHeader) -> bytes:
        with self._lock:
            return self._files[header.instance_uid]

    def fetch_frame(self, header: InstanceHeader, max_bytes: int) -> tuple[bytes, str]:
        # Attachments are not expanded into frames (series_headers): nothing asks for one.
        raise InputError(f"instance {header.instance_uid}", "frames are fetched from DICOMweb only")

    def describe(self) -> dict[str, Any]:
        return {"route": self.route, "attachments": len(self.attachments), "token_sent": False}

    def close(self) -> None:
        self.budget.release(sum(len(data) for data in self._files.values()))
        self._files.clear()


def open_source(client: FhirClient, study: Resource, limits: SourceLimits, *, where: str) -> InstanceSource:
    """The study's instances: through its first usable DICOMweb Endpoint, else its Binary DICOM files."""
    study_uid = study_instance_uid(study)
    skipped: list[str] = []
    for reference in endpoint_references(study):
        endpoint = _resolve_endpoint(client, study, reference, where=where)
        reason = _unusable_endpoint_reason(endpoint)
        if reason:
            skipped.append(f"{reference}: {reason}")
            continue
        try:
            # Normalised before the prefix checks: `…/dicom-web/../other/` must not pass as
            # lying under `…/dicom-web` and then be resolved by the HTTP library.
            address = normalise_url(str(endpoint["address"])).rstrip("/")
        except UnsafeUrl as exc:
            skipped.append(f"{reference}: address refused ({exc})")
            continue
        trusted = is_trusted(address, limits.trusted_endpoints)
        if not trusted and not is_trusted(address, limits.allowed_endpoints):
            skipped.append(f"{reference}: {address} is not a configured DICOMweb endpoint "
                           "(imaging_allowed_endpoints or imaging_trusted_endpoints)")
            continue
        token = client_token(client) if trusted else None
        dicomweb = DicomWebClient(address, token=token, session=limits.session, timeout_s=limits.timeout_s,
                                  max_metadata_bytes=limits.max_metadata_bytes,
                                  max_instance_bytes=limits.max_instance_bytes)
        series_uids = [s["uid"] for s in study.get("series", []) if s.get("uid")]
        if study_uid is None:
            raise InputError(where, "the ImagingStudy has no DICOM Study Instance UID (identifier "
                                    "urn:dicom:uid) to ask the PACS for")
        return DicomWebSource(dicomweb, study_uid, series_uids, max_study_bytes=limits.max_study_bytes)
    attachments = dicom_attachments(client, study, where=where)
    if attachments:
        return BinarySource(client, attachments, limits.attachment_allowed_hosts,
                            max_study_bytes=limits.max_study_bytes, budget=limits.budget)
    detail = f" (endpoints skipped: {'; '.join(skipped)})" if skipped else ""
    raise InputError(where, f"no active {WADO_RS} Endpoint and no DICOM attachments{detail}")


def emptied_geometry(item: dict[str, Any], header: InstanceHeader) -> bool:
    """Whether a CT/MR instance's metadata names its position or orientation with no value: the
    PACS had the attribute and lost its value (a file without it has no element at all)."""
    return header.modality in ("CT", "MR") and header.frames == 1 and any(
        _is_emptied(item, tag) for tag in GEOMETRY_TAGS.values())


def _is_emptied(item: dict[str, Any], tag: str) -> bool:
    element = item.get(tag)
    return isinstance(element, dict) and not element.get("Value")


def study_instance_uid(study: Resource) -> str | None:
    """The Study Instance UID from identifier system urn:dicom:uid (value `urn:oid:<uid>`)."""
    for identifier in study.get("identifier", []):
        if identifier.get("system") == "urn:dicom:uid" and identifier.get("value"):
            value = str(identifier["value"])
            return value.removeprefix("urn:oid:")
    return None


def endpoint_references(study: Resource) -> list[str]:
    """Endpoint references of the study, then of its series, without repeats."""
    references = [e.get("reference", "") for e in study.get("endpoint", [])]
    for series in study.get("series", []):
        references += [e.get("reference", "") for e in series.get("endpoint", [])]
    return [r for r in dict.fromkeys(references) if r]


def is_trusted(address: str, prefixes: Iterable[str]) -> bool:
    """Whether `address` lies under one of the trusted prefixes (whole path segments only, so
    `https://pacs` does not trust `https://pacs.example.org`), both normalised first; an address
    with dot-segments (literal or encoded) is never trusted."""
    try:
        return any(is_under(address, prefix) for prefix in prefixes if prefix)
    except UnsafeUrl:
        return False


def client_token(client: FhirClient) -> str | None:
    """The FHIR client's bearer token, handed on to a DICOMweb endpoint only after the trust
    check in open_source."""
    return client.access_token


def dicom_attachments(client: FhirClient, study: Resource, *, where: str) -> list[tuple[str, Resource]]:
    """application/dicom attachments of DocumentReferences whose context.related is the study."""
    try:
        documents = list(client.search("DocumentReference",
                                       {"related": f"ImagingStudy/{study['id']}", "_count": 50}))
    except FhirError as exc:
        raise InputError(where, f"searching for the study's DICOM documents failed ({exc})") from None
    found = []
    for document in documents:
        if document.get("status") == "entered-in-error":
            continue
        for index, content in enumerate(document.get("content", [])):
            attachment = content.get("attachment", {})
            if str(attachment.get("contentType", "")).split(";")[0].strip().lower() == DICOM_CONTENT_TYPE:
                found.append((f"DocumentReference/{document['id']} content[{index}]", attachment))
    return found


def _resolve_endpoint(client: FhirClient, study: Resource, reference: str, *, where: str) -> Resource:
    if reference.startswith("#"):
        for contained in study.get("contained", []):
            if contained.get("id") == reference[1:]:
                return dict(contained)
        raise InputError(where, f"endpoint {reference} is not among the contained resources")
    path = reference
    if "://" in reference:
        if not client.is_on_fhir_server(reference):
            raise InputError(where, f"endpoint reference {reference} is not on the FHIR server")
        path = urlsplit(reference).path[len(urlsplit(client.base_url).path):]
    parts = [p for p in path.split("/") if p]
    if len(parts) < 2 or parts[-2] != "Endpoint":
        raise InputError(where, f"endpoint reference {reference!r} is not an Endpoint")
    try:
        return client.read("Endpoint", parts[-1])
    except FhirError as exc:
        raise InputError(where, f"reading {reference} failed ({exc})") from None


def _unusable_endpoint_reason(endpoint: Resource) -> str:
    if endpoint.get("resourceType") != "Endpoint":
        return "not an Endpoint"
    if endpoint.get("status", "active") != "active":
        return f"status {endpoint.get('status')}"
    code = (endpoint.get("connectionType") or {}).get("code")
    if code != WADO_RS:
        return f"connectionType {code!r} is not {WADO_RS}"
    address = str(endpoint.get("address", ""))
    if urlsplit(address).scheme not in ("http", "https") or not urlsplit(address).netloc:
        return f"address {address!r} is not an http(s) URL"
    return ""
