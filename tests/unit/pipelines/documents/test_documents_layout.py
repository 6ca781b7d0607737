"""The layout rules on hand-written lines: row shapes, OCR slips mended, flags recomputed when
misread, panels and header fields found, look-alike lines left alone or reported."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from plugin.pipelines.documents.lab_rows import (
    LabRow,
    clean_name,
    clean_unit,
    interpretation,
    read_number,
    result_value,
)
from plugin.pipelines.documents.layout_extractor import parse_row, read_lab_rows
from plugin.pipelines.documents.pages import PageText


def cells(text: str, *, ocr: bool = False) -> tuple[str, str, str, str, str]:
    parsed = parse_row(text, ocr=ocr)
    assert not isinstance(parsed, str | None), (text, parsed)
    return parsed.name, parsed.result, parsed.unit, parsed.reference_range, parsed.flag


@pytest.mark.parametrize(("line", "expected"), [
    ("Glucose 128 mg/dL 70-99 H", ("Glucose", "128", "mg/dL", "70-99", "H")),
    ("Neutrophils, absolute 8.9 x10^9/L 1.8-7.7 H", ("Neutrophils, absolute", "8.9", "x10^9/L",
                                                     "1.8-7.7", "H")),
    ("HDL cholesterol 44 mg/dL >50 L", ("HDL cholesterol", "44", "mg/dL", ">50", "L")),
    ("Sodium  140  (135 - 145)  mmol/L", ("Sodium", "140", "mmol/L", "135-145", "")),
    ("Potassium 5.9 H mmol/L 3.5-5.1", ("Potassium", "5.9", "mmol/L", "3.5-5.1", "H")),
    ("INR 1.1 0.8-1.2", ("INR", "1.1", "", "0.8-1.2", "")),
    ("Troponin I <0.01 ng/mL <0.04", ("Troponin I", "<0.01", "ng/mL", "<0.04", "")),
    ("eGFR (CKD-EPI 2021) 66 mL/min/1.73m2 >60", ("eGFR (CKD-EPI 2021)", "66", "mL/min/1.73m2",
                                                 ">60", "")),
    ("Nitrite Negative Negative", ("Nitrite", "Negative", "", "Negative", "")),
    ("1 Vitamin B12 350 pg/mL 200-900", ("Vitamin B12", "350", "pg/mL", "200-900", "")),
])
def test_row_shapes(line: str, expected: tuple[str, ...]) -> None:
    assert cells(line) == expected


@pytest.mark.parametrize(("line", "expected"), [
    ("TSH 2.14 ulU/mL 0.40-4.00", ("TSH", "2.14", "uIU/mL", "0.40-4.00", "")),
    ("WBC 11.8 x1049/L 4.0-11.0 H", ("WBC", "11.8", "x10^9/L", "4.0-11.0", "H")),
    ("RBC 4.12 x10M12/L 3.80-5.20 .", ("RBC", "4.12", "x10^12/L", "3.80-5.20", "")),
    ("Hemoglobin Alc 7.2 % 4.0-5.6 H", ("Hemoglobin A1c", "7.2", "%", "4.0-5.6", "H")),
    ("Chioride 101 mmol/L 98-107", ("Chloride", "101", "mmol/L", "98-107", "")),
    ("RBC Ce 4.12 x10412/L 3.80-5.20", ("RBC", "4.12", "x10^12/L", "3.80-5.20", "")),
    ("Hemoglobin 11:2 g/dL 12.0-15.5 LE", ("Hemoglobin", "11.2", "g/dL", "12.0-15.5", "")),
    ("Total protein 7.1. © g/dL 6.0-8.3", ("Total protein", "7.1", "g/dL", "6.0-8.3", "")),
    ("AST 39 UL 10-35 ~ H", ("AST", "39", "U/L", "10-35", "H")),
    ("Triglycerides 186 . mg/db <150. H", ("Triglycerides", "186", "mg/dL", "<150", "H")),
    ("RDW | 14.9 % 11.5-14.5 H", ("RDW", "14.9", "%", "11.5-14.5", "H")),
    ("eGFR 66 mU/min/1.73m2 >60", ("eGFR", "66", "mL/min/1.73m2", ">60", "")),
])
def test_ocr_slips_are_mended(line: str, expected: tuple[str, ...]) -> None:
    assert cells(line, ocr=True) == expected


@pytest.mark.parametrize("line", [
    "Collected: 2026-11-20 08:15 +00:00 Reported: 2026-11-20 16:00 +00:00",
    "Patient: LINDQVIST, Maren MRN: CL-004417 DOB: 1962-06-18 Sex: F",
    "1200 Harbor Road, Springfield | CLIA 99D9999999 | Tel (555) 010-4400",
    "Northfield Regional Laboratory | NRL-26-1120-4471 | LINDQVIST, Maren Page 1 of 2",
    "Page 1 of 2",
    "Test Result Units Reference range Flag",
    "H = above reference range, L = below reference range.",
    "Complete Blood Count (CBC) with Differential",
])
def test_lines_that_are_not_results_are_ignored(line: str) -> None:
    assert parse_row(line, ocr=True) is None


@pytest.mark.parametrize("line", [
    "BUN 2 A8 mg/dL 7-20",  # a smudged result: which number is it?
    "Total protein Et g/dL 6.0-8.3",  # no result read at all
    "Potassium 4.3 mmol/L == 3.55.1 zz",
])
def test_rows_that_cannot_be_read_are_reported_not_guessed(line: str) -> None:
    assert parse_row(line, ocr=True) == "unreadable"


def test_numbers_units_and_names_alone() -> None:
    assert read_number("1O.2", ocr=True) == "10.2" and read_number("1O.2", ocr=False) is None
    assert read_number("<0.01", ocr=False) == "<0.01"
    assert result_value("7.20") == Decimal("7.20") and result_value("Not detected") == "Not detected"
    assert result_value("see note") is None
    assert clean_unit("x 10^9/L") == "x10^9/L" and clean_unit("mg/dL.") == "mg/dL"
    assert clean_name("HbAlc", ocr=False) == "HbA1c"
    assert clean_name("Chioride", ocr=False) == "Chioride"  # a text layer is never "mended"


@pytest.mark.parametrize(("value", "flag", "ocr", "expected"), [
    ("11.8", "H", True, "H"),  # agrees with 4.0-11.0
    ("11.8", "L", True, None),  # contradicts the range on an OCR'd page: computed instead
    ("11.8", "L", False, "L"),  # a text layer says what the lab said
    ("11.8", "LE", True, None),  # unreadable flag: computed
    ("11.8", "", True, None),
])
def test_flags_are_recomputed_when_misread(value: str, flag: str, ocr: bool,
                                           expected: str | None) -> None:
    row = LabRow(page=1, name="WBC", result=value, unit="x10^9/L", reference_range="4.0-11.0",
                 flag=flag)
    assert interpretation(row, Decimal(value), ocr=ocr) == expected


def page(text: str, number: int = 1, origin: str = "text-layer") -> PageText:
    return PageText(number=number, text=text, origin=origin)  # type: ignore[arg-type]


def test_panels_header_fields_and_row_spans() -> None:
    first = page("City Lab\nCollected: 2026-03-04 07:30 -05:00\nSpecimen: Serum  Status: FINAL\n"
                 "Basic Metabolic Panel\nTest Result Units Range\nSodium 140 mmol/L 135-145\n"
                 "Potassium 5.9 mmol/L 3.5-5.1 H\n")
    second = page("City Lab (continued)\nCreatinine 1.0 mg/dL 0.5-1.1\nLipids\n"
                  "Cholesterol 180 mg/dL <200\n", number=2)
    reading = read_lab_rows([first, second])
    assert reading.collected == datetime(2026, 3, 4, 12, 30, tzinfo=UTC)
    assert [(r.name, r.panel, r.page) for r in reading.rows] == [
        ("Sodium", "Basic Metabolic Panel", 1), ("Potassium", "Basic Metabolic Panel", 1),
        ("Creatinine", "Basic Metabolic Panel", 2), ("Cholesterol", "Lipids", 2)]
    assert all(r.specimen == "Serum" for r in reading.rows)
    sodium = reading.rows[0]
    assert sodium.span is not None and first.text[slice(*sodium.span)] == "Sodium 140 mmol/L 135-145"
    assert reading.unreadable == ()
