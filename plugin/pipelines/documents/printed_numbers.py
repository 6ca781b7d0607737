"""Numbers and dates as lab reports print them, read by the document's own conventions.

A document uses one decimal mark: "0,94" is 0.94 in a report that writes decimal commas and
unreadable in one that writes points (where "262,000" is 262000). The mark and the date order
(day/month or month/day) are measured over the whole document, never guessed per value. A value
keeps its comparator ("<0.5", ">60") and may carry a flag printed against it ("5.6H", "*5.6").
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Literal

DecimalMark = Literal[".", ","]
DateOrder = Literal["DMY", "MDY"]

_COMPARATOR = r"(?P<cmp><=|>=|=<|=>|<|>|≤|≥)?"
# A flag printed against the value, before or after it, with or without brackets.
_FLAG = r"(?:HH|LL|H\*|L\*|H|L|A|\*{1,2}|↑{1,2}|↓{1,2}|!)"
_POINT_NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+"
_COMMA_NUMBER = r"\d{1,3}(?:[.\u202f\u00a0 ]\d{3})+(?:,\d+)?|\d+(?:,\d+)?|,\d+"
# "2.1 x 10^3": the power needs its mark; OCR reads a superscript "10³" as "103".
_EXPONENT = r"(?:\s*[x×*]\s*10\s*(?:\^|\*\*|E|e)\s*(?P<exp>[-−]?\d{1,2}))?"
_POINT_EVIDENCE = re.compile(r"(?<![\d.,])\d+\.\d+(?![\d.])")
_COMMA_EVIDENCE = re.compile(r"(?<![\d.,])\d+,(?:\d{1,2}|\d{4,})(?![\d,])")


@dataclass(frozen=True)
class Conventions:
    """How one document writes numbers and dates."""

    decimal: DecimalMark = "."
    dates: DateOrder = "MDY"


POINT_MDY = Conventions()  # the default: decimal points, month-first numeric dates


@dataclass(frozen=True)
class PrintedValue:
    value: Decimal
    comparator: str = ""  # "<", ">", "<=", ">=" as printed (≤ read as <=)
    flag: str = ""  # a flag printed against the number ("H", "*"), as printed

    @property
    def result(self) -> str:
        """The value as a result string ("<0.5", "7.1", "2.1E+3")."""
        return f"{self.comparator}{self.value}"


def _value_pattern(mark: DecimalMark) -> re.Pattern[str]:
    number = _POINT_NUMBER if mark == "." else _COMMA_NUMBER
    return re.compile(
        rf"^\(?(?P<pre>{_FLAG})?\)?\s*{_COMPARATOR}\s*(?P<sign>[-−])?(?P<num>{number}){_EXPONENT}"
        rf"\s*\(?(?P<post>{_FLAG})?\)?$")


_PATTERNS = {mark: _value_pattern(mark) for mark in (".", ",")}


def parse_value(text: str, conventions: Conventions = POINT_MDY) -> PrintedValue | None:
    """The number printed in `text` (a whole cell), or None when the cell is not one number."""
    cell = " ".join(text.split())
    match = _PATTERNS[conventions.decimal].match(cell)
    if match is None or (match["pre"] and match["post"]):
        return None
    digits = match["num"]
    if conventions.decimal == ".":
        digits = digits.replace(",", "")
    else:
        digits = re.sub(r"[.\u202f\u00a0 ]", "", digits).replace(",", ".")
    try:
        value = Decimal(("-" if match["sign"] else "") + digits)
        if match["exp"]:
            value = value.scaleb(int(match["exp"].replace("−", "-")))
    except InvalidOperation:
        return None
    comparator = {"≤": "<=", "≥": ">=", "=<": "<=", "=>": ">="}.get(match["cmp"] or "",
                                                                    match["cmp"] or "")
    return PrintedValue(value, comparator, match["pre"] or match["post"] or "")


def detect_conventions(texts: Iterable[str]) -> Conventions:
    """The decimal mark and date order the document's text uses. A decimal comma needs more
    "0,94"-shaped numbers than "0.94"-shaped ones; "262,000" counts for neither. Dates are
    day-first when a day over 12 is printed first, or the dates are written with dots."""
    points = commas = 0
    day_first = month_first = 0
    for text in texts:
        points += len(_POINT_EVIDENCE.findall(_DATES.sub(" ", text)))
        commas += len(_COMMA_EVIDENCE.findall(_DATES.sub(" ", text)))
        for match in _NUMERIC_DATE.finditer(text):
            first, second = int(match["a"]), int(match["b"])
            if first > 12 >= second or match["sep"] == ".":
                day_first += 1
            elif second > 12 >= first:
                month_first += 1
    mark: DecimalMark = "," if commas > points else "."
    if day_first != month_first:
        order: DateOrder = "DMY" if day_first > month_first else "MDY"
    else:  # nothing decides: decimal-comma countries write the day first
        order = "DMY" if mark == "," else "MDY"
    return Conventions(mark, order)


_MONTHS = {name: i + 1 for i, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))}
_TIME = (r"(?:[ T,]+(?P<h>\d{1,2})[:.h](?P<m>\d{2})(?::(?P<s>\d{2}))?\s*(?P<ampm>[AaPp]\.?[Mm]\.?)?"
         r"(?:\s*(?P<zone>Z|UTC|GMT|[+-]\d{2}:?\d{2}))?)?")
_ISO_DATE = re.compile(r"(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})" + _TIME)
_NUMERIC_DATE = re.compile(r"(?<![\d.])(?<!\d )(?P<a>\d{1,2})(?P<sep>[/.-])(?P<b>\d{1,2})(?P=sep)"
                           r"(?P<y>\d{4}|\d{2})(?![\d])" + _TIME)
_NAMED_DATE = re.compile(
    r"(?:(?P<d1>\d{1,2})[ -](?P<mon1>[A-Za-z]{3})[a-z]*\.?[ ,-]*(?P<y1>\d{4})|"
    r"(?P<mon2>[A-Za-z]{3})[a-z]*\.? (?P<d2>\d{1,2}),? (?P<y2>\d{4}))" + _TIME)
# Dates and times, blanked before counting decimal marks ("20.11.2026" is no decimal).
_DATES = re.compile(r"\d{4}-\d{2}-\d{2}|\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}|\d{1,2}[:.h]\d{2}(?::\d{2})?"
                    r"(?=\s*(?:[AaPp][Mm]|h\b|$))")


def parse_date(text: str, conventions: Conventions = POINT_MDY, *,
               leading: bool = False) -> datetime | None:
    """The first date (and time, and zone when printed) in `text`: ISO, numeric in the
    document's order, or with the month named. Without a printed zone the time is naive.
    `leading`: only a date at the start of `text` counts (the one a label names)."""
    for pattern in (_ISO_DATE, _NUMERIC_DATE, _NAMED_DATE):
        match = pattern.match(text.strip()) if leading else pattern.search(text)
        if match is None:
            continue
        fields = match.groupdict()
        if pattern is _ISO_DATE:
            year, month, day = int(fields["y"]), int(fields["mo"]), int(fields["d"])
        elif pattern is _NUMERIC_DATE:
            a, b = int(fields["a"]), int(fields["b"])
            day, month = (a, b) if conventions.dates == "DMY" else (b, a)
            year = int(fields["y"]) + (2000 if len(fields["y"]) == 2 else 0)
        else:
            month = _MONTHS.get((fields["mon1"] or fields["mon2"] or "").lower(), 0)
            day = int(fields["d1"] or fields["d2"] or 0)
            year = int(fields["y1"] or fields["y2"] or 0)
        stamp = _stamp(year, month, day, fields)
        if stamp is not None:
            return stamp
    return None


def _stamp(year: int, month: int, day: int, fields: dict[str, str | None]) -> datetime | None:
    hour, minute, second = (int(fields.get(k) or 0) for k in ("h", "m", "s"))
    ampm = (fields.get("ampm") or "").lower().replace(".", "")
    if ampm == "pm" and hour < 12:
        hour += 12
    elif ampm == "am" and hour == 12:
        hour = 0
    zone = fields.get("zone") or ""
    tz: timezone | None = None
    if zone in ("Z", "UTC", "GMT"):
        tz = UTC
    elif zone:
        digits = zone.replace(":", "")
        offset = timedelta(hours=int(digits[1:3]), minutes=int(digits[3:5]))
        tz = timezone(offset if digits[0] == "+" else -offset)
    try:
        return datetime(year, month, day, hour, minute, second,
                        tzinfo=tz if fields.get("h") else None)
    except ValueError:
        return None
