"""The lab corpus itself: enough layouts from three producers, every truth row printed on its page
as stated (read with pypdfium2 directly, never with chartlight's reader), the variations issue 13
names all present, scans seeded and degraded, and the scoring honest about wrong values."""

from __future__ import annotations

import ast
import io
import re
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pypdfium2
import pytest
from PIL import Image

from tests.corpus.labs import LabLayout, ReadValue, layout, layouts, scans, score

CORPUS = Path(__file__).resolve().parents[2] / "corpus" / "labs"


def _page_texts(pdf: bytes) -> list[str]:
    document = pypdfium2.PdfDocument(pdf)
    try:
        return [" ".join(document[i].get_textpage().get_text_range().split())
                for i in range(len(document))]
    finally:
        document.close()


def test_fifteen_layouts_or_more_from_three_producers() -> None:
    found = layouts()
    assert len(found) >= 15
    assert len({lay.name for lay in found}) == len(found)
    producers = Counter(lay.producer for lay in found)
    assert set(producers) == {"reportlab", "chromium", "fpdf2"}
    assert min(producers.values()) >= 4


@pytest.mark.parametrize("lab", layouts(), ids=lambda lay: lay.name)
def test_every_truth_row_is_on_its_page_as_printed(lab: LabLayout) -> None:
    pages = _page_texts(lab.render())
    assert len(pages) == lab.pages
    assert lab.truth
    for row in lab.truth:
        text = pages[row.page - 1]
        printed = [p for p in (row.name, row.value_text, row.unit, row.range_text, row.flag_text)
                   if p]
        layer = lab.text_layer(row.page)
        if layer == "text":
            for item in printed:
                assert " ".join(item.split()) in text, (row.name, item, row.page)
        elif layer == "garbage":
            # Something is there, but not the report: only OCR can read this page.
            assert text and row.value_text not in text and row.name not in text, row.name
        else:
            assert text == "", row.page
    if lab.text_layer(1) == "text":
        assert lab.date_text in pages[0]


def test_pages_without_a_usable_text_layer_still_show_the_report() -> None:
    for lab in (layout("rl-garbage-text-layer"), layout("rl-partial-text-layer")):
        document = pypdfium2.PdfDocument(lab.render())
        for index in range(len(document)):
            pixels = document[index].render(scale=0.5).to_pil().convert("L")
            assert pixels.getextrema()[0] < 64, (lab.name, index)  # dark ink on the page
        document.close()


@pytest.mark.parametrize("lab", layouts(), ids=lambda lay: lay.name)
def test_the_pdf_was_made_by_the_named_producer(lab: LabLayout) -> None:
    document = pypdfium2.PdfDocument(lab.render())
    producer = document.get_metadata_dict().get("Producer", "")
    document.close()
    expected = {"reportlab": "ReportLab", "chromium": "Skia/PDF", "fpdf2": ""}[lab.producer]
    if expected:
        assert expected in producer
    else:
        assert "ReportLab" not in producer and "Skia" not in producer


def test_truth_values_mean_what_is_printed() -> None:
    for lab in layouts():
        for row in lab.truth:
            text = row.value_text.replace(",", "." if lab.decimal_comma else "")
            if " x 10^" in text:
                mantissa, exponent = text.split(" x 10^")
                number = Decimal(mantissa) * 10 ** int(exponent)
            else:
                number = Decimal(text.lstrip("<>"))
            assert number == row.value, (lab.name, row.name)
            assert text[0] in "<>" if row.comparator else text[0].isdigit()


def _everything() -> tuple[str, str]:
    rows = [row for lab in layouts() for row in lab.truth]
    return (" | ".join(f"{r.value_text} {r.flag_text} {r.range_text}" for r in rows),
            " | ".join(lab.description for lab in layouts()))


@pytest.mark.parametrize("variation, pattern", [
    ("thousands separator", r"262,000"),
    ("decimal comma", r"\b0,94\b"),
    ("comparator", r"<0\.5"),
    ("greater-than result", r">90"),
    ("scientific notation", r"\d\.\d x 10\^\d"),
    ("range a-b", r"\b3\.5-5\.1\b"),
    ("range a - b", r"\d - \d"),
    ("range < b", r"< 200"),
    ("range > a", r"> 40"),
    ("range a to b", r"\d to \d"),
    ("range (a-b)", r"\(\d+-\d+\)"),
    ("star flag", r"\*"),
    ("word flag", r"High"),
])
def test_the_corpus_prints_every_variation(variation: str, pattern: str) -> None:
    printed, _ = _everything()
    assert re.search(pattern, printed), variation


@pytest.mark.parametrize("variation", [
    "one text object per cell", "Test|Flag|Result", "Test|Reference Range|Result", "('5.6H')",
    "'5.6 H'", "'*", "dotted leaders", "columns of spaces", "'Test: value unit'", "two-column",
    "wrap", "two-line headers", "result and flag in one column", "US date", "UK date",
    "ISO date", "EU date", "3 pages", "UK spellings", "EU spellings",
    "text layer of garbage", "partial text layer",
])
def test_the_layouts_cover_every_variation(variation: str) -> None:
    _, described = _everything()
    assert variation.lower() in described.lower(), variation


def test_each_date_style_is_printed() -> None:
    dates = {lab.date_text for lab in layouts()}
    assert {"11/20/2026 08:15", "20/11/2026 08:15", "20.11.2026 08:15",
            "2026-11-20 08:15"} <= dates
    assert {lab.collected for lab in layouts()} == {layouts()[0].collected}


def test_scans_are_seeded_tilted_images_of_every_page() -> None:
    lab = layout("rl-platypus-uk")  # two pages
    first, again = scans(lab), scans(lab)
    assert [s.data for s in first] == [s.data for s in again]
    assert {s.content_type for s in first} == {"application/pdf"}
    for scan in first:
        document = pypdfium2.PdfDocument(scan.data)
        assert len(document) == 2
        assert document[0].get_textpage().count_chars() == 0  # pictures only, no text layer
        document.close()
    single = scans(layout("rl-cells-cbc"))
    assert {s.content_type for s in single} == {"image/jpeg"}
    sizes = {s.name.rsplit("/", 1)[1]: Image.open(io.BytesIO(s.data)).size for s in single}
    # A letter page at 300 dpi is 2550 px wide; tilting adds a margin, a photo its desk.
    assert 2550 < sizes["scan-300dpi"][0] < 2550 * 1.06
    assert 1700 < sizes["scan-200dpi-jpeg"][0] < 1700 * 1.06
    assert sizes["photo"][0] > 1700 * 1.1


def test_scoring_counts_a_wrong_value_unit_flag_or_page_as_wrong() -> None:
    lab = layout("rl-cells-tight-flags")
    potassium = next(r for r in lab.truth if r.name == "Potassium")
    right = ReadValue("Potassium", Decimal("5.6"), "mmol/L", "mmol/L", Decimal("3.5"),
                      Decimal("5.1"), "H", 1, "2823-3")
    assert score(lab.truth, [right]).precision == 1.0
    assert score(lab.truth, [right]).correct == (potassium,)
    for bad in (ReadValue("Potassium", Decimal("5.8"), "mmol/L", "mmol/L", page=1),
                ReadValue("Potassium", Decimal("5.6"), "mg/dL", "mg/dL", page=1),
                ReadValue("Potassium", Decimal("5.6"), "mmol/L", "mmol/L", Decimal("3.6"), page=1),
                ReadValue("Potassium", Decimal("5.6"), "mmol/L", "mmol/L", flag="L", page=1),
                ReadValue("Potassium", Decimal("5.6"), "mmol/L", "mmol/L", page=2),
                ReadValue("Potassium H", Decimal("5.6"), "mmol/L", "mmol/L", page=1)):
        result = score(lab.truth, [right, bad])
        assert result.precision == 0.5 and len(result.wrong) == 1, bad
    # A right value under another test's LOINC code is a wrong code.
    sodium_code = ReadValue("Potassium", Decimal("5.6"), "mmol/L", "mmol/L", page=1, loinc="2951-2")
    assert len(score(lab.truth, [sodium_code]).codes_wrong) == 1
    # A count written at another scale is the same value; "<0.5" written as 0.5 is not.
    cbc = layout("rl-cells-cbc")
    assert score(cbc.truth, [ReadValue("Platelet Count", Decimal("262"), "10^3/uL", "10*3/uL",
                                       page=1)]).precision == 1.0
    special = layout("fpdf-comparators-scientific")
    assert score(special.truth, [ReadValue("C-Reactive Protein", Decimal("0.5"), "mg/L",
                                           "mg/L", page=1)]).precision == 0.0
    assert score(special.truth, [ReadValue("C-Reactive Protein", Decimal("0.5"), "mg/L", "mg/L",
                                           page=1, comparator="<")]).precision == 1.0


def test_the_generator_never_imports_the_reader() -> None:
    for path in CORPUS.glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        assert not [m for m in imported if m.startswith(("plugin", "fhir_mappers"))], path.name
    plugin = CORPUS.parents[2] / "plugin"
    for path in plugin.rglob("*.py"):
        assert "tests.corpus" not in path.read_text(), path


def test_held_out_layouts_come_from_a_producer_the_corpus_does_not_use() -> None:
    from tests.corpus.labs import held_out

    corpus = {lay.producer for lay in layouts()}
    names = {lay.name for lay in layouts()}
    for lab in held_out():
        assert lab.producer not in corpus and lab.name not in names
        assert lab.truth and layout(lab.name) is lab
        pdf = lab.render()
        # Page images only: the held-out printout has nothing but pixels to read.
        assert _page_texts(pdf) == [""] * lab.pages
        document = pypdfium2.PdfDocument(pdf)
        try:
            image = document[0].render(scale=1).to_pil().convert("L")
        finally:
            document.close()
        assert image.getextrema()[0] < 64  # something is printed
        assert len(scans(lab)) == 3
