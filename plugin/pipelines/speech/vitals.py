"""Vital signs and measurements spoken in a dictation -> typed values that cite their words. Pure.

A value is taken only where a named vital sign ("blood pressure", "pulse", "sats", "temp", ...) or
a measuring verb after a structure ("nodule measures ...") is followed, through at most a few
filler words ("is", "of", "at"), by a spoken number in the sign's own shape ("one twenty eight
over eighty two" for a blood pressure) and, where the sign has more than one possible unit, by
the unit the speaker said. A number followed by a dose, time, count or date word ("two point five
milligrams", "at three pm", "three times", "fifth of may") is refused, as is a value outside what
the sign can physiologically be; refusals are returned with their reason for a reviewer to see.
Each value keeps the words it came from (indices into the transcript's words), their time range
and quote, and is checked again against exactly those words (`verify`) before anything is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from plugin.pipelines.speech.spoken_numbers import (
    BOUNDARY,
    SpokenNumber,
    Token,
    numbers_in,
    read_number,
    tokenize,
)
from plugin.pipelines.speech.transcript_words import TimedWord

Kind = Literal["blood-pressure", "heart-rate", "respiratory-rate", "temperature",
               "oxygen-saturation", "weight", "height", "measurement"]

NAMES: dict[Kind, str] = {
    "blood-pressure": "Blood pressure", "heart-rate": "Heart rate",
    "respiratory-rate": "Respiratory rate", "temperature": "Body temperature",
    "oxygen-saturation": "Oxygen saturation", "weight": "Body weight", "height": "Body height",
    "measurement": "Size",
}
# Spoken words that name each sign (longest match wins: "pulse ox" before "pulse").
TRIGGERS: dict[tuple[str, ...], Kind] = {
    **{t: "blood-pressure" for t in [("blood", "pressure"), ("bp",), ("b", "p"), ("pressure",)]},
    **{t: "heart-rate" for t in [("heart", "rate"), ("pulse",), ("pulse", "rate"), ("hr",)]},
    **{t: "respiratory-rate" for t in [("respiratory", "rate"), ("resp", "rate"), ("respirations",),
                                       ("respiration", "rate"), ("rr",), ("breathing",)]},
    **{t: "temperature" for t in [("temperature",), ("temp",), ("body", "temperature")]},
    **{t: "oxygen-saturation" for t in [
        ("sats",), ("sat",), ("saturation",), ("saturations",), ("saturating",),
        ("oxygen", "saturation"), ("oxygen", "saturations"), ("o2", "sat"), ("o2", "sats"),
        ("o2", "saturation"), ("spo2",), ("pulse", "ox"), ("pulse", "oximetry"),
        ("arterial", "oxygen", "saturation"), ("sao2",)]},
    **{t: "weight" for t in [("weight",), ("weighs",), ("weighing",), ("body", "weight")]},
    **{t: "height" for t in [("height",), ("body", "height")]},
}
MEASURING = frozenset({"measures", "measuring", "measured", "measure"})
# Structures whose spoken size becomes an exam measurement ("the nodule measures ...").
STRUCTURES = frozenset({
    "nodule", "mass", "lesion", "cyst", "stone", "calculus", "node", "polyp", "tumor", "tumour",
    "aneurysm", "opacity", "collection", "abscess", "hematoma", "haematoma", "effusion", "adenoma",
    "fibroid", "thickness", "diameter", "kidney", "liver", "spleen", "gallbladder", "aorta",
    "duct", "wall", "stripe", "thyroid", "lobe", "prostate", "ovary", "appendix", "defect",
})
FILLERS = frozenset({"is", "was", "of", "at", "about", "around", "approximately", "approx",
                     "roughly", "now", "today", "currently", "reading", "reads", "read", "were",
                     "are", "remains", "remained", "measured", "up", "to", "nearly", "just"})
MAX_FILLERS = 3
# Words that make the number before them a dose, a time, a count or a date, not a vital sign.
NOT_VITAL = frozenset({
    "milligrams", "milligram", "mg", "micrograms", "mcg", "grams", "gram", "units", "unit",
    "milliliters", "millilitres", "ml", "tablets", "tablet", "capsules", "puffs", "doses", "dose",
    "times", "am", "pm", "a.m", "p.m", "o'clock", "oclock", "hours", "hour", "days", "day",
    "weeks", "week", "months", "month", "years", "year", "minutes", "seconds", "liters", "litres",
    "percentile", "th", "st", "nd", "rd", "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december", "patients", "episodes",
})
# Spoken unit phrases -> the unit written (a printed spelling fhir_mappers.units knows).
UNITS: dict[Kind, dict[tuple[str, ...], str]] = {
    "blood-pressure": {("millimeters", "of", "mercury"): "mmHg", ("millimetres", "of", "mercury"):
                       "mmHg", ("mm", "hg"): "mmHg", ("mmhg",): "mmHg"},
    "heart-rate": {("beats", "per", "minute"): "/min", ("beats", "a", "minute"): "/min",
                   ("bpm",): "/min", ("per", "minute"): "/min"},
    "respiratory-rate": {("breaths", "per", "minute"): "/min", ("breaths", "a", "minute"): "/min",
                         ("per", "minute"): "/min"},
    "temperature": {("degrees", "celsius"): "Cel", ("degrees", "centigrade"): "Cel",
                    ("celsius",): "Cel", ("centigrade",): "Cel", ("degrees", "c"): "Cel",
                    ("degrees", "fahrenheit"): "[degF]", ("fahrenheit",): "[degF]",
                    ("degrees", "f"): "[degF]", ("degrees",): ""},
    "oxygen-saturation": {("percent",): "%"},
    "weight": {("kilograms",): "kg", ("kilogram",): "kg", ("kilos",): "kg", ("kg",): "kg",
               ("kgs",): "kg", ("pounds",): "[lb_av]", ("pound",): "[lb_av]",
               ("lbs",): "[lb_av]", ("lb",): "[lb_av]"},
    "height": {("centimeters",): "cm", ("centimetres",): "cm", ("cm",): "cm",
               ("inches",): "[in_i]", ("inch",): "[in_i]", ("meters",): "metres",
               ("metres",): "metres"},
    "measurement": {("millimeters",): "millimetres", ("millimetres",): "millimetres",
                    ("millimeter",): "millimetres", ("millimetre",): "millimetres",
                    ("mm",): "millimetres", ("centimeters",): "cm", ("centimetres",): "cm",
                    ("centimeter",): "cm", ("centimetre",): "cm", ("cm",): "cm"},
}
# The first words of every unit above: one of these after a number that is not a unit of the sign
# named ("sat up at ninety degrees") means the number measures something else.
UNIT_WORDS = frozenset(phrase[0] for units in UNITS.values() for phrase in units if phrase[0] != "per")
# The one unit a sign is measured in, when the speaker need not say it.
IMPLIED_UNIT: dict[Kind, str] = {"blood-pressure": "mmHg", "heart-rate": "/min",
                                 "respiratory-rate": "/min", "oxygen-saturation": "%"}
# What each sign can physiologically be, per unit written (inclusive).
RANGES: dict[str, tuple[Decimal, Decimal]] = {
    "blood-pressure/mmHg": (Decimal(20), Decimal(300)), "heart-rate//min": (Decimal(20), Decimal(300)),
    "respiratory-rate//min": (Decimal(4), Decimal(80)), "temperature/Cel": (Decimal(30), Decimal(45)),
    "temperature/[degF]": (Decimal(86), Decimal(113)), "oxygen-saturation/%": (Decimal(50), Decimal(100)),
    "weight/kg": (Decimal("0.3"), Decimal(400)), "weight/[lb_av]": (Decimal(1), Decimal(900)),
    "height/cm": (Decimal(30), Decimal(250)), "height/[in_i]": (Decimal(12), Decimal(100)),
    "height/metres": (Decimal("0.3"), Decimal("2.5")),
    "measurement/millimetres": (Decimal("0.1"), Decimal(1000)),
    "measurement/cm": (Decimal("0.01"), Decimal(100)),
}


@dataclass(frozen=True)
class SpokenValue:
    """A vital sign or measurement with the words it was read from."""

    kind: Kind
    name: str
    values: tuple[Decimal, ...]  # a blood pressure is (systolic, diastolic)
    unit: str  # as written: "mmHg", "/min", "%", "Cel", "[degF]", "kg", "millimetres", ...
    unit_spoken: bool  # False: the sign's only unit (IMPLIED_UNIT) or the temperature scale its range implies
    first_word: int  # indices into the transcript's words, inclusive
    last_word: int
    start_s: float
    end_s: float
    quote: str  # the words as spoken
    context: str = ""  # "room air" after a saturation


@dataclass(frozen=True)
class Refusal:
    """A sign was named but no value was taken from what followed; `reason` says why."""

    first_word: int
    last_word: int
    quote: str
    reason: str


@dataclass(frozen=True)
class Extraction:
    values: tuple[SpokenValue, ...]
    refusals: tuple[Refusal, ...]


def extract(words: Sequence[TimedWord]) -> Extraction:
    """Every vital sign and measurement spoken in `words` (see the module docstring)."""
    tokens = tokenize([w.text for w in words])
    values: list[SpokenValue] = []
    refusals: list[Refusal] = []
    i = 0
    while i < len(tokens):
        found = _trigger(tokens, i)
        if found is None:
            i += 1
            continue
        kind, after = found
        outcome = _read_value(tokens, words, i, after, kind)
        if isinstance(outcome, SpokenValue):
            values.append(outcome)
            i = _token_after_word(tokens, outcome.last_word)
            continue
        if outcome is not None:
            refusals.append(outcome)
        i = after
    return Extraction(tuple(values), tuple(refusals))


def verify(value: SpokenValue, words: Sequence[TimedWord]) -> bool:
    """Whether every number of `value` is spoken in exactly the words it cites, at the times it
    cites: the check made before an Observation is written."""
    if not 0 <= value.first_word <= value.last_word < len(words):
        return False
    cited = words[value.first_word:value.last_word + 1]
    if (cited[0].start_s, cited[-1].end_s) != (value.start_s, value.end_s):
        return False
    spoken = numbers_in(tokenize([w.text for w in cited]))
    return all(number in spoken for number in value.values)


def _trigger(tokens: Sequence[Token], i: int) -> tuple[Kind, int] | None:
    """The sign named at token i and the token after its name; "<structure> ... measures" is
    a measurement."""
    for length in (3, 2, 1):
        phrase = tuple(t.text for t in tokens[i:i + length])
        if len(phrase) == length and phrase in TRIGGERS:
            return TRIGGERS[phrase], i + length
    if tokens[i].text in MEASURING and _structure_before(tokens, i) is not None:
        return "measurement", i + 1
    return None


def _structure_before(tokens: Sequence[Token], i: int) -> tuple[str, int] | None:
    """The structure named within six tokens before token i (and its token), if any."""
    for j in range(i - 1, max(-1, i - 7), -1):
        if tokens[j].text == BOUNDARY:
            return None
        for name in (tokens[j].text, tokens[j].text.removesuffix("s")):
            if name in STRUCTURES:
                return name, j
    return None


def _read_value(tokens: Sequence[Token], words: Sequence[TimedWord], start: int, after: int,
                kind: Kind) -> SpokenValue | Refusal | None:
    """The value that follows the sign named at tokens [start, after), a Refusal, or None when
    no number follows at all (the sign was only mentioned)."""
    j, fillers = after, 0
    while j < len(tokens) and tokens[j].text in FILLERS and fillers < MAX_FILLERS:
        j, fillers = j + 1, fillers + 1
    numbers = _numbers_at(tokens, j, kind)
    if numbers is None:
        return None
    number_end = numbers[-1].end
    unit, spoken, end = _unit(tokens, number_end, kind)
    values = tuple(n.value for n in numbers)
    if kind == "temperature" and unit == "":
        unit = _scale_of(values[0])
    refusal = _why_refused(tokens, kind, values, unit, number_end, end)
    structure = _structure_before(tokens, start) if kind == "measurement" else None
    if structure is not None:  # the quote names what was measured
        start = structure[1]
    first_word, last_word = tokens[start].word, tokens[end - 1].word
    quote = " ".join(w.text for w in words[first_word:last_word + 1])
    if refusal is not None or unit is None:
        return Refusal(first_word, last_word, quote, refusal or "no unit")
    name = f"{structure[0].capitalize()} size" if structure is not None else NAMES[kind]
    context = "room air" if kind == "oxygen-saturation" and _says(tokens, end, ("on", "room", "air")) \
        else ""
    return SpokenValue(kind, name, values, unit, spoken, first_word, last_word,
                       words[first_word].start_s, words[last_word].end_s, quote, context)


def _why_refused(tokens: Sequence[Token], kind: Kind, values: tuple[Decimal, ...], unit: str | None,
                 number_end: int, unit_end: int) -> str | None:
    """Why the number(s) read for `kind` are not taken as its value, or None."""
    following = tokens[number_end].text if number_end < len(tokens) else ""
    if following in NOT_VITAL:
        return f"the number is followed by {following!r}: a dose, time, count or date"
    if kind == "measurement" and "by" in (following, *(t.text for t in tokens[unit_end:unit_end + 1])):
        return "more than one dimension was spoken; only single sizes are taken"
    if unit_end == number_end and following in UNIT_WORDS:
        return f"the number is followed by {following!r}, not a unit of {NAMES[kind].lower()}"
    if unit is None:
        return "no unit was spoken, and this sign has more than one"
    if unit == "":
        return "no scale was spoken and the value fits neither Celsius nor Fahrenheit"
    return _out_of_range(kind, unit, values)


def _numbers_at(tokens: Sequence[Token], j: int, kind: Kind) -> tuple[SpokenNumber, ...] | None:
    first = read_number(tokens, j)
    if first is None:
        return None
    if kind != "blood-pressure":
        return (first,)
    if first.end < len(tokens) and tokens[first.end].text in ("over", "slash", "/"):
        second = read_number(tokens, first.end + 1)
        if second is not None:
            return (first, second)
    return None  # a blood pressure is two numbers; "pressure" followed by one is something else


def _unit(tokens: Sequence[Token], end: int, kind: Kind) -> tuple[str | None, bool, int]:
    """The unit spoken at token `end` (or the sign's implied one): (unit, spoken, next token).
    Unit None: none spoken and none implied; "" for a temperature: degrees without a scale."""
    for phrase, unit in sorted(UNITS[kind].items(), key=lambda item: -len(item[0])):
        if _says(tokens, end, phrase):
            return unit, bool(unit), end + len(phrase)
    if kind == "temperature":
        return "", False, end
    implied = IMPLIED_UNIT.get(kind)
    return implied, False, end


def _says(tokens: Sequence[Token], at: int, phrase: tuple[str, ...]) -> bool:
    return tuple(t.text for t in tokens[at:at + len(phrase)]) == phrase


def _scale_of(value: Decimal) -> str:
    for unit in ("Cel", "[degF]"):
        low, high = RANGES[f"temperature/{unit}"]
        if low <= value <= high:
            return unit
    return ""


def _out_of_range(kind: Kind, unit: str, values: tuple[Decimal, ...]) -> str | None:
    low, high = RANGES[f"{kind}/{unit}"]
    for value in values:
        if not low <= value <= high:
            return f"{value} {unit} is outside what a {NAMES[kind].lower()} can be ({low} to {high})"
    if kind == "blood-pressure" and values[0] <= values[1]:
        return f"the systolic {values[0]} is not above the diastolic {values[1]}"
    return None


def _token_after_word(tokens: Sequence[Token], word: int) -> int:
    for i, token in enumerate(tokens):
        if token.word > word:
            return i
    return len(tokens)
