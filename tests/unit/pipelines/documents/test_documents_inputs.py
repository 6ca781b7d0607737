"""Inputs: which resources are a patient's documents, which attachment is read, what the bytes
really are, and every kind of bad file refused with InputError naming the document and why."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import pytest
import requests
from PIL import Image

from plugin.errors import InputError
from plugin.fhir import FhirClient
from plugin.pipelines.documents import DocumentsOptions, DocumentsPipeline, find_sources
from plugin.pipelines.documents.document_pages import PageLimits, read_pages
from plugin.pipelines.documents.image_files import image_pages
from plugin.pipelines.documents.inputs import select_attachment, sniff_kind
from tests.support.fake_transport import Reply, ScriptedAdapter, session_with
from tests.support.lab_documents import (
    Seeded,
    blank_pdf,
    document_reference,
    encrypted_pdf,
    offline_context,
    pdf_with_image,
    png_header,
)

LIMITS = PageLimits(ocr_dpi=300, max_page_pixels=60_000_000, max_pages=50)


# ---- helpers --------------------------------------------------------------------------------


def image_bytes(fmt: str, *frames: Image.Image) -> bytes:
    out = io.BytesIO()
    frames[0].save(out, format=fmt, save_all=len(frames) > 1, append_images=list(frames[1:]))
    return out.getvalue()


# ---- what the bytes are -----------------------------------------------------------------------


def test_the_bytes_decide_the_type_not_the_declaration(seeded: Seeded) -> None:
    assert sniff_kind(seeded.text_pdf, source="x", declared_type="image/png") == "pdf"
    assert sniff_kind(b"junk before the header %PDF-1.7\n", source="x") == "pdf"
    assert sniff_kind(seeded.photo_png, source="x", declared_type="application/pdf") == "png"
    tiny = Image.new("L", (4, 4))
    assert sniff_kind(image_bytes("JPEG", tiny), source="x") == "jpeg"
    assert sniff_kind(image_bytes("TIFF", tiny), source="x") == "tiff"


def test_a_multi_page_tiff_gives_each_page_up_to_the_limit() -> None:
    frames = [Image.new("L", (120, 80), 255), Image.new("RGB", (90, 60), "white")]
    data = image_bytes("TIFF", *frames)
    pages, count = image_pages(data, source="x", max_pages=5, max_page_pixels=10**6)
    assert count == 2 and [(p.size, p.mode) for p in pages] == [((120, 80), "L"), ((90, 60), "RGB")]
    pages, count = image_pages(data, source="x", max_pages=1, max_page_pixels=10**6)
    assert count == 2 and len(pages) == 1


def test_pages_beyond_the_limit_are_reported_not_read(seeded: Seeded) -> None:
    document = read_pages(seeded.text_pdf, "pdf", source="x",
                          limits=PageLimits(ocr_dpi=300, max_page_pixels=60_000_000, max_pages=1))
    assert [p.number for p in document.pages] == [1] and document.page_count == 2
    (problem,) = document.problems
    assert problem.where == "pages 2-2" and "at most 1" in problem.reason


# ---- bad input: the job fails with the document's name and the reason -----------------------


BAD_INPUTS: list[tuple[str, Callable[[Seeded], bytes], str, str]] = [
    ("encrypted", lambda s: encrypted_pdf(s.text_pdf), "application/pdf",
     "the PDF is encrypted (password protected)"),
    ("truncated", lambda s: s.text_pdf[: len(s.text_pdf) // 2], "application/pdf",
     "the PDF is truncated"),
    ("corrupt", lambda s: b"%PDF-1.4\n" + bytes(range(256)) * 8 + b"\n%%EOF\n", "application/pdf",
     "the PDF is corrupt"),
    ("no pages", lambda s: blank_pdf(), "application/pdf", "the PDF has no pages"),
    ("html", lambda s: b"<!DOCTYPE html><html><body>Session expired</body></html>",
     "application/pdf", "(declared application/pdf) is an HTML page, not a PDF or image"),
    ("empty", lambda s: b"", "application/pdf", "the attachment is empty"),
    ("bomb in a PNG", lambda s: png_header(8000, 8000), "image/png",
     "8000x8000 pixels, over the 60000000-pixel limit"),
    ("bomb Pillow refuses", lambda s: png_header(20000, 20000), "image/png",
     "too large to open safely"),
    ("bomb Pillow warns about", lambda s: png_header(10000, 10000), "image/png",
     "too large to open safely"),
    ("bomb in a PDF", lambda s: pdf_with_image(30000, 30000), "application/pdf",
     "holds a 30000x30000 image, over the 60000000-pixel limit"),
    ("page too large", lambda s: blank_pdf((14400, 14400)), "application/pdf",
     "page 1 is 200x200 inches, too large to render"),
    ("truncated PNG", lambda s: s.photo_png[: len(s.photo_png) // 3], "image/png",
     "cannot be decoded"),
]


@pytest.mark.parametrize(("data", "content_type", "reason"),
                         [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS])
def test_bad_documents_fail_with_their_name_and_reason(
        data: Callable[[Seeded], bytes], content_type: str, reason: str, seeded: Seeded) -> None:
    resource = document_reference(data(seeded), content_type, resource_id="bad-7")
    pipeline = DocumentsPipeline(DocumentsOptions(engine="layout"))
    with pytest.raises(InputError) as raised:
        pipeline(offline_context(resource))
    assert raised.value.source == "DocumentReference/bad-7 content[0]"
    assert reason in raised.value.reason
    assert str(raised.value).startswith("DocumentReference/bad-7 content[0]: ")


def test_an_owner_password_alone_does_not_stop_reading(seeded: Seeded) -> None:
    document = read_pages(encrypted_pdf(seeded.text_pdf, needs_password=False), "pdf", source="x",
                          limits=LIMITS)
    assert [p.origin for p in document.pages] == ["text-layer", "text-layer"]


# ---- which attachment, which resources --------------------------------------------------------


def test_the_first_pdf_or_image_attachment_is_chosen() -> None:
    report = {"resourceType": "DiagnosticReport", "id": "r1", "presentedForm": [
        {"contentType": "text/plain", "data": "eA=="},
        {"contentType": "application/pdf; charset=binary", "url": "Binary/2"}]}
    chosen = select_attachment(report, source="DiagnosticReport/r1")
    assert (chosen.where, chosen.declared_type) == ("presentedForm[1]", "application/pdf")
    untyped = {"resourceType": "DocumentReference", "id": "d",
               "content": [{"attachment": {"contentType": "text/html", "data": "eA=="}},
                           {"attachment": {"url": "Binary/3"}}]}
    assert select_attachment(untyped, source="x").where == "content[1]"
    with pytest.raises(InputError, match="no PDF or image attachment to read \\(has only text/html"):
        select_attachment({"resourceType": "DocumentReference", "id": "d", "content": [
            {"attachment": {"contentType": "text/html", "data": "eA=="}}]}, source="x")


def bundle(*resources: dict[str, Any]) -> Reply:
    return Reply(body=json.dumps({"resourceType": "Bundle", "type": "searchset", "entry": [
        {"resource": r, "search": {"mode": "match"}} for r in resources]}).encode())


def test_find_sources_keeps_documents_and_skips_ai_output_and_other_media() -> None:
    pdf = {"contentType": "application/pdf", "url": "Binary/1"}
    docs: list[dict[str, Any]] = [
        {"resourceType": "DocumentReference", "id": "lab", "status": "current",
         "content": [{"attachment": pdf}]},
        {"resourceType": "DocumentReference", "id": "ours", "status": "current",
         "meta": {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                                "code": "AIAST"}]},
         "content": [{"attachment": pdf}]},
        {"resourceType": "DocumentReference", "id": "audio", "status": "current",
         "content": [{"attachment": {"contentType": "audio/flac", "url": "Binary/2"}}]},
        {"resourceType": "DocumentReference", "id": "wrong", "status": "entered-in-error",
         "content": [{"attachment": pdf}]},
    ]
    reports: list[dict[str, Any]] = [
        {"resourceType": "DiagnosticReport", "id": "scan", "status": "final",
         "presentedForm": [{"contentType": "image/tiff", "url": "Binary/4"}]},
        {"resourceType": "DiagnosticReport", "id": "coded-only", "status": "final"}]

    def answer(request: requests.PreparedRequest) -> Reply:
        assert "subject=Patient%2F42" in (request.url or "")
        return bundle(*(docs if "/DocumentReference" in (request.url or "") else reports))

    client = FhirClient("http://fhir.test/fhir", session=session_with(ScriptedAdapter(answer)))
    assert [(r["resourceType"], r["id"]) for r in find_sources(client, "42")] == [
        ("DocumentReference", "lab"), ("DiagnosticReport", "scan")]
