"""Lab reports drawn for the reader's tests, deliberately unlike plugin/sandbox/synthetic: one
text object per cell drawn in scrambled order, other column orders, decimal commas, results with
flags attached, ranges before results, two tables side by side, wrapped names, leaders.

Each drawing returns the PDF and its ground truth (name, value as printed, unit as printed).
Nothing here is imported by the reader, and nothing of the reader is imported here.
"""

from __future__ import annotations

import io
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import pypdfium2
from PIL import Image, ImageFilter
from reportlab.lib.pagesizes import A4, letter
from reportlab.pdfgen import canvas


@dataclass(frozen=True)
class Truth:
    name: str
    value: Decimal
    unit: str
    comparator: str = ""


@dataclass(frozen=True)
class Drawing:
    pdf: bytes
    truth: tuple[Truth, ...]
    collected: str = ""  # the collection date, ISO, as the report means it


Cell = tuple[float, float, str, str]  # x, y (from the top), text, font


def _pdf(cells: list[Cell], *, size: tuple[float, float] = letter, seed: int = 1) -> bytes:
    """Every cell its own text object, drawn in shuffled order (as report writers do)."""
    order = list(cells)
    random.Random(seed).shuffle(order)
    buffer = io.BytesIO()
    page = canvas.Canvas(buffer, pagesize=size, pageCompression=1)
    height = size[1]
    for x, y, text, font in order:
        page.setFont(font, 9 if font != "Helvetica-Bold" else 9.5)
        page.drawString(x, height - y, text)
    page.showPage()
    page.save()
    return buffer.getvalue()


def _table(x_of: dict[str, float], header: list[tuple[str, str]], rows: list[dict[str, str]],
           top: float, pitch: float = 15) -> list[Cell]:
    cells: list[Cell] = [(x_of[key], top, label, "Helvetica-Bold") for key, label in header]
    for i, row in enumerate(rows):
        for key, text in row.items():
            if text:
                cells.append((x_of[key], top + pitch * (i + 1), text, "Helvetica"))
    return cells


def _letterhead(lines: list[str]) -> list[Cell]:
    return [(50, 40 + 13 * i, text, "Helvetica") for i, text in enumerate(lines)]


def flag_before_result() -> Drawing:
    """Test | Flag | Result | Units | Reference (two-line heading), US dates."""
    rows = [("WBC", "H", "11.8", "x10^9/L", "4.0-11.0"),
            ("Hemoglobin", "L", "11.2", "g/dL", "12.0-15.5"),
            ("Platelets", "", "262,000", "/uL", "150,000-400,000"),
            ("Creatinine", "", "0.94", "mg/dL", "0.50-1.10"),
            ("Glucose", "H", "128", "mg/dL", "70-99"),
            ("Potassium", "", "4.3", "mmol/L", "3.5-5.1"),
            ("Troponin I", "", "<0.01", "ng/mL", "<0.04")]
    x_of = {"name": 50, "flag": 190, "result": 240, "unit": 320, "range": 400}
    cells = _letterhead(["Riverside Clinical Labs", "Patient: DOE, JANE   DOB: 04/07/1961",
                         "Collected: 11/20/2026 08:15   Received: 11/20/2026 10:02"])
    cells += [(400, 118, "Reference", "Helvetica-Bold")]
    cells += _table(x_of, [("name", "Test"), ("flag", "Flag"), ("result", "Result"),
                           ("unit", "Units"), ("range", "Interval")],
                    [dict(zip(("name", "flag", "result", "unit", "range"), r, strict=True))
                     for r in rows], top=130)
    truth = tuple(Truth(n, Decimal(v.replace(",", "").lstrip("<")), u, "<" if v[0] == "<" else "")
                  for n, _, v, u, _ in rows)
    return Drawing(_pdf(cells, seed=3), truth, "2026-11-20")


def range_before_result() -> Drawing:
    """Test | Reference range | Result | Unit, ranges in every printed form, a leader row."""
    rows = [("Sodium", "135 - 145", "138", "mmol/L"),
            ("Chloride", "(98-107)", "101", "mmol/L"),
            ("Cholesterol, total", "< 200", "212", "mg/dL"),
            ("HDL cholesterol", "> 40", "44", "mg/dL"),
            ("Calcium", "8.6 to 10.3", "9.4", "mg/dL"),
            ("ALT", "7-35", "48", "U/L")]
    x_of = {"name": 60, "range": 210, "result": 330, "unit": 400}
    cells = _letterhead(["Hillcrest Pathology", "Date collected: 2026-11-20"])
    cells += _table(x_of, [("name", "Analyte"), ("range", "Reference range"),
                           ("result", "Result"), ("unit", "Unit")],
                    [dict(zip(("name", "range", "result", "unit"), r, strict=True)) for r in rows],
                    top=90, pitch=17)
    truth = tuple(Truth(n, Decimal(v), u) for n, _, v, u in rows)
    return Drawing(_pdf(cells, seed=5), truth, "2026-11-20")


def decimal_commas() -> Drawing:
    """A European report: decimal commas, day-first dates, Parameter | Ergebnis | Einheit."""
    rows = [("Kreatinin", "0,94", "mg/dl", "0,50-1,10"),
            ("Kalium", "4,3", "mmol/l", "3,5-5,1"),
            ("Hämoglobin", "11,2", "g/dl", "12,0-15,5"),
            ("Glucose", "128", "mg/dl", "70-99"),
            ("CRP", "<0,5", "mg/l", "<5,0"),
            ("TSH", "2,14", "mU/l", "0,40-4,00")]
    x_of = {"name": 56, "result": 200, "unit": 280, "range": 360}
    cells = _letterhead(["Labor Dr. Muster", "Entnahme: 03.11.2026 08:15"])
    cells += _table(x_of, [("name", "Parameter"), ("result", "Ergebnis"), ("unit", "Einheit"),
                           ("range", "Referenzbereich")],
                    [dict(zip(("name", "result", "unit", "range"), r, strict=True)) for r in rows],
                    top=100)
    truth = tuple(Truth(n, Decimal(v.lstrip("<").replace(",", ".")), u,
                        "<" if v[0] == "<" else "") for n, v, u, _ in rows)
    return Drawing(_pdf(cells, size=A4, seed=7), truth, "2026-11-03")


def result_and_flag() -> Drawing:
    """One "Result and Flag" column with flags as suffixes, scientific notation, two tables
    side by side, a wrapped name."""
    left = [("WBC", "11.8 H", "x10^9/L"), ("RBC", "4.12", "x10^12/L"),
            ("Hematocrit", "34.6L", "%"), ("Platelets", "2.1 x 10^3", "x10^9/L")]
    right = [("Sodium", "138", "mmol/L"), ("Potassium", "5.9 H", "mmol/L"),
             ("ALT", "*48", "U/L"), ("Albumin", "3.3 L", "g/dL")]
    cells = _letterhead(["Summit Diagnostics", "Collection date: 2026-11-20"])
    for offset, rows in ((0, left), (290, right)):
        x_of = {"name": 50 + offset, "result": 150 + offset, "unit": 230 + offset}
        cells += _table(x_of, [("name", "Test"), ("result", "Result and Flag"),
                               ("unit", "Units")],
                        [dict(zip(("name", "result", "unit"), r, strict=True)) for r in rows],
                        top=100)
    # A name wrapped onto a second line, values on the first.
    cells += [(50, 190, "Alkaline", "Helvetica"), (150, 190, "92", "Helvetica"),
              (230, 190, "U/L", "Helvetica"), (50, 200, "phosphatase", "Helvetica")]
    truth = [Truth(n, _value(v), u) for n, v, u in (*left, *right)]
    truth.append(Truth("Alkaline phosphatase", Decimal(92), "U/L"))
    return Drawing(_pdf(cells, seed=11), tuple(truth), "2026-11-20")


def leaders_and_colons() -> Drawing:
    """No table header: dotted leaders and "Name: value unit" lines."""
    lines = ["Glucose .................... 128 mg/dL (70-99)",
             "Urea: 18 mg/dL",
             "Creatinine . . . . . . . . 0.94 mg/dL",
             "Total bilirubin: 0.6 mg/dL (0.2-1.2)"]
    cells = _letterhead(["Valley Medical Laboratory", "Collected: Nov 20, 2026"])
    cells += [(60, 100 + 16 * i, text, "Helvetica") for i, text in enumerate(lines)]
    truth = (Truth("Glucose", Decimal(128), "mg/dL"), Truth("Urea", Decimal(18), "mg/dL"),
             Truth("Creatinine", Decimal("0.94"), "mg/dL"),
             Truth("Total bilirubin", Decimal("0.6"), "mg/dL"))
    return Drawing(_pdf(cells, seed=13), truth, "2026-11-20")


def _value(printed: str) -> Decimal:
    text = printed.replace("*", "").rstrip("HL ").strip()
    if " x 10^" in text:
        base, exponent = text.split(" x 10^")
        return Decimal(base).scaleb(int(exponent))
    return Decimal(text)


DRAWINGS: dict[str, Callable[[], Drawing]] = {
    "flag-before-result": flag_before_result,
    "range-before-result": range_before_result,
    "decimal-commas": decimal_commas,
    "result-and-flag": result_and_flag,
    "leaders-and-colons": leaders_and_colons,
}


def scanned(pdf: bytes, *, dpi: int = 200, turn: float = 1.5, seed: int = 0) -> bytes:
    """The first page printed and scanned: rendered, turned, blurred, speckled, as a PNG."""
    document = pypdfium2.PdfDocument(pdf)
    try:
        bitmap = document[0].render(scale=dpi / 72, grayscale=True)
        image = bitmap.to_pil().convert("L")
    finally:
        document.close()
    image = image.rotate(turn, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=255)
    image = image.filter(ImageFilter.GaussianBlur(0.6))
    noise = random.Random(seed)
    pixels = image.load()
    assert pixels is not None
    for _ in range(image.width * image.height // 400):
        x, y = noise.randrange(image.width), noise.randrange(image.height)
        pixels[x, y] = noise.choice((0, 255))
    out = io.BytesIO()
    image.save(out, format="PNG", dpi=(dpi, dpi))
    return out.getvalue()


def private_glyphs() -> bytes:
    """A text-layer PDF whose font maps every glyph to a private-use code point (a producer
    that kept its own glyph numbering): it prints a report, but its text layer is garbage."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    pdfmetrics.registerFont(TTFont("DejaVuSans", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"))
    buffer = io.BytesIO()
    page = canvas.Canvas(buffer, pagesize=letter, pageCompression=0)
    page.setFont("DejaVuSans", 10)
    for i, text in enumerate(["Glucose 128 mg/dL 70-99", "Sodium 140 mmol/L 135-145",
                              "Potassium 4.3 mmol/L 3.5-5.1", "Chloride 101 mmol/L 98-107"]):
        page.drawString(60, 700 - 16 * i, text)
    page.showPage()
    page.save()
    # Same length, so the cross-reference table stays right: <41> <0041> becomes <41> <E041>.
    return re.sub(rb"(<[0-9A-F]{2}> <)00([0-9A-F]{2}>)", rb"\1E0\2", buffer.getvalue())


def partly_pictured() -> Drawing:
    """Half the rows as text, the other half pasted in as a picture of text."""
    rows = [("Glucose", "128", "mg/dL", "70-99"), ("Sodium", "140", "mmol/L", "135-145"),
            ("Potassium", "4.3", "mmol/L", "3.5-5.1"), ("Chloride", "101", "mmol/L", "98-107"),
            ("Calcium", "9.4", "mg/dL", "8.6-10.3"), ("Albumin", "4.1", "g/dL", "3.5-5.0")]
    x_of = {"name": 60, "result": 200, "unit": 260, "range": 340}
    cells = _table(x_of, [("name", "Test"), ("result", "Result"), ("unit", "Unit"),
                          ("range", "Range")],
                   [dict(zip(("name", "result", "unit", "range"), r, strict=True))
                    for r in rows[:3]], top=100)
    pasted = _pdf(_table(x_of, [], [dict(zip(("name", "result", "unit", "range"), r,
                                                 strict=True)) for r in rows[3:]], top=0))
    document = pypdfium2.PdfDocument(pasted)
    try:  # the lower rows, rendered at 300 dpi: a picture of text
        picture = document[0].render(scale=300 / 72, crop=(0, 792 - 60, 0, 0)).to_pil()
    finally:
        document.close()
    buffer = io.BytesIO()
    page = canvas.Canvas(buffer, pagesize=letter)
    for x, y, text, font in cells:
        page.setFont(font, 9)
        page.drawString(x, 792 - y, text)
    image = io.BytesIO()
    picture.convert("L").save(image, format="PNG")
    image.seek(0)
    from reportlab.lib.utils import ImageReader
    page.drawImage(ImageReader(image), 0, 792 - 150 - 60, width=612, height=60)
    page.showPage()
    page.save()
    truth = tuple(Truth(n, Decimal(v), u) for n, v, u, _ in rows)
    return Drawing(buffer.getvalue(), truth)
