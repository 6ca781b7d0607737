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
from plugin.results import Box, InputProblem, TextEvidence

from .lab_rows import (
    QUALITATIVE,
    LabRow,
    clean_name,
    clean_unit,
    flag_code,
    read_number,
    same_number,
)
from .pages import Line, PageText, Word
from .precision_gate import OCR_MIN_CONFIDENCE, WITHHELD
from .printed_numbers import POINT_MDY, Conventions, parse_value

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


def ground(row: LabRow, page: PageText,
           conventions: Conventions = POINT_MDY) -> Verified | InputProblem:
    ocr = page.origin == "ocr"
    expected = _result_text(row.result, ocr=False)
    where = f"page {page.number}"
    if expected is None:
        return InputProblem(where, f"unverified: {_said(row)} (the result is not a number or a "
                                   "recognised qualitative result)")
    if row.at is not None and row.span is not None:
        return _ground_at(row, row.at, row.span, page, expected, conventions)
    reason = "no line of the page names the test"
    for line, tokens, name_end in _lines_naming(row, page, fuzzy=ocr):
        after = [t for t in tokens if t.start >= name_end]
        shown_at = _first_result(after, ocr, conventions)
        if shown_at is None:
            reason = "the line naming the test shows no result"
            continue
        shown = _result_text(after[shown_at].text, ocr=ocr, conventions=conventions)
        if shown is None or not _same_result(shown, expected):
            reason = f"the page shows {after[shown_at].text!r} for it"
            continue
        beside = [t.text for t in after[shown_at + 1:]]
        if row.unit.strip() and not _unit_shown(row.unit, beside, ocr, test=row.name):
            reason = f"the unit {row.unit!r} is not printed beside the result"
            continue
        evidence = TextEvidence(page=page.number, start=line.start, end=line.end, quote=line.text,
                                box=page.box(line.start, line.end))
        shown_start = line.start + after[shown_at].start
        confidence = page.confidence(shown_start, shown_start + len(after[shown_at].text))
        return _trim_unshown(row, beside, evidence, where, confidence)
    return InputProblem(where, f"unverified: {_said(row)} ({reason})")


def _ground_at(row: LabRow, at: Box, span: tuple[int, int], page: PageText, expected: str,
               conventions: Conventions) -> Verified | InputProblem:
    """A row read by geometry, checked against the page's words where it says it was printed:
    the words at the result's box, read again, must be the result; the row's band of the page
    must name the test and print the unit."""
    where = f"page {page.number}"
    ocr = page.origin == "ocr"
    at_result = sorted((w for w in page.words if w.frame is not None and _inside(w.frame, at)),
                       key=lambda w: w.frame.x0 if w.frame else 0.0)
    if not at_result:
        return InputProblem(where, f"unverified: {_said(row)} (nothing is printed where it was "
                                   "read)")
    printed = " ".join(page.text[w.start:w.end] for w in at_result)
    shown = _printed_result(printed, ocr, conventions)
    if shown is None or not _same_result(shown, expected):
        return InputProblem(where, f"unverified: {_said(row)} (the page shows {printed!r} "
                                   "there)")
    if ocr and any(w.unread_ink for w in at_result):
        return InputProblem(where, f"{WITHHELD}: {_said(row)} (ink printed beside {printed!r} "
                                   "was not read: part of the number may be missing)")
    if ocr and not _read_twice_alike(at_result, page, expected, conventions):
        again = " ".join(w.reread or "" for w in at_result)
        return InputProblem(where, f"{WITHHELD}: {_said(row)} (OCR read the value two ways: "
                                   f"{printed!r} and, read again alone, {again!r})")
    height = max(at.y1 - at.y0, 1.0)
    band = [w for w in page.words if w.frame is not None
            and at.y0 - 1.6 * height <= (w.frame.y0 + w.frame.y1) / 2 <= at.y1 + 1.6 * height]
    before = [page.text[w.start:w.end] for w in band
              if w.frame is not None and w.frame.x1 <= at.x0 + 1]
    if not (_named_in([page.text[w.start:w.end] for w in band], row.name, ocr)
            or (ocr and _named_together(before, row.name))):
        return InputProblem(where, f"unverified: {_said(row)} (the test is not named beside "
                                   "the result)")
    line = [w for w in band if abs((w.frame.y0 + w.frame.y1) / 2 - (at.y0 + at.y1) / 2)  # type: ignore[union-attr]
            <= height]
    beside = [page.text[w.start:w.end] for w in line if w not in at_result]
    if row.unit.strip() and not _unit_shown(row.unit, beside, ocr, anywhere=True,
                                              test=row.name):
        return InputProblem(where, f"unverified: {_said(row)} (the unit {row.unit!r} is not "
                                   "printed on the row)")
    evidence = TextEvidence(page=page.number, start=span[0], end=span[1],
                            quote=page.text[span[0]:span[1]], box=page.box(*span))
    scores = [w.confidence for w in at_result if w.confidence is not None]
    verified = _trim_unshown(row, beside, evidence, where, min(scores) if scores else None)
    verified = _confident_range(verified, [w for w in line if w not in at_result], page, where)
    attached = parse_value(printed, conventions)
    if row.flag.strip() and not verified.row.flag and attached is not None and \
            flag_code(attached.flag) == flag_code(row.flag):
        verified = replace(verified, row=replace(verified.row, flag=row.flag))
    return verified


def _confident_range(verified: Verified, line: list[Word], page: PageText,
                     where: str) -> Verified:
    """On an OCR'd page, a range whose words were recognised with low confidence is left out
    (and reported): a misread bound would misclassify the value."""
    printed = re.sub(r"\s+", "", verified.row.reference_range).strip("()")
    if page.origin != "ocr" or not printed:
        return verified
    shown = [w for w in line if re.search(r"\d", page.text[w.start:w.end])
             and page.text[w.start:w.end].strip("()") in printed]
    scores = [w.confidence for w in shown if w.confidence is not None]
    agreed = all(_specks(w.reread or "") == _specks(page.text[w.start:w.end])
                 and not w.unread_ink for w in shown)
    if agreed and (not scores or min(scores) >= OCR_MIN_CONFIDENCE):
        return verified
    why = (f"was recognised with confidence {min(scores):.2f}" if agreed else
           "was read two ways by OCR")
    problem = InputProblem(where, f"unverified: reference range {verified.row.reference_range!r} "
                                  f"of {verified.row.name} {why}; left out")
    return replace(verified, row=replace(verified.row, reference_range=""),
                   problems=(*verified.problems, problem))


def _named_in(printed: list[str], name: str, ocr: bool) -> bool:
    """Every word of the test's name is printed among `printed` (a row's band of the page: a
    wrapped name has its words on two lines); on OCR'd text a word may be one slip away."""
    # The slips the name was mended from count as the name ("HbAic" is how HbA1c was read).
    keys = {name_key(clean_name(word, ocr=False) if ocr else word) for word in printed} - {""}
    for word in name.split():
        wanted = name_key(word)
        if not wanted or wanted in keys:
            continue
        if not (ocr and len(wanted) >= 4 and any(
                difflib.SequenceMatcher(None, wanted, key).ratio() >= NAME_SIMILARITY
                for key in keys)):
            return False
    return True


def _named_together(printed: list[str], name: str) -> bool:
    """The test's whole name is printed in consecutive words of `printed` (the words left of the
    result, in reading order: a name wrapped onto two lines reads on), one slip away at most,
    the way the name was recognised ("LDL Chot Calc (NIH)" for LDL Chol Calc (NIH); "Gamma
    Glutamyl / Transferase" for Gamma glutamyltransferase)."""
    wanted = name_key(name)
    if len(wanted) < 8:
        return False
    for first in range(len(printed)):
        for last in range(first + 1, min(len(printed), first + len(name.split()) + 3) + 1):
            found = name_key(" ".join(printed[first:last]))
            if found == wanted or difflib.SequenceMatcher(
                    None, found, wanted).ratio() >= NAME_SIMILARITY:
                return True
    return False


def _read_twice_alike(words: list[Word], page: PageText, expected: str,
                      conventions: Conventions) -> bool:
    """Whether OCR's second reading of the result's words (number_reread: cut out, enlarged,
    read alone) gives the same result. Words without a digit (a flag, "Negative") were not
    read again."""
    texts, digits = [], []
    for word in words:
        printed = page.text[word.start:word.end]
        if re.search(r"\d", printed):
            if not word.reread:
                return False
            texts.append(word.reread)
            digits.append(word.reread)
        else:
            texts.append(printed)
    # The cut-out of "128" may catch the flag printed beside it ("128H"): then the number is
    # compared without the flag word read a second time.
    for joined in dict.fromkeys((" ".join(texts), " ".join(digits))):
        again = _printed_result(joined, True, conventions)
        if again is not None and _same_result(again, expected):
            return True
    return False


def _inside(frame: Box, at: Box) -> bool:
    """A word whose centre lies in the box (a little slack for rounding)."""
    x, y = (frame.x0 + frame.x1) / 2, (frame.y0 + frame.y1) / 2
    return at.x0 - 1 <= x <= at.x1 + 1 and at.y0 - 1 <= y <= at.y1 + 1


def _specks(text: str) -> str:
    return " ".join(w.strip(".,:;'\"“”‘’`|_~°»«()") for w in text.split())


def _printed_result(printed: str, ocr: bool, conventions: Conventions) -> str | None:
    if ocr:
        printed = _specks(printed)
    value = parse_value(printed, conventions)
    if value is not None:
        return value.result
    if ocr and len(printed.split()) == 1:
        return read_number(printed, ocr=True)
    word = " ".join(printed.split()).lower()
    return word if word in QUALITATIVE else None


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


def _first_result(tokens: list[_Token], ocr: bool, conventions: Conventions) -> int | None:
    depth = 0
    for i, token in enumerate(tokens):
        if depth <= 0 and _result_text(token.text, ocr=ocr, conventions=conventions) is not None:
            return i
        depth += token.text.count("(") - token.text.count(")")
    return None


def _result_text(text: str, *, ocr: bool, conventions: Conventions | None = None) -> str | None:
    number = read_number(text, ocr=ocr, conventions=conventions)
    if number is not None:
        return number
    word = " ".join(text.split()).lower()
    return word if word in QUALITATIVE or word == "not" else None


def _same_result(shown: str, expected: str) -> bool:
    if read_number(expected, ocr=False) is not None:
        return read_number(shown, ocr=False) is not None and same_number(shown, expected)
    # "not" is where a printed "Not detected" starts.
    return shown == expected or (shown == "not" and expected == "not detected")


def _unit_shown(unit: str, beside: list[str], ocr: bool, *, anywhere: bool = False,
                test: str = "") -> bool:
    wanted = normalise_unit(clean_unit(unit))
    near = beside if anywhere else beside[:4]
    singles = near if anywhere else near[:3]
    candidates = singles + [a + b for a, b in zip(near, near[1:], strict=False)]
    for text in candidates:
        shown = normalise_unit(clean_unit(text, ocr=ocr, test=test))
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
