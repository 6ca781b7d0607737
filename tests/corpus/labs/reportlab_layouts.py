"""Layouts drawn with reportlab: on the canvas (one text object per cell, cells drawn in any
order, as report writers do) and with platypus tables (its own table layout and line breaking).
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, LETTER
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    BaseDocTemplate,
    Frame,
    FrameBreak,
    PageBreak,
    PageTemplate,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from .content import Printed

Cell = Callable[[Printed], str]


@dataclass(frozen=True)
class Column:
    heading: tuple[str, ...]  # one string per header line
    cell: Cell
    x: float  # left edge in points (canvas layouts)
    align: str = "left"  # or "right": the cell's right edge is x


NAME: Cell = lambda p: p.name  # noqa: E731
RESULT: Cell = lambda p: p.result  # noqa: E731
FLAG: Cell = lambda p: p.flag  # noqa: E731
UNIT: Cell = lambda p: p.unit  # noqa: E731
RANGE: Cell = lambda p: p.range  # noqa: E731


def _header(canvas: Canvas, title: str, lines: Sequence[str], top: float) -> float:
    canvas.setFont("Helvetica-Bold", 14)
    canvas.drawString(50, top, title)
    canvas.setFont("Helvetica", 9)
    y = top - 16
    for line in lines:
        canvas.drawString(50, y, line)
        y -= 12
    return y - 10


def canvas_grid(pages: list[list[Printed]], columns: Sequence[Column], *, title: str,
                header: Sequence[str], seed: int, shuffle: bool = True, row_gap: float = 15,
                footer: bool = False) -> bytes:
    """Each cell its own drawString (its own text object), in a seeded random order per page."""
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=LETTER, invariant=1)
    width, height = LETTER
    shuffler = random.Random(seed)
    for number, rows in enumerate(pages, start=1):
        y = _header(canvas, title, header, height - 60)
        canvas.setFont("Helvetica-Bold", 9)
        for column in columns:
            for line_no, line in enumerate(column.heading):
                _draw(canvas, column, line, y - 11 * line_no)
        y -= 11 * max(len(c.heading) for c in columns) + 10
        canvas.line(50, y + 12, width - 50, y + 12)
        cells = [(column, row, y - row_gap * i) for i, row in enumerate(rows) for column in columns]
        if shuffle:
            shuffler.shuffle(cells)
        canvas.setFont("Helvetica", 9)
        for column, row, row_y in cells:
            _draw(canvas, column, column.cell(row), row_y)
        if footer:
            canvas.drawString(width / 2 - 30, 40, f"Page {number} of {len(pages)}")
        canvas.showPage()
    canvas.save()
    return out.getvalue()


def _draw(canvas: Canvas, column: Column, text: str, y: float) -> None:
    if not text:
        return
    if column.align == "right":
        canvas.drawRightString(column.x, y, text)
    else:
        canvas.drawString(column.x, y, text)


def canvas_leaders(pages: list[list[Printed]], *, title: str, header: Sequence[str]) -> bytes:
    """A name followed by dotted leaders up to the result, then unit and range, row by row."""
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=LETTER, invariant=1)
    width, height = LETTER
    for rows in pages:
        y = _header(canvas, title, header, height - 60) - 4
        canvas.setFont("Helvetica", 10)
        for row in rows:
            dots = "." * max(4, int((230 - canvas.stringWidth(row.name, "Helvetica", 10)) / 2.8))
            canvas.drawString(50, y, f"{row.name} {dots}")
            canvas.drawRightString(340, y, row.result)
            canvas.drawString(350, y, row.unit)
            canvas.drawString(430, y, row.range)
            y -= 18
        canvas.showPage()
    canvas.save()
    return out.getvalue()


def _table(data: list[list[str]], widths: Sequence[float], header_rows: int = 1,
           size: float = 9) -> Table:
    table = Table(data, colWidths=list(widths), repeatRows=header_rows)
    table.setStyle(TableStyle([
        ("FONT", (0, 0), (-1, header_rows - 1), "Helvetica-Bold", size),
        ("FONT", (0, header_rows), (-1, -1), "Helvetica", size),
        ("LINEBELOW", (0, header_rows - 1), (-1, header_rows - 1), 0.8, colors.black),
        ("GRID", (0, header_rows), (-1, -1), 0.25, colors.grey),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
    ]))
    return table


def platypus_tables(pages: list[list[Printed]], columns: Sequence[tuple[str, Cell]], *,
                    title: str, header: Sequence[str], widths: Sequence[float]) -> bytes:
    """A platypus Table per page; a heading with a line break becomes a two-line header cell."""
    out = io.BytesIO()
    doc = SimpleDocTemplate(out, pagesize=A4, invariant=1, title=title,
                            leftMargin=18 * mm, rightMargin=18 * mm)
    styles = getSampleStyleSheet()
    story: list[object] = []
    for number, rows in enumerate(pages):
        if number:
            story.append(PageBreak())
        story.append(Paragraph(title, styles["Heading2"]))
        story += [Paragraph(line, styles["Normal"]) for line in header]
        story.append(Spacer(1, 10))
        data = [[heading for heading, _ in columns]]
        data += [[cell(row) for _, cell in columns] for row in rows]
        story.append(_table(data, widths))
    doc.build(story)
    return out.getvalue()


def platypus_two_columns(left: list[Printed], right: list[Printed],
                         columns: Sequence[tuple[str, Cell]], *, title: str,
                         header: Sequence[str], widths: Sequence[float]) -> bytes:
    """Two frames side by side on one page, a table in each (a two-column page)."""
    out = io.BytesIO()
    page_w, page_h = A4
    margin = 15 * mm
    gap = 8 * mm
    column_w = (page_w - 2 * margin - gap) / 2
    top_h = 70
    frames = [
        Frame(margin, page_h - margin - top_h, page_w - 2 * margin, top_h, id="head"),
        Frame(margin, margin, column_w, page_h - 2 * margin - top_h, id="left"),
        Frame(margin + column_w + gap, margin, column_w, page_h - 2 * margin - top_h, id="right"),
    ]
    doc = BaseDocTemplate(out, pagesize=A4, invariant=1, title=title)
    doc.addPageTemplates([PageTemplate(id="two", frames=frames)])
    styles = getSampleStyleSheet()
    story: list[object] = [Paragraph(title, styles["Heading2"])]
    story += [Paragraph(line, styles["Normal"]) for line in header]
    story.append(FrameBreak())
    for part in (left, right):
        data = [[heading for heading, _ in columns]] + [[cell(r) for _, cell in columns] for r in part]
        story += [_table(data, widths, size=8), FrameBreak()]
    doc.build(story[:-1])
    return out.getvalue()
