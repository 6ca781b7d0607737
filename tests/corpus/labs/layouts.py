"""The corpus's layouts: which results each prints, in which producer, columns and styles.

Every layout states its truth from the same `Printed` cells its renderer places, so the truth is
what is on the page by construction; tests/unit/corpus checks it against the PDF's text layer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from . import fpdf_layouts, html_layouts, pillow_layouts
from . import reportlab_layouts as rl
from .cache import cached, cached_path, store
from .content import (
    COLLECTED,
    DATE_EU,
    DATE_ISO,
    DATE_UK,
    DATE_US,
    EU,
    UK_SI,
    US_CBC,
    US_CMP,
    US_LIPID_ENDO,
    US_LONG_NAMES,
    US_SPECIAL,
    Printed,
    Style,
    on_pages,
)
from .model import LabLayout, Producer, TextLayer
from .text_layers import garbage_text_layer, partial_text_layer

NAME, RESULT, FLAG, UNIT, RANGE = rl.NAME, rl.RESULT, rl.FLAG, rl.UNIT, rl.RANGE


def _us_header(date: str = DATE_US) -> tuple[str, ...]:
    return ("Patient: CORPUS, TEST    DOB: 03/14/1961    Sex: M    MRN: 000-CORPUS",
            f"Collected: {date}    Received: 11/20/2026 10:02    Ordering: Dr. A. Example")


def _uk_header() -> tuple[str, ...]:
    return ("Patient: Test CORPUS    Date of birth: 14/03/1961    NHS No: 000 000 0000",
            f"Specimen collected: {DATE_UK}    Requested by: Dr A Example, Riverside Surgery")


def _eu_header(date: str = DATE_EU) -> tuple[str, ...]:
    return ("Patient: CORPUS, Test    Date of birth: 14.03.1961",
            f"Sample date: {date}    Laboratory: Example Labor GmbH")


@dataclass(frozen=True)
class _Spec:
    name: str
    producer: Producer
    description: str
    pages: list[list[Printed]]
    date_text: str
    make: Callable[[list[list[Printed]]], bytes] | None = None  # None: an HTML document
    html: Callable[[list[list[Printed]]], str] | None = None
    paper: str = "Letter"
    decimal_comma: bool = False


def _specs() -> list[_Spec]:
    specs: list[_Spec] = []

    def add(spec: _Spec) -> None:
        specs.append(spec)

    # ---------------------------------------------------------------- reportlab
    add(_Spec("rl-cells-cbc", "reportlab",
              "canvas, one text object per cell drawn in random order; Test|Result|Flag|Units|"
              "Reference; thousands separators; US date",
              on_pages(US_CBC, Style(thousands=True), 20), DATE_US,
              lambda pages: rl.canvas_grid(pages, [
                  rl.Column(("Test",), NAME, 50), rl.Column(("Result",), RESULT, 250, "right"),
                  rl.Column(("Flag",), FLAG, 275), rl.Column(("Units",), UNIT, 320),
                  rl.Column(("Reference Interval",), RANGE, 420)],
                  title="Complete Blood Count", header=_us_header(), seed=11)))
    add(_Spec("rl-cells-tight-flags", "reportlab",
              "canvas cells; Test|Result|Units|Reference Range with flags glued to the value "
              "('5.6H'); spaced ranges 'a - b'; ISO date",
              on_pages(US_CMP, Style(flags="tight", ranges="spaced"), 20), DATE_ISO,
              lambda pages: rl.canvas_grid(pages, [
                  rl.Column(("Test",), NAME, 50), rl.Column(("Result",), RESULT, 220),
                  rl.Column(("Units",), UNIT, 300), rl.Column(("Reference", "Range"), RANGE, 380)],
                  title="Comprehensive Metabolic Panel", header=_us_header(DATE_ISO), seed=12)))
    add(_Spec("rl-dotted-leaders", "reportlab",
              "dotted leaders from name to value; flag suffix '212 H'; '< b' and '> a' ranges",
              on_pages(US_LIPID_ENDO, Style(flags="suffix"), 20), DATE_US,
              lambda pages: rl.canvas_leaders(pages, title="Lipid and Endocrine Profile",
                                              header=_us_header())))
    add(_Spec("rl-range-first", "reportlab",
              "canvas cells, Test|Reference Range|Result|Units: the range before the result; "
              "ranges '(a-b)', star flags '*128'",
              on_pages(US_CMP, Style(flags="star", ranges="paren"), 20), DATE_US,
              lambda pages: rl.canvas_grid(pages, [
                  rl.Column(("Test",), NAME, 50), rl.Column(("Reference Range",), RANGE, 210),
                  rl.Column(("Result",), RESULT, 330), rl.Column(("Units",), UNIT, 400)],
                  title="Chemistry", header=_us_header(), seed=13)))
    add(_Spec("rl-platypus-uk", "reportlab",
              "platypus table, UK spellings and SI units, two-line headers, UK date, 2 pages",
              on_pages(UK_SI, Style(), 10), DATE_UK,
              lambda pages: rl.platypus_tables(
                  pages, [("Test", NAME), ("Result", RESULT), ("Units", UNIT),
                          ("Reference\nrange", RANGE), ("Flag", FLAG)],
                  title="Blood Sciences Report", header=_uk_header(),
                  widths=(150, 60, 70, 90, 40)),
              paper="A4"))
    add(_Spec("rl-platypus-two-column", "reportlab",
              "two-column page (two frames), a table in each; flag suffix '5.6 H'",
              [[*on_pages(US_CBC, Style(flags="suffix", thousands=True), 99)[0],
                *on_pages(US_CMP, Style(flags="suffix"), 99)[0]]], DATE_US,
              lambda pages: rl.platypus_two_columns(
                  pages[0][:len(US_CBC)], pages[0][len(US_CBC):],
                  [("Test", NAME), ("Result", RESULT), ("Units", UNIT), ("Range", RANGE)],
                  title="Routine Bloods", header=_us_header(), widths=(88, 40, 46, 68)),
              paper="A4"))
    add(_Spec("rl-multipage", "reportlab",
              "canvas cells over 3 pages with repeated headers and page footers",
              on_pages((*US_CBC, *US_CMP, *US_LIPID_ENDO), Style(thousands=True), 15), DATE_US,
              lambda pages: rl.canvas_grid(pages, [
                  rl.Column(("Test Name",), NAME, 50), rl.Column(("Result",), RESULT, 220),
                  rl.Column(("Flag",), FLAG, 280), rl.Column(("Units",), UNIT, 320),
                  rl.Column(("Reference Range",), RANGE, 420)],
                  title="Laboratory Results", header=_us_header(), seed=14, footer=True)))

    # ---------------------------------------------------------------- chromium
    def html_table(title: str, header: tuple[str, ...], columns: list[tuple[str, rl.Cell]],
                   css: str = "") -> Callable[[list[list[Printed]]], str]:
        return lambda pages: html_layouts.document(
            title, header, [html_layouts.table(rows, columns) for rows in pages], css)

    add(_Spec("html-word-flags", "chromium",
              "browser table Test|Result|Flag|Units|Reference Interval, flags as words",
              on_pages((*US_CMP, *US_LIPID_ENDO), Style(flags="word"), 40), DATE_US,
              html=html_table("Chemistry and Lipids", _us_header(),
                              [("Test", NAME), ("Result", RESULT), ("Flag", FLAG),
                               ("Units", UNIT), ("Reference Interval", RANGE)])))
    add(_Spec("html-flag-before-result", "chromium",
              "browser table Test|Flag|Result|Units|Range; '262,000'",
              on_pages(US_CBC, Style(thousands=True), 40), DATE_US,
              html=html_table("Hematology", _us_header(),
                              [("Test", NAME), ("Flag", FLAG), ("Result", RESULT),
                               ("Units", UNIT), ("Range", RANGE)])))
    add(_Spec("html-colon-lines", "chromium",
              "'Test: value unit' lines with the range and flag after them",
              on_pages(US_CMP, Style(flags="suffix", ranges="paren"), 40),
              DATE_US,
              html=lambda pages: html_layouts.document(
                  "Metabolic Panel", _us_header(),
                  [html_layouts.lines(rows, lambda p: f"{p.name}: {p.result} {p.unit}   "
                                                      f"Reference {p.range}") for rows in pages],
                  ".line { margin: 2pt 0; }")))
    add(_Spec("html-wrapped-names", "chromium",
              "narrow name column: long names wrap onto two lines; two-line headers; result "
              "and flag in one column",
              on_pages(US_LONG_NAMES, Style(flags="suffix"), 40), DATE_US,
              html=html_table("Hepatic Function Panel", _us_header(),
                              [("Test", NAME), ("Result\n(Flag)", RESULT), ("Units", UNIT),
                               ("Reference\nInterval", RANGE)],
                              "td:first-child { width: 130pt; }")))
    add(_Spec("html-eu-decimal-comma", "chromium",
              "EU report: decimal commas '0,94', spaced ranges '3,5 - 5,1', EU date, "
              "EU spellings",
              on_pages(EU, Style(decimal_comma=True, ranges="spaced"), 40), DATE_EU,
              html=html_table("Laboratory Findings", _eu_header(),
                              [("Test", NAME), ("Result", RESULT), ("Flag", FLAG),
                               ("Unit", UNIT), ("Reference range", RANGE)]),
              paper="A4", decimal_comma=True))
    add(_Spec("html-two-column", "chromium",
              "two tables side by side (CSS grid), UK report, flags glued '11.2H'",
              [[*on_pages(UK_SI, Style(flags="tight"), 99)[0]]], DATE_UK,
              html=lambda pages: html_layouts.document(
                  "Blood Sciences", _uk_header(),
                  ["<div class='two'>" + "".join(
                      html_layouts.table(half, [("Test", NAME), ("Result", RESULT),
                                                ("Units", UNIT), ("Range", RANGE)])
                      for half in (pages[0][:9], pages[0][9:])) + "</div>"],
                  ".two { display: grid; grid-template-columns: 1fr 1fr; column-gap: 14pt; }"
                  " .two td:not(:first-child) { white-space: nowrap; }"),
              paper="A4"))
    add(_Spec("html-star-to-ranges", "chromium",
              "star flags '*5.6', ranges 'a to b', 2 pages by CSS page breaks",
              on_pages(US_CMP, Style(flags="star", ranges="to"), 8), DATE_US,
              html=html_table("Chemistry", _us_header(),
                              [("Test", NAME), ("Result", RESULT), ("Units", UNIT),
                               ("Normal Range", RANGE)])))

    # ---------------------------------------------------------------- fpdf2
    add(_Spec("fpdf-grid-iso", "fpdf2",
              "bordered cell grid Test|Result|Unit|Range|Flag, ISO date, 2 pages",
              on_pages((*US_LIPID_ENDO, *US_CBC), Style(ranges="spaced", thousands=True), 14),
              DATE_ISO,
              lambda pages: fpdf_layouts.grid(
                  pages, [("Test", NAME, 60), ("Result", RESULT, 25), ("Unit", UNIT, 25),
                          ("Range", RANGE, 40), ("Flag", FLAG, 15)],
                  title="Laboratory Report", header=_us_header(DATE_ISO))))
    add(_Spec("fpdf-comparators-scientific", "fpdf2",
              "comparators '<0.5', '>90'; scientific '7.8 x 10^3'; '< b', '> a' ranges",
              on_pages(US_SPECIAL, Style(), 20), DATE_US,
              lambda pages: fpdf_layouts.grid(
                  pages, [("Test", NAME, 50), ("Result", RESULT, 30), ("Flag", FLAG, 15),
                          ("Units", UNIT, 35), ("Reference", RANGE, 35)],
                  title="Emergency Panel", header=_us_header())))
    add(_Spec("fpdf-monospaced-eu", "fpdf2",
              "fixed-width Courier lines, columns of spaces; EU decimal commas; 2 pages",
              on_pages(EU, Style(decimal_comma=True, flags="suffix"), 9), DATE_EU,
              lambda pages: fpdf_layouts.monospaced(
                  pages, lambda p: f"{p.name:<16}{p.result:>10}   {p.unit:<10}{p.range}",
                  title="Laboratory Findings", header=_eu_header(),
                  heading=f"{'Test':<16}{'Result':>10}   {'Unit':<10}Reference"),
              decimal_comma=True))
    add(_Spec("fpdf-uk-range-result", "fpdf2",
              "Test|Range|Result|Units grid, UK SI report, 'a to b' ranges",
              on_pages(UK_SI, Style(ranges="to", flags="suffix"), 20), DATE_UK,
              lambda pages: fpdf_layouts.grid(
                  pages, [("Test", NAME, 55), ("Reference", RANGE, 35), ("Result", RESULT, 25),
                          ("Units", UNIT, 30)],
                  title="Clinical Biochemistry", header=_uk_header(), align_numbers=False)))
    return specs


_SPECS = {spec.name: spec for spec in _specs()}


def _html_pdf(name: str) -> bytes:
    path = cached_path(f"{name}.pdf")
    if not path.exists():
        # Chromium starts slowly: print every HTML layout not yet cached in one session.
        missing = {n: s for n, s in _SPECS.items()
                   if s.html is not None and not cached_path(f"{n}.pdf").exists()}
        pdfs = html_layouts.print_pdfs({n: s.html(s.pages) for n, s in missing.items()
                                        if s.html is not None},
                                       {n: s.paper for n, s in missing.items()})
        for printed_name, data in pdfs.items():
            store(f"{printed_name}.pdf", data)
    return path.read_bytes()


def _renderer(spec: _Spec) -> Callable[[], bytes]:
    if spec.make is not None:
        make = spec.make
        return lambda: cached(f"{spec.name}.pdf", lambda: make(spec.pages))
    return lambda: _html_pdf(spec.name)


def _drawn() -> tuple[LabLayout, ...]:
    return tuple(
        LabLayout(spec.name, spec.producer, spec.description,
                  tuple(p.truth for rows in spec.pages for p in rows), COLLECTED,
                  spec.date_text, len(spec.pages), spec.decimal_comma, (), _renderer(spec))
        for spec in _SPECS.values())


@cache
def layouts() -> tuple[LabLayout, ...]:
    """Every layout of the corpus, in a fixed order: those drawn here, then two whose text layer
    cannot be trusted (made from drawn ones)."""
    drawn = _drawn()
    by_name = {lab.name: lab for lab in drawn}
    return (*drawn,
            garbage_text_layer(by_name["html-word-flags"], "rl-garbage-text-layer"),
            partial_text_layer(by_name["rl-platypus-uk"], "rl-partial-text-layer"))


def layout(name: str) -> LabLayout:
    (found,) = [candidate for candidate in (*layouts(), *held_out()) if candidate.name == name]
    return found


@cache
def held_out() -> tuple[LabLayout, ...]:
    """Layouts by a producer the reader was not developed on (added after the reader was tuned
    on `layouts()`): reported apart, never tuned on."""
    pages = on_pages((*US_CBC, *US_CMP), Style(thousands=True), 99)
    name = "pillow-plain-text-lis"

    def make() -> bytes:
        return pillow_layouts.plain_text(
            pages, lambda p: f"{p.name:<26}{p.result:>9}  {p.flag:<3}{p.unit:<11}{p.range}",
            title="Laboratory Information System - Final Report", header=_us_header(),
            heading=f"{'TEST':<26}{'RESULT':>9}  {'FL':<3}{'UNITS':<11}REFERENCE")

    none: TextLayer = "none"
    return (LabLayout(name, "pillow",
                      "plain-text LIS printout: fixed-width columns of spaces drawn by Pillow "
                      "in DejaVu Sans Mono at 300 dpi, an image-only PDF (held out)",
                      tuple(p.truth for rows in pages for p in rows), COLLECTED, DATE_US,
                      len(pages), False, (none,) * len(pages),
                      lambda: cached(f"{name}.pdf", make)),)
