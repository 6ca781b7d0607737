"""An OCR'd unit mended against the units its test is measured in, when exactly one of them is
a slip or two away: "pmol/L" beside Creatinine (µ read as p) is µmol/L, "U/1" beside GPT is U/L,
"gid" beside Albumin is g/dL.

Only OCR'd text is mended, only when the unit as read does not fit the test (a "pmol/L" beside
Free T4 stays pmol/L), and only when the catalogue (fhir_mappers.loinc) lists the test: its units
are the candidates, in every spelling the unit table (fhir_mappers.units) reads. A candidate must
be within `MAX_COST` of the text as read (and a third of its own length), lose at most one
character, and be nearer than every candidate of a different unit by `MARGIN`: "mg" beside CRP
(mg/L or mg/dL, a unit cut short) stays unread and the row is withheld.
"""

from __future__ import annotations

import re
from functools import cache

from fhir_mappers.loinc import loinc_entries
from fhir_mappers.units import normalise_unit, spellings

# Edit costs. Glyphs OCR confuses with each other cost half a substitution; a thin glyph (a
# stroke OCR drops or adds at a cell edge, "g/d" for "g/dL") half an insertion or deletion. Any
# other character missing from what was read costs more than a mend may: "mg" is a unit cut
# short (mg/L? mg/dL? mg%?), not a slip.
MAX_COST = 1.0
MARGIN = 0.5
# ...and at most a third of the spelling's length: a lone "H" is a flag, not a "%" misread.
MAX_SHARE = 0.34
_CONFUSED = tuple(frozenset(pair) for pair in (
    ("l", "1"), ("l", "i"), ("l", "|"), ("1", "i"), ("1", "|"), ("i", "|"), ("/", "l"),
    ("/", "i"), ("/", "1"), ("/", "|"), ("o", "0"), ("u", "p"), ("u", "y"), ("u", "µ"),
    ("o", "g"), ("q", "g"), ("t", "l"), ("^", "*"), ("^", "4"), ("^", "°"), ("*", "°"),
    ("%", "*"), ("%", "^"),
    # The caret read as a letter or a quote mark on the corpus's photos ("X1OA9/L", "10“9/1").
    ("^", "a"), ("^", "“"), ("^", '"'),
))
_THIN = frozenset("l1i|/.'")


# Any edit that is not one of those slips, where the text as read is itself a unit: "mmol/L"
# beside Creatinine was printed mmol/L (some labs report it so), never a misread µmol/L, and
# "mg/L" beside Albumin is mg/L. Mending those would write a value 1000 times off.
_NOT_A_SLIP = float("inf")


def _sub_cost(a: str, b: str, *, strict: bool = False) -> float:
    if a == b:
        return 0.0
    if frozenset((a, b)) in _CONFUSED:
        return 0.5
    return _NOT_A_SLIP if strict else 1.0


def _extra_cost(c: str, *, strict: bool = False) -> float:
    if c in _THIN:
        return 0.5
    return _NOT_A_SLIP if strict else 1.0


def _missing_cost(c: str, *, strict: bool = False) -> float:
    if c in _THIN:
        return 0.5
    return _NOT_A_SLIP if strict else 1.5


def ocr_distance(read: str, printed: str, *, strict: bool = False) -> float:
    """The weighted edit distance from a spelling to the text OCR read for it; `strict`: only
    confusable glyphs and thin strokes may differ (infinite otherwise)."""
    previous = [0.0]
    for c in printed:
        previous.append(previous[-1] + _missing_cost(c, strict=strict))
    for r in read:
        current = [previous[0] + _extra_cost(r, strict=strict)]
        for j, c in enumerate(printed, 1):
            current.append(min(previous[j] + _extra_cost(r, strict=strict),
                               current[j - 1] + _missing_cost(c, strict=strict),
                               previous[j - 1] + _sub_cost(r, c, strict=strict)))
        previous = current
    return previous[-1]


def _key(text: str) -> str:
    return re.sub(r"\s+", "", text.replace("µ", "u").replace("μ", "u")).lower().strip(".,:;'_")


@cache
def _candidates(name: str, context: str) -> tuple[tuple[str, str], ...]:
    """(spelling, UCUM code) for every unit the test may be measured in."""
    codes = dict.fromkeys(u for entry in loinc_entries(name, specimen=context)
                          for u in entry.units)
    return tuple((spelling, code) for code in codes for spelling in spellings(code))


def fits(unit: str, name: str, context: str = "") -> bool:
    """Whether the unit as printed is one the catalogued test is measured in."""
    code = normalise_unit(unit).ucum
    return code is not None and any(code == c for _, c in _candidates(name, context))


def mend_unit(read: str, name: str, context: str = "") -> str | None:
    """The unit the test's catalogue entry expects that OCR most likely read as `read`, in its
    printed spelling; None when the test is not catalogued, `read` already fits, or no single
    unit is near enough."""
    text = _key(read)
    candidates = _candidates(name, context)
    if not text or not candidates or fits(read, name, context):
        return None
    # A unit as read ("mmol/L", "pmol/L") is mended only through glyphs OCR confuses (p for µ):
    # anything else is a unit the report printed, which the value is in.
    strict = normalise_unit(read).ucum is not None
    best: dict[str, tuple[float, str]] = {}
    for spelling, code in candidates:
        if len(text) < len(spelling) - 1:
            continue
        cost = ocr_distance(text, spelling, strict=strict)
        if cost > MAX_SHARE * len(spelling):
            continue
        if code not in best or cost < best[code][0]:
            best[code] = (cost, spelling)
    ranked = sorted(best.values())
    if not ranked or ranked[0][0] > MAX_COST:
        return None
    if len(ranked) > 1 and ranked[1][0] - ranked[0][0] < MARGIN:
        return None
    return normalise_unit(ranked[0][1]).display
