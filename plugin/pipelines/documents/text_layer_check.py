"""Is a PDF page's text layer the whole page? Measured, not guessed: the page is rendered small
and the ink that no text-layer word covers is counted. A page whose printed text is partly an
image (a pasted scan, text drawn as outlines) has a text layer that tells only part of it, and is
read by OCR instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .pages import PageText

CHECK_DPI = 100  # enough to see text as ink; the page is never read at this size
INK_LEVEL = 140  # grey levels below this are ink
# The share of a page's ink that may lie outside every text-layer word before the layer counts
# as partial. Measured: the text-layer reports in the tests leave 0-6% uncovered (rules, logos,
# underlines); a page with a third of its rows pasted as a picture leaves over 30%.
MAX_UNCOVERED = 0.2
_RULE = 0.25  # a row or column of pixels this much ink is a ruled line, not text
_PAD_PT = 1.5  # slack around each word box, in PDF points


@dataclass(frozen=True)
class Coverage:
    uncovered: float  # the share of the page's ink outside every text-layer word (0..1)

    @property
    def partial(self) -> bool:
        return self.uncovered > MAX_UNCOVERED


def text_coverage(page: PageText, rendered: Image.Image, dpi: float) -> Coverage:
    """How much of the page's ink (in `rendered`, the page at `dpi`) the text layer accounts
    for. Ruled lines and filled bars are left out of both sides of the count."""
    ink = np.asarray(rendered.convert("L")) < INK_LEVEL
    if not ink.any():
        return Coverage(0.0)
    height, width = ink.shape
    ink = ink.copy()
    ink[ink.mean(axis=1) > _RULE, :] = False
    ink[:, ink.mean(axis=0) > _RULE] = False
    covered = np.zeros_like(ink)
    scale = dpi / 72
    for word in page.words:
        if word.box is None:
            continue
        x0 = max(0, int((word.box.x0 - _PAD_PT) * scale))
        y0 = max(0, int((word.box.y0 - _PAD_PT) * scale))
        x1 = min(width, int((word.box.x1 + _PAD_PT) * scale) + 1)
        y1 = min(height, int((word.box.y1 + _PAD_PT) * scale) + 1)
        covered[y0:y1, x0:x1] = True
    total = int(ink.sum())
    if total == 0:
        return Coverage(0.0)
    return Coverage(round(float((ink & ~covered).sum()) / total, 4))
