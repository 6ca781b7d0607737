"""Print on an OCR'd line that Tesseract's page reading skipped: a lone "8" in a result column,
a "%" in a unit column (sparse-text mode drops short, isolated marks). Each stretch of ink on a
line that no word covers, the size of text, is cut out and read alone twice, at two sizes; only
what both readings agree on becomes a word, with the second reading as its reread, so the
precision gate treats it like any other OCR'd number (confidence, plausibility, the row's name
and unit around it).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .number_reread import reread_scored

Pixels = tuple[int, int, int, int]  # left, top, width, height

# A stretch is text-sized: ink at least this share of the line's height tall, at most this many
# line heights wide (a rule or a logo is not a cell), split from its neighbours by a gap of this
# share of the height (the space between words).
_MIN_TALL = 0.5
_MAX_WIDE = 5.0
_GAP = 0.6
_PAD = 2  # pixels around a word's box counted as the word's own
_SECOND_SCALE = 3.0  # the second reading's enlargement (the first is number_reread's)


@dataclass(frozen=True)
class UnreadWord:
    text: str
    box: Pixels  # in the cleaned image
    confidence: float
    again: str  # the second reading


def unread_words(image: Image.Image, boxes: Sequence[Pixels], *,
                 timeout: float) -> list[UnreadWord]:
    """Words on the lines of `boxes` (the page reading's words, cleaned-image pixels) that the
    page reading missed, read the same twice."""
    ink = np.asarray(image) < 128
    covered = np.zeros_like(ink)
    for left, top, width, height in boxes:
        covered[max(top - _PAD, 0):top + height + _PAD, max(left - _PAD, 0):left + width + _PAD] \
            = True
    found: list[Pixels] = []
    for top, bottom in _line_bands(boxes):
        height = bottom - top
        band = ink[top:bottom] & ~covered[top:bottom]
        # Ink running out of the band at both edges is a rule or the next line, not a cell.
        for start, end in _runs(np.atleast_1d(band.any(axis=0)), round(_GAP * height)):
            piece = band[:, start:end]
            rows = np.flatnonzero(piece.any(axis=1))
            first, last = int(rows[0]), int(rows[-1]) + 1
            if (last - first) < _MIN_TALL * height or (end - start) > _MAX_WIDE * height or \
                    (first == 0 and last == height):
                continue
            found.append((start, top + first, end - start, last - first))
    if not found:
        return []
    first_reading = reread_scored(image, found, timeout=timeout)
    second_reading = reread_scored(image, found, timeout=timeout, scale=_SECOND_SCALE)
    return [UnreadWord(text, box, confidence, again)
            for box, (text, confidence), (again, _) in zip(found, first_reading,
                                                           second_reading, strict=True)
            if text and text == again and confidence is not None]


def _line_bands(boxes: Sequence[Pixels]) -> list[tuple[int, int]]:
    """The vertical extent of each line of word boxes: boxes whose centres lie within half the
    typical word height of each other."""
    if not boxes:
        return []
    typical = statistics.median(h for _, _, _, h in boxes)
    ordered = sorted(boxes, key=lambda b: b[1] + b[3] / 2)
    bands: list[list[Pixels]] = [[ordered[0]]]
    for box in ordered[1:]:
        last = bands[-1]
        centre = statistics.median(b[1] + b[3] / 2 for b in last)
        if abs(box[1] + box[3] / 2 - centre) <= typical / 2:
            last.append(box)
        else:
            bands.append([box])
    out = []
    for group in bands:
        height = statistics.median(b[3] for b in group)
        centre = statistics.median(b[1] + b[3] / 2 for b in group)
        out.append((max(round(centre - 0.6 * height), 0), round(centre + 0.6 * height)))
    return out


def _runs(columns: np.ndarray, gap: int) -> list[tuple[int, int]]:
    """Column ranges of ink, joined across gaps narrower than `gap`."""
    inked = np.flatnonzero(columns)
    if inked.size == 0:
        return []
    runs: list[tuple[int, int]] = []
    start = previous = int(inked[0])
    for x in inked[1:].tolist():
        if x - previous > max(gap, 1):
            runs.append((start, previous + 1))
            start = x
        previous = x
    runs.append((start, previous + 1))
    return runs
