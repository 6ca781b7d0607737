"""A second, independent OCR reading of every number on a page: each number's box is cut out of
the cleaned page, the cut-outs are stacked one per line on a blank strip and Tesseract reads the
strip as a block of text (`--psm 6`), away from the table around them.

Tesseract misreads a "1" as a "4" with high confidence on a phone photo ("10.1" -> "40.1", "1.12" ->
"1.412"); read again out of its context, enlarged, the same print comes out right, so a number
both readings agree on is kept and one they disagree on is withheld (the precision gate). One
extra Tesseract call per page, on a small grid of cut-outs.
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
    found: list[list[tuple[int, str]]] = [[] for _ in crops]
    for i, raw in enumerate(data["text"]):
        text = str(raw).strip()
        if not text:
            continue
        left, top = int(str(data["left"][i])) - _MARGIN, int(str(data["top"][i])) - _MARGIN
        middle = top + int(str(data["height"][i])) / 2
        k = int(middle // slot) * per_line + int(max(left, 0) // column)
        if 0 <= k < len(crops):
            found[k].append((left, text))
    return ["".join(text for _, text in sorted(words)) for words in found]


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
