"""Words with their boxes, from any source (a PDF's text layer, Tesseract), laid out as a page:
lines found by clustering the words' vertical centres, so cells drawn in any order, one text
object per cell or per line, come out as the rows a reader sees.

Each word has two boxes: `box` where it was printed (page pixels, for evidence) and `grid`
where it sits once the page is straightened (OCR'd scans are skewed; geometry needs straight
rows and columns). For a text layer the two are the same.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from plugin.results import Box

from .pages import Origin, PageText, Word

# A word joins a line when its centre is within this fraction of the line's typical word height
# of the line's centre: half a line keeps neighbouring rows apart at any usual line spacing.
SAME_LINE = 0.5
MAX_SLOPE = 0.07  # about 4°: more than this is not skew but text set at an angle
LINE_WINDOW = 25  # the last words of a line whose median centre and height place the next word
SLOPE_SAMPLE = 2000  # words the page slope is measured from (evenly spread)
SLOPE_CANDIDATES = 400  # words after each, in x order, searched for its neighbour on the row


@dataclass(frozen=True)
class PageWord:
    text: str
    box: Box  # where it was printed, in page pixels
    grid: Box | None = None  # in the straightened page; None: same as `box`
    confidence: float | None = None  # OCR's, 0..1; None for a text layer
    reread: str | None = None  # OCR's second, independent reading of a number (number_reread)
    # Ink printed right beside a number that OCR read as no word (number_reread.unread_ink): a
    # decimal point and digit dropped from "13.1"; the number is not taken as read.
    unread_ink: bool = False

    @property
    def frame(self) -> Box:
        return self.grid or self.box


def group_lines(words: Sequence[PageWord]) -> list[list[PageWord]]:
    """The words in lines, top to bottom, each line left to right. A page printed or scanned a
    little askew is measured first (the median slope between neighbouring words) and its rows
    are followed along that slope."""
    slope = page_slope(words)

    def level(word: PageWord) -> float:
        return _centre(word.frame) - slope * (word.frame.x0 + word.frame.x1) / 2

    ordered = sorted(words, key=lambda w: (level(w), w.frame.x0))
    lines: list[list[PageWord]] = []
    centres: list[list[float]] = []
    heights: list[list[float]] = []
    for word in ordered:
        centre, height = level(word), word.frame.y1 - word.frame.y0
        # The nearest of the last few lines, so a small word just below a tall one still joins
        # its own row.
        best, gap = None, 0.0
        for k in range(max(0, len(lines) - 3), len(lines)):
            # The line's latest words speak for it: a bounded window keeps a line of 100,000
            # words (a hostile page) from costing a median over all of them per word.
            typical = max(statistics.median(heights[k][-LINE_WINDOW:]), 1e-3)
            distance = abs(centre - statistics.median(centres[k][-LINE_WINDOW:]))
            if distance <= SAME_LINE * max(typical, min(height, 2 * typical)) and \
                    (best is None or distance < gap):
                best, gap = k, distance
        if best is None:
            lines.append([word])
            centres.append([centre])
            heights.append([height])
        else:
            lines[best].append(word)
            centres[best].append(centre)
            heights[best].append(height)
    for line in lines:
        line.sort(key=lambda w: w.frame.x0)
    lines.sort(key=lambda line: statistics.median(level(w) for w in line))
    return lines


def page_slope(words: Sequence[PageWord]) -> float:
    """How far the text runs down per unit to the right: the median over each word and its
    nearest neighbour to the right on about the same row; 0 when too few pairs show it."""
    by_x = sorted(words, key=lambda w: w.frame.x0)
    slopes: list[float] = []
    # A bounded sample of words, each looking at a bounded number of candidates: linear in the
    # page's words whatever they are (a page of one word repeated 100,000 times included).
    step = max(1, len(by_x) // SLOPE_SAMPLE)
    for i in range(0, len(by_x), step):
        word = by_x[i]
        box, height = word.frame, word.frame.y1 - word.frame.y0
        for other in by_x[i + 1:i + 1 + SLOPE_CANDIDATES]:
            gap = other.frame.x0 - box.x1
            if gap > 40 * max(height, 1.0):
                break
            rise = _centre(other.frame) - _centre(box)
            if gap >= 0 and abs(rise) < 0.8 * height:
                slopes.append(rise / max(_mid(other.frame) - _mid(box), 1e-3))
                break
    if len(slopes) < 5:
        return 0.0
    slope = statistics.median(slopes)
    return slope if abs(slope) <= MAX_SLOPE else 0.0


def lay_out(number: int, words: Sequence[PageWord], *, origin: Origin, width: float,
            height: float, note: str) -> PageText:
    """A page whose text is its words line by line (one space between words, one newline
    between lines), every word keeping its boxes and confidence."""
    parts: list[str] = []
    placed: list[Word] = []
    length = 0
    for line in group_lines(words):
        if parts:
            parts.append("\n")
            length += 1
        for i, word in enumerate(line):
            if i:
                parts.append(" ")
                length += 1
            placed.append(Word(length, length + len(word.text), word.box, word.confidence,
                               word.grid, word.reread, word.unread_ink))
            parts.append(word.text)
            length += len(word.text)
    return PageText(number=number, text="".join(parts), origin=origin, words=tuple(placed),
                    width=round(width, 2), height=round(height, 2), note=note)


def _mid(box: Box) -> float:
    return (box.x0 + box.x1) / 2


def _centre(box: Box) -> float:
    return (box.y0 + box.y1) / 2
