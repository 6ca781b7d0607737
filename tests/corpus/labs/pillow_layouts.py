"""A fourth producer, held out from the reader's development: a laboratory system's plain-text
report (fixed-width columns of spaces, an upper-case title, a dashed rule under the heading), drawn
glyph by glyph by Pillow in DejaVu Sans Mono onto a 300 dpi page and saved as an image-only PDF,
the way a printout that was faxed or scanned reaches the EHR.

No text layer, no PDF table: nothing here resembles the other producers' output. The reader was
not tuned on it; bench/documents.py reports it apart from the corpus it was developed on.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

from PIL import Image, ImageDraw, ImageFont

from .content import Printed

DPI = 300
_PAGE_IN = (8.5, 11.0)
_FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"
_FONT_PT = 9.5


def plain_text(pages: Sequence[list[Printed]], line: Callable[[Printed], str], *, title: str,
               header: tuple[str, ...], heading: str) -> bytes:
    """The pages as a PDF of page images (no text layer), one row of `line` per result."""
    font = ImageFont.truetype(_FONT, round(_FONT_PT * DPI / 72))
    step = round(_FONT_PT * 1.5 * DPI / 72)
    left, top = round(0.8 * DPI), round(0.8 * DPI)
    images = []
    for number, rows in enumerate(pages, 1):
        image = Image.new("L", (round(_PAGE_IN[0] * DPI), round(_PAGE_IN[1] * DPI)), 255)
        draw = ImageDraw.Draw(image)
        y = top
        for text in (title.upper(), "", *header, "", heading, "-" * len(heading)):
            draw.text((left, y), text, font=font, fill=0)
            y += step
        for row in rows:
            draw.text((left, y), line(row), font=font, fill=0)
            y += step
        y += step
        draw.text((left, y), f"*** END OF PAGE {number} OF {len(pages)} ***", font=font, fill=0)
        images.append(image)
    out = io.BytesIO()
    images[0].save(out, "PDF", save_all=True, append_images=images[1:], resolution=float(DPI))
    return out.getvalue()
