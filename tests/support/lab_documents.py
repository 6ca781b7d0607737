"""Lab-report documents for the documents pipeline's tests: the seeded renderings (same seeds as
the sandbox seeding), bad files generated on the spot, and a JobContext that needs no server."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pypdf

from plugin.fhir import FhirClient
from plugin.jobs import Job, JobContext, JobState
from plugin.sandbox import synthetic

SCAN_SEED, PHOTO_SEED = 7, 11  # as plugin.sandbox.seed stores them


@dataclass(frozen=True)
class Seeded:
    text_pdf: bytes
    scan_pdf: bytes
    photo_png: bytes


def seeded_files() -> Seeded:
    report = synthetic.DEMO_LAB_REPORT
    return Seeded(synthetic.text_pdf(report), synthetic.scanned_pdf(report, seed=SCAN_SEED),
                  synthetic.photo_png(report, seed=PHOTO_SEED))


def document_reference(data: bytes, content_type: str | None, *, resource_id: str = "doc-1",
                       version: str = "3") -> dict[str, Any]:
    """A DocumentReference holding `data` inline."""
    attachment: dict[str, Any] = {"data": base64.b64encode(data).decode()}
    if content_type is not None:
        attachment["contentType"] = content_type
    return {"resourceType": "DocumentReference", "id": resource_id,
            "meta": {"versionId": version}, "status": "current",
            "content": [{"attachment": attachment}]}


def offline_context(resource: dict[str, Any]) -> JobContext:
    """A JobContext for a resource whose attachments are inline (no server is contacted)."""
    now = datetime(2026, 11, 28, tzinfo=UTC)
    job = Job(id=1, pipeline="documents", source_type=resource["resourceType"],
              source_id=resource["id"], source_version=resource["meta"]["versionId"],
              subject="Patient/1", fhir_base_url="http://fhir.invalid/fhir",
              state=JobState.RUNNING, progress=0.0, progress_text="", attempts=1,
              next_attempt_at=now, error="", summary={}, created_at=now, updated_at=now)
    return JobContext(job=job, client=FhirClient(job.fhir_base_url), source=resource,
                      report_progress=lambda fraction, text: None)


def encrypted_pdf(pdf: bytes, *, needs_password: bool = True) -> bytes:
    """`pdf` encrypted (RC4, which pypdf reads without extra packages); without
    `needs_password` only the owner password is set, as for print-restricted PDFs."""
    writer = pypdf.PdfWriter(clone_from=io.BytesIO(pdf))
    writer.encrypt("reader" if needs_password else "", "owner", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def blank_pdf(*page_sizes: tuple[float, float]) -> bytes:
    """Blank pages of the given sizes in points (none: a PDF with no pages)."""
    writer = pypdf.PdfWriter()
    for width, height in page_sizes:
        writer.add_blank_page(width=width, height=height)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def pdf_with_image(width: int, height: int) -> bytes:
    """A one-page PDF drawing an image that declares `width` x `height` pixels (its data is a
    few bytes: a decompression bomb is caught from the declaration)."""
    pixels = zlib.compress(b"\0" * 64)
    bodies = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /XObject << /Im0 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray "
        b"/BitsPerComponent 8 /Filter /FlateDecode /Length %d >>\nstream\n%s\nendstream"
        % (width, height, len(pixels), pixels),
        b"<< /Length 30 >>\nstream\nq 612 0 0 792 0 0 cm /Im0 Do Q\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(bodies, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(bodies) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(bodies) + 1, xref)
    return bytes(out)


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares `width` x `height` pixels, with almost no pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
            + chunk(b"IEND", b""))
