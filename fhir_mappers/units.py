"""Printed units -> UCUM codes (http://unitsofmeasure.org), as lab reports print them, with the
usual OCR slips (µ read as u, I read as l); and UCUM codes -> what they measure.

Values are never converted: "x10^9/L" stays 10*9/L and "K/uL" stays 10*3/uL even though the two
are the same quantity. A unit not in the table keeps its printed text and gets no UCUM code, which
is valid FHIR (Quantity.unit without system/code).

`parse_ucum` reads a UCUM code (the case-sensitive syntax) into its dimension, so that
`compatible` can tell whether a printed unit can be the unit a test is measured in (mg/dL and g/L
can; mg/dL and mmol/L cannot). It is written here rather than taken from a UCUM library: of the
units lab reports print, the measured alternative (ucumvert) rejected [pH], treated [IU] as a
plain count (so µIU/mL "fit" a platelet count), took 2 s to load and brought pint and lark; see
docs/benchmarks.md, "Units".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

from .ucum import Dimension, UcumError, parse_dimension


class Unit(NamedTuple):
    ucum: str | None  # the UCUM code, or None when the printed unit is not one we know
    display: str  # what a person reads (Quantity.unit)


# printed spellings (after _key) -> (UCUM code, display)
_TABLE: dict[str, tuple[str, str]] = {}


def _add(ucum: str, display: str, *spellings: str) -> None:
    for spelling in (ucum, display, *spellings):
        _TABLE[_key(spelling)] = (ucum, display)


def _key(printed: str) -> str:
    text = printed.strip().rstrip(".").replace("µ", "u").replace("μ", "u")  # micro sign, mu
    text = text.replace("×", "x").replace("²", "2").replace("³", "3")
    text = re.sub(r"\s+", "", text).lower()
    text = re.sub(r"^mc(?=[gl]/|g$|l$)", "u", text)  # mcg/dL, mcL
    return text.replace("/mcl", "/ul")


# mass and substance concentration
_add("mg/dL", "mg/dL", "mg/100ml", "mg%")
_add("g/dL", "g/dL", "gm/dl", "g%")
_add("g/L", "g/L")
_add("mg/L", "mg/L")
_add("ug/dL", "µg/dL")
_add("ug/L", "µg/L")
_add("ug/mL", "µg/mL")
_add("ng/mL", "ng/mL")
_add("ng/dL", "ng/dL")
_add("ng/L", "ng/L")
_add("pg/mL", "pg/mL")
_add("mmol/L", "mmol/L", "mmol/1")
_add("umol/L", "µmol/L")
_add("nmol/L", "nmol/L")
_add("pmol/L", "pmol/L")
_add("mmol/mol", "mmol/mol")
_add("meq/L", "mEq/L")
_add("mosm/kg", "mOsm/kg")
# enzyme activity and international units (uIU read by OCR as ulU)
_add("U/L", "U/L")
_add("U/mL", "U/mL")
_add("k[IU]/L", "kIU/L", "kiu/l")
_add("[IU]/L", "IU/L")
_add("[IU]/mL", "IU/mL")
_add("m[IU]/L", "mIU/L")
_add("m[IU]/mL", "mIU/mL")
_add("u[IU]/mL", "µIU/mL", "ulU/mL", "uiu/ml", "microIU/mL", "micIU/mL")
# cell counts
_add("10*9/L", "10^9/L", "x10^9/L", "x 10^9/L", "10*9/L", "x10*9/L", "10e9/L", "x10e9/L",
     "x10E9/L", "10^9/l", "giga/L")
_add("10*12/L", "10^12/L", "x10^12/L", "10*12/L", "x10*12/L", "10e12/L", "x10e12/L")
_add("10*3/uL", "10^3/µL", "x10^3/uL", "10^3/uL", "x10E3/uL", "10e3/uL", "x10e3/ul", "10*3/ul",
     "K/uL", "K/µL", "k/mm3", "10^3/mm3", "thou/uL", "thou/mm3", "x1000/uL")
_add("10*6/uL", "10^6/µL", "x10^6/uL", "10^6/uL", "x10E6/uL", "10e6/uL", "M/uL", "mill/uL",
     "10^6/mm3", "mil/uL")
_add("/uL", "/µL", "cells/uL", "/mm3", "cells/mm3")
_add("/[HPF]", "/HPF", "/hpf", "cells/hpf")
_add("/[LPF]", "/LPF", "/lpf")
_add("{copies}/mL", "copies/mL", "cp/ml")
# sizes, fractions and ratios
_add("%", "%", "percent")
_add("L/L", "L/L", "l/l")
_add("fL", "fL", "fl", "um3")
_add("pg", "pg")
_add("{INR}", "INR")
_add("{ratio}", "ratio")
_add("1", "1", "unitless")
_add("[pH]", "pH")
_add("mg/g", "mg/g", "mg/g creat", "mg/gcr")
_add("mg/mmol", "mg/mmol")
_add("mg/mg", "mg/mg")
_add("mg/(24.h)", "mg/24h", "mg/24 h", "mg/24hr", "mg/day", "mg/d")
_add("g/(24.h)", "g/24h", "g/24 h", "g/24hr", "g/day", "g/d")
_add("ng/mL{FEU}", "ng/mL FEU", "ng/ml feu", "ngfeu/ml")
_add("ug/mL{FEU}", "µg/mL FEU", "ug/ml feu", "mcg/ml feu")
_add("mg/L{FEU}", "mg/L FEU", "mg/l feu")
_add("ng/mL{DDU}", "ng/mL DDU", "ng/ml ddu")
_add("mL/min/{1.73_m2}", "mL/min/1.73m2", "ml/min/1.73 m2", "ml/min/1.73m^2", "ml/min/1.73sqm",
     "ml/min/1.73 sq m", "ml/min/1.73m²")
# time
_add("s", "s", "sec", "secs", "second", "seconds")
_add("min", "min")
_add("mm/h", "mm/h", "mm/hr", "mm/1hr", "mm/1h")
# vital signs and body measures
_add("mm[Hg]", "mmHg", "mm hg")
_add("kPa", "kPa")
_add("/min", "/min", "bpm", "beats/min", "breaths/min")
_add("Cel", "°C", "degC", "C")
_add("[degF]", "°F", "degF", "F")
_add("kg", "kg")
_add("[lb_av]", "lb", "lbs")
_add("[in_i]", "in", "inch", "inches")
_add("g", "g")
_add("cm", "cm")
_add("kg/m2", "kg/m2", "kg/m^2")
# Lengths as dictation spells them; never the bare codes, which lower-cased are also mM and M
# (millimolar, molar).
for _spelling in ("millimetre", "millimetres", "millimeter", "millimeters"):
    _TABLE[_key(_spelling)] = ("mm", "mm")
for _spelling in ("metre", "metres", "meter", "meters"):
    _TABLE[_key(_spelling)] = ("m", "m")


def normalise_unit(printed: str) -> Unit:
    """The UCUM code and display for a printed unit; unknown units keep their text."""
    found = _TABLE.get(_key(printed))
    if found is None:
        return Unit(None, printed.strip())
    return Unit(*found)


@dataclass(frozen=True)
class UcumUnit:
    """A valid UCUM code and what it measures (its dimension; annotations like {FEU} ignored)."""

    code: str
    dimension: Dimension


def parse_ucum(text: str) -> UcumUnit | None:
    """The UCUM unit `text` is, read as a UCUM code (case-sensitive: "mg/dL", "10*3/uL",
    "u[IU]/mL"), or None when it is not one. Printed spellings ("x10^3/uL", "mEq/L") are not UCUM:
    pass them through `normalise_unit` first."""
    code = text.strip()
    if not code:
        return None
    try:
        return UcumUnit(code, parse_dimension(code))
    except UcumError:
        return None


def compatible(unit: UcumUnit | str | None, expected: UcumUnit | str | None) -> bool:
    """Whether a value in `unit` can be a value in `expected` (the same kind of quantity, at any
    scale): mg/dL and g/L are; mg/dL and mmol/L, or µIU/mL and 10^3/µL, are not. Strings are
    UCUM codes; anything that does not parse is compatible with nothing."""
    first = parse_ucum(unit) if isinstance(unit, str) else unit
    second = parse_ucum(expected) if isinstance(expected, str) else expected
    if first is None or second is None:
        return False
    return first.dimension == second.dimension


def accepted_unit(printed: str, expected_ucum: str) -> UcumUnit | None:
    """The UCUM unit a printed unit stands for, when it parses and fits the test's expected unit;
    otherwise None (the unit is not written)."""
    ucum = normalise_unit(printed).ucum or printed.strip()
    unit = parse_ucum(ucum)
    return unit if unit is not None and compatible(unit, expected_ucum) else None


def spellings(ucum: str) -> tuple[str, ...]:
    """Every printed spelling the table reads as the UCUM code `ucum`, in its matching form
    (lower case, no spaces, micro as "u"): for mending an OCR'd unit against the units a test
    is measured in."""
    return tuple(key for key, (code, _) in _TABLE.items() if code == ucum)
