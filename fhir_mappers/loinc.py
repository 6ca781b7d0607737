"""Printed lab test names -> LOINC codes (http://loinc.org), from the curated table in
loinc_table.py (302 common tests, their US, UK and EU names and abbreviations).

Only codes checked against LOINC are listed; a test that is not here, or whose unit does not fit
the code's property (mass vs. substance concentration, count vs. percentage), gets no LOINC code
and is written as text plus chartlight's `lab-test-name` code instead: a missing code is
recoverable, a wrong one is not.

Deliberately absent: a plain "eGFR" (LOINC codes eGFR by its equation, so only names that state
the equation are coded) and the urine dipstick names without a urine context ("Glucose" in a
urinalysis panel is not serum glucose: pass the panel or specimen as `specimen`).
"""

from __future__ import annotations

import re

from .loinc_table import TABLE, LoincEntry, Specimen
from .units import normalise_unit

__all__ = ["TABLE", "LoincEntry", "is_urine_context", "loinc_entries", "loinc_entry", "lookup_loinc",
           "name_key"]

_NOISE = frozenset({"serum", "plasma", "ser", "plas", "level", "lvl", "result", "conc", "s", "p"})


def name_key(name: str) -> str:
    """A test name reduced for matching: case, punctuation, spacing and specimen words dropped,
    and the OCR slip "Alc" for "A1c" undone."""
    text = name.lower().replace("µ", "u").replace("μ", "u")
    tokens = [t for t in re.findall(r"[^\W_]+", text) if t not in _NOISE]
    tokens = [re.sub(r"alc$", "a1c", t) for t in tokens]
    return "".join(tokens)


def _build_index() -> dict[tuple[Specimen, str], list[LoincEntry]]:
    index: dict[tuple[Specimen, str], list[LoincEntry]] = {}

    def add(context: Specimen, alias: str, entry: LoincEntry) -> None:
        bucket = index.setdefault((context, name_key(alias)), [])
        if entry not in bucket:
            bucket.append(entry)

    for entry in TABLE:
        for alias in entry.aliases:
            add(entry.specimen, alias, entry)
            if entry.specimen == "urine":
                # Naming the specimen makes a urine test findable from any context.
                for spelled in (f"urine {alias}", f"{alias} urine", f"ua {alias}", f"u {alias}"):
                    add("blood", spelled, entry)
                    add("urine", spelled, entry)
    return index


_INDEX = _build_index()
_BY_CODE = {entry.code: entry for entry in TABLE}


def is_urine_context(specimen: str) -> bool:
    return bool(re.search(r"urin|\bua\b", specimen.lower()))


def lookup_loinc(
    name: str, unit: str | None = None, *, specimen: str = "", numeric: bool | None = None
) -> LoincEntry | None:
    """The LOINC entry for a printed test name, or None.

    `unit` (printed or UCUM) picks between codes that differ by property (glucose in mg/dL vs
    mmol/L, neutrophils in % vs 10^9/L); a unit that fits none of them gives None. No unit
    (None or blank) takes the first match. `specimen` is the item's specimen or panel name: a
    urine context switches to the urinalysis codes. `numeric` (is the result a number?) rules out
    quantitative codes for results like "Negative" and ordinal codes for numbers.
    """
    context: Specimen = "urine" if is_urine_context(specimen) else "blood"
    candidates = _INDEX.get((context, name_key(name)), [])
    if not candidates:
        candidates = _bracketed(name, context)
    if numeric is not None:
        candidates = [e for e in candidates if (e.scale == "Qn") == numeric]
    if not candidates:
        return None
    if unit is None or not unit.strip():
        return candidates[0]
    ucum = normalise_unit(unit).ucum
    for entry in candidates:
        if entry.scale == "Ord" or (ucum is not None and ucum in entry.units):
            return entry
    return None


def loinc_entries(name: str, *, specimen: str = "") -> tuple[LoincEntry, ...]:
    """Every entry a printed test name may be, whatever its unit (glucose in mg/dL and in
    mmol/L): the units a test can be measured in, for mending an OCR'd unit."""
    context: Specimen = "urine" if is_urine_context(specimen) else "blood"
    return tuple(_INDEX.get((context, name_key(name)), []) or _bracketed(name, context))


def _bracketed(name: str, context: Specimen) -> list[LoincEntry]:
    """Entries for "Alanine Aminotransferase (ALT/SGPT)" or "GPT (ALT)": the name outside the
    brackets, when what the brackets hold names the same test. "Calcium (ionized)" or
    "BUN (7-20)" get nothing: the brackets say something the outside name does not."""
    inside = [part for group in re.findall(r"\(([^)]*)\)", name)
              for part in re.split(r"[/,;]", group) if name_key(part)]
    if not inside:
        return []
    outside = _INDEX.get((context, name_key(re.sub(r"\([^)]*\)", " ", name))), [])
    return [entry for entry in outside
            if all(entry in _INDEX.get((context, name_key(part)), []) for part in inside)]


def loinc_entry(code: str) -> LoincEntry | None:
    """The table's entry for a LOINC code (for its display), or None."""
    return _BY_CODE.get(code)
