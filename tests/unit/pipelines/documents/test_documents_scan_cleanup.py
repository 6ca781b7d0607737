"""Page cleanup before OCR: skew measured and undone, a photographed sheet found and flattened,
and cleaned-image boxes mapped back onto the original image."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from plugin.pipelines.documents.scan_cleanup import clean_page, erase_rules, find_sheet, measure_text
from plugin.sandbox.synthetic import DEMO_LAB_REPORT, page_images


@pytest.fixture(scope="module")
def page() -> Image.Image:
    return page_images(DEMO_LAB_REPORT, dpi=100)[0]


@pytest.mark.parametrize("turn", [-3.0, -1.2, 0.0, 2.0])
def test_skew_is_measured_to_a_tenth_of_a_degree(page: Image.Image, turn: float) -> None:
    turned = page.rotate(turn, resample=Image.Resampling.BICUBIC, fillcolor=255)
    angle, line_height = measure_text(turned)
    assert angle == pytest.approx(-turn, abs=0.1)
    assert 10 < line_height < 16  # 11 pt rows at 100 dpi


def test_cleaning_straightens_enlarges_and_maps_boxes_back(page: Image.Image) -> None:
    turned = page.rotate(2.0, resample=Image.Resampling.BICUBIC, fillcolor=255)
    cleaned = clean_page(turned)
    assert cleaned.skew_deg == pytest.approx(-2.0, abs=0.1) and not cleaned.sheet_found
    assert cleaned.scale > 2  # 100 dpi text is enlarged to about 300 dpi for Tesseract
    assert set(np.unique(np.asarray(cleaned.image))) <= {0, 255}  # binarised
    width, height = cleaned.image.size
    x0, y0, x1, y1 = cleaned.original_box(width / 2 - 1, height / 2 - 1, width / 2 + 1, height / 2 + 1)
    assert (x0 + x1) / 2 == pytest.approx(turned.width / 2, abs=1)
    assert (y0 + y1) / 2 == pytest.approx(turned.height / 2, abs=1)


def test_a_sheet_on_a_desk_is_found_by_its_corners() -> None:
    photo = Image.new("L", (1000, 1300), 60)
    corners = [(130, 120), (880, 150), (860, 1180), (110, 1150)]
    ImageDraw.Draw(photo).polygon(corners, fill=235)
    found = find_sheet(photo)
    assert found is not None
    assert np.abs(found - np.array(corners, dtype=float)).max() < 20
    assert find_sheet(Image.new("L", (1000, 1300), 235)) is None  # a scan is all page


def test_ruled_lines_are_erased_and_print_is_kept() -> None:
    page = Image.new("L", (400, 200), 255)
    draw = ImageDraw.Draw(page)
    draw.line((10, 50, 390, 50), fill=0, width=2)  # a table's rule across
    draw.line((200, 10, 200, 190), fill=0, width=2)  # and down
    draw.rectangle((40, 80, 46, 108), fill=0)  # a glyph's stem, shorter than five lines
    cleaned = np.asarray(erase_rules(page, line_height=28))
    assert (cleaned[49:52, 10:390] == 255).all() and (cleaned[10:190, 199:202] == 255).all()
    assert (cleaned[80:109, 40:47] == 0).all()


def test_binarising_splits_at_otsus_threshold_of_the_page(page: Image.Image) -> None:
    from plugin.pipelines.documents.scan_cleanup import _otsu_threshold, binarise

    pixels = np.asarray(page)
    expected = np.where(pixels > _otsu_threshold(pixels), 255, 0)
    assert (np.asarray(binarise(page)) == expected).all()
    assert set(np.unique(np.asarray(binarise(Image.new("L", (20, 20), 200))))) == {255}  # blank
