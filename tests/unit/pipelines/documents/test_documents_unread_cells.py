"""Print the page reading skipped is read from the ink: a stretch of a line no word covers is cut
out and read twice, and becomes a word only when both readings agree. Drawn here with Pillow
(real fonts, real Tesseract); the page reading's words are given as boxes, one left out."""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

from plugin.pipelines.documents.unread_cells import unread_words

FONT = ImageFont.truetype("DejaVuSans.ttf", 28)


def line_of(cells: list[tuple[int, str]]) -> tuple[Image.Image, list[tuple[int, int, int, int]]]:
    """A binarised line of `cells` (x, text) and each cell's ink box (left, top, w, h)."""
    image = Image.new("L", (900, 90), 255)
    draw = ImageDraw.Draw(image)
    boxes = []
    for x, text in cells:
        draw.text((x, 30), text, font=FONT, fill=0)
        left, top, right, bottom = draw.textbbox((x, 30), text, font=FONT)
        boxes.append((left, top, right - left, bottom - top))
    return image.point(lambda v: 0 if v < 128 else 255), boxes


def test_a_value_the_page_reading_skipped_is_read_from_its_ink() -> None:
    image, boxes = line_of([(20, "Bilirubin"), (330, "8"), (450, "umol/L"), (650, "0-21")])
    skipped = [boxes[0], boxes[2], boxes[3]]  # the page reading has no word for the "8"
    found = unread_words(image, skipped, timeout=30)
    assert [(w.text, w.again) for w in found] == [("8", "8")]
    left, top, width, height = found[0].box
    assert left <= boxes[1][0] + 2 and left + width >= boxes[1][0] + boxes[1][2] - 2
    assert 0 < found[0].confidence <= 1


def test_nothing_is_added_where_every_mark_was_read_or_is_a_rule() -> None:
    image, boxes = line_of([(20, "Bilirubin"), (330, "8"), (450, "umol/L")])
    assert unread_words(image, boxes, timeout=30) == []
    # A ruled line across the row (a table's border) is not a cell.
    ImageDraw.Draw(image).line((0, 45, 899, 45), fill=0, width=2)
    assert unread_words(image, boxes, timeout=30) == []
