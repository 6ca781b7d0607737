"""The deterministic extractor: lab results read off common report layouts by rules, no model.

A result row is a line of the form `name  result  [unit]  [range]  [flag]` (unit, range and flag
in any order after the result, at least a unit or a range present). A panel is the title line
above a column heading (or directly above rows). The collection time and specimen come from the
report header. Lines that look like rows but cannot be read are reported, never guessed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from plugin.results import InputProblem, ModelInfo

from .lab_rows import (
    QUALITATIVE,
    LabRow,
    clean_name,
    clean_unit,
    flag_code,
    is_unit,
    read_number,
)
from .pages import Line, PageText
from .printed_numbers import Conventions, detect_conventions, parse_date, parse_value
from .table_columns import leader_debris
from .table_reader import read_tables

LAYOUT_VERSION = "1.0"
MODEL = ModelInfo(
    name="chartlight/lab-layout-extractor",
    version=LAYOUT_VERSION,
    kinds=("Deterministic-AI",),
    display="chartlight lab-report layout rules over the text layer or Tesseract OCR",
)

_HEADINGS = frozenset({"test", "tests", "result", "results", "unit", "units", "reference",
                       "range", "flag", "flags", "value", "analyte", "interval", "ref"})
_RANGE = re.compile(r"^\(?([<>≤≥]=?\s?\d+(?:\.\d+)?|\d+(?:\.\d+)?\s?[-–—]\s?\d+(?:\.\d+)?)\)?$")
_COLLECTED = re.compile(r"(?i)\b(?:collected|collection(?: date)?(?: ?/ ?time)?|date collected|"
                        r"date of collection|drawn|sampled|entnahme(?:datum)?|abnahme|"
                        r"prélèvement|prelevement)\s*:?\s*(.+)")
_SPECIMEN = re.compile(r"(?i)^specimen(?: type)?\s*:\s*(.+?)(?:\s{2,}|\s+status\s*:|$)")
_MAX_NAME_WORDS = 8
_LABELS = frozenset({"reference", "ref", "range", "normal", "interval", "flag", "units", "unit"})
_CONTINUED = re.compile(r"\s*\((?:continued|cont\.?)\)", re.IGNORECASE)
UNREADABLE: Literal["unreadable"] = "unreadable"
# Units printed as a word, which the UCUM table does not list.
_BARE_UNITS = frozenset({"ratio", "index", "titer", "titre", "cells", "copies", "units", "iu",
                         "sec", "secs", "seconds", "mm", "%"})


@dataclass(frozen=True)
class LayoutReading:
    rows: tuple[LabRow, ...]
    unreadable: tuple[InputProblem, ...]
    collected: datetime | None


@dataclass(frozen=True)
class _Cells:
    name: str
    result: str
    unit: str
    reference_range: str
    flag: str


def read_lab_rows(pages: Sequence[PageText]) -> LayoutReading:
    """Every result row of every page, in reading order: tables under a recognised header by
    their geometry (table_reader), other lines by the line rules below. A panel title carries
    over to the next page until another one is printed."""
    conventions = detect_conventions(page.text for page in pages)
    rows: list[LabRow] = []
    unreadable: list[InputProblem] = []
    collected: datetime | None = None
    specimen = panel = ""
    running = _running_lines(pages)
    for page in pages:
        ocr = page.origin == "ocr"
        tables = read_tables(page, conventions, panel=panel, skip=frozenset(running))
        unreadable += [InputProblem(f"page {page.number}", f"could not read the row {text!r}")
                       for text in tables.unreadable]
        lines = list(page.lines())
        found: list[LabRow] = []
        for i, line in enumerate(lines):
            if collected is None and (match := _COLLECTED.search(line.text)):
                collected = parse_date(match[1], conventions, leading=True)
            if not specimen and (match := _SPECIMEN.match(line.text)):
                specimen = match[1].strip()
            if line.start in tables.covered:
                continue
            text = without_debris(page, line) if ocr else line.text
            parsed = parse_row(text, ocr=ocr, conventions=conventions)
            if isinstance(parsed, _Cells):
                found.append(LabRow(
                    page=page.number, name=parsed.name, result=parsed.result, unit=parsed.unit,
                    reference_range=parsed.reference_range, flag=parsed.flag, panel=panel,
                    span=(line.start, line.end)))
            elif parsed == UNREADABLE:
                unreadable.append(InputProblem(f"page {page.number}",
                                               f"could not read the row {line.text!r}"))
            elif (_is_title(line.text, ocr) and _opens_table(lines[i + 1:i + 2], ocr)
                  and _plain(line.text) not in running):
                panel = clean_name(_CONTINUED.sub("", line.text), ocr=ocr)
        if tables.rows:
            panel = tables.panel or panel
        found += tables.rows
        found.sort(key=lambda row: row.span[0] if row.span else 0)
        rows += [replace(row, specimen=specimen) for row in found]
    return LayoutReading(tuple(rows), tuple(unreadable), collected)


def without_debris(page: PageText, line: Line) -> str:
    """An OCR'd line without the dotted leaders Tesseract reads as runs of letters ("Glucose nee
    eee ene e eee 128"): `leader_debris`."""
    words = [w for w in page.words if line.start <= w.start < line.end]
    texts = [page.text[w.start:w.end] for w in words]
    debris = leader_debris(texts, [w.confidence for w in words])
    return " ".join(t for t, d in zip(texts, debris, strict=True) if not d)


def parse_row(text: str, *, ocr: bool,
              conventions: Conventions | None = None) -> _Cells | Literal["unreadable"] | None:
    """The cells of a result row; UNREADABLE for a line that looks like a row whose cells do
    not fit; None for anything else (headings, addresses, dates)."""
    tokens = text.split()
    # Specks before the name, and row numbers ("1  Glucose ...").
    while tokens and len(tokens[0]) <= 3 and not re.search(r"[A-Za-z]", tokens[0]):
        tokens.pop(0)
    if not tokens or not re.search(r"[A-Za-z]", tokens[0]):
        return None
    value_at = _result_index(tokens, ocr, conventions)
    if value_at is None:
        return UNREADABLE if _looks_like_row(tokens) else None
    # A running header or footer ("Lab | Accession | Patient  Page 1 of 2"), not a result; a
    # single bar is the streak a dirty scanner bar leaves.
    if sum("|" in t for t in tokens[1:value_at]) >= 2 or tokens[value_at - 1].lower() == "page":
        return None
    name_tokens = [t for t in tokens[:value_at] if not _is_junk(t)]
    if name_tokens and name_tokens[-1].endswith(":"):  # "Glucose: 128 mg/dL"
        name_tokens[-1] = name_tokens[-1].rstrip(":")
    name = " ".join(name_tokens)
    if (not 1 <= len(name_tokens) <= _MAX_NAME_WORDS or any(t.endswith(":") for t in name_tokens)
            or sum(c.isalpha() for c in name) < 2):
        return None
    if {w.lower() for w in name_tokens} <= _HEADINGS | {"page"}:
        return None
    return _cells(clean_name(name, ocr=ocr), tokens[value_at], tokens[value_at + 1:], ocr,
                  conventions)


def _result_index(tokens: list[str], ocr: bool, conventions: Conventions | None) -> int | None:
    """Where the result is: the first number (or qualitative word) after the name, outside any
    parentheses the name opened."""
    depth = 0
    for i, token in enumerate(tokens):
        if i > 0 and depth <= 0:
            if read_number(token, ocr=ocr, conventions=conventions) is not None or \
                    token.lower() in QUALITATIVE:
                return i
            if token.lower() == "not" and tokens[i + 1:i + 2] and tokens[i + 1].lower() == "detected":
                return i
        depth += token.count("(") - token.count(")")
    return None


def _cells(name: str, result_token: str, texts: list[str], ocr: bool,
           conventions: Conventions | None) -> _Cells | Literal["unreadable"] | None:
    result = read_number(result_token, ocr=ocr, conventions=conventions) or result_token
    printed = parse_value(result_token, conventions) if conventions is not None else None
    attached = printed.flag if printed is not None else ""
    if result.lower() == "not" and texts[:1] and texts[0].lower() == "detected":
        result, texts = "Not detected", texts[1:]
    unit = reference = flag = ""
    stray: list[str] = []  # unreadable tokens seen before the range
    trailing: list[str] = []  # unreadable tokens after it
    k = 0
    while k < len(texts):
        token = texts[k]
        if _is_junk(token) or token.lower().strip(".:()") in _LABELS:
            k += 1  # a speck, or a label ("Reference (70-99)")
        elif not reference and (found := _range_at(texts, k)):
            reference, k = found
        elif not flag and flag_code(token) is not None:
            flag, k = token, k + 1
        elif not unit and k + 1 < len(texts) and _range_at(texts, k + 1) is None and \
                is_unit(texts[k] + texts[k + 1], ocr=ocr):
            # A unit split by OCR ("x10^9 /L"); not a unit and the range after it ("mg/dL <
            # 150"), which OCR's unit mending would otherwise take for "mg/dL" with a speck.
            unit, k = texts[k] + texts[k + 1], k + 2
        elif not unit and (_unit_like(token, ocr) or is_unit(token, ocr=ocr, test=name)):
            unit, k = token, k + 1
        elif not reference and " ".join(texts[k:k + 2]).lower() == "not detected":
            reference, k = "Not detected", k + 2
        else:
            (trailing if reference else stray).append(token)
            k += 1
    if not unit and not reference:
        return None
    # One-character strays are specks ("4.3 0 mmol/L"); short noise after the range is the flag
    # column misread ("LE"): the range decides the flag. Anything longer is a row we cannot read.
    if any(len(t) > 1 for t in stray) or any(len(t) > 3 for t in trailing):
        return UNREADABLE
    return _Cells(name, result, clean_unit(unit, ocr=ocr, test=name), reference,
                  flag or attached)


def _range_at(texts: list[str], k: int) -> tuple[str, int] | None:
    """A reference range starting at token k: "70-99", "<200", "(3.5-5.1)", "70 - 99",
    "70 to 99" or a qualitative reference; with the index after it."""
    token = texts[k].replace("–", "-").replace("—", "-").rstrip(".,;:")
    if _RANGE.match(token):
        return token.strip("()"), k + 1
    if k + 2 < len(texts) and texts[k + 1] in ("-", "–", "to"):
        low, high = token.lstrip("("), texts[k + 2].rstrip(".,;:").rstrip(")")
        if read_number(low, ocr=False) and read_number(high, ocr=False):
            return f"{low}-{high}", k + 3
    if token in ("<", ">", "<=", ">=", "≤", "≥") and k + 1 < len(texts) and \
            read_number(texts[k + 1].rstrip(".,;:)"), ocr=False):  # "< 200"
        return f"{token} {texts[k + 1].rstrip('.,;:)')}", k + 2
    if token.lower() in ("negative", "positive", "nonreactive", "non-reactive"):
        return token, k + 1
    return None


def _unit_like(token: str, ocr: bool) -> bool:
    """A known unit, a ratio of things (`copies/mL`) or a bare unit word (`titer`)."""
    cleaned = clean_unit(token, ocr=ocr)
    return (is_unit(cleaned) or cleaned.lower() in _BARE_UNITS
            or bool(re.fullmatch(r"[A-Za-zµμ0-9^*.\[\]{}]+/[A-Za-zµμ0-9^*.\[\]{}/]+", cleaned)))


def _looks_like_row(tokens: list[str]) -> bool:
    """A name followed by something range-shaped, but no readable result."""
    return (len(tokens) <= 12 and not any(t.endswith(":") or "|" in t for t in tokens)
            and any(_RANGE.match(t.rstrip(".,;:")) for t in tokens[1:]))


def _is_junk(token: str) -> bool:
    """Marks that OCR reads from specks and rules: punctuation with no letter or digit."""
    return not re.search(r"[A-Za-z0-9%<>]", token)


def _running_lines(pages: Sequence[PageText]) -> set[str]:
    """Lines printed on more than one page: the lab's running header and footer."""
    seen: dict[str, set[int]] = {}
    for page in pages:
        for line in page.lines():
            seen.setdefault(_plain(line.text), set()).add(page.number)
    return {text for text, numbers in seen.items() if len(numbers) > 1}


def _plain(text: str) -> str:
    return " ".join(_CONTINUED.sub("", text).lower().split())


def _is_title(text: str, ocr: bool) -> bool:
    words = text.split()
    return (1 <= len(words) <= _MAX_NAME_WORDS and ":" not in text and "|" not in text
            and sum(c.isalpha() for c in text) >= 3
            and sum(c.isdigit() for c in text) <= 2
            and not _is_heading(text) and parse_row(text, ocr=ocr) is None)


def _opens_table(following: list[Line], ocr: bool) -> bool:
    return bool(following) and (_is_heading(following[0].text)
                                or isinstance(parse_row(following[0].text, ocr=ocr), _Cells))


def _is_heading(text: str) -> bool:
    """A column heading line ("Test  Result  Units  Reference range  Flag")."""
    words = {w.strip(".:").lower() for w in text.split()}
    found = len(words & _HEADINGS)
    return found >= 3 or (found == 2 and not re.search(r"\d", text))
