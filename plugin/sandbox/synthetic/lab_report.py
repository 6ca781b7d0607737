"""The demo patient's lab report: its content (the ground truth for extraction) and its renderings."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pypdfium2
from PIL import Image
from reportlab.lib.pagesizes import letter
from reportlab.pdfgen.canvas import Canvas

from plugin.sandbox.synthetic.capture import phone_photo, scanner_pass
from plugin.sandbox.synthetic.patient import DEMO_PATIENT, SyntheticPatient


@dataclass(frozen=True)
class LabLine:
    """One result row, every field exactly as the report prints it."""

    panel: str
    name: str
    value: str
    unit: str
    reference_low: str | None
    reference_high: str | None
    reference_text: str
    flag: str  # "H", "L" or ""


@dataclass(frozen=True)
class LabReport:
    patient: SyntheticPatient
    accession: str
    collected: datetime
    reported: datetime
    ordering_provider: str
    lab_name: str
    lines: tuple[LabLine, ...]

    @property
    def panels(self) -> tuple[str, ...]:
        """Panel names in the order they are printed."""
        return tuple(dict.fromkeys(line.panel for line in self.lines))


def _line(panel: str, name: str, value: str, unit: str, reference: str, flag: str = "") -> LabLine:
    """Split the printed reference ("70-99", "<200", ">60") into its bounds."""
    if reference.startswith("<"):
        low, high = None, reference[1:]
    elif reference.startswith(">"):
        low, high = reference[1:], None
    else:
        low, high = reference.split("-")
    return LabLine(panel, name, value, unit, low, high, reference, flag)


_CBC = "Complete Blood Count (CBC) with Differential"
_CMP = "Comprehensive Metabolic Panel"
_LIPID = "Lipid Panel"
_A1C = "Hemoglobin A1c"
_THYROID = "Thyroid"

# A 64-year-old with poorly controlled type 2 diabetes, dyslipidaemia, mild anaemia and a
# neutrophilia that fits the chest findings in the dictation and images.
DEMO_LAB_REPORT = LabReport(
    patient=DEMO_PATIENT,
    accession="NRL-26-1120-4471",
    collected=datetime(2026, 11, 20, 8, 15, tzinfo=UTC),
    reported=datetime(2026, 11, 20, 16, 0, tzinfo=UTC),
    ordering_provider="Dr. Tomas Adeyemi, MD",
    lab_name="Northfield Regional Laboratory",
    lines=(
        _line(_CBC, "WBC", "11.8", "x10^9/L", "4.0-11.0", "H"),
        _line(_CBC, "RBC", "4.12", "x10^12/L", "3.80-5.20"),
        _line(_CBC, "Hemoglobin", "11.2", "g/dL", "12.0-15.5", "L"),
        _line(_CBC, "Hematocrit", "34.6", "%", "35.0-45.0", "L"),
        _line(_CBC, "MCV", "84.0", "fL", "80.0-100.0"),
        _line(_CBC, "MCH", "27.2", "pg", "27.0-33.0"),
        _line(_CBC, "MCHC", "32.4", "g/dL", "32.0-36.0"),
        _line(_CBC, "RDW", "14.9", "%", "11.5-14.5", "H"),
        _line(_CBC, "Platelets", "262", "x10^9/L", "150-400"),
        _line(_CBC, "Neutrophils, absolute", "8.9", "x10^9/L", "1.8-7.7", "H"),
        _line(_CBC, "Lymphocytes, absolute", "1.9", "x10^9/L", "1.0-4.8"),
        _line(_CMP, "Glucose", "128", "mg/dL", "70-99", "H"),
        _line(_CMP, "BUN", "18", "mg/dL", "7-20"),
        _line(_CMP, "Creatinine", "0.94", "mg/dL", "0.50-1.10"),
        _line(_CMP, "eGFR", "66", "mL/min/1.73m2", ">60"),
        _line(_CMP, "Sodium", "138", "mmol/L", "135-145"),
        _line(_CMP, "Potassium", "4.3", "mmol/L", "3.5-5.1"),
        _line(_CMP, "Chloride", "101", "mmol/L", "98-107"),
        _line(_CMP, "Carbon dioxide", "24", "mmol/L", "22-29"),
        _line(_CMP, "Calcium", "9.4", "mg/dL", "8.6-10.3"),
        _line(_CMP, "Total protein", "7.1", "g/dL", "6.0-8.3"),
        _line(_CMP, "Albumin", "3.3", "g/dL", "3.5-5.0", "L"),
        _line(_CMP, "ALT", "48", "U/L", "7-35", "H"),
        _line(_CMP, "AST", "39", "U/L", "10-35", "H"),
        _line(_CMP, "Alkaline phosphatase", "92", "U/L", "35-104"),
        _line(_CMP, "Total bilirubin", "0.6", "mg/dL", "0.2-1.2"),
        _line(_LIPID, "Total cholesterol", "232", "mg/dL", "<200", "H"),
        _line(_LIPID, "LDL cholesterol", "151", "mg/dL", "<100", "H"),
        _line(_LIPID, "HDL cholesterol", "44", "mg/dL", ">50", "L"),
        _line(_LIPID, "Triglycerides", "186", "mg/dL", "<150", "H"),
        _line(_A1C, "Hemoglobin A1c", "7.2", "%", "4.0-5.6", "H"),
        _line(_THYROID, "TSH", "2.14", "uIU/mL", "0.40-4.00"),
    ),
)

_LAB_ADDRESS = "1200 Harbor Road, Springfield  |  CLIA 99D9999999  |  Tel (555) 010-4400"  # fictional
_FOOTNOTE = "H = above reference range, L = below reference range.   *** End of report ***"

# Layout in PDF points (1/72 inch) on a US Letter page.
_PAGE_WIDTH, _PAGE_HEIGHT = letter
_MARGIN = 54.0
_ROW = 15.0
_COLUMNS = (("Test", 54.0), ("Result", 204.0), ("Units", 258.0), ("Reference range", 346.0), ("Flag", 436.0))
_PANEL_HEIGHT = 2.5 * _ROW + 4  # panel title + column headings
_BODY_TOP = _PAGE_HEIGHT - 190.0
_CONTINUATION_TOP = _PAGE_HEIGHT - 150.0
_BODY_BOTTOM = 90.0
# Captures are rendered at twice their resolution and then sampled, as a sensor integrates light.
_OVERSAMPLING = 2


def _paginate(report: LabReport) -> list[list[str]]:
    """Panels per page; a panel is never split, so each table keeps its headings."""
    pages: list[list[str]] = [[]]
    y = _BODY_TOP
    for panel in report.panels:
        height = _PANEL_HEIGHT + _ROW * sum(line.panel == panel for line in report.lines) + _ROW
        if y - height < _BODY_BOTTOM and pages[-1]:
            pages.append([])
            y = _CONTINUATION_TOP
        pages[-1].append(panel)
        y -= height
    return pages


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M ") + moment.strftime("%z")[:3] + ":" + moment.strftime("%z")[3:]


def _draw_header(canvas: Canvas, report: LabReport, first_page: bool) -> float:
    """Draw the page header; return the y where the results start."""
    patient = report.patient
    top = _PAGE_HEIGHT - _MARGIN
    canvas.setFont("Helvetica-Bold", 15)
    canvas.drawString(_MARGIN, top - 6, report.lab_name)
    canvas.setFont("Helvetica", 8)
    canvas.drawString(_MARGIN, top - 20, _LAB_ADDRESS)
    canvas.setFont("Helvetica-Bold", 11)
    canvas.drawRightString(_PAGE_WIDTH - _MARGIN, top - 6, "LABORATORY REPORT")
    canvas.setLineWidth(1.2)
    canvas.line(_MARGIN, top - 28, _PAGE_WIDTH - _MARGIN, top - 28)
    birth = f"DOB: {patient.birth_date.isoformat()}   Sex: {patient.dicom_sex}"
    name, mrn = f"Patient: {patient.display_name}", f"MRN: {patient.mrn}"
    _draw_row(canvas, top - 44, [(_MARGIN, name), (250, mrn), (400, birth)])
    if not first_page:
        _draw_row(canvas, top - 60, [(_MARGIN, f"Accession: {report.accession}   (continued)")])
        canvas.line(_MARGIN, top - 70, _PAGE_WIDTH - _MARGIN, top - 70)
        return _CONTINUATION_TOP
    provider = f"Ordering provider: {report.ordering_provider}"
    _draw_row(canvas, top - 60, [(_MARGIN, f"Accession: {report.accession}"), (250, provider)])
    times = [(_MARGIN, f"Collected: {_when(report.collected)}"), (250, f"Reported: {_when(report.reported)}")]
    _draw_row(canvas, top - 76, times)
    specimen = "Specimen: venous blood (serum, EDTA whole blood)   Status: FINAL"
    _draw_row(canvas, top - 92, [(_MARGIN, specimen)])
    canvas.line(_MARGIN, top - 102, _PAGE_WIDTH - _MARGIN, top - 102)
    return _BODY_TOP


def _draw_panel(canvas: Canvas, report: LabReport, panel: str, y: float) -> float:
    canvas.setFont("Helvetica-Bold", 11)
    canvas.drawString(_MARGIN, y, panel)
    y -= _ROW
    _draw_row(canvas, y, [(x, heading) for heading, x in _COLUMNS], "Helvetica-Bold", 9)
    canvas.setLineWidth(0.5)
    canvas.line(_MARGIN, y - 4, _PAGE_WIDTH - _MARGIN, y - 4)
    # Clear of the rule: OCR misreads digits that touch a line.
    y -= _ROW + 4
    for line in (line for line in report.lines if line.panel == panel):
        # Flagged rows in bold, as lab reports do, so they also stand out on a scan.
        font = "Helvetica-Bold" if line.flag else "Helvetica"
        cells = (line.name, line.value, line.unit, line.reference_text, line.flag)
        _draw_row(canvas, y, [(x, cell) for cell, (_, x) in zip(cells, _COLUMNS, strict=True)], font, 11)
        y -= _ROW
    return y - _ROW / 2


def _draw_row(
    canvas: Canvas, y: float, cells: list[tuple[float, str]], font: str = "Helvetica", size: float = 10
) -> None:
    """Cells at their x as one text object, so text extraction keeps them on one line, in order."""
    text = canvas.beginText(cells[0][0], y)
    text.setFont(font, size)
    previous_x = cells[0][0]
    for x, cell in cells:
        text.moveCursor(x - previous_x, 0)
        previous_x = x
        text.textOut(cell)
    canvas.drawText(text)


def text_pdf(report: LabReport) -> bytes:
    """The report as the lab's system prints it: a PDF with a text layer, one table per panel."""
    buffer = io.BytesIO()
    # invariant: no creation time or random document id, so the bytes depend on the report only.
    canvas = Canvas(buffer, pagesize=letter, invariant=True, pageCompression=1)
    canvas.setTitle(f"Laboratory report {report.accession}")
    canvas.setAuthor(report.lab_name)
    pages = _paginate(report)
    for number, panels in enumerate(pages, start=1):
        y = _draw_header(canvas, report, first_page=number == 1)
        for panel in panels:
            y = _draw_panel(canvas, report, panel, y)
        canvas.setFont("Helvetica", 8)
        if number == len(pages):
            canvas.drawString(_MARGIN, y - 4, _FOOTNOTE)
        running_footer = f"{report.lab_name}  |  {report.accession}  |  {report.patient.display_name}"
        canvas.drawString(_MARGIN, 40, running_footer)
        canvas.drawRightString(_PAGE_WIDTH - _MARGIN, 40, f"Page {number} of {len(pages)}")
        canvas.showPage()
    canvas.save()
    return buffer.getvalue()


def page_images(report: LabReport, dpi: int = 200) -> list[Image.Image]:
    """Each page of `text_pdf(report)` rendered in grayscale at `dpi`."""
    document = pypdfium2.PdfDocument(text_pdf(report))
    try:
        return [page.render(scale=dpi / 72, grayscale=True).to_pil().convert("L") for page in document]
    finally:
        document.close()


def scanned_pdf(report: LabReport, *, seed: int = 0, dpi: int = 200) -> bytes:
    """The printed report fed through an office scanner: image-only pages (JPEG), no text layer."""
    rng = np.random.default_rng(seed)
    pages = page_images(report, dpi * _OVERSAMPLING)
    scans = [scanner_pass(page, rng, oversampling=_OVERSAMPLING) for page in pages]
    buffer = io.BytesIO()
    scans[0].save(
        buffer,
        format="PDF",
        save_all=True,
        append_images=scans[1:],
        resolution=float(dpi),
        quality=80,
        title=f"Scan {report.accession}",
        # Pillow stamps the clock otherwise; the report's own time keeps the bytes reproducible.
        creationDate=report.reported.utctimetuple(),
        modDate=report.reported.utctimetuple(),
    )
    return buffer.getvalue()


def photo_png(report: LabReport, *, seed: int = 0, dpi: int = 200) -> bytes:
    """The report's first page as a phone photo of the printout lying on a desk (PNG)."""
    first_page = page_images(report, dpi * _OVERSAMPLING)[0]
    photo = phone_photo(first_page, np.random.default_rng(seed), oversampling=_OVERSAMPLING)
    buffer = io.BytesIO()
    photo.save(buffer, format="PNG", optimize=False, compress_level=3)
    return buffer.getvalue()
