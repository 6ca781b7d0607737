"""The LOINC catalogue as a whole: big enough, consistent (one entry per code, units that parse as
UCUM and measure one thing, no alias that could pick two codes), and it knows the names the lab
corpus prints in US, UK and EU reports."""

from __future__ import annotations

from collections import defaultdict

import pytest

from fhir_mappers.loinc import TABLE, LoincEntry, lookup_loinc, name_key
from fhir_mappers.loinc_table import ENZYME_UNITS
from fhir_mappers.units import compatible, normalise_unit, parse_ucum
from tests.corpus.labs import TruthRow, layouts


def test_three_hundred_tests_each_once() -> None:
    assert len(TABLE) >= 300
    codes = [entry.code for entry in TABLE]
    assert len(codes) == len(set(codes))
    assert len({entry.display for entry in TABLE}) == len(TABLE)


@pytest.mark.parametrize("entry", TABLE, ids=lambda e: e.code)
def test_units_parse_as_ucum_and_measure_one_thing(entry: LoincEntry) -> None:
    parsed = [parse_ucum(unit) for unit in entry.units]
    assert None not in parsed, entry.units
    # Enzyme activities are printed "IU/L" as often as "U/L": both are taken, though UCUM
    # keeps the international unit apart from the enzyme unit.
    units = [u for u in entry.units if entry.units != ENZYME_UNITS or u == "U/L"]
    assert all(compatible(unit, units[0]) for unit in units), entry.units
    # A quantitative code has a unit; a presence/ordinal one takes none.
    assert (entry.scale == "Qn") == bool(entry.units)


def test_no_alias_can_pick_two_codes() -> None:
    """Two entries may share an alias only if their units cannot overlap (mg/dL vs mmol/L) or
    their scales differ (a number vs a word); else a lookup would depend on table order."""
    by_key: dict[tuple[str, str], list[LoincEntry]] = defaultdict(list)
    for entry in TABLE:
        for alias in {name_key(a) for a in entry.aliases}:
            by_key[(entry.specimen, alias)].append(entry)
    clashes = []
    for (specimen, alias), entries in by_key.items():
        for i, first in enumerate(entries):
            for second in entries[i + 1:]:
                if first.scale != second.scale:
                    continue
                if first.scale == "Ord" or set(first.units) & set(second.units):
                    clashes.append((specimen, alias, first.code, second.code))
    assert clashes == []


def _corpus_rows() -> list[TruthRow]:
    seen: dict[tuple[str, str], TruthRow] = {}
    for lab in layouts():
        for row in lab.truth:
            seen.setdefault((row.name, row.unit), row)
    return list(seen.values())


@pytest.mark.parametrize("row", _corpus_rows(), ids=lambda r: f"{r.name} [{r.unit}]")
def test_the_catalogue_knows_every_name_the_corpus_prints(row: TruthRow) -> None:
    entry = lookup_loinc(row.name, row.unit, numeric=True)
    assert (entry.code if entry else "") == row.loinc
    if entry is not None:
        assert normalise_unit(row.unit).ucum in entry.units


@pytest.mark.parametrize("name, unit, code", [
    ("Leucocytes", "10^9/l", "6690-2"),
    ("Leukozyten", "10^9/L", "6690-2"),
    ("Thrombocytes", "10^9/l", "777-3"),
    ("Haematocrit", "L/L", "4544-3"),
    ("Hämoglobin", "g/dl", "718-7"),
    ("GPT (ALT)", "U/l", "1742-6"),
    ("GOT", "U/l", "1920-8"),
    ("Gamma-GT", "U/l", "2324-2"),
    ("Kreatinin", "mg/dl", "2160-0"),
    ("Harnsäure", "mg/dl", "3084-1"),
    ("Urea", "mmol/L", "22664-7"),
    ("Urea", "mg/dL", "3091-6"),
    ("Cholesterol", "mmol/L", "14647-2"),
    ("Oestradiol", "pmol/L", "14715-7"),
    ("Alanine Aminotransferase (ALT/SGPT)", "U/L", "1742-6"),
    ("Gamma Glutamyl Transferase (GGT)", "U/L", "2324-2"),
    ("Prostate Specific Antigen, Total", "ng/mL", "2857-1"),
    ("D-Dimer", "ng/mL FEU", "48065-7"),
    ("TSH", "mIU/L", "3016-3"),
])
def test_uk_and_eu_spellings_and_bracketed_abbreviations(name: str, unit: str, code: str) -> None:
    entry = lookup_loinc(name, unit)
    assert entry is not None and entry.code == code


@pytest.mark.parametrize("name, unit", [
    ("D-Dimer", "ng/mL"),  # FEU or DDU is not said: either code would be a guess
    ("Urea", "umol/L"),  # no urea code takes µmol/L
    ("Cortisol", "mmol/L"),
])
def test_an_unsaid_or_unfit_unit_gives_no_code(name: str, unit: str) -> None:
    assert lookup_loinc(name, unit) is None
