"""Numbers and dates as printed, read by the document's measured conventions."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from plugin.pipelines.documents.printed_numbers import (
    POINT_MDY,
    Conventions,
    PrintedValue,
    detect_conventions,
    parse_date,
    parse_value,
)

COMMA_DMY = Conventions(",", "DMY")


@pytest.mark.parametrize(("printed", "expected"), [
    ("128", PrintedValue(Decimal(128))),
    ("262,000", PrintedValue(Decimal(262000))),
    ("<0.5", PrintedValue(Decimal("0.5"), "<")),
    ("> 60", PrintedValue(Decimal(60), ">")),
    ("≤0.04", PrintedValue(Decimal("0.04"), "<=")),
    ("2.1 x 10^3", PrintedValue(Decimal(2100))),
    ("5.6H", PrintedValue(Decimal("5.6"), flag="H")),
    ("*5.6", PrintedValue(Decimal("5.6"), flag="*")),
    ("5.6 (L)", PrintedValue(Decimal("5.6"), flag="L")),
])
def test_values_with_points(printed: str, expected: PrintedValue) -> None:
    assert parse_value(printed, POINT_MDY) == expected


@pytest.mark.parametrize(("printed", "expected"), [
    ("0,94", PrintedValue(Decimal("0.94"))),
    ("1.234,5", PrintedValue(Decimal("1234.5"))),
    ("<0,5", PrintedValue(Decimal("0.5"), "<")),
])
def test_values_with_decimal_commas(printed: str, expected: PrintedValue) -> None:
    assert parse_value(printed, COMMA_DMY) == expected


@pytest.mark.parametrize("printed", ["0,94", "7.1.", "12.0-15.5", "H5.6L", "24 x 1093", "n/a"])
def test_what_is_not_one_number_in_a_point_document(printed: str) -> None:
    assert parse_value(printed, POINT_MDY) is None


def test_a_comma_is_a_thousands_separator_or_a_decimal_mark_by_document() -> None:
    assert parse_value("262,000", COMMA_DMY) == PrintedValue(Decimal("262.000"))
    assert detect_conventions(["Kreatinin 0,94 mg/dl", "Kalium 4,3", "Datum 03.11.2026"]) == \
        COMMA_DMY
    # Thousands separators, times and dotted dates are no evidence of a decimal comma.
    assert detect_conventions(["Platelets 262,000 /uL", "Glucose 5.4 mmol/L",
                               "Collected 11/20/2026 08:15"]) == POINT_MDY


def test_date_order_is_measured_over_the_document() -> None:
    assert detect_conventions(["DOB 04/07/1961", "Collected 20/11/2026"]).dates == "DMY"
    assert detect_conventions(["DOB 04/07/1961", "Collected 11/20/2026"]).dates == "MDY"


def test_dates_in_every_form() -> None:
    assert parse_date("11/20/2026 08:15", POINT_MDY) == datetime(2026, 11, 20, 8, 15)
    assert parse_date("03.11.2026 08:15", COMMA_DMY) == datetime(2026, 11, 3, 8, 15)
    assert parse_date("2026-11-20 08:15 +00:00") == datetime(2026, 11, 20, 8, 15, tzinfo=UTC)
    assert parse_date("Nov 20, 2026 8:15 PM") == datetime(2026, 11, 20, 20, 15)
    assert parse_date("20-Nov-2026") == datetime(2026, 11, 20)
    assert parse_date("13/13/2026", POINT_MDY) is None
    # OCR splitting "11/20" must not turn it into January.
    assert parse_date("1 1/20/2026 08:15", POINT_MDY, leading=True) is None
