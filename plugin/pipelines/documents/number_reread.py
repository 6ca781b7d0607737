"""A second, independent OCR reading of every number on a page: each number's box is cut out of
the cleaned page, the cut-outs are stacked one per line on a blank strip and Tesseract reads the
strip as a block of text (`--psm 6`), away from the table around them.

Tesseract misreads a "1" as a "4" with high confidence on a phone photo ("10.1" -> "40.1", "1.12" ->
"1.412"); read again out of its context, enlarged, the same print comes out right, so a number
both readings agree on is kept and one they disagree on is withheld (the precision gate). One
extra Tesseract call per page, on a small grid of cut-outs.

Where the readings differ by a slip the ink can settle (a dropped decimal point, a "1" read as
"4", a "5" read as "§"), `mended_number` cuts the number's ink into glyphs and takes the cut-out's
reading only when the glyphs show it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pytesseract
from PIL import Image

REREAD_CONFIG = "--oem 1 --psm 6 -c tessedit_do_invert=0"
# The cut-outs are enlarged: measured on the corpus's scans and photos, read again at twice the
# size they caught every "1"-read-as-"4" slip seen (10.1 -> 40.1, 1 -> 4, 1.12 -> 1.412); at the
# page's own size they missed one.
REREAD_SCALE = 2.0
_PAD = 4  # pixels kept around each number's box
_MARGIN = 20
_NUMBERISH = re.compile(r"\d")
_MAX_TOKEN = 12  # longer tokens are not single values
_PER_LINE = 4  # cut-outs side by side on one line of the strip


def numeric_boxes(texts: Sequence[str], boxes: Sequence[tuple[int, int, int, int]]
                  ) -> list[int]:
    """Indexes of the tokens worth a second reading: short tokens with a digit."""
    return [i for i, text in enumerate(texts)
            if _NUMBERISH.search(text) and len(text) <= _MAX_TOKEN and boxes[i][2] > 0]


def reread(image: Image.Image, boxes: Sequence[tuple[int, int, int, int]], *,
           timeout: float, scale: float = REREAD_SCALE) -> list[str]:
    """The text Tesseract reads in each box (left, top, width, height) of `image` when the
    boxes are cut out (enlarged `scale` times) and stacked, one per line; "" where it reads
    nothing."""
    return [text for text, _ in reread_scored(image, boxes, timeout=timeout, scale=scale)]


def reread_scored(image: Image.Image, boxes: Sequence[tuple[int, int, int, int]], *,
                  timeout: float, scale: float = REREAD_SCALE) -> list[tuple[str, float | None]]:
    """`reread`, with Tesseract's lowest word confidence (0..1) for each box (None: nothing
    read)."""
    if not boxes:
        return []
    crops = [image.crop((left - _PAD, top - _PAD, left + width + _PAD, top + height + _PAD))
             for left, top, width, height in boxes]
    if scale != 1.0:
        crops = [c.resize((round(c.width * scale), round(c.height * scale)),
                          Image.Resampling.BICUBIC) for c in crops]
    # A grid of cut-outs, a blank line and a wide gap between them: fewer, longer lines are
    # cheaper for Tesseract than one cut-out per line.
    slot = max(c.height for c in crops) * 2
    column = max(c.width for c in crops) + slot * 2
    per_line = max(1, min(_PER_LINE, len(crops)))
    lines = -(-len(crops) // per_line)
    strip = Image.new("L", (column * per_line + 2 * _MARGIN, slot * lines + 2 * _MARGIN), 255)
    for k, crop in enumerate(crops):
        strip.paste(crop, (_MARGIN + (k % per_line) * column, _MARGIN + (k // per_line) * slot))
    data = pytesseract.image_to_data(strip, config=REREAD_CONFIG, timeout=timeout,
                                     output_type=pytesseract.Output.DICT)
    found: list[list[tuple[int, str, float]]] = [[] for _ in crops]
    for i, raw in enumerate(data["text"]):
        text = str(raw).strip()
        if not text:
            continue
        left, top = int(str(data["left"][i])) - _MARGIN, int(str(data["top"][i])) - _MARGIN
        middle = top + int(str(data["height"][i])) / 2
        k = int(middle // slot) * per_line + int(max(left, 0) // column)
        if 0 <= k < len(crops):
            found[k].append((left, text, float(str(data["conf"][i])) / 100))
    return [("".join(text for _, text, _ in sorted(words)),
             min((c for _, _, c in words), default=None)) for words in found]


# How far beside a number's box (a fraction of its height) ink that no word covers makes the
# number suspect, and how much ink it takes (a fraction of the box's height squared: a decimal
# point at OCR size is about 3x3 pixels of a 20-pixel digit, 2%; scan noise left after
# binarising is single pixels).
INK_REACH = 0.6
INK_SHARE = 0.015


def unread_ink(image: Image.Image, box: tuple[int, int, int, int],
               others: Sequence[tuple[int, int, int, int]]) -> bool:
    """Whether ink lies just left or right of `box` (left, top, width, height) in the binarised
    `image` outside every word box OCR read (`others`): part of the number (Tesseract dropped the
    ".1" of a monospaced "13.1 L") may not have been read."""
    left, top, width, height = box
    reach = max(2, round(INK_REACH * height))
    ink = np.asarray(image.crop((left - reach, top, left + width + reach, top + height))) < 128
    covered = np.zeros_like(ink)
    for o_left, o_top, o_width, o_height in others:
        x0, y0 = max(o_left - (left - reach), 0), max(o_top - top, 0)
        x1, y1 = o_left + o_width - (left - reach), o_top + o_height - top
        if x1 > 0 and y1 > 0:
            covered[y0:max(y1, 0), x0:max(x1, 0)] = True
    sides = np.zeros_like(ink)
    sides[:, :reach] = True
    sides[:, reach + width:] = True
    # The top fifth is left out (the line above, a ruled line's remnant); the bottom is where a
    # decimal point sits.
    band = slice(height // 5, height)
    return int((ink & sides & ~covered)[band].sum()) >= max(3, INK_SHARE * height * height)


# A decimal point's ink, as a fraction of the number's box height: no taller or wider than this,
# its top below this, its bottom on the baseline (at or below this).
_POINT_SIZE = 0.35
_POINT_TOP = 0.55
_POINT_BOTTOM = 0.75
_DIGIT_HEIGHT = 0.5  # a digit's ink spans at least this much of the box's height
_SECTION_FOR_5 = re.compile(r"§(?=[\d.,])|(?<=\d)§")  # "§.2" for "5.2"


def glyphs(image: Image.Image, box: tuple[int, int, int, int]) -> list[np.ndarray]:
    """The ink inside `box` (left, top, width, height) of the binarised `image`, cut into runs
    of inked columns, left to right: one array (the box's full height) per glyph where the
    glyphs are printed apart."""
    left, top, width, height = box
    ink = np.asarray(image.crop((left, top, left + width, top + height))) < 128
    found: list[np.ndarray] = []
    start: int | None = None
    columns = [bool(c) for c in np.atleast_1d(ink.any(axis=0))]
    for x, inked in enumerate([*columns, False]):
        if inked and start is None:
            start = x
        elif not inked and start is not None:
            found.append(ink[:, start:x])
            start = None
    return found


def glyph_shapes(image: Image.Image, box: tuple[int, int, int, int]) -> str:
    """One letter per glyph of `glyphs`: "d" a mark as tall as a digit, "p" a mark the size and
    place of a decimal point (small, on the baseline), "?" anything else. "7.1" printed with
    clear gaps is "dpd"; touching glyphs or specks give other strings."""
    return "".join(_shape(glyph) for glyph in glyphs(image, box))


def _shape(glyph: np.ndarray) -> str:
    height = glyph.shape[0]
    rows = np.flatnonzero(glyph.any(axis=1))
    first, last = int(rows[0]), int(rows[-1]) + 1
    tall, wide = (last - first) / height, glyph.shape[1] / height
    if tall >= _DIGIT_HEIGHT:
        return "d"
    if tall <= _POINT_SIZE and wide <= _POINT_SIZE and first >= _POINT_TOP * height \
            and last >= _POINT_BOTTOM * height:
        return "p"
    return "?"


# A "1" is a stem: its ink no wider than this (a fraction of its height) anywhere between these
# heights (below its top flag, above a serif foot), and upright within the drift. A "4" is read
# there across its bar, about 0.6 of its height. Measured on digits drawn in the 38 fonts here at
# 16-42 px: every "1" passes, no "0", "2"-"6", "8", "9" does, 4 of 152 italic "7"s do.
_STEM_WIDTH = 0.28
_STEM_BAND = (0.35, 0.8)
_STEM_DRIFT = 0.12


def _is_one(glyph: np.ndarray) -> bool:
    rows = np.flatnonzero(glyph.any(axis=1))
    first, last = int(rows[0]), int(rows[-1]) + 1
    height = last - first
    band = glyph[first + round(_STEM_BAND[0] * height):first + round(_STEM_BAND[1] * height)]
    if height < _DIGIT_HEIGHT * glyph.shape[0] or not band.any():
        return False
    spans = [(int(np.flatnonzero(r)[0]), int(np.flatnonzero(r)[-1]) + 1) for r in band if r.any()]
    centres = [(a + b) / 2 for a, b in spans]
    # Upright: a "7"'s stroke is as thin but runs across the band.
    return max(b - a for a, b in spans) <= _STEM_WIDTH * height and \
        max(centres) - min(centres) <= _STEM_DRIFT * height


def ones_and_points(printed: str, again: str, image: Image.Image,
                    box: tuple[int, int, int, int]) -> str | None:
    """The cut-out's reading (`again`) where the page's reading (`printed`) differs from it only
    in the glyphs Tesseract gets wrong on photos, "1"s (read "4", or lost in a letter: "7A" for
    "7.1") and decimal points, and the ink proves each of those: one glyph per character of
    `again`, an upright stem (not a "4"'s bar) at every "1", a point-sized mark on the baseline
    at every point. The other digits must be the same, in the same order, in both readings."""
    if not re.fullmatch(r"\d+(?:[.,]\d+)?", again) or again == printed:
        return None
    if not _same_but_ones(re.sub(r"[^\d]", "", printed), re.sub(r"[^\d]", "", again)):
        return None
    marks = glyphs(image, box)
    if "".join(_shape(m) for m in marks) != "".join("d" if c.isdigit() else "p" for c in again):
        return None
    return again if all(_is_one(m) for m, c in zip(marks, again, strict=True) if c == "1") \
        else None


def _same_but_ones(printed: str, again: str) -> bool:
    """Whether the two digit strings are the same once `again`'s "1"s are left out and some of
    `printed`'s "1"s and "4"s (the "1"s it read as "4") are: every other digit of each is the
    other's. A "4" `again` reads must be a "4" on the page too."""
    rest = again.replace("1", "")
    i = 0
    for digit in printed:
        if i < len(rest) and digit == rest[i]:
            i += 1
        elif digit not in "14":
            return False
    return i == len(rest)


def mended_number(printed: str, again: str, image: Image.Image,
                  box: tuple[int, int, int, int]) -> str | None:
    """What the page printed where OCR's page reading (`printed`) made a slip the cut-out's
    reading (`again`) does not: a dropped decimal point (`dropped_point`), a "1" read as "4"
    or lost in a letter where the ink is a stem (`ones_and_points`) or a "5" read as "§"
    ("§.2", Tesseract's slip on scans and photos; nothing else prints "§" against a digit).
    None when neither applies: the precision gate then compares the two readings as they are."""
    if _SECTION_FOR_5.search(printed) and "§" not in again and \
            _SECTION_FOR_5.sub("5", printed) == again:
        return again
    return dropped_point(printed, again, image, box) or \
        ones_and_points(printed, again, image, box)


def dropped_point(printed: str, again: str, image: Image.Image,
                  box: tuple[int, int, int, int]) -> str | None:
    """The number with the decimal point OCR dropped ("71" for a printed "7.1"), or None. Only
    when the cut-out's reading (`again`) is the page's reading (`printed`) with one point or
    comma put between its digits, and the ink in the box shows exactly that: a digit-sized mark
    for every digit and a point-sized one on the baseline where the point goes. Two readings of
    different kinds agree then; anything else (a digit read differently, a speck, touching
    glyphs) is left for the precision gate to withhold."""
    if not re.fullmatch(r"\d{2,6}", printed):
        return None
    match = re.fullmatch(r"(\d+)([.,])(\d+)", again)
    if match is None or match[1] + match[3] != printed:
        return None
    wanted = "d" * len(match[1]) + "p" + "d" * len(match[3])
    return again if glyph_shapes(image, box) == wanted else None
