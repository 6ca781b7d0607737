"""OCR slips mended only where one reading is the only one near: units against the units the
catalogued test is measured in (unit_mending), names against the catalogue when no other test is
as near; a flag caught in a number's cut-out is no second reading of the number."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from PIL import Image, ImageDraw

from plugin.pipelines.documents import layout_extractor
from plugin.pipelines.documents.lab_rows import clean_name, clean_unit
from plugin.pipelines.documents.number_reread import unread_ink
from plugin.pipelines.documents.pages import PageText
from plugin.pipelines.documents.pipeline import verified_values
from plugin.pipelines.documents.precision_gate import WITHHELD
from plugin.pipelines.documents.unit_mending import mend_unit, ocr_distance
from plugin.pipelines.documents.word_boxes import PageWord, lay_out
from plugin.results import Box, InputProblem, MeasuredValue

HEADER = [(50, "Test"), (200, "Result"), (260, "Units"), (340, "Range")]


def ocr_page(rows: list[list[tuple[float, str, float]]]) -> PageText:
    """An OCR'd page of words (x, text, confidence), one list per line, under a header; every
    number read the same way twice unless a test says otherwise."""
    words = [PageWord(t, Box(x, 100, x + 5 * len(t), 108), None, 0.95) for x, t in HEADER]
    for i, row in enumerate(rows):
        y = 114 + 14 * i
        words += [PageWord(t, Box(x, y, x + 5 * len(t), y + 8), None, c,
                           t if any(ch.isdigit() for ch in t) else None) for x, t, c in row]
    return lay_out(1, words, origin="ocr", width=612, height=792, note="test")


def read(page: PageText) -> tuple[list[MeasuredValue], list[InputProblem]]:
    reading = layout_extractor.read_lab_rows([page])
    return verified_values(reading.rows, (page,), reading.collected)


def withheld(problems: list[InputProblem]) -> list[str]:
    return [p.reason for p in problems if p.reason.startswith(WITHHELD)]


@pytest.mark.parametrize(("read_as", "test", "unit"), [
    ("pmol/L", "Creatinine", "µmol/L"),  # µ read as p
    ("U/1", "GPT (ALT)", "U/L"),  # l read as 1
    ("10*12/I", "Erythrocytes", "10^12/L"),
    ("10%12/1", "Erythrocytes", "10^12/L"),
    ("g/d", "Albumin", "g/dL"),  # the thin L lost at the cell edge ("g/d" is also g/24h)
    ("gid", "Albumin", "g/dL"),
    ("mo/di", "Calcium", "mg/dL"),
    ("ag/mL", "Ferritin", "ng/mL"),
    ("tatio", "INR", "ratio"),
    ("X1OA9/L", "Lymphocytes", "10^9/L"),  # the caret read as "A"
    ("10“9/1", "Thrombocytes", "10^9/L"),  # ... and as a quote mark
])
def test_a_garbled_unit_is_mended_to_the_one_unit_its_test_is_measured_in(
        read_as: str, test: str, unit: str) -> None:
    assert mend_unit(read_as, test) == unit
    assert clean_unit(read_as, ocr=True, test=test) == unit
    assert clean_unit(read_as, ocr=False, test=test) == read_as  # a text layer is never mended


@pytest.mark.parametrize(("read_as", "test"), [
    ("pmol/L", "Free T4"),  # fits the test as read: left alone
    ("mg", "C-Reactive Protein"),  # cut short: mg/L, mg/dL and mg% are all as near
    ("H", "Lymphocytes"),  # a flag, not a "%" misread
    ("UA", "GOT (AST)"),  # two slips away
    ("pmol/L", "Qzxvr"),  # not a catalogued test: nothing to mend against
    ("mmoVL", "Chloride"),
])
def test_a_unit_is_not_mended_when_no_single_unit_is_near(read_as: str, test: str) -> None:
    assert mend_unit(read_as, test) is None


@pytest.mark.parametrize(("printed", "test"), [
    ("mmol/L", "Creatinine"),  # some labs report creatinine in mmol/L: 1000x off as µmol/L
    ("nmol/L", "Creatinine"),
    ("mg/L", "Albumin"),       # mg/L is a unit: not a g/L with a stray m
    ("mmol/L", "Glucose"),
])
def test_a_unit_read_as_a_real_unit_is_mended_only_through_confusable_glyphs(printed: str, test: str) -> None:
    assert mend_unit(printed, test) is None
    assert clean_unit(printed, ocr=True, test=test) == printed


def test_ocr_distance_prices_confusable_and_thin_glyphs_at_half() -> None:
    assert ocr_distance("u/1", "u/l") == 0.5
    assert ocr_distance("g/d", "g/dl") == 0.5  # a thin glyph lost
    assert ocr_distance("mg", "mg%") == 1.5  # any other glyph lost costs more than a mend may
    assert ocr_distance("ag/ml", "ng/ml") == 1.0


def test_a_mended_unit_lets_the_row_be_written_with_the_unit_printed() -> None:
    page = ocr_page([[(50, "Creatinine", 0.95), (200, "88", 0.95), (260, "pmol/L", 0.93),
                      (340, "59-104", 0.94)],
                     [(50, "Free", 0.95), (80, "T4", 0.95), (200, "15.2", 0.95),
                      (260, "pmol/L", 0.93), (340, "12-22", 0.94)]])
    values, problems = read(page)
    assert [(v.name, v.value, v.unit) for v in values] == [
        ("Creatinine", Decimal(88), "µmol/L"), ("Free T4", Decimal("15.2"), "pmol/L")]
    assert withheld(problems) == []


def test_a_name_is_mended_only_when_one_test_is_nearest() -> None:
    assert clean_name("Neutrophits", ocr=True) == "Neutrophils"
    assert clean_name("Chioride", ocr=True) == "Chloride"
    # "Troponin" with its last letter lost is as near Troponin I as Troponin T.
    assert clean_name("Troponin", ocr=True) == "Troponin"
    assert clean_name("Troponn I", ocr=True).lower() == "troponin i"  # the catalogue's alias
    assert clean_name("Troponin |", ocr=False) == "Troponin |"


def test_ocr_slips_around_a_known_name_are_dropped_only_to_a_known_name() -> None:
    assert clean_name("Troponin |", ocr=True) == "Troponin I"  # a capital I read as a bar
    assert clean_name("Uric Acid seeeeee", ocr=True) == "Uric Acid"  # leader dots as letters
    assert clean_name("pH venous", ocr=True) == "pH venous"  # a word of a catalogued name
    assert clean_name("Calcium ionized", ocr=True) == "Calcium ionized"


def test_a_comparator_result_is_a_quantity_for_the_catalogue() -> None:
    page = ocr_page([[(50, "C-Reactive", 0.95), (110, "Protein", 0.95), (200, "<0.5", 0.95),
                      (260, "mg/L", 0.93), (340, "<5.0", 0.94)]])
    values, problems = read(page)
    assert [(v.name, v.value, v.unit) for v in values] == [("C-Reactive Protein", "<0.5", "mg/L")]


def test_a_flag_caught_in_the_cut_out_is_not_a_second_reading() -> None:
    page = ocr_page([[(50, "Glucose", 0.95), (200, "128", 0.95), (225, "H", 0.95),
                      (260, "mg/dL", 0.93), (340, "70-99", 0.94)]])
    words = tuple(w if page.text[w.start:w.end] != "128" else replace(w, reread="128H")
                  for w in page.words)
    values, problems = read(replace(page, words=words))
    assert [(v.name, v.value) for v in values] == [("Glucose", Decimal(128))], problems


def test_a_name_recognised_from_its_slips_is_named_beside_its_result() -> None:
    # OCR read "HbAic" and "Chot"; the rows were named HbA1c and LDL Chol Calc (NIH) from those
    # very words, and the page must count as naming them where the results are printed.
    page = ocr_page([[(50, "HbAic", 0.9), (200, "48", 0.95), (260, "mmol/mol", 0.93),
                      (340, "20-41", 0.94)],
                     [(20, "LDL", 0.9), (45, "Chot", 0.9), (70, "Calc", 0.9), (95, "(NIH)", 0.9),
                      (200, "141", 0.95), (260, "mg/dL", 0.93), (340, "<100", 0.94)]])
    values, problems = read(page)
    assert [(v.name, v.value) for v in values] == [
        ("HbA1c", Decimal(48)), ("Ldl chol calc nih", Decimal(141))], problems  # aliases


def test_a_number_with_unread_ink_beside_it_is_not_taken_as_read() -> None:
    # A monospaced "13.1" of which OCR kept "13": the ".1" beside it was read as no word.
    page = ocr_page([[(50, "Hemoglobin", 0.95), (200, "13", 0.96), (260, "g/dL", 0.9),
                      (340, "11.5-17.5", 0.9)],
                     [(50, "Glucose", 0.95), (200, "128", 0.95), (260, "mg/dL", 0.93),
                      (340, "70-99", 0.94)]])
    words = tuple(replace(w, unread_ink=True) if w.box is not None and w.box.x0 == 200
                  and page.text[w.start:w.end] == "13" else w for w in page.words)
    values, problems = read(replace(page, words=words))
    assert [(v.name, v.value) for v in values] == [("Glucose", Decimal(128))], problems
    assert any("Hemoglobin = 13 g/dL (ink printed beside '13' was not read" in r
               for r in withheld(problems)), problems


def test_unread_ink_is_found_beside_a_number_and_not_under_other_words() -> None:
    image = Image.new("L", (300, 60), 255)
    draw = ImageDraw.Draw(image)
    draw.rectangle((100, 10, 139, 39), fill=0)  # "13": the box OCR read
    draw.rectangle((144, 36, 147, 39), fill=0)  # a decimal point it dropped, on the baseline
    draw.rectangle((200, 10, 239, 39), fill=0)  # a unit, read as its own word
    box, unit = (100, 10, 40, 30), (200, 10, 40, 30)
    assert unread_ink(image, box, [box, unit])
    draw.rectangle((144, 36, 147, 39), fill=255)
    assert not unread_ink(image, box, [box, unit])
    draw.rectangle((141, 12, 160, 39), fill=0)  # a flag read as a word of its own, close by
    assert not unread_ink(image, box, [box, unit, (141, 12, 20, 28)])
    speck = Image.new("L", (300, 60), 255)
    speck.paste(image.crop((100, 10, 140, 40)), (100, 10))
    speck.putpixel((145, 30), 0)  # one pixel of scan noise beside the number
    assert not unread_ink(speck, box, [box])
