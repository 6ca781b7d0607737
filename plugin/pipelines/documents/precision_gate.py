"""What may be written: a verified row becomes an Observation only when its name is a test we
know (the LOINC catalogue) or reads as a clean test name, its unit parses and fits the test, and
(OCR) its result was recognised confidently. Anything else is withheld and listed in the summary
under "read but not recognised", with its page and the text as printed.
"""

from __future__ import annotations

import re
from decimal import Decimal

from fhir_mappers.loinc import lookup_loinc
from fhir_mappers.units import normalise_unit

from .lab_rows import LabRow

# Tesseract's word confidence (0..1) below which an OCR'd result is withheld. Measured on 25
# scans (150-300 dpi, turned up to 2.5°) of the test reports in tests/unit/pipelines/documents:
# 103 of 116 correctly read results score at or above 0.60 and 2 of the 3 misread ones below it
# (the third, a decimal point lost at 150 dpi, is stopped by the range check in the pipeline).
OCR_MIN_CONFIDENCE = 0.60
WITHHELD = "read but not recognised"
# Units printed as words that UCUM does not spell (the result is still a quantity of them).
_WORD_UNITS = frozenset({"ratio", "index", "titer", "titre", "cells", "copies"})
# One part of a name word: letters ("Protein"), an abbreviation with a number ("A1c", "B12",
# "T4", "25OH") or a number ("19" of "CA 19-9"); OCR debris mixes them ("x1lOE3").
_PART = r"(?:[A-Za-zÀ-ÿ]+|[A-Za-z]{1,4}\d{1,3}[a-z]?|\d{1,3}[A-Za-z]{0,4})"
_NAME_WORD = re.compile(rf"^(?:{_PART}(?:[-'/]{_PART})*|&|/|-|\+)$")


def withheld_reason(row: LabRow, *, confidence: float | None, numeric: bool,
                    ocr: bool) -> str | None:
    """Why the verified `row` may not be written, or None when it may. On an OCR'd page only a
    name the catalogue knows is written: OCR turns leaders and specks into letters that pass
    for words."""
    if confidence is not None and confidence < OCR_MIN_CONFIDENCE:
        return f"OCR confidence {confidence:.2f} is below {OCR_MIN_CONFIDENCE:.2f}"
    unit = row.unit.strip()
    parsed = normalise_unit(unit) if unit else None
    if parsed is not None and parsed.ucum is None and unit.lower() not in _WORD_UNITS:
        return f"the unit {unit!r} is not a unit we can read"
    context = row.panel or row.specimen
    known = lookup_loinc(row.name, None, specimen=context, numeric=numeric)
    if known is not None:
        if unit and parsed is not None and parsed.ucum is not None and \
                lookup_loinc(row.name, unit, specimen=context, numeric=numeric) is None:
            return f"the unit {unit!r} does not fit {row.name}"
        return None
    if ocr:
        return f"the name {row.name!r} was recognised by OCR and is not a test we know"
    if not clean_name(row.name):
        return f"the name {row.name!r} is neither a known test nor a clean test name"
    return None


def clean_name(name: str) -> bool:
    """A strict check for a test name the catalogue does not know: a few words, each a word,
    an abbreviation ("LDL", "CA 19-9", "25-OH") or a joining mark, and not OCR debris (mixed
    letters and digits, lone letters, stray symbols)."""
    text = name.replace(",", " ").replace("(", " ").replace(")", " ").replace(".", " ")
    words = text.split()
    if not 1 <= len(words) <= 7 or not re.match(r"^[A-Za-zÀ-ÿ]", name.strip()):
        return False
    letters = sum(c.isalpha() for c in name)
    if letters < 2 or letters < 0.6 * sum(not c.isspace() for c in name):
        return False
    for word in words:
        if not _NAME_WORD.match(word):
            return False
        # A word with letters but no vowel, longer than an abbreviation, is noise ("Xkcdfg").
        if len(word) > 5 and word.isalpha() and not re.search(r"[aeiouyäöüéèàAEIOUY]", word):
            return False
    return True


def far_outside(value: Decimal, low: Decimal | None, high: Decimal | None) -> str | None:
    """On an OCR'd page, a value more than three times its upper bound (or under a third of its
    lower one) is withheld even when flagged: measured on the corpus's photos, a "1" read as a
    "4" ("11.2" -> "41.2") survives every other check and lands there."""
    if high is not None and high > 0 and value > 3 * high:
        return f"{value} is over three times the upper bound {high}: likely misread"
    if low is not None and low > 0 and value < low / 3:
        return f"{value} is under a third of the lower bound {low}: likely misread"
    return None
