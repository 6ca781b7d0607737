"""The deterministic extractor on the seeded lab report (DEMO_LAB_REPORT is the ground truth):
every value, unit, range and flag from the text-layer PDF; at least 90% of values and units from
the scan and from the phone photo; evidence that points at the printed row."""

from __future__ import annotations

import math
from decimal import Decimal

from fhir_mappers.interpretation import measured_interpretation
from fhir_mappers.units import normalise_unit
from plugin.pipelines.documents import layout_extractor
from plugin.pipelines.documents.document_pages import DocumentPages
from plugin.pipelines.documents.pipeline import verified_values
from plugin.results import MeasuredValue, TextEvidence
from plugin.sandbox.synthetic import DEMO_LAB_REPORT, LabLine

PHOTO_LINES = DEMO_LAB_REPORT.lines[:26]  # the photo shows page 1: CBC and metabolic panel


def extract(document: DocumentPages) -> list[MeasuredValue]:
    reading = layout_extractor.read_lab_rows(document.pages)
    values, _ = verified_values(reading.rows, document.pages, reading.collected)
    return values


def found(values: list[MeasuredValue], line: LabLine) -> MeasuredValue | None:
    """The value read for `line` when its number and unit (as UCUM) are right."""
    for value in values:
        if (value.name.lower() == line.name.lower() and value.value == Decimal(line.value)
                and normalise_unit(value.unit).ucum == normalise_unit(line.unit).ucum):
            return value
    return None


def flag(value: MeasuredValue) -> str:
    return "".join(code for code in measured_interpretation(value) if code != "N")


def evidence(value: MeasuredValue) -> TextEvidence:
    (text,) = value.evidence
    assert isinstance(text, TextEvidence)
    return text


def test_text_layer_pdf_gives_every_value_with_unit_range_flag_and_panel(
        read_text_pdf: DocumentPages) -> None:
    assert [p.origin for p in read_text_pdf.pages] == ["text-layer", "text-layer"]
    values = extract(read_text_pdf)
    assert len(values) == len(DEMO_LAB_REPORT.lines) == 32
    for line in DEMO_LAB_REPORT.lines:
        value = found(values, line)
        assert value is not None, line
        assert value.unit == line.unit and flag(value) == line.flag, (line, value)
        assert value.reference_range is not None and value.reference_range.text == line.reference_text
        assert value.panel == line.panel
        assert value.effective == DEMO_LAB_REPORT.collected
        assert value.confidence is None  # a text layer is read, not recognised
    assert len({v.key for v in values}) == 32


def test_text_layer_evidence_quotes_the_row_and_boxes_it_on_the_page(
        read_text_pdf: DocumentPages) -> None:
    values = {v.name: v for v in extract(read_text_pdf)}
    wbc, glucose, tsh = evidence(values["WBC"]), evidence(values["Glucose"]), evidence(values["TSH"])
    page_one = read_text_pdf.pages[0]
    assert page_one.text[wbc.start:wbc.end] == wbc.quote == "WBC 11.8 x10^9/L 4.0-11.0 H"
    assert (wbc.page, tsh.page) == (1, 2)
    assert wbc.box is not None and glucose.box is not None
    # PDF points from the top left: rows are printed at x = 54 pt, glucose lower than WBC.
    assert 50 <= wbc.box.x0 <= 58 and wbc.box.x1 > 400
    assert wbc.box.y1 < glucose.box.y0 < page_one.height


def test_scanned_pdf_is_read_by_ocr_with_at_least_90_percent_of_values(
        read_scan: DocumentPages, read_text_pdf: DocumentPages) -> None:
    assert [p.origin for p in read_scan.pages] == ["ocr", "ocr"]
    assert all("deskewed" in p.note for p in read_scan.pages)  # the scanner skews 1-2 degrees
    values = extract(read_scan)
    right = [line for line in DEMO_LAB_REPORT.lines if found(values, line)]
    assert len(right) >= math.ceil(0.9 * 32), [line.name for line in DEMO_LAB_REPORT.lines
                                               if line not in right]
    # OCR boxes come back in PDF points, where the text layer prints the same row.
    scanned = evidence(next(v for v in values if v.name == "Glucose"))
    printed = evidence(next(v for v in extract(read_text_pdf) if v.name == "Glucose"))
    assert scanned.box is not None and printed.box is not None
    assert abs(scanned.box.y0 - printed.box.y0) < 15 and abs(scanned.box.x0 - printed.box.x0) < 15
    assert all(v.confidence is not None and 0 <= v.confidence <= 1 for v in values)


def test_photo_is_flattened_and_read_with_at_least_90_percent_of_values(
        read_photo: DocumentPages) -> None:
    (page,) = read_photo.pages
    assert page.origin == "ocr" and "sheet found" in page.note
    values = extract(read_photo)
    right = [line for line in PHOTO_LINES if found(values, line)]
    assert len(right) >= math.ceil(0.9 * len(PHOTO_LINES)), [
        line.name for line in PHOTO_LINES if line not in right]
    for value in values:
        box = evidence(value).box
        assert box is not None and 0 <= box.x0 < box.x1 <= page.width and 0 <= box.y0 < box.y1 <= page.height


def test_flags_read_by_ocr_match_the_report(read_scan: DocumentPages) -> None:
    values = extract(read_scan)
    flags = {line.name: (flag(v), line.flag) for line in DEMO_LAB_REPORT.lines
             if (v := found(values, line)) is not None}
    assert all(got == want for got, want in flags.values()), flags
