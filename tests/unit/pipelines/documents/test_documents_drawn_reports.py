"""The whole documents pipeline on lab reports drawn unlike the seeded one (report_drawings):
every value of the text-layer PDFs read, scans of them read by real Tesseract, and in every case
no value written that the report does not print under that name and unit."""

from __future__ import annotations

import io
from dataclasses import dataclass
from decimal import Decimal

import pytest
from reportlab.pdfgen import canvas

from fhir_mappers.loinc import name_key
from fhir_mappers.units import normalise_unit
from plugin.pipelines.documents import DocumentsOptions, DocumentsPipeline
from plugin.results import MeasuredValue, Narrative, PipelineResult, TextEvidence
from tests.support.lab_documents import document_reference, offline_context
from tests.unit.pipelines.documents.report_drawings import (
    DRAWINGS,
    Drawing,
    Truth,
    partly_pictured,
    private_glyphs,
    scanned,
)

LAYOUT = DocumentsOptions(engine="layout")


@dataclass(frozen=True)
class Score:
    right: list[Truth]
    missed: list[Truth]
    wrong: list[MeasuredValue]
    result: PipelineResult


def run(data: bytes, content_type: str) -> PipelineResult:
    return DocumentsPipeline(LAYOUT)(offline_context(document_reference(data, content_type)))


def score(drawing: Drawing, result: PipelineResult) -> Score:
    """Which printed values were written, and which written values the report does not
    print (name, value with its comparator, and unit must all agree)."""
    values = [i for i in result.items if isinstance(i, MeasuredValue)]
    right: list[Truth] = []
    wrong: list[MeasuredValue] = []
    for value in values:
        truth = next((t for t in drawing.truth if _same(t, value)), None)
        if truth is None:
            wrong.append(value)
        else:
            right.append(truth)
    return Score(right, [t for t in drawing.truth if t not in right], wrong, result)


def _same(truth: Truth, value: MeasuredValue) -> bool:
    number = (Decimal(value.value.lstrip("<>=")) if isinstance(value.value, str)
              else value.value)
    comparator = value.value[:1] if isinstance(value.value, str) else ""
    return (name_key(truth.name) == name_key(value.name) and number == truth.value
            and comparator == truth.comparator
            and normalise_unit(truth.unit) == normalise_unit(value.unit))


def summary(result: PipelineResult) -> str:
    return next(i.text for i in result.items if isinstance(i, Narrative))


@pytest.fixture(scope="module")
def drawings() -> dict[str, Drawing]:
    return {key: make() for key, make in DRAWINGS.items()}


@pytest.mark.parametrize("layout", sorted(DRAWINGS))
def test_every_printed_value_of_a_text_layer_report_is_written_and_nothing_else(
        layout: str, drawings: dict[str, Drawing]) -> None:
    drawing = drawings[layout]
    scored = score(drawing, run(drawing.pdf, "application/pdf"))
    assert scored.wrong == []
    if layout == "decimal-commas":
        # "mU/l" is no unit the reader can stand behind: withheld and listed, not written.
        assert [t.name for t in scored.missed] == ["TSH"]
        assert "'TSH 2,14 mU/l 0,40-4,00' (the unit 'mU/l' is not a unit we can read)" in \
            summary(scored.result)
    else:
        assert scored.missed == []
    values = [i for i in scored.result.items if isinstance(i, MeasuredValue)]
    assert {v.effective.date().isoformat() for v in values if v.effective} == {drawing.collected}
    for value in values:
        (evidence,) = value.evidence
        assert isinstance(evidence, TextEvidence) and evidence.box is not None
        assert value.confidence is None


def test_flags_ranges_and_comparators_as_printed(drawings: dict[str, Drawing]) -> None:
    result = run(drawings["flag-before-result"].pdf, "application/pdf")
    values = {v.name: v for v in result.items if isinstance(v, MeasuredValue)}
    assert values["WBC"].interpretation == "H" and values["Hemoglobin"].interpretation == "L"
    assert values["Glucose"].reference_range is not None
    assert values["Glucose"].reference_range.text == "70-99"
    assert values["Troponin I"].value == "<0.01"
    assert values["Platelets"].value == Decimal(262000)
    assert values["WBC"].effective is not None and values["WBC"].effective.hour == 8
    flags = run(drawings["result-and-flag"].pdf, "application/pdf")
    by_name = {v.name: v for v in flags.items if isinstance(v, MeasuredValue)}
    assert by_name["Potassium"].interpretation == "H" and by_name["ALT"].interpretation == "A"
    assert by_name["Platelets"].value == Decimal(2100)


@pytest.mark.parametrize(("layout", "dpi", "turn", "least"), [
    ("flag-before-result", 300, 1.5, 4),
    ("range-before-result", 200, -2.0, 5),
    ("result-and-flag", 300, 0.7, 6),
])
def test_a_scan_read_by_tesseract_writes_no_wrong_value(
        layout: str, dpi: int, turn: float, least: int, drawings: dict[str, Drawing]) -> None:
    drawing = drawings[layout]
    result = run(scanned(drawing.pdf, dpi=dpi, turn=turn, seed=dpi), "image/png")
    scored = score(drawing, result)
    assert scored.wrong == []
    assert len(scored.right) >= least, scored.missed
    values = [i for i in result.items if isinstance(i, MeasuredValue)]
    assert all(v.confidence is not None and v.confidence >= 0.6 for v in values)


def test_a_garbage_text_layer_is_read_by_ocr_instead() -> None:
    result = run(private_glyphs(), "application/pdf")
    assert "page 1: OCR at 300 dpi" in summary(result)
    names = {v.name: v.value for v in result.items if isinstance(v, MeasuredValue)}
    assert names.get("Sodium") == Decimal(140) and names.get("Glucose") == Decimal(128)


def test_a_text_layer_covering_half_the_page_is_read_by_ocr_instead() -> None:
    drawing = partly_pictured()
    scored = score(drawing, run(drawing.pdf, "application/pdf"))
    assert "page 1: OCR at 300 dpi" in summary(scored.result)
    assert scored.wrong == [] and len(scored.right) >= 5, scored.missed


def test_a_clean_text_layer_is_never_ocrd(drawings: dict[str, Drawing]) -> None:
    for drawing in drawings.values():
        assert "page 1: text layer" in summary(run(drawing.pdf, "application/pdf"))


def test_a_page_with_no_rows_found_is_said_so() -> None:
    buffer = io.BytesIO()
    page = canvas.Canvas(buffer)
    page.drawString(60, 700, "Discharge letter: the patient is well and goes home today.")
    page.drawString(60, 680, "Bloods were taken and are to be followed up by the practice.")
    page.save()
    result = run(buffer.getvalue(), "application/pdf")
    assert [(p.where, p.reason) for p in result.problems] == [
        ("page 1", "no lab result rows were found on this page")]
