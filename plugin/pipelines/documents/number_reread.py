"""A second, independent OCR reading of every number on a page: each number's box is cut out of
the cleaned page, the cut-outs are stacked one per line on a blank strip and Tesseract reads the
strip as a block of text (`--psm 6`), away from the table around them.

Tesseract misreads a "1" as a "4" with high confidence on a phone photo ("10.1" -> "40.1", "1.12" ->
"1.412"); read again out of its context the same print often comes out right, so a number all
readings agree on is kept and one they disagree on is withheld (the precision gate). Two small
extra Tesseract calls per page: the cut-outs at the page's scale and enlarged twice.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pytesseract
from PIL import Image

REREAD_CONFIG = "--oem 1 --psm 6 -c tessedit_do_invert=0"
_PAD = 4  # pixels kept around each number's box
_MARGIN = 20
_NUMBERISH = re.compile(r"\d")
_MAX_TOKEN = 12  # longer tokens are not single values


def numeric_boxes(texts: Sequence[str], boxes: Sequence[tuple[int, int, int, int]]
                  ) -> list[int]:
    """Indexes of the tokens worth a second reading: short tokens with a digit."""
    return [i for i, text in enumerate(texts)
            if _NUMBERISH.search(text) and len(text) <= _MAX_TOKEN and boxes[i][2] > 0]


def reread_twice(image: Image.Image, boxes: Sequence[tuple[int, int, int, int]], *,
                 timeout: float) -> list[str]:
    """Each box read again at the page's scale and at twice it (measured: each catches slips
    the other repeats); where the two disagree the result is "?", which agrees with nothing."""
    once = reread(image, boxes, timeout=timeout)
    twice = reread(image, boxes, timeout=timeout, scale=2.0)
    return [a if a == b else "?" for a, b in zip(once, twice, strict=True)]


def reread(image: Image.Image, boxes: Sequence[tuple[int, int, int, int]], *,
           timeout: float, scale: float = 1.0) -> list[str]:
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
    slot = max(c.height for c in crops) * 2  # a blank line between cut-outs keeps them apart
    strip = Image.new("L", (max(c.width for c in crops) + 2 * _MARGIN,
                            slot * len(crops) + 2 * _MARGIN), 255)
    for k, crop in enumerate(crops):
        strip.paste(crop, (_MARGIN, _MARGIN + k * slot))
    data = pytesseract.image_to_data(strip, config=REREAD_CONFIG, timeout=timeout,
                                     output_type=pytesseract.Output.DICT)
    found: list[list[tuple[int, str]]] = [[] for _ in crops]
    for i, raw in enumerate(data["text"]):
        text = str(raw).strip()
        if not text:
            continue
        middle = int(str(data["top"][i])) + int(str(data["height"][i])) / 2 - _MARGIN
        k = int(middle // slot)
        if 0 <= k < len(crops):
            found[k].append((int(str(data["left"][i])), text))
    return ["".join(text for _, text in sorted(words)) for words in found]
