"""Layouts drawn with fpdf2 (PyPI): bordered cell grids and monospaced report lines whose
columns are made of spaces, as laboratory systems that print fixed-width text do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from .content import Printed

Cell = Callable[[Printed], str]
_FIXED = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def _pdf(title: str) -> FPDF:
    pdf = FPDF(format="A4")
    pdf.set_creation_date(_FIXED)  # the same code makes the same bytes
    pdf.set_title(title)
    pdf.set_auto_page_break(False)
    return pdf


def _header(pdf: FPDF, title: str, header: Sequence[str]) -> None:
    pdf.set_font("Helvetica", "B", 14)
    pdf.cell(0, 8, title, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font("Helvetica", "", 9)
    for line in header:
        pdf.cell(0, 5, line, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(4)


def grid(pages: list[list[Printed]], columns: Sequence[tuple[str, Cell, float]], *,
         title: str, header: Sequence[str], align_numbers: bool = True) -> bytes:
    """A bordered grid of cells (fpdf's cell()), one page per list of rows."""
    pdf = _pdf(title)
    for number, rows in enumerate(pages, start=1):
        pdf.add_page()
        _header(pdf, title, header)
        pdf.set_font("Helvetica", "B", 9)
        for heading, _, width in columns:
            pdf.cell(width, 7, heading, border=1)
        pdf.ln()
        pdf.set_font("Helvetica", "", 9)
        for row in rows:
            for index, (_, cell, width) in enumerate(columns):
                text = cell(row)
                align = "R" if align_numbers and index == 1 else "L"
                pdf.cell(width, 6, text, border=1, align=align)
            pdf.ln()
        pdf.set_y(-15)
        pdf.cell(0, 5, f"Page {number}/{len(pages)}", align="C")
    return bytes(pdf.output())


def monospaced(pages: list[list[Printed]], line: Callable[[Printed], str], *, title: str,
               header: Sequence[str], heading: str) -> bytes:
    """Fixed-width lines in Courier whose columns are runs of spaces."""
    pdf = _pdf(title)
    for rows in pages:
        pdf.add_page()
        _header(pdf, title, header)
        pdf.set_font("Courier", "B", 9)
        pdf.cell(0, 5, heading, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_font("Courier", "", 9)
        for row in rows:
            pdf.cell(0, 5, line(row), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    return bytes(pdf.output())
