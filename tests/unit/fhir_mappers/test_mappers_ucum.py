"""UCUM codes: what parses, what each measures, and which printed units a test accepts."""

from __future__ import annotations

import pytest

from fhir_mappers.units import _TABLE as UNIT_TABLE
from fhir_mappers.units import accepted_unit, compatible, parse_ucum
from tests.corpus.labs import layouts


@pytest.mark.parametrize("code", [
    "mg/dL", "g/L", "mmol/L", "umol/L", "10*3/uL", "10*9/L", "10^9/L", "/uL", "u[IU]/mL",
    "m[IU]/L", "[IU]/L", "U/L", "%", "fL", "pg", "mL/min/{1.73_m2}", "{ratio}", "[pH]", "mm[Hg]",
    "kPa", "/[HPF]", "ng/mL{FEU}", "{copies}/mL", "mg/(24.h)", "mosm/kg", "meq/L", "Cel", "[degF]",
    "kg/m2", "[lb_av]", "s", "mm/h", "1", "g%", "k[IU]/L", "L/L", "10*-3",
])
def test_lab_units_parse(code: str) -> None:
    assert parse_ucum(code) is not None


@pytest.mark.parametrize("text", [
    "x1lOE3/uL",  # OCR debris of x10E3/uL
    "xt0A3/uUL", "ulU/mL", "rng/dL", "mg/dLL", "MG/DL", "mg / dL", "10*/uL", "", " ",
    "mg/dL)", "(mg/dL", "mg{FEU", "x10^3/uL", "mEq/L", "sec", "furlongs",
])
def test_garbled_or_printed_only_spellings_do_not_parse(text: str) -> None:
    assert parse_ucum(text) is None


@pytest.mark.parametrize("first, second, same", [
    ("mg/dL", "g/L", True),
    ("mg/dL", "mmol/L", False),
    ("10*3/uL", "10*9/L", True),
    ("/uL", "10*12/L", True),
    ("u[IU]/mL", "10*3/uL", False),  # an international unit is not a count
    ("u[IU]/mL", "m[IU]/L", True),
    ("U/L", "[IU]/L", False),
    ("%", "L/L", True),
    ("mmol/1", "mmol/L", False),  # the OCR slip parses, but as an amount, not a concentration
    ("mm[Hg]", "kPa", True),
    ("[pH]", "1", False),
    ("mg/dL", "x1lOE3/uL", False),
    ("K/uL", "10*3/uL", False),  # read as UCUM, K is kelvin: printed units are normalised first
])
def test_compatible_means_the_same_kind_of_quantity(first: str, second: str, same: bool) -> None:
    assert compatible(first, second) is same


def test_every_code_the_unit_table_gives_parses() -> None:
    assert [code for code, _ in set(UNIT_TABLE.values()) if parse_ucum(code) is None] == []


def test_every_unit_the_corpus_prints_is_accepted_for_its_test() -> None:
    rows = [row for lab in layouts() for row in lab.truth if row.unit]
    for row in rows:
        unit = accepted_unit(row.unit, row.ucum)
        assert unit is not None and unit.code == row.ucum, (row.name, row.unit)


@pytest.mark.parametrize("printed, expected", [
    ("x1lOE3/uL", "10*3/uL"),
    ("xt0A3/uUL", "10*3/uL"),
    ("10*9/1", "10*9/L"),
    ("ng/mL", "umol/L"),  # a real unit, but not the kind of quantity the test measures
    ("mg/dL", "mmol/L"),
    ("uIU/mL", "10*3/uL"),
])
def test_a_garbled_or_unfit_unit_is_not_accepted(printed: str, expected: str) -> None:
    assert accepted_unit(printed, expected) is None
