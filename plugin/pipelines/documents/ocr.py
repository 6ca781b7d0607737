"""Tesseract OCR of page images (pytesseract), pages in parallel, keeping every word's box.

Each page is cleaned first (scan_cleanup), read by Tesseract, and its words laid out in lines by
the same geometry as a text layer (word_boxes), with boxes in the page's own pixels.

Tesseract's OpenMP threads thrash on small machines (REFERENCE.md: 6.2 s a page with default
settings on 2 cores, 0.54 s with OMP_THREAD_LIMIT=1), so each tesseract process gets one thread
and pages run as parallel processes instead.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial

import pytesseract
from PIL import Image

from plugin.budget import MemoryBudget
from plugin.errors import ConfigError
from plugin.results import Box

from .number_reread import mended_number, numeric_boxes, reread, unread_ink
from .pages import PageText
from .scan_cleanup import CleanPage, clean_page
from .unread_cells import unread_words
from .word_boxes import PageWord, lay_out

# Sparse text (--psm 11): the table geometry orders the words itself, and tables read far better
# than as one block. Inverted (white on black) text detection is off: lab reports do not print
# it, and it takes about half of Tesseract's time (bench/documents.py).
TESSERACT_CONFIG = "--oem 1 --psm 11 -c tessedit_do_invert=0"
PAGE_TIMEOUT_S = 180


@dataclass(frozen=True)
class OcrRequest:
    """One page image to read. `page_scale` converts image pixels to page pixels (72/dpi for a
    rendered PDF page, 1 for an image file); `dpi` is told to Tesseract when known."""

    number: int
    image: Image.Image
    page_scale: float = 1.0
    dpi: float | None = None


@dataclass(frozen=True)
class OcrFailure:
    number: int
    reason: str


def ocr_pages(requests: Sequence[OcrRequest], *, workers: int | None = None,
              budget: MemoryBudget | None = None) -> list[PageText | OcrFailure]:
    """Read every page, `workers` at a time (default: one per CPU), in request order. The pages
    being cleaned at once share `budget`."""
    if not requests:
        return []
    _one_thread_per_tesseract()
    read = partial(_read_or_fail, budget=budget)
    count = max(1, min(len(requests), workers or os.cpu_count() or 1))
    if count == 1:
        return [read(r) for r in requests]
    # Threads are enough: each one waits on its own tesseract process.
    with ThreadPoolExecutor(count, thread_name_prefix="chartlight-ocr") as pool:
        return list(pool.map(read, requests))


def ocr_page(request: OcrRequest, budget: MemoryBudget | None = None) -> PageText:
    cleaned = clean_page(request.image, budget)
    config = TESSERACT_CONFIG
    if request.dpi:
        config += f" --dpi {round(request.dpi * cleaned.scale)}"
    try:
        data = pytesseract.image_to_data(cleaned.image, config=config, timeout=PAGE_TIMEOUT_S,
                                         output_type=pytesseract.Output.DICT)
    except pytesseract.TesseractNotFoundError:
        raise ConfigError("Tesseract OCR is not installed (Debian: apt-get install "
                          "tesseract-ocr)") from None
    words = tesseract_words(data, cleaned, request.page_scale)
    boxes = [_pixel_box(data, i) for i in _kept(data)]
    again = numeric_boxes([w.text for w in words], boxes)
    second = reread(cleaned.image, [boxes[i] for i in again], timeout=PAGE_TIMEOUT_S)
    for i, text in zip(again, second, strict=True):
        # A slip of the page's reading that the cut-out's reading and the ink undo ("71" for a
        # printed "7.1", "§.2" for "5.2"): the word is what was printed.
        printed = mended_number(words[i].text, text, cleaned.image, boxes[i]) or words[i].text
        words[i] = replace(words[i], text=printed, reread=text,
                           unread_ink=unread_ink(cleaned.image, boxes[i], boxes))
    # What the page reading skipped (a lone "8" in a cell), read alone twice the same way.
    for unread in unread_words(cleaned.image, boxes, timeout=PAGE_TIMEOUT_S):
        left, top, across, down = unread.box
        word = _page_word(unread.text, unread.confidence,
                          (left, top, left + across, top + down), cleaned, request.page_scale)
        words.append(replace(word, reread=unread.again, unread_ink=unread_ink(
            cleaned.image, unread.box, [*boxes, unread.box])))
    width, height = request.image.size
    return lay_out(request.number, words,
                   origin="ocr", width=width * request.page_scale,
                   height=height * request.page_scale, note=_describe(cleaned, request.dpi))


def tesseract_version() -> str:
    try:
        return str(pytesseract.get_tesseract_version())
    except pytesseract.TesseractNotFoundError:
        return "not installed"


def _read_or_fail(request: OcrRequest, budget: MemoryBudget | None) -> PageText | OcrFailure:
    try:
        return ocr_page(request, budget)
    except (RuntimeError, pytesseract.TesseractError) as exc:  # timeout, or tesseract crashed
        return OcrFailure(request.number, f"OCR failed: {exc}")


def tesseract_words(data: dict[str, list[object]], cleaned: CleanPage,
                    page_scale: float) -> list[PageWord]:
    """Tesseract's words with boxes in page pixels (where they were printed) and in the
    straightened page (for the table geometry)."""
    words: list[PageWord] = []
    for i in _kept(data):
        left, top = float(str(data["left"][i])), float(str(data["top"][i]))
        right = left + float(str(data["width"][i]))
        bottom = top + float(str(data["height"][i]))
        words.append(_page_word(str(data["text"][i]).strip(),
                                float(str(data["conf"][i])) / 100, (left, top, right, bottom),
                                cleaned, page_scale))
    return words


def _page_word(token: str, confidence: float, edges: tuple[float, float, float, float],
               cleaned: CleanPage, page_scale: float) -> PageWord:
    """A word read at `edges` (left, top, right, bottom) of the cleaned image, with its box in
    page pixels (where it was printed) and in the straightened page."""
    left, top, right, bottom = edges
    straight = page_scale / cleaned.scale
    x0, y0, x1, y1 = (v * page_scale for v in cleaned.original_box(left, top, right, bottom))
    return PageWord(
        token, Box(round(x0, 1), round(y0, 1), round(x1, 1), round(y1, 1)),
        Box(round(left * straight, 1), round(top * straight, 1), round(right * straight, 1),
            round(bottom * straight, 1)),
        round(confidence, 3))


def _kept(data: dict[str, list[object]]) -> list[int]:
    """Tesseract's entries that are words (not blocks, lines or empty)."""
    return [i for i, raw in enumerate(data["text"])
            if str(raw).strip() and float(str(data["conf"][i])) >= 0]


def _pixel_box(data: dict[str, list[object]], i: int) -> tuple[int, int, int, int]:
    return (int(str(data["left"][i])), int(str(data["top"][i])), int(str(data["width"][i])),
            int(str(data["height"][i])))


def _describe(cleaned: CleanPage, dpi: float | None) -> str:
    steps = [f"OCR at {round(dpi)} dpi" if dpi else "OCR"]
    if cleaned.sheet_found:
        steps.append("sheet found and flattened")
    if cleaned.skew_deg:
        steps.append(f"deskewed {cleaned.skew_deg:+.2f}°")
    return ", ".join(steps)


def _one_thread_per_tesseract() -> None:
    # pytesseract starts tesseract with this process's environment; an operator's own setting
    # wins.
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
