"""Layouts written as HTML+CSS and printed to PDF by Debian's Chromium (Playwright drives it via
executable_path, as the browser tests do): real browser table layout, line wrapping and
pagination. All pages are printed in one browser session.
"""

from __future__ import annotations

import html
import shutil
from collections.abc import Callable, Mapping, Sequence

from .content import Printed

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]

Cell = Callable[[Printed], str]

_CSS = """
body { font-family: 'DejaVu Sans', Arial, sans-serif; font-size: 10pt; margin: 0; }
h1 { font-size: 15pt; margin: 0 0 4pt 0; }
.meta { margin-bottom: 10pt; }
table { border-collapse: collapse; }
th { text-align: left; border-bottom: 1.2pt solid #000; padding: 2pt 8pt 2pt 2pt; }
td { padding: 3pt 8pt 3pt 2pt; border-bottom: 0.4pt solid #bbb; vertical-align: top; }
.page { page-break-after: always; }
.page:last-child { page-break-after: auto; }
"""


def _escape(text: str) -> str:
    return html.escape(text)


def document(title: str, header: Sequence[str], pages: Sequence[str], css: str = "") -> str:
    """An HTML document whose `pages` each start on a new printed page."""
    meta = "".join(f"<div>{_escape(line)}</div>" for line in header)
    body = "".join(
        f'<section class="page"><h1>{_escape(title)}</h1><div class="meta">{meta}</div>{page}'
        "</section>" for page in pages)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{_escape(title)}</title>"
            f"<style>{_CSS}{css}</style></head><body>{body}</body></html>")


def table(rows: Sequence[Printed], columns: Sequence[tuple[str, Cell]], css_class: str = "") -> str:
    """A table; a heading containing "\\n" prints as a header on two lines."""
    head = "".join(f"<th>{'<br>'.join(_escape(p) for p in heading.split(chr(10)))}</th>"
                   for heading, _ in columns)
    body = "".join("<tr>" + "".join(f"<td>{_escape(cell(row))}</td>" for _, cell in columns)
                   + "</tr>" for row in rows)
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def lines(rows: Sequence[Printed], line: Callable[[Printed], str]) -> str:
    return "".join(f"<p class='line'>{_escape(line(row))}</p>" for row in rows)


def print_pdfs(documents: Mapping[str, str], paper: Mapping[str, str]) -> dict[str, bytes]:
    """Every document printed to PDF by Chromium, in one browser session."""
    if shutil.which(CHROMIUM) is None:
        raise RuntimeError(f"{CHROMIUM} is missing: install Debian's chromium package (make deps)")
    from playwright.sync_api import sync_playwright

    printed: dict[str, bytes] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            for name, source in documents.items():
                page.set_content(source, wait_until="load")
                printed[name] = page.pdf(format=paper.get(name, "Letter"), print_background=True,
                                         margin={"top": "15mm", "bottom": "15mm",
                                                 "left": "15mm", "right": "15mm"})
        finally:
            browser.close()
    return printed
