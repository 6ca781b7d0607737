"""Layouts whose text layer cannot be trusted, made from other layouts' pages: a scanner's PDF
whose invisible text layer is garbage (what a font without a ToUnicode map reads as), and a
report whose first page has its text layer while the next ones are images only.

The truth is the base layout's: the same rows on the same pages, now to be read by OCR.
"""

from __future__ import annotations

import io

import pypdf
import pypdfium2
from PIL import Image
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen.canvas import Canvas

from .cache import cached
from .model import LabLayout, TextLayer

# Glyphs read through the wrong encoding: letters shift, digits become letters, so no printed
# name or value survives into the text layer.
_GARBLE = str.maketrans(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,/%",
    "hijklmnopqrstuvwxyzabcdefgHIJKLMNOPQRSTUVWXYZABCDEFGQRSTUVWXYZq;#~")


def _pages(pdf: bytes, dpi: int) -> list[tuple[Image.Image, float, float, str]]:
    """Each page as an image, its size in points and its text."""
    document = pypdfium2.PdfDocument(pdf)
    try:
        found = []
        for index in range(len(document)):
            page = document[index]
            width, height = page.get_size()
            image = page.render(scale=dpi / 72).to_pil().convert("L")
            found.append((image, width, height, page.get_textpage().get_text_range()))
        return found
    finally:
        document.close()


def _image_page(canvas: Canvas, image: Image.Image, width: float, height: float) -> None:
    canvas.setPageSize((width, height))
    canvas.drawImage(ImageReader(image), 0, 0, width, height)


def _garbage_pdf(base: bytes) -> bytes:
    out = io.BytesIO()
    canvas = Canvas(out, invariant=1)
    for image, width, height, text in _pages(base, 200):
        _image_page(canvas, image, width, height)
        layer = canvas.beginText(40, height - 60)
        layer.setTextRenderMode(3)  # invisible, as OCR layers under a scan are
        layer.setFont("Helvetica", 9)
        for line in text.splitlines():
            layer.textLine(line.translate(_GARBLE))
        canvas.drawText(layer)
        canvas.showPage()
    canvas.save()
    return out.getvalue()


def _partial_pdf(base: bytes) -> bytes:
    """Page 1 as the base drew it; every later page replaced by its picture."""
    reader = pypdf.PdfReader(io.BytesIO(base))
    pictures = io.BytesIO()
    canvas = Canvas(pictures, invariant=1)
    for image, width, height, _ in _pages(base, 200)[1:]:
        _image_page(canvas, image, width, height)
        canvas.showPage()
    canvas.save()
    writer = pypdf.PdfWriter()
    writer.add_page(reader.pages[0])
    for page in pypdf.PdfReader(io.BytesIO(pictures.getvalue())).pages:
        writer.add_page(page)
    if reader.metadata is not None:
        writer.add_metadata(dict(reader.metadata))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def garbage_text_layer(base: LabLayout, name: str) -> LabLayout:
    garbage: TextLayer = "garbage"
    layers = tuple(garbage for _ in range(base.pages))
    return LabLayout(
        name, "reportlab",
        f"scanner PDF of {base.name}: page images under an invisible text layer of garbage "
        "(a font without ToUnicode)", base.truth, base.collected, base.date_text, base.pages,
        base.decimal_comma, layers,
        lambda: cached(f"{name}.pdf", lambda: _garbage_pdf(base.render())))


def partial_text_layer(base: LabLayout, name: str) -> LabLayout:
    text: TextLayer = "text"
    none: TextLayer = "none"
    layers = tuple(text if page == 1 else none for page in range(1, base.pages + 1))
    return LabLayout(
        name, base.producer,
        f"{base.name} with page 1's text layer and later pages as images only (a partial text "
        "layer)", base.truth, base.collected, base.date_text, base.pages, base.decimal_comma,
        layers,
        lambda: cached(f"{name}.pdf", lambda: _partial_pdf(base.render())))
