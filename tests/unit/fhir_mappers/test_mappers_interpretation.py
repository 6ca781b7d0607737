"""Interpretation: the report's flag kept, else H/L/N from the range (printed ranges included),
critical results escalated, findings abnormal/better/worse."""

from __future__ import annotations

from decimal import Decimal

import pytest

from fhir_mappers.interpretation import (
    Bounds,
    finding_interpretation,
    interpretation_concepts,
    measured_interpretation,
    parse_range_text,
)
from plugin.results import Finding, Interpretation, MeasuredValue, ReferenceRange


def _value(value: str, rr: ReferenceRange | None, flag: Interpretation | None = None,
           critical: bool = False) -> MeasuredValue:
    number: Decimal | str = Decimal(value) if value[0].isdigit() else value
    return MeasuredValue("k", "Test", number, "mg/dL", reference_range=rr, interpretation=flag,
                         critical=critical)


@pytest.mark.parametrize("value, text, expected", [
    ("105", "70-99", "H"),
    ("99", "70-99", "N"),
    ("70", "70 - 99", "N"),
    ("69.9", "70–99 mg/dL", "L"),  # en dash, unit after the range
    ("5.0", "3.5 to 5.0", "N"),
    ("199", "<200", "N"),
    ("200", "<200", "H"),  # "<200" excludes 200
    ("200", "<=200", "N"),
    ("200", "≤ 200", "N"),
    ("61", ">60", "N"),
    ("60", ">60", "L"),
    ("60", ">= 60", "N"),
    ("45", "> 60 mL/min/1.73m2", "L"),
])
def test_computed_from_printed_range(value: str, text: str, expected: str) -> None:
    assert measured_interpretation(_value(value, ReferenceRange(text=text))) == [expected]


def test_explicit_bounds_win_over_text_and_are_inclusive() -> None:
    rr = ReferenceRange(low=Decimal("3.5"), high=Decimal("5.1"), text="ignored <1")
    assert measured_interpretation(_value("5.1", rr)) == ["N"]
    assert measured_interpretation(_value("5.2", rr)) == ["H"]
    assert measured_interpretation(_value("3.4", rr)) == ["L"]
    assert measured_interpretation(_value("9", ReferenceRange(high=Decimal("10")))) == ["N"]


@pytest.mark.parametrize("flag", ["HH", "LL", "A", "H", "N"])
def test_the_reports_flag_is_kept(flag: Interpretation) -> None:
    assert measured_interpretation(_value("85", ReferenceRange(text="70-99"), flag)) == [flag]


def test_critical_escalates() -> None:
    rr = ReferenceRange(text="3.5-5.1")
    assert measured_interpretation(_value("6.9", rr, critical=True)) == ["HH"]
    assert measured_interpretation(_value("2.1", rr, critical=True)) == ["LL"]
    assert measured_interpretation(_value("Positive", None, critical=True)) == ["AA"]


@pytest.mark.parametrize("value, rr", [
    ("Positive", ReferenceRange(text="Negative")),  # text result: nothing to compare
    ("85", ReferenceRange(text="Negative")),  # range not numeric
    ("85", ReferenceRange(text="see comment")),
    ("85", None),
    ("85", ReferenceRange(text="99-70")),  # inverted: not trusted
])
def test_nothing_computed_without_a_numeric_range(value: str, rr: ReferenceRange | None) -> None:
    assert measured_interpretation(_value(value, rr)) == []


def test_parse_range_text_bounds() -> None:
    assert parse_range_text("<200") == Bounds(high=Decimal("200"), high_inclusive=False)
    assert parse_range_text(">60") == Bounds(low=Decimal("60"), low_inclusive=False)
    assert parse_range_text("−2-2") == Bounds(Decimal("-2"), Decimal("2"))
    assert parse_range_text("Negative") is None


def test_finding_interpretation() -> None:
    assert finding_interpretation(Finding("f", "x", abnormal=True, change="worsened")) == ["A", "W"]
    assert finding_interpretation(Finding("f", "x", abnormal=False, change="improved")) == [
        "N", "B"]
    assert finding_interpretation(Finding("f", "x", critical=True, change="stable")) == ["AA"]
    assert finding_interpretation(Finding("f", "x")) == []


def test_codings_are_v3_observation_interpretation() -> None:
    assert interpretation_concepts(["HH"]) == [{"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
        "code": "HH", "display": "Critical high"}]}]
