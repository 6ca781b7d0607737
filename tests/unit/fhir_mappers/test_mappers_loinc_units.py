"""The LOINC table (lookups, aliases, units that pick the code, unknowns) and UCUM normalisation."""

from __future__ import annotations

import pytest

from fhir_mappers import LoincEntry, lookup_loinc, normalise_unit
from fhir_mappers.loinc import TABLE, loinc_entry, name_key
from fhir_mappers.units import _TABLE as UNIT_TABLE


def _loinc_check_digit(number: str) -> int:
    """LOINC's mod-10 check digit (the Luhn scheme) of the part before the hyphen."""
    total = 0
    for position, char in enumerate(reversed(number)):
        digit = int(char)
        if position % 2 == 0:
            digit *= 2
            digit = digit - 9 if digit > 9 else digit
        total += digit
    return (10 - total % 10) % 10


@pytest.mark.parametrize("entry", TABLE, ids=lambda e: e.code)
def test_every_table_code_has_a_valid_loinc_check_digit(entry: LoincEntry) -> None:
    number, check = entry.code.split("-")
    assert _loinc_check_digit(number) == int(check), entry.code


def test_table_is_curated_and_consistent() -> None:
    codes = [e.code for e in TABLE]
    assert len(codes) == len(set(codes))
    assert len(TABLE) >= 300
    known_ucum = {ucum for ucum, _ in UNIT_TABLE.values()}
    for entry in TABLE:
        assert entry.display and entry.aliases
        assert set(entry.units) <= known_ucum, entry.code  # every expected unit normalises
        assert (entry.scale == "Ord") == (not entry.units), entry.code


@pytest.mark.parametrize("name, unit, code", [
    ("Glucose", "mg/dL", "2345-7"),
    ("GLUCOSE, SERUM", "mg/dl", "2345-7"),
    ("Glucose", "mmol/L", "14749-6"),
    ("Fasting Glucose", "mg/dL", "1558-6"),
    ("HbA1c", "%", "4548-4"),
    ("Hemoglobin A1c", "%", "4548-4"),
    ("A1C", None, "4548-4"),
    ("HbAlc", "%", "4548-4"),  # OCR: l for 1
    ("Hb A1c", "mmol/mol", "59261-8"),
    ("TSH", "uIU/mL", "3016-3"),
    ("TSH", "ulU/mL", "3016-3"),  # OCR: l for I
    ("Thyroid Stimulating Hormone", "mIU/L", "3016-3"),
    ("Free T4", "ng/dL", "3024-7"),
    ("T4, Free", "pmol/L", "14920-3"),
    ("Hemoglobin", "g/dL", "718-7"),
    ("HGB", "g/L", "718-7"),
    ("WBC", "x10^9/L", "6690-2"),
    ("White Blood Cell Count", "K/uL", "6690-2"),
    ("Platelets", "10*3/uL", "777-3"),
    ("Neutrophils", "%", "770-8"),
    ("Neutrophils", "10^9/L", "751-8"),
    ("Creatinine", "mg/dL", "2160-0"),
    ("Creatinine", "µmol/L", "14682-9"),
    ("Sodium", "mEq/L", "2951-2"),
    ("Potassium", "mmol/L", "2823-3"),
    ("Cholesterol, Total", "mg/dL", "2093-3"),
    ("LDL Cholesterol", "mg/dL", "2089-1"),
    ("LDL Chol Calc (NIH)", "mg/dL", "13457-7"),
    ("HDL", "mg/dL", "2085-9"),
    ("Triglycerides", "mg/dL", "2571-8"),
    ("ALT (SGPT)", "U/L", "1742-6"),
    ("AST", "IU/L", "1920-8"),
    ("C-Reactive Protein", "mg/L", "1988-5"),
    ("hs-CRP", "mg/L", "30522-7"),
    ("Ferritin", "ng/mL", "2276-4"),
    ("Vitamin B12", "pg/mL", "2132-9"),
    ("25-OH Vitamin D", "ng/mL", "62292-8"),
    ("INR", None, "6301-6"),
    ("PT", "sec", "5902-2"),
    ("Troponin I", "ng/mL", "10839-9"),
    ("hs Troponin T", "ng/L", "67151-1"),
    ("NT-proBNP", "pg/mL", "33762-6"),
    ("BNP", "pg/mL", "30934-4"),
    ("eGFR (CKD-EPI 2021)", "mL/min/1.73m2", "98979-8"),
    ("eGFR MDRD", "mL/min/1.73 m2", "33914-3"),
])
def test_lookup_finds_the_code_for_the_printed_name_and_unit(
    name: str, unit: str | None, code: str,
) -> None:
    entry = lookup_loinc(name, unit)
    assert entry is not None and entry.code == code


@pytest.mark.parametrize("name, unit", [
    ("Glucose", "mg/g"),  # a unit no glucose code takes: no code rather than a wrong one
    ("Glucose", "furlongs"),  # unreadable unit: the property cannot be checked
    ("Anti-Mullerian hormone", "ng/mL"),  # not in the table
    ("eGFR", "mL/min/1.73m2"),  # coded only with its equation
    ("", None),
])
def test_lookup_returns_none_rather_than_guess(name: str, unit: str | None) -> None:
    assert lookup_loinc(name, unit) is None


def _code(name: str, *, specimen: str = "", numeric: bool | None = None) -> str | None:
    entry = lookup_loinc(name, None, specimen=specimen, numeric=numeric)
    return entry.code if entry is not None else None


def test_urine_context_switches_to_dipstick_codes() -> None:
    assert _code("Glucose", specimen="Urinalysis", numeric=False) == "25428-4"
    assert _code("pH", specimen="urine") == "5803-2"
    assert _code("Urine pH") == "5803-2"
    assert _code("Nitrite", specimen="UA") == "5802-4"
    # Without a urine context the dipstick names do not match, and a serum test is not a
    # urine one: urine creatinine has its own code.
    assert _code("pH") is None
    assert _code("Creatinine", specimen="Urine") == "2161-8"
    assert _code("Creatinine") == "2160-0"
    assert lookup_loinc("Creatinine", "mg/dL", specimen="Urine") != lookup_loinc("Creatinine", "mg/dL")


def test_numeric_rules_out_the_wrong_scale() -> None:
    assert _code("Glucose", numeric=False) is None  # "Positive" is no mg/dL
    assert _code("Nitrite", specimen="urine", numeric=True) is None  # a dipstick sign only
    # Urine glucose has both: a number is the strip's mg/dL, a word its presence.
    assert _code("Glucose", specimen="urine", numeric=True) == "5792-7"
    assert _code("Glucose", specimen="urine", numeric=False) == "25428-4"


def test_loinc_entry_by_code_and_expected_unit() -> None:
    entry = loinc_entry("3016-3")
    assert entry is not None and entry.ucum == "m[IU]/L"
    assert loinc_entry("0000-0") is None


def test_name_key_tolerates_case_punctuation_and_specimen_words() -> None:
    assert name_key("Hemoglobin A1c (Serum)") == name_key("hemoglobin-a1c") == "hemoglobina1c"


@pytest.mark.parametrize("printed, ucum, display", [
    ("mg/dl", "mg/dL", "mg/dL"),
    ("MG/DL", "mg/dL", "mg/dL"),
    ("g/dl", "g/dL", "g/dL"),
    ("mmol/l", "mmol/L", "mmol/L"),
    ("x10^9/L", "10*9/L", "10^9/L"),
    ("10^9/L", "10*9/L", "10^9/L"),
    ("10*9/L", "10*9/L", "10^9/L"),
    ("x 10^9 /L", "10*9/L", "10^9/L"),
    ("x10E3/uL", "10*3/uL", "10^3/µL"),
    ("K/uL", "10*3/uL", "10^3/µL"),
    ("K/µL", "10*3/uL", "10^3/µL"),
    ("x10^12/L", "10*12/L", "10^12/L"),
    ("M/uL", "10*6/uL", "10^6/µL"),
    ("uIU/mL", "u[IU]/mL", "µIU/mL"),
    ("µIU/mL", "u[IU]/mL", "µIU/mL"),
    ("ulU/mL", "u[IU]/mL", "µIU/mL"),
    ("mIU/L", "m[IU]/L", "mIU/L"),
    ("IU/L", "[IU]/L", "IU/L"),
    ("U/L", "U/L", "U/L"),
    ("%", "%", "%"),
    ("fL", "fL", "fL"),
    ("fl", "fL", "fL"),
    ("pg", "pg", "pg"),
    ("ng/mL", "ng/mL", "ng/mL"),
    ("pg/ml", "pg/mL", "pg/mL"),
    ("mcg/dL", "ug/dL", "µg/dL"),
    ("µmol/L", "umol/L", "µmol/L"),
    ("mEq/L", "meq/L", "mEq/L"),
    ("mL/min/1.73m2", "mL/min/{1.73_m2}", "mL/min/1.73m2"),
    ("mL/min/1.73 m²", "mL/min/{1.73_m2}", "mL/min/1.73m2"),
    ("sec", "s", "s"),
    ("s", "s", "s"),
    ("INR", "{INR}", "INR"),
    ("ratio", "{ratio}", "ratio"),
    ("mm/hr", "mm/h", "mm/h"),
    ("mmHg", "mm[Hg]", "mmHg"),
    ("cells/hpf", "/[HPF]", "/HPF"),
])
def test_printed_units_normalise_to_ucum(printed: str, ucum: str, display: str) -> None:
    assert normalise_unit(printed) == (ucum, display)


@pytest.mark.parametrize("printed", ["furlongs/fortnight", "Index", "copies"])
def test_unknown_units_keep_their_text_and_get_no_code(printed: str) -> None:
    assert normalise_unit(f" {printed} ") == (None, printed)
