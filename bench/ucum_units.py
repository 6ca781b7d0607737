"""Which UCUM checker to trust with printed lab units: chartlight's own reader (fhir_mappers.ucum)
against ucumvert (PyPI, a lark grammar of UCUM mapped onto pint), measured on the same cases.

Every case is a printed unit and the UCUM unit its test is measured in. Both checkers get the same
input: the printed unit normalised by fhir_mappers.units.normalise_unit (a table of lab spellings),
or the printed text itself when the table does not know it. A case is right when the checker
accepts a unit that is on the page for that test (it parses and has the test's dimension) and
refuses one that is not (OCR debris, a different quantity).

  accept  every unit the lab corpus prints (tests/corpus/labs), with its test's unit
  refuse  garbled OCR and units of another kind of quantity than the test's

Run: .venv/bin/python bench/ucum_units.py   (ucumvert is optional: pip install ucumvert==0.3.2)
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fhir_mappers.units import compatible, normalise_unit  # noqa: E402
from tests.corpus.labs import layouts  # noqa: E402

Checker = Callable[[str, str], bool]  # (UCUM-or-printed text, expected UCUM) -> accepted

REFUSE = [
    ("x1lOE3/uL", "10*3/uL"), ("xt0A3/uUL", "10*3/uL"), ("10*9/1", "10*9/L"), ("mg/dLL", "mg/dL"),
    ("rng/dL", "mg/dL"), ("mmoI/L", "mmol/L"), ("g/dI", "g/dL"), ("u1U/mL", "u[IU]/mL"),
    ("uIU/mL", "10*3/uL"), ("mg/dL", "mmol/L"), ("ng/mL", "umol/L"), ("%", "g/dL"),
    ("mol/kg", "mmol/L"), ("U/L", "10*9/L"), ("fL", "pg"),
    ("s", "{ratio}"),
]
EXTRA_ACCEPT = [("pH", "[pH]"), ("mmHg", "mm[Hg]"), ("mIU/L", "u[IU]/mL"), ("cells/hpf", "/[HPF]")]


def _cases() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    accept = sorted({(row.unit, row.ucum) for lab in layouts() for row in lab.truth if row.unit})
    return accept + EXTRA_ACCEPT, REFUSE


def ours(text: str, expected: str) -> bool:
    return compatible(text, expected)


def ucumvert_checker() -> tuple[Checker | None, float]:
    try:
        start = time.perf_counter()
        from ucumvert import PintUcumRegistry
    except ImportError:
        return None, 0.0
    registry = PintUcumRegistry()
    loaded = time.perf_counter() - start

    def check(text: str, expected: str) -> bool:
        try:
            got = registry.from_ucum(text)
            want = registry.from_ucum(expected)
        except Exception:  # noqa: BLE001 - any parse or definition error is a refusal
            return False
        # An annotation alone ({ratio}) comes back as a bare token, not a quantity.
        return bool(getattr(got, "dimensionality", str(got))
                    == getattr(want, "dimensionality", str(want)))

    return check, loaded


def score(check: Checker, accept: list[tuple[str, str]], refuse: list[tuple[str, str]]
          ) -> tuple[int, int, list[str], float]:
    wrong: list[str] = []
    right_accept = right_refuse = 0
    times = []
    for printed, expected in accept + refuse:
        text = normalise_unit(printed).ucum or printed.strip()
        start = time.perf_counter()
        accepted = check(text, expected)
        times.append(time.perf_counter() - start)
        should = (printed, expected) in accept
        if accepted == should:
            right_accept += should
            right_refuse += not should
        else:
            wrong.append(f"{'refused' if should else 'accepted'} {printed!r} for {expected}")
    return right_accept, right_refuse, wrong, statistics.median(times)


def main() -> None:
    accept, refuse = _cases()
    checkers: dict[str, tuple[Checker, float]] = {"fhir_mappers.ucum": (ours, 0.0)}
    theirs, loaded = ucumvert_checker()
    if theirs is not None:
        checkers["ucumvert 0.3.2"] = (theirs, loaded)
    print(f"{len(accept)} printed units to accept, {len(refuse)} to refuse\n")
    print(f"{'checker':<20} {'accepted':>9} {'refused':>8} {'load s':>7} {'median us':>10}")
    failures: dict[str, list[str]] = {}
    for name, (check, load_s) in checkers.items():
        right_accept, right_refuse, wrong, median = score(check, accept, refuse)
        failures[name] = wrong
        print(f"{name:<20} {right_accept:>4}/{len(accept):<4} {right_refuse:>3}/{len(refuse):<4} "
              f"{load_s:>7.2f} {median * 1e6:>10.1f}")
    if theirs is None:
        print("\nucumvert is not installed: only chartlight's reader was measured")
    for name, wrong in failures.items():
        for line in wrong:
            print(f"  {name}: {line}")


if __name__ == "__main__":
    main()
