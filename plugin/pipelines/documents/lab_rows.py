"""A lab result row as read from a page (text exactly as printed or as the model copied it), the
repairs OCR needs, and the MeasuredValue a verified row becomes.

OCR slips repaired here: units (`ulU/mL` -> `uIU/mL`, `x1049/L` -> `x10^9/L`), names (`Alc` ->
`A1c`, a near-miss of a known test name such as `Chioride`), numbers (`11:2`, `7.1.`, `1O.2`).
A flag that cannot be read, or that contradicts the printed range on an OCR'd page, is left
for the mapper to compute from the range.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from fhir_mappers.interpretation import classify, parse_range_text
from fhir_mappers.loinc import TABLE, name_key
from fhir_mappers.units import normalise_unit
from plugin.results import Box, Interpretation, MeasuredValue, ReferenceRange, TextEvidence

from .printed_numbers import Conventions, parse_value
from .unit_mending import mend_unit


@dataclass(frozen=True)
class LabRow:
    """One test as found on a page: every field as printed, nothing interpreted yet."""

    page: int
    name: str
    result: str
    unit: str = ""
    reference_range: str = ""
    flag: str = ""
    panel: str = ""
    specimen: str = ""
    method: str = ""
    collected: str = ""  # as printed
    span: tuple[int, int] | None = None  # the line it was read from, when the reader knows it
    at: Box | None = None  # where the result was printed (word frames), when read by geometry


FLAGS: dict[str, Interpretation] = {
    "h": "H", "hi": "H", "high": "H", "↑": "H", "h*": "HH", "hh": "HH", "critical high": "HH",
    "l": "L", "lo": "L", "low": "L", "↓": "L", "l*": "LL", "ll": "LL", "critical low": "LL",
    "a": "A", "abn": "A", "abnormal": "A", "*": "A", "n": "N", "normal": "N",
}
QUALITATIVE = frozenset({
    "negative", "positive", "detected", "not detected", "trace", "reactive", "non-reactive",
    "nonreactive", "present", "absent", "indeterminate", "equivocal", "1+", "2+", "3+", "4+",
})
_NUMBER = re.compile(r"^(<=|>=|<|>|≤|≥)?\s*([-−]?\d+(?:\.\d+)?(?:E[+-]?\d+)?)$")
_EXPONENT_UNIT = re.compile(
    r"^[xX×*]{0,2}\s?10\s?[\^*4“\"'°AMeE]?\s?(3|6|9|12)\s?/\s?([uµμ]?[lL]|mm3)$")
_STRAY_MARKS = " .,;:'\"`‘’“”~_=|"
# The units lab reports print most, as printed, for mending OCR slips ("mg/db", "UL").
_COMMON_UNITS = {u.lower(): u for u in (
    "mg/dL", "g/dL", "g/L", "mg/L", "mmol/L", "umol/L", "mEq/L", "U/L", "IU/L", "mIU/L",
    "uIU/mL", "ng/mL", "ng/dL", "pg/mL", "ug/dL", "fL", "pg", "mL/min/1.73m2", "mm/hr", "sec",
    "x10^9/L", "x10^12/L", "x10^3/uL", "x10^6/uL", "/uL", "mg/g", "mmol/mol")}
_UNIT_SLIPS = (
    (re.compile(r"^([uµμ])[lI1|]U/"), r"\1IU/"),
    (re.compile(r"^m[lI1|]U/"), "mIU/"),
    (re.compile(r"^m[UL]/min/1[.,]73\s?m[2²]$", re.IGNORECASE), "mL/min/1.73m2"),
)
# Six or more lower-case letters without ascenders or descenders: how Tesseract reads a row of
# dots (a word of a catalogued name, "venous", "screen", is never taken for them).
_DOTS_AS_LETTERS = re.compile(r"[acemnorsuvwxz]{6,}")
_NAME_WORDS = frozenset(w for entry in TABLE for alias in entry.aliases for w in alias.split())
_A1C = re.compile(r"\b(Hb)?A[lIit|!]c\b")
_KNOWN_NAMES = {name_key(alias): alias for entry in TABLE for alias in entry.aliases}
# The tests (LOINC codes, one name for all of a test's units) each known name stands for.
_TESTS_NAMED: dict[str, set[str]] = {}
for _entry in TABLE:
    for _alias in _entry.aliases:
        _TESTS_NAMED.setdefault(name_key(_alias), set()).add(_entry.display.split(" [")[0])
NAME_MEND_CUTOFF = 0.85  # difflib ratio: one slip in a name of 7 or more letters
NAME_MEND_MARGIN = 0.05  # a mend is refused when another test's name is as near, or nearly


def read_number(token: str, *, ocr: bool, conventions: Conventions | None = None) -> str | None:
    """The token as a number ("7.1", "<0.01"), or None. With the document's `conventions`,
    thousands separators and decimal commas are read as that document writes them ("0,94"),
    and a flag printed against the number is looked past ("5.6H"). On OCR'd text the usual
    slips are undone: letters for digits, a stray trailing point, a colon or comma for the
    decimal point."""
    if conventions is not None and (printed := parse_value(token, conventions)) is not None:
        return printed.result
    text = token.strip()
    if ocr:
        text = text.rstrip(".,:;")
        if re.fullmatch(r"[<>≤≥]?[\dOolI|.,:]+", text) and re.search(r"\d", text):
            text = text.translate(str.maketrans("OolI|", "00111"))
            text = re.sub(r"^([<>≤≥]?\d+)[,:](\d{1,2})$", r"\1.\2", text)
    match = _NUMBER.match(text)
    if match is None:
        return None
    return (match[1] or "") + match[2].replace("−", "-")


def result_value(result: str, *, ocr: bool = False) -> Decimal | str | None:
    """A Decimal for a plain number, the text for "<0.01" or a qualitative word, else None."""
    number = read_number(result, ocr=ocr)
    if number is not None:
        return Decimal(number) if number[0] not in "<>≤≥" else number
    word = " ".join(result.split()).lower()
    return result.strip() if word in QUALITATIVE else None


def clean_unit(unit: str, *, ocr: bool = False, test: str = "") -> str:
    """The unit tidied; on OCR'd text also mended: to the one unit the catalogued `test` is
    measured in that it is a slip or two from (unit_mending), else to a common lab unit one slip
    away."""
    text = " ".join(unit.split()).strip(_STRAY_MARKS)
    if match := _EXPONENT_UNIT.match(text):
        return f"x10^{match[1]}/{match[2].replace('l', 'L')}"
    for pattern, replacement in _UNIT_SLIPS:
        text = pattern.sub(replacement, text)
    if ocr and text and test and (mended := mend_unit(text, test)) is not None:
        return mended
    if ocr and text and normalise_unit(text).ucum is None:
        # One character dropped, added or misread, no more.
        similar = [u for u in difflib.get_close_matches(text.lower(), _COMMON_UNITS, cutoff=0.75)
                   if abs(len(u) - len(text)) <= 1]
        if similar:
            return _COMMON_UNITS[similar[0]]
    return text


def is_unit(text: str, *, ocr: bool = False, test: str = "") -> bool:
    """A unit we know (it has a UCUM code once cleaned)."""
    return bool(text) and normalise_unit(clean_unit(text, ocr=ocr, test=test)).ucum is not None


def clean_name(name: str, *, ocr: bool) -> str:
    """The test name tidied; on OCR'd text also freed of a trailing speck read as a word
    ("RBC Ce") and mended to a known test name one slip away ("Chioride")."""
    text = " ".join(name.split()).strip(" :.*=")
    text = _A1C.sub(lambda m: (m[1] or "") + "A1c", text)
    if not ocr or name_key(text) in _KNOWN_NAMES:
        return text
    words = text.split()
    # A capital I read as a bar ("Troponin |"), when that makes a name the catalogue knows.
    barred = " ".join("I" if w == "|" else w for w in words)
    if barred != text and name_key(barred) in _KNOWN_NAMES:
        return barred
    # Dotted leaders read as one long word of x-height letters ("Uric Acid seeeeee").
    while len(words) > 1 and _DOTS_AS_LETTERS.fullmatch(words[-1]) and \
            words[-1].lower() not in _NAME_WORDS:
        words.pop()
        if name_key(" ".join(words)) in _KNOWN_NAMES:
            return " ".join(words)
    words = text.split()
    while len(words) > 1 and len(words[-1]) <= 2:
        words.pop()
        if name_key(" ".join(words)) in _KNOWN_NAMES:
            return " ".join(words)
    if len(name_key(text)) < 5:
        return text
    close = _nearest_name(name_key(text))
    if close is None:
        return text
    alias = _KNOWN_NAMES[close]
    return alias[:1].upper() + alias[1:] if alias.islower() else alias


def _nearest_name(key: str) -> str | None:
    """The known name `key` is one slip from, when only one test is that near: "Troponin" with
    its last letter lost is as near Troponin I as Troponin T, and is left as read."""
    scored = sorted(((difflib.SequenceMatcher(None, key, known).ratio(), known)
                     for known in difflib.get_close_matches(key, _KNOWN_NAMES, n=8,
                                                            cutoff=NAME_MEND_CUTOFF)),
                    reverse=True)
    if not scored:
        return None
    best_score, best = scored[0]
    rivals = [known for score, known in scored[1:] if best_score - score < NAME_MEND_MARGIN
              and _TESTS_NAMED[known] != _TESTS_NAMED[best]]
    return None if rivals else best


def flag_code(flag: str) -> Interpretation | None:
    return FLAGS.get(" ".join(flag.split()).lower())


def interpretation(row: LabRow, value: Decimal | str, *, ocr: bool) -> Interpretation | None:
    """The flag as printed. None (the mapper computes it from the range) when no flag was
    printed, when it is unreadable, or when on an OCR'd page it contradicts the range."""
    printed = flag_code(row.flag)
    if printed is None or not ocr or not isinstance(value, Decimal):
        return printed
    bounds = parse_range_text(row.reference_range) if row.reference_range else None
    if bounds is None or (bounds.low is None and bounds.high is None):
        return printed
    computed = classify(value, bounds)
    agrees = {"H": computed == "H", "HH": computed == "H", "L": computed == "L",
              "LL": computed == "L", "N": computed == "N", "A": computed != "N"}[printed]
    return printed if agrees else None


def implausible(value: MeasuredValue, printed_flag: str) -> str | None:
    """Why an OCR'd value looks misread, or None: far outside its range (more than twice the
    upper bound or under half the lower) while the report printed no flag for it."""
    if printed_flag.strip() or not isinstance(value.value, Decimal) or value.reference_range is None:
        return None
    bounds = parse_range_text(value.reference_range.text)
    if bounds is None:
        return None
    high, low = bounds.high, bounds.low
    if (high is not None and high > 0 and value.value > 2 * high) or \
            (low is not None and low > 0 and value.value < low / 2):
        return (f"{value.value} is far outside {value.reference_range.text} yet the report "
                f"prints no flag for it: likely misread")
    return None


def reference_range(text: str) -> ReferenceRange | None:
    """The range with its bounds when it is "low-high"; one-sided ranges ("<200") keep only the
    text, whose strict bound the mapper reads itself."""
    if not text.strip():
        return None
    bounds = parse_range_text(text)
    if bounds is not None and bounds.low is not None and bounds.high is not None:
        return ReferenceRange(bounds.low, bounds.high, text.strip())
    return ReferenceRange(text=text.strip())


def row_key(row: LabRow, taken: set[str]) -> str:
    """A key stable for the same source: the normalised name and the page (and a count when a
    page lists the same test twice)."""
    base = f"{re.sub(r'[^a-z0-9]+', '-', row.name.lower()).strip('-') or 'test'}@p{row.page}"
    key, n = base, 1
    while key in taken:
        n += 1
        key = f"{base}#{n}"
    taken.add(key)
    return key


def to_measured_value(row: LabRow, *, key: str, evidence: TextEvidence, ocr: bool,
                      effective: datetime | None,
                      confidence: float | None = None) -> MeasuredValue | None:
    value = result_value(row.result, ocr=ocr)
    if value is None:
        return None
    flag = interpretation(row, value, ocr=ocr)
    return MeasuredValue(
        key=key, name=row.name, value=value, unit=clean_unit(row.unit),
        reference_range=reference_range(row.reference_range), interpretation=flag,
        panel=row.panel, specimen=row.specimen, method=row.method, effective=effective,
        critical=flag in ("HH", "LL"), evidence=(evidence,), confidence=confidence,
    )


def same_number(a: str, b: str) -> bool:
    """Two numbers from read_number that are the same value with the same comparator
    ("7.20" == "7.2", "<0.01" != "0.01")."""
    (comp_a, num_a), (comp_b, num_b) = _comparator(a), _comparator(b)
    try:
        return comp_a == comp_b and Decimal(num_a) == Decimal(num_b)
    except InvalidOperation:
        return False


def _comparator(number: str) -> tuple[str, str]:
    match = re.match(r"^(<=|>=|<|>|≤|≥)?(.*)$", number)
    assert match is not None  # the pattern matches every string
    return match[1] or "", match[2]
