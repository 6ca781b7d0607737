"""Which resources hold a patient's documents, which attachment of each we read, and what its bytes
really are (by their magic numbers, not the declared content type)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from plugin.errors import InputError
from plugin.fhir import FhirClient

Resource = dict[str, Any]
DocumentKind = Literal["pdf", "png", "jpeg", "tiff"]

# Declared content types we read, and what each promises.
DOCUMENT_TYPES: dict[str, DocumentKind] = {
    "application/pdf": "pdf",
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/tiff": "tiff",
    "image/tif": "tiff",
}
# Declared types that say nothing about the content: the bytes decide.
UNDECLARED_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})
SOURCE_TYPES = ("DocumentReference", "DiagnosticReport")
AIAST = ("http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "AIAST")

_MAGIC: tuple[tuple[bytes, DocumentKind], ...] = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),  # BigTIFF
    (b"MM\x00+", "tiff"),
)
# Content that is often mislabelled as a document, named so the error says what it was.
_LOOKALIKES: tuple[tuple[bytes, str], ...] = (
    (b"<!doctype html", "an HTML page"),
    (b"<html", "an HTML page"),
    (b"<?xml", "XML"),
    (b"{", "JSON"),
    (b"pk\x03\x04", "a ZIP archive"),
    (b"gif8", "a GIF image"),
    (b"riff", "a RIFF file (WebP, WAV)"),
    (b"bm", "a BMP image"),
)


@dataclass(frozen=True)
class SelectedAttachment:
    attachment: Resource
    where: str  # e.g. "content[0]" or "presentedForm[1]"
    declared_type: str  # lower case, without parameters; "" when none was declared


def find_sources(client: FhirClient, patient_id: str) -> list[Resource]:
    """The patient's DocumentReferences and DiagnosticReports that carry a PDF or image
    attachment, leaving out what chartlight (or any AI) wrote and entries marked in error."""
    sources = []
    for resource_type in SOURCE_TYPES:
        for resource in client.search(resource_type, {"subject": f"Patient/{patient_id}",
                                                      "_count": 100}):
            if resource.get("status") == "entered-in-error" or is_ai_output(resource):
                continue
            if any(_declared_type(a) in DOCUMENT_TYPES for _, a in attachments(resource)):
                sources.append(resource)
    return sources


def is_ai_output(resource: Resource) -> bool:
    labels = resource.get("meta", {}).get("security", [])
    return any((label.get("system"), label.get("code")) == AIAST for label in labels)


def attachments(resource: Resource) -> list[tuple[str, Resource]]:
    """(where, attachment) for each attachment of a DocumentReference or DiagnosticReport."""
    if resource.get("resourceType") == "DocumentReference":
        return [(f"content[{i}]", c.get("attachment", {}))
                for i, c in enumerate(resource.get("content", []))]
    if resource.get("resourceType") == "DiagnosticReport":
        return [(f"presentedForm[{i}]", a) for i, a in enumerate(resource.get("presentedForm", []))]
    return []


def select_attachment(resource: Resource, *, source: str) -> SelectedAttachment:
    """The attachment to read: the first declared as a PDF or image, else the first whose type is
    not declared (its bytes will tell)."""
    found = attachments(resource)
    for wanted in (DOCUMENT_TYPES.keys(), UNDECLARED_TYPES):
        for where, attachment in found:
            declared = _declared_type(attachment)
            if declared in wanted:
                return SelectedAttachment(attachment, where, declared)
    declared_types = sorted({_declared_type(a) or "no type" for _, a in found})
    what = f"has only {', '.join(declared_types)}" if found else "has no attachment"
    raise InputError(source, f"no PDF or image attachment to read ({what})")


def sniff_kind(data: bytes, *, source: str, declared_type: str = "") -> DocumentKind:
    """What the bytes are. Empty content, HTML error pages and other non-documents are refused
    with the reason, naming the declared type when it lied."""
    if not data.strip():
        raise InputError(source, "the attachment is empty")
    if b"%PDF-" in data[:1024]:  # the header may follow up to 1 KiB of junk
        return "pdf"
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            return kind
    head = data[:512].lstrip().lower()
    found = next((name for magic, name in _LOOKALIKES if head.startswith(magic)), None)
    if found is None and b"<html" in head:
        found = "an HTML page"
    declared = f" (declared {declared_type})" if declared_type else ""
    if found is not None:
        raise InputError(source, f"the attachment{declared} is {found}, not a PDF or image")
    raise InputError(source, f"the attachment{declared} is not a PDF, PNG, JPEG or TIFF "
                             "(unrecognised content)")


def _declared_type(attachment: Resource) -> str:
    content_type = attachment.get("contentType") or ""
    return str(content_type).split(";")[0].strip().lower()
