"""How a reader's output is scored against a layout's truth: recall (truth rows read right) and
precision (no written value, unit, range or flag that differs from the page).

A reader's output comes in as plain `ReadValue`s, so this module needs nothing from chartlight:
the bench and the integration test translate what the pipeline produced (MeasuredValues, or the
Observations on the server) into them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from .model import TruthRow

# Count units that are the same quantity at another scale (per microlitre).
_COUNT_SCALE = {"/uL": Decimal(1), "10*3/uL": Decimal(1000), "10*9/L": Decimal(1000),
                "10*6/uL": Decimal(10**6), "10*12/L": Decimal(10**6), "/mm3": Decimal(1)}


@dataclass(frozen=True)
class ReadValue:
    """One value a reader wrote: what the Observation (or MeasuredValue) says."""

    name: str
    value: Decimal | str
    unit: str = ""  # as written (display)
    ucum: str | None = None  # the UCUM code written, if any
    low: Decimal | None = None
    high: Decimal | None = None
    flag: str | None = None  # H, L, HH, LL, A, N or None
    page: int | None = None
    loinc: str | None = None
    comparator: str = ""


@dataclass(frozen=True)
class Wrong:
    read: ReadValue
    reason: str


@dataclass(frozen=True)
class Score:
    truth: int
    written: int
    correct: tuple[TruthRow, ...]
    wrong: tuple[Wrong, ...]
    missed: tuple[TruthRow, ...]
    units_withheld: int = 0  # matched values written without a unit although one is printed
    codes_wrong: tuple[Wrong, ...] = field(default=())

    @property
    def recall(self) -> float:
        return len(self.correct) / self.truth if self.truth else 1.0

    @property
    def precision(self) -> float:
        return (self.written - len(self.wrong)) / self.written if self.written else 1.0


def name_key(name: str) -> str:
    return "".join(re.findall(r"[a-z0-9]+", name.lower().replace("µ", "u")))


def _unit_key(unit: str) -> str:
    return re.sub(r"\s+", "", unit.lower().replace("µ", "u").replace("μ", "u"))


def _number(read: ReadValue) -> tuple[str, Decimal] | None:
    if isinstance(read.value, Decimal):
        return read.comparator, read.value
    match = re.fullmatch(r"\s*([<>]?=?)\s*(\d+(?:\.\d+)?)\s*", read.value)
    return (match[1], Decimal(match[2])) if match else None


def _scale(ucum: str | None) -> Decimal | None:
    return _COUNT_SCALE.get(ucum or "")


def _problems(read: ReadValue, truth: TruthRow) -> list[str]:
    problems: list[str] = []
    number = _number(read)
    scale_read, scale_truth = _scale(read.ucum), _scale(truth.ucum)
    if number is None:
        return [f"value {read.value!r} is not the printed {truth.value_text!r}"]
    comparator, value = number
    same = value == truth.value or (
        scale_read is not None and scale_truth is not None
        and value * scale_read == truth.value * scale_truth)
    if not same:
        problems.append(f"value {value} is not the printed {truth.value_text!r}")
    if comparator.rstrip("=") != truth.comparator:
        problems.append(f"comparator {comparator!r} is not the printed {truth.comparator!r}")
    if read.ucum:
        if read.ucum != truth.ucum and not (scale_read and scale_truth):
            problems.append(f"unit {read.ucum} is not the printed {truth.unit!r} ({truth.ucum})")
    elif read.unit and _unit_key(read.unit) != _unit_key(truth.unit):
        problems.append(f"unit {read.unit!r} is not the printed {truth.unit!r}")
    for label, got, printed in (("low", read.low, truth.low), ("high", read.high, truth.high)):
        if got is not None and got != printed and not (
                scale_read and scale_truth and printed is not None
                and got * scale_read == printed * scale_truth):
            problems.append(f"range {label} {got} is not in the printed {truth.range_text!r}")
    flag = read.flag or ""
    if truth.flag:
        if flag not in ("", truth.flag, truth.flag * 2, "A"):
            problems.append(f"flag {flag} where the report prints {truth.flag_text!r}")
    elif flag not in ("", "N"):
        outside = ((truth.high is not None and truth.value > truth.high)
                   or (truth.low is not None and truth.value < truth.low))
        if not outside:
            problems.append(f"flag {flag} on a value the report does not flag")
    if read.page is not None and read.page != truth.page:
        problems.append(f"page {read.page} where it is printed on page {truth.page}")
    return problems


def _match(read: ReadValue, truth: Sequence[TruthRow]) -> TruthRow | None:
    # The printed name decides; the code only when the name was written differently (a
    # catalogue display instead of the printed name).
    key = name_key(read.name)
    candidates = [t for t in truth if name_key(t.name) == key]
    if not candidates and read.loinc:
        candidates = [t for t in truth if t.loinc == read.loinc]
    same_page = [t for t in candidates if t.page == read.page]
    found = same_page or candidates
    return found[0] if found else None


def score(truth: Sequence[TruthRow], written: Iterable[ReadValue]) -> Score:
    """Every written value is matched to the truth row of the same name or LOINC code (on its
    page where it gives one) and checked field by field; unmatched writes are wrong."""
    written = list(written)
    correct: dict[int, TruthRow] = {}
    wrong: list[Wrong] = []
    codes_wrong: list[Wrong] = []
    withheld = 0
    for read in written:
        row = _match(read, truth)
        if row is None:
            wrong.append(Wrong(read, f"{read.name!r} is not a test printed in this report"))
            continue
        problems = _problems(read, row)
        if problems:
            wrong.append(Wrong(read, f"{row.name}: " + "; ".join(problems)))
            continue
        if read.loinc and read.loinc != row.loinc:
            codes_wrong.append(Wrong(read, f"{row.name}: LOINC {read.loinc}, expected "
                                           f"{row.loinc or 'none'}"))
        if row.unit and not (read.ucum or read.unit):
            withheld += 1
        correct[id(row)] = row
    missed = tuple(t for t in truth if id(t) not in correct)
    return Score(len(truth), len(written), tuple(correct.values()), tuple(wrong), missed,
                 withheld, tuple(codes_wrong))
