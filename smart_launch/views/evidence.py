"""Evidence made visible: a document page rendered to PNG with the region a value was read from
highlighted (the whole page, or a crop around the region), and a source's audio for the
transcript player. Sources are fetched with the user's own FHIR client; nothing here logs or
names patient data."""

from __future__ import annotations

import io
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from PIL import Image, ImageDraw

from plugin.errors import InputError
from plugin.fhir import FhirClient
from plugin.fhir.attachments import resolve_attachment
from plugin.pipelines.documents.image_files import image_pages
from plugin.pipelines.documents.inputs import select_attachment, sniff_kind
from plugin.pipelines.documents.pdf_text import PdfFile
from plugin.pipelines.speech.inputs import audio_attachment
from plugin.results import Box

Resource = dict[str, Any]
View = Literal["page", "crop"]
PAGE_DPI = 110.0  # enough to read a lab report on screen, small enough to send quickly
MAX_PAGE_PIXELS = 60_000_000
MAX_WIDTH = 1100
HIGHLIGHT = (255, 214, 0, 90)
OUTLINE = (214, 40, 40, 255)
T = TypeVar("T")


class TtlCache:
    """A small in-memory cache whose entries expire after `ttl_s`: rendered evidence is kept
    briefly so a page's images load fast, and patient data does not linger in memory."""

    def __init__(self, *, ttl_s: float = 120.0, max_entries: int = 32,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s, self.max_entries, self.clock = ttl_s, max_entries, clock
        self._entries: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_make(self, key: Hashable, make: Callable[[], T]) -> T:
        now = self.clock()
        with self._lock:
            for stale in [k for k, (at, _) in self._entries.items() if now - at > self.ttl_s]:
                del self._entries[stale]
            if key in self._entries:
                self._entries.move_to_end(key)
                value: T = self._entries[key][1]
                return value
        value = make()
        with self._lock:
            self._entries[key] = (now, value)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(frozen=True)
class SourceBytes:
    data: bytes
    content_type: str


def document_bytes(client: FhirClient, source: Resource, *,
                   allowed_hosts: tuple[str, ...] = ()) -> SourceBytes:
    """The PDF or image a documents result was read from (the attachment the pipeline reads)."""
    name = f"{source.get('resourceType')}/{source.get('id')}"
    selected = select_attachment(source, source=name)
    data = resolve_attachment(client, selected.attachment, source=f"{name} {selected.where}",
                              allowed_hosts=allowed_hosts)
    return SourceBytes(data, selected.declared_type or "application/octet-stream")


def audio_bytes(client: FhirClient, source: Resource, *,
                allowed_hosts: tuple[str, ...] = ()) -> SourceBytes:
    """The recording a transcript was made from."""
    attachment, where = audio_attachment(source)
    data = resolve_attachment(client, attachment, source=where, allowed_hosts=allowed_hosts)
    content_type = str(attachment.get("contentType") or "application/octet-stream").split(";")[0]
    return SourceBytes(data, content_type)


def page_png(document: SourceBytes, *, page: int, boxes: tuple[Box, ...], view: View,
             source: str) -> bytes:
    """Page `page` (1-based) of the document as PNG with each box highlighted; `view="crop"`
    keeps a band of the page around the boxes (the printed row and its neighbours)."""
    image, scale = _page_image(document, page, source)
    image = image.convert("RGB")
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    pixel_boxes = [(b.x0 * scale, b.y0 * scale, b.x1 * scale, b.y1 * scale) for b in boxes]
    pad = max(2.0, 2.0 * scale)
    for x0, y0, x1, y1 in pixel_boxes:
        draw.rectangle((x0 - pad, y0 - pad, x1 + pad, y1 + pad), fill=HIGHLIGHT, outline=OUTLINE,
                       width=max(2, round(scale * 1.5)))
    image = Image.alpha_composite(image.convert("RGBA"), overlay).convert("RGB")
    if view == "crop" and pixel_boxes:
        top = min(b[1] for b in pixel_boxes)
        bottom = max(b[3] for b in pixel_boxes)
        band = max(60.0, 3 * (bottom - top))
        image = image.crop((0, max(0, int(top - band)), image.width,
                            min(image.height, int(bottom + band))))
    if image.width > MAX_WIDTH:
        image = image.resize((MAX_WIDTH, max(1, round(image.height * MAX_WIDTH / image.width))))
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _page_image(document: SourceBytes, page: int, source: str) -> tuple[Image.Image, float]:
    """The page image and the factor from evidence-box units to its pixels (boxes are PDF
    points for a PDF, stored pixels for an image)."""
    kind = sniff_kind(document.data, source=source, declared_type=document.content_type)
    if page < 1:
        raise InputError(source, f"there is no page {page}")
    if kind == "pdf":
        with PdfFile(document.data, source=source, max_page_pixels=MAX_PAGE_PIXELS) as pdf:
            if page > pdf.page_count:
                raise InputError(source, f"there is no page {page} (the PDF has {pdf.page_count})")
            image, dpi = pdf.render(page - 1, PAGE_DPI, grayscale=False)
        return image, dpi / 72
    frames, count = image_pages(document.data, source=source, max_pages=page,
                                max_page_pixels=MAX_PAGE_PIXELS)
    if page > len(frames):
        raise InputError(source, f"there is no page {page} (the image has {count})")
    return frames[page - 1], 1.0
