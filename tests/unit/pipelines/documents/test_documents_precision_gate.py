"""The precision gate: a verified row is written only with a name we know or a clean one, a unit
that parses and fits, a confident OCR reading and a plausible value; everything else is listed
under "read but not recognised" with its page and the text as printed. A value is re-read where
it was printed, and a model's numbers must be on the page where the geometry read that test."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from plugin.pipelines.documents import layout_extractor
from plugin.pipelines.documents.lab_rows import LabRow
from plugin.pipelines.documents.pages import PageText
from plugin.pipelines.documents.pipeline import verified_values
from plugin.pipelines.documents.precision_gate import WITHHELD, clean_name
from plugin.pipelines.documents.word_boxes import PageWord, lay_out
from plugin.results import Box, InputProblem, MeasuredValue

HEADER = [(50, "Test"), (200, "Result"), (260, "Units"), (340, "Range")]


def ocr_page(rows: list[list[tuple[float, str, float]]], *, origin: str = "ocr") -> PageText:
    """A page of words (x, text, confidence), one list per line, under a four-column header."""
    words = [PageWord(t, Box(x, 100, x + 5 * len(t), 108), None, 0.95) for x, t in HEADER]
    for i, row in enumerate(rows):
        y = 114 + 14 * i
        # OCR reads every number a second time (number_reread); here both readings agree.
        words += [PageWord(t, Box(x, y, x + 5 * len(t), y + 8), None,
                           c if origin == "ocr" else None,
                           t if origin == "ocr" and any(ch.isdigit() for ch in t) else None)
                  for x, t, c in row]
    return lay_out(1, words, origin=origin, width=612, height=792, note="test")  # type: ignore[arg-type]


def read(page: PageText) -> tuple[list[MeasuredValue], list[InputProblem]]:
    reading = layout_extractor.read_lab_rows([page])
    return verified_values(reading.rows, (page,), reading.collected)


def withheld(problems: list[InputProblem]) -> list[str]:
    return [p.reason for p in problems if p.reason.startswith(WITHHELD)]


def test_ocr_debris_is_never_written_as_a_name_or_unit() -> None:
    page = ocr_page([[(50, "Glucose", 0.96), (200, "128", 0.95), (260, "mg/dL", 0.93),
                      (340, "70-99", 0.94)],
                     [(50, "Wbc", 0.9), (85, "eeneees", 0.41), (200, "11.8", 0.91),
                      (260, "x1lOE3/uL", 0.52), (340, "4.0-11.0", 0.9)],
                     [(50, "Qzxvr", 0.62), (200, "4.1", 0.93), (260, "g/dL", 0.9),
                      (340, "3.5-5.0", 0.9)],
                     [(50, "Hemoglobin", 0.9), (200, "13.1", 0.91), (260, "gbdk", 0.52),
                      (340, "13.5-17.5", 0.9)]])
    values, problems = read(page)
    # The garbled WBC unit is one slip from the one unit a WBC count in thousands is written in
    # (unit_mending): the catalogue's spelling is written, never the debris.
    assert [(v.name, v.value, v.unit) for v in values] == [
        ("Glucose", Decimal(128), "mg/dL"), ("Wbc", Decimal("11.8"), "x10^3/µL")]
    reasons = withheld(problems)
    assert any("gbdk" in r and "not a unit we can read" in r for r in reasons), reasons
    assert any("'Qzxvr 4.1 g/dL 3.5-5.0'" in r and "not a test we know" in r for r in reasons)


def test_low_confidence_and_implausible_ocr_values_are_withheld_and_listed() -> None:
    page = ocr_page([[(50, "Sodium", 0.95), (200, "140", 0.41), (260, "mmol/L", 0.93),
                      (340, "135-145", 0.94)],
                     [(50, "Potassium", 0.95), (200, "43", 0.93), (260, "mmol/L", 0.93),
                      (340, "3.5-5.1", 0.94)],
                     [(50, "Chloride", 0.95), (200, "101", 0.9), (260, "mmol/L", 0.93),
                      (340, "98-107", 0.94)]])
    values, problems = read(page)
    assert [v.name for v in values] == ["Chloride"]
    reasons = withheld(problems)
    assert "read but not recognised: 'Sodium 140 mmol/L 135-145' (OCR confidence 0.41 is " \
           "below 0.60)" in reasons
    # "4.3" read as "43" with high confidence: far outside its range, no flag printed.
    assert any(r.startswith("read but not recognised: 'Potassium 43") and "likely misread" in r
               for r in reasons), reasons


def test_a_text_layer_name_needs_the_catalogue_or_a_clean_spelling() -> None:
    page = ocr_page([[(50, "Osmolality", 0.0), (200, "290", 0.0), (260, "mosm/kg", 0.0),
                      (340, "275-295", 0.0)],
                     [(50, "Glucose", 0.0), (200, "128", 0.0), (260, "mmol/mol", 0.0),
                      (340, "70-99", 0.0)]], origin="text-layer")
    values, problems = read(page)
    assert [v.name for v in values] == ["Osmolality"]  # not catalogued, but a clean name
    assert any("the unit 'mmol/mol' does not fit Glucose" in r for r in withheld(problems))
    assert clean_name("Vitamin D, 25-Hydroxy") and clean_name("HbA1c")
    assert not clean_name("x1lOE3") and not clean_name("Xkcdfgh") and not clean_name("* 12")


def test_a_value_is_reread_where_it_was_printed() -> None:
    page = ocr_page([[(50, "Glucose", 0.0), (200, "128", 0.0), (260, "mg/dL", 0.0)]],
                    origin="text-layer")
    (row,) = layout_extractor.read_lab_rows([page]).rows
    # The same row claiming another number, or pointing at another place, is not written.
    for wrong in (LabRow(**{**row.__dict__, "result": "129"}),
                  LabRow(**{**row.__dict__, "at": Box(260, 114, 290, 122)})):
        values, problems = verified_values((wrong,), (page,), None)
        assert values == [] and problems[0].reason.startswith("unverified: Glucose")


def test_the_model_may_name_a_row_but_its_number_must_be_printed_there() -> None:
    page = ocr_page([[(50, "Glucose", 0.0), (200, "128", 0.0), (260, "mg/dL", 0.0),
                      (340, "70-99", 0.0)],
                     [(50, "Sodium", 0.0), (200, "140", 0.0), (260, "mmol/L", 0.0),
                      (340, "135-145", 0.0)]], origin="text-layer")
    geometry = layout_extractor.read_lab_rows([page]).rows
    model = (LabRow(page=1, name="Glucose", result="128", unit="mg/dL"),
             LabRow(page=1, name="Sodium", result="128", unit="mmol/L"),  # a number moved
             LabRow(page=1, name="Glucose", result="135", unit="mg/dL"))  # the range's bound
    values, problems = verified_values(model, (page,), None, geometry=geometry)
    assert [(v.name, v.value) for v in values] == [("Glucose", Decimal(128))]
    assert [p.reason for p in problems] == [
        "unverified: Sodium = 128 mmol/L (the page shows '140' there)",
        "unverified: Glucose = 135 mg/dL (the page shows '128' there)"]


def test_an_ocr_number_read_two_ways_is_withheld() -> None:
    page = ocr_page([[(50, "Creatinine", 0.95), (200, "1.412", 0.93), (260, "mg/dL", 0.93)]])
    assert [v.value for v in read(page)[0]] == [Decimal("1.412")]  # both readings agree
    words = tuple(w if page.text[w.start:w.end] != "1.412" else replace(w, reread="1.12")
                  for w in page.words)
    values, problems = read(replace(page, words=words))
    assert values == []
    assert withheld(problems) == [
        "read but not recognised: Creatinine = 1.412 mg/dL (OCR read the value two ways: "
        "'1.412' and, read again alone, '1.12')"]
