"""Observation.interpretation (v3-ObservationInterpretation): the report's own flag when it gave
one, else H/L/N computed from the reference range, including printed ranges such as "70-99",
"<200" or ">60"; critical results become HH/LL/AA.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from plugin.results import Finding, MeasuredValue, ReferenceRange

from .datatypes import JsonDict, coding, concept
from .systems import V3_OBSERVATION_INTERPRETATION

DISPLAYS = {
    "H": "High",
    "L": "Low",
    "HH": "Critical high",
    "LL": "Critical low",
    "N": "Normal",
    "A": "Abnormal",
    "AA": "Critical abnormal",
    "B": "Better",
    "W": "Worse",
}


@dataclass(frozen=True)
class Bounds:
    """A reference range as bounds; printed "<200" is an exclusive high bound."""

    low: Decimal | None = None
    high: Decimal | None = None
    low_inclusive: bool = True
    high_inclusive: bool = True


_NUM = r"([-+−]?\d+(?:\.\d+)?)"
_TAIL = r"\s*(?:[A-Za-zµμ%].*)?$"  # a unit printed after the range
_BETWEEN = re.compile(rf"^\s*{_NUM}\s*(?:-|–|—|to)\s*{_NUM}{_TAIL}", re.IGNORECASE)
_BELOW = re.compile(rf"^\s*(<=|≤|=<|<|less than|up to|below)\s*{_NUM}{_TAIL}", re.IGNORECASE)
_ABOVE = re.compile(rf"^\s*(>=|≥|=>|>|greater than|above)\s*{_NUM}{_TAIL}", re.IGNORECASE)


def _decimal(text: str) -> Decimal | None:
    try:
        return Decimal(text.replace("−", "-"))
    except InvalidOperation:
        return None


def parse_range_text(text: str) -> Bounds | None:
    """Bounds from a printed range, or None when the text is not a plain numeric range."""
    if match := _BETWEEN.match(text):
        low, high = _decimal(match[1]), _decimal(match[2])
        if low is not None and high is not None and low <= high:
            return Bounds(low, high)
        return None
    if match := _BELOW.match(text):
        return Bounds(high=_decimal(match[2]), high_inclusive=match[1] in ("<=", "≤", "=<",
                                                                           "up to"))
    if match := _ABOVE.match(text):
        return Bounds(low=_decimal(match[2]), low_inclusive=match[1] in (">=", "≥", "=>"))
    return None


def range_bounds(reference_range: ReferenceRange) -> Bounds | None:
    """The range's explicit low/high when it has either, else what its printed text says."""
    if reference_range.low is not None or reference_range.high is not None:
        return Bounds(reference_range.low, reference_range.high)
    return parse_range_text(reference_range.text) if reference_range.text else None


def classify(value: Decimal, bounds: Bounds) -> str:
    """H, L or N for a value against bounds."""
    if bounds.low is not None and (
        value < bounds.low or (value == bounds.low and not bounds.low_inclusive)
    ):
        return "L"
    if bounds.high is not None and (
        value > bounds.high or (value == bounds.high and not bounds.high_inclusive)
    ):
        return "H"
    return "N"


def measured_interpretation(item: MeasuredValue) -> list[str]:
    """The interpretation codes of a measured value (zero or one)."""
    flag: str | None = item.interpretation
    if flag is None and isinstance(item.value, Decimal) and item.reference_range is not None:
        bounds = range_bounds(item.reference_range)
        if bounds is not None and (bounds.low is not None or bounds.high is not None):
            flag = classify(item.value, bounds)
    if item.critical:
        flag = {"H": "HH", "HH": "HH", "L": "LL", "LL": "LL"}.get(flag or "", "AA")
    return [flag] if flag else []


def finding_interpretation(finding: Finding) -> list[str]:
    """Interpretation codes of a finding: abnormal/normal (critical: AA), and better/worse when
    compared with a prior study."""
    codes: list[str] = []
    if finding.critical:
        codes.append("AA")
    elif finding.abnormal is not None:
        codes.append("A" if finding.abnormal else "N")
    if finding.change == "improved":
        codes.append("B")
    elif finding.change == "worsened":
        codes.append("W")
    return codes


def interpretation_concepts(codes: list[str]) -> list[JsonDict]:
    return [concept(coding(V3_OBSERVATION_INTERPRETATION, code, DISPLAYS[code])) for code in codes]
