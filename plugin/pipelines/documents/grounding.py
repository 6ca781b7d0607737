"""Grounding: a result is kept only where the page itself shows it.

A row is verified when one line of the page's text (text layer or OCR) names the test and the
first result printed after the name is the row's result, with its unit beside it. The evidence
is that line: page, character span, the quoted text and its box. A row that fails is reported as
"unverified: ..." and never becomes a MeasuredValue. A range or flag the page does not print
beside the result is dropped from the row (the range is reported; the flag is computed later).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, replace

from fhir_mappers.loinc import name_key
from fhir_mappers.units import normalise_unit
from plugin.results import InputProblem, TextEvidence

from .lab_rows import QUALITATIVE, LabRow, clean_unit, flag_code, read_number, same_number
from .pages import Line, PageText

NAME_SIMILARITY = 0.85  # how close an OCR'd name must be to the row's (difflib ratio)


@dataclass(frozen=True)
class Verified:
    row: LabRow
    evidence: TextEvidence
    problems: tuple[InputProblem, ...] = ()
    confidence: float | None = None  # OCR's confidence in the result as printed; None: text layer


@dataclass(frozen=True)
class _Token:
    start: int
    end: int
    text: str


def ground(row: LabRow, page: PageText) -> Verified | InputProblem:
    ocr = page.origin == "ocr"
    expected = _result_text(row.result, ocr=False)
    where = f"page {page.number}"
    if expected is None:
        return InputProblem(where, f"unverified: {_said(row)} (the result is not a number or a "
                                   "recognised qualitative result)")
    reason = "no line of the page names the test"
    for line, tokens, name_end in _lines_naming(row, page, fuzzy=ocr):
        after = [t for t in tokens if t.start >= name_end]
        shown_at = _first_result(after, ocr)
        if shown_at is None:
            reason = "the line naming the test shows no result"
            continue
        shown = _result_text(after[shown_at].text, ocr=ocr)
        if shown is None or not _same_result(shown, expected):
            reason = f"the page shows {after[shown_at].text!r} for it"
            continue
        beside = [t.text for t in after[shown_at + 1:]]
        if row.unit.strip() and not _unit_shown(row.unit, beside, ocr):
            reason = f"the unit {row.unit!r} is not printed beside the result"
            continue
        evidence = TextEvidence(page=page.number, start=line.start, end=line.end, quote=line.text,
                                box=page.box(line.start, line.end))
        shown_start = line.start + after[shown_at].start
        confidence = page.confidence(shown_start, shown_start + len(after[shown_at].text))
        return _trim_unshown(row, beside, evidence, where, confidence)
    return InputProblem(where, f"unverified: {_said(row)} ({reason})")


def _lines_naming(row: LabRow, page: PageText,
                  fuzzy: bool) -> list[tuple[Line, list[_Token], int]]:
    """The lines that name the row's test, with their words and where the name ends. Lines
    naming it exactly win; only without one (and only on OCR'd text) may a name one slip away
    count, so "HDL" never borrows the value of the "LDL" line."""
    found: dict[bool, list[tuple[Line, list[_Token], int]]] = {True: [], False: []}
    for line in _candidate_lines(row, page):
        tokens = [_Token(m.start(), m.end(), m.group()) for m in re.finditer(r"\S+", line.text)]
        for exact in (True, False) if fuzzy else (True,):
            end = _name_end(tokens, row.name, exact=exact)
            if end is not None:
                found[exact].append((line, tokens, end))
                break
    return found[True] or found[False]


def _candidate_lines(row: LabRow, page: PageText) -> list[Line]:
    lines = list(page.lines())
    if row.span is None:
        return lines
    start, end = row.span
    return [line for line in lines if line.start < end and line.end > start]


def _name_end(tokens: list[_Token], name: str, *, exact: bool) -> int | None:
    """Where the test name ends on the line, matching whole words (and, unless `exact`,
    forgiving a slip)."""
    wanted = name_key(name)
    if not wanted:
        return None
    size = len(name.split())
    for length in dict.fromkeys((size, size + 1, size - 1)):
        if length < 1:
            continue
        for first in range(0, len(tokens) - length + 1):
            window = tokens[first:first + length]
            found = name_key(" ".join(t.text for t in window))
            if found == wanted or (
                    not exact and len(wanted) >= 5
                    and difflib.SequenceMatcher(None, found, wanted).ratio() >= NAME_SIMILARITY):
                return window[-1].end
    return None


def _first_result(tokens: list[_Token], ocr: bool) -> int | None:
    depth = 0
    for i, token in enumerate(tokens):
        if depth <= 0 and _result_text(token.text, ocr=ocr) is not None:
            return i
        depth += token.text.count("(") - token.text.count(")")
    return None


def _result_text(text: str, *, ocr: bool) -> str | None:
    number = read_number(text, ocr=ocr)
    if number is not None:
        return number
    word = " ".join(text.split()).lower()
    return word if word in QUALITATIVE or word == "not" else None


def _same_result(shown: str, expected: str) -> bool:
    if read_number(expected, ocr=False) is not None:
        return read_number(shown, ocr=False) is not None and same_number(shown, expected)
    # "not" is where a printed "Not detected" starts.
    return shown == expected or (shown == "not" and expected == "not detected")


def _unit_shown(unit: str, beside: list[str], ocr: bool) -> bool:
    wanted = normalise_unit(clean_unit(unit))
    candidates = beside[:3] + [a + b for a, b in zip(beside[:3], beside[1:4], strict=False)]
    for text in candidates:
        shown = normalise_unit(clean_unit(text, ocr=ocr))
        if wanted.ucum is not None and shown.ucum == wanted.ucum:
            return True
        if shown.display.lower() == wanted.display.lower():
            return True
    return False


def _trim_unshown(row: LabRow, beside: list[str], evidence: TextEvidence, where: str,
                  confidence: float | None) -> Verified:
    """Keep the range and flag only when the line prints them after the result."""
    compact = [re.sub(r"\s+", "", t).strip("()") for t in beside]
    joined = "".join(compact)
    problems: list[InputProblem] = []
    if row.reference_range.strip():
        printed = re.sub(r"\s+", "", row.reference_range).strip("()").replace("–", "-")
        if printed not in joined.replace("–", "-"):
            problems.append(InputProblem(where, f"unverified: reference range "
                                                f"{row.reference_range!r} of {row.name} is not "
                                                "printed beside it; left out"))
            row = replace(row, reference_range="")
    if row.flag.strip():
        wanted = flag_code(row.flag)
        if wanted is None or not any(flag_code(t) == wanted for t in beside):
            row = replace(row, flag="")
    return Verified(row, evidence, tuple(problems), confidence)


def _said(row: LabRow) -> str:
    return f"{row.name} = {row.result} {row.unit}".strip()
