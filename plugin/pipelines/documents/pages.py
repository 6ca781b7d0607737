"""A document page as text: its characters, where each word was printed, and how it was read.

Boxes are in page pixels: for a PDF, pixels of the page at 72 dpi (PDF points) with the origin at
the top left; for an image, pixels of the image as stored. Evidence offsets index `PageText.text`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from plugin.results import Box

Origin = Literal["text-layer", "ocr"]


@dataclass(frozen=True)
class Word:
    """One word of a page's text: its character span and, when known, its box."""

    start: int
    end: int
    box: Box | None = None
    confidence: float | None = None  # OCR confidence 0..1; None for a text layer
    grid: Box | None = None  # the box in the straightened page (OCR'd scans); None: `box`
    reread: str | None = None  # OCR: a number read a second time, alone (number_reread)
    unread_ink: bool = False  # OCR: ink beside the number that no word covers (number_reread)

    @property
    def frame(self) -> Box | None:
        return self.grid or self.box


@dataclass(frozen=True)
class Line:
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class PageText:
    number: int  # 1-based
    text: str
    origin: Origin
    words: tuple[Word, ...] = ()
    width: float = 0.0  # page size in page pixels
    height: float = 0.0
    note: str = ""  # how it was read, for the summary (e.g. "OCR at 200 dpi, deskewed 1.9°")

    def lines(self) -> Iterator[Line]:
        """Each non-blank line with its span in `text`."""
        start = 0
        for raw in self.text.split("\n"):
            end = start + len(raw)
            stripped = raw.strip()
            if stripped:
                lead = len(raw) - len(raw.lstrip())
                yield Line(start + lead, start + lead + len(stripped), stripped)
            start = end + 1

    def box(self, start: int, end: int) -> Box | None:
        """The box around every word overlapping the span, or None when none has a box."""
        boxes = [w.box for w in self.words if w.box is not None and w.start < end and w.end > start]
        if not boxes:
            return None
        return Box(round(min(b.x0 for b in boxes), 1), round(min(b.y0 for b in boxes), 1),
                   round(max(b.x1 for b in boxes), 1), round(max(b.y1 for b in boxes), 1))

    def confidence(self, start: int, end: int) -> float | None:
        """The lowest OCR confidence of the words overlapping the span (None: a text layer)."""
        scores = [w.confidence for w in self.words
                  if w.confidence is not None and w.start < end and w.end > start]
        return min(scores) if scores else None
