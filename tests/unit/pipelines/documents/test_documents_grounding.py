"""Grounding: a row survives only where the page text shows the test with that result and unit;
hallucinated values, values moved between rows and wrong units are rejected as "unverified"."""

from __future__ import annotations

import pytest

from plugin.pipelines.documents.grounding import Verified, ground
from plugin.pipelines.documents.lab_rows import LabRow
from plugin.pipelines.documents.pages import PageText, Word
from plugin.results import Box, InputProblem

TEXT = ("Chemistry\n"
        "Glucose 128 mg/dL 70-99 H\n"
        "Sodium 138 mmol/L 135-145\n"
        "Hemoglobin A1c 7.20 % 4.0-5.6 H\n"
        "Troponin I <0.01 ng/mL <0.04\n")
PAGE = PageText(number=2, text=TEXT, origin="text-layer")


def row(name: str, result: str, unit: str = "", reference_range: str = "", flag: str = "") -> LabRow:
    return LabRow(page=2, name=name, result=result, unit=unit, reference_range=reference_range,
                  flag=flag)


def verified(checked: Verified | InputProblem) -> Verified:
    assert isinstance(checked, Verified), checked
    return checked


def test_a_printed_value_is_verified_with_its_line_as_evidence() -> None:
    checked = verified(ground(row("Glucose", "128", "mg/dL", "70-99", "H"), PAGE))
    evidence = checked.evidence
    assert (evidence.page, evidence.quote) == (2, "Glucose 128 mg/dL 70-99 H")
    assert TEXT[evidence.start:evidence.end] == evidence.quote
    assert checked.row.flag == "H" and checked.row.reference_range == "70-99"
    assert checked.problems == () and checked.confidence is None


@pytest.mark.parametrize(("candidate", "why"), [
    (row("Glucose", "140", "mg/dL"), "the page shows '128'"),  # hallucinated number
    (row("Glucose", "138", "mg/dL"), "the page shows '128'"),  # sodium's number moved up a row
    (row("Glucose", "128", "mmol/L"), "unit 'mmol/L' is not printed"),
    (row("Potassium", "4.1", "mmol/L"), "no line of the page names the test"),
    (row("Glucose", "high"), "not a number"),
    (row("Troponin I", "0.01", "ng/mL"), "the page shows '<0.01'"),  # the comparator matters
])
def test_values_the_page_does_not_show_are_unverified(candidate: LabRow, why: str) -> None:
    problem = ground(candidate, PAGE)
    assert isinstance(problem, InputProblem)
    assert problem.where == "page 2" and problem.reason.startswith("unverified: ")
    assert why in problem.reason


def test_equal_numbers_and_equivalent_units_verify() -> None:
    assert verified(ground(row("Hemoglobin A1c", "7.2", "%"), PAGE)).evidence.quote.startswith(
        "Hemoglobin A1c 7.20")
    assert verified(ground(row("HbA1c", "7.2"), PageText(1, "HbAlc 7.2 % 4.0-5.6", "ocr")))
    assert verified(ground(row("Troponin I", "<0.01", "ng/mL"), PAGE))


def test_a_range_or_flag_the_page_does_not_print_is_dropped() -> None:
    checked = verified(ground(row("Sodium", "138", "mmol/L", "136-146", "L"), PAGE))
    assert checked.row.reference_range == "" and checked.row.flag == ""
    (problem,) = checked.problems
    assert "reference range '136-146' of Sodium is not printed" in problem.reason


def test_ocr_text_is_matched_forgivingly_and_its_confidence_kept() -> None:
    text = "Chioride 101 mmol/L 98-107\nHemoglobin 11:2 g/dL 12.0-15.5 L"
    words = (Word(0, 8, Box(10, 5, 60, 15), 0.9), Word(9, 12, Box(70, 5, 90, 15), 0.61),
             Word(13, 19, Box(100, 5, 130, 15), 0.95), Word(20, 26, Box(150, 5, 180, 15), 0.97))
    page = PageText(number=1, text=text, origin="ocr", words=words, width=200, height=50)
    chloride = verified(ground(row("Chloride", "101", "mmol/L"), page))
    assert chloride.confidence == 0.61
    assert chloride.evidence.box == Box(10, 5, 180, 15)
    assert verified(ground(row("Hemoglobin", "11.2", "g/dL"), page))


def test_a_row_read_from_one_line_is_checked_on_that_line_only() -> None:
    on_sodium_line = LabRow(page=2, name="Glucose", result="128", span=(36, 61))
    assert isinstance(ground(on_sodium_line, PAGE), InputProblem)


def test_a_similar_name_never_lends_its_value() -> None:
    lipids = PageText(number=1, origin="ocr",
                      text="LDL cholesterol 151 mg/dL <100 H\nHDL cholesterol 44 mg/dL >50 L")
    problem = ground(row("HDL cholesterol", "151", "mg/dL"), lipids)
    assert isinstance(problem, InputProblem) and "the page shows '44'" in problem.reason
    assert verified(ground(row("HDL cholesterol", "44", "mg/dL"), lipids))
    text_layer = PageText(number=1, origin="text-layer", text="Chioride 101 mmol/L 98-107")
    assert isinstance(ground(row("Chloride", "101", "mmol/L"), text_layer), InputProblem)
