"""Spoken numbers and vital signs on hand-written utterances: what each must give, and the traps
(dates, doses, counts, times) that must give nothing. The expected values were written by hand."""

from __future__ import annotations

from decimal import Decimal

import pytest

from plugin.pipelines.speech.spoken_numbers import read_number, tokenize
from plugin.pipelines.speech.transcript_words import TimedWord
from plugin.pipelines.speech.vitals import SpokenValue, extract, verify

# (spoken, the number read from its first word)
NUMBERS = [
    ("one twenty eight", "128"),
    ("one hundred twenty-eight", "128"),
    ("one hundred and twenty eight", "128"),
    ("a hundred and four point five", "104.5"),
    ("ninety-four", "94"),
    ("ninety four", "94"),
    ("one oh five", "105"),
    ("two point five", "2.5"),
    ("ninety eight point six", "98.6"),
    ("thirty seven point oh five", "37.05"),
    ("zero point one five", "0.15"),
    ("eleven", "11"),
    ("seventeen", "17"),
    ("two thousand and twenty four", "2024"),
    ("one thousand two hundred", "1200"),
    ("a hundred", "100"),
    ("128", "128"),
    ("37.5", "37.5"),
    ("forty", "40"),
    ("nine hundred", "900"),
]


@pytest.mark.parametrize(("spoken", "expected"), NUMBERS)
def test_spoken_numbers(spoken: str, expected: str) -> None:
    number = read_number(tokenize(spoken.split()), 0)
    assert number is not None and number.value == Decimal(expected)


@pytest.mark.parametrize("spoken", ["the", "point five", "oh", "hundred", "and"])
def test_words_that_are_not_numbers(spoken: str) -> None:
    assert read_number(tokenize(spoken.split()), 0) is None


# (utterance, [(kind, values, unit)]) -- an empty list: nothing may be taken.
UTTERANCES: list[tuple[str, list[tuple[str, tuple[str, ...], str]]]] = [
    # blood pressure
    ("blood pressure one twenty eight over eighty two", [("blood-pressure", ("128", "82"), "mmHg")]),
    ("blood pressure is one hundred and ten over seventy millimeters of mercury",
     [("blood-pressure", ("110", "70"), "mmHg")]),
    ("bp one forty over ninety {period}", [("blood-pressure", ("140", "90"), "mmHg")]),
    ("BP 128/82", [("blood-pressure", ("128", "82"), "mmHg")]),
    ("b p was one thirty two slash seventy eight", [("blood-pressure", ("132", "78"), "mmHg")]),
    ("her blood pressure today is ninety over sixty", [("blood-pressure", ("90", "60"), "mmHg")]),
    ("blood pressure one hundred twenty-eight over eighty-two mm hg",
     [("blood-pressure", ("128", "82"), "mmHg")]),
    # heart rate
    ("heart rate one hundred twenty-eight", [("heart-rate", ("128",), "/min")]),
    ("pulse of seventy two beats per minute", [("heart-rate", ("72",), "/min")]),
    ("pulse rate is sixty", [("heart-rate", ("60",), "/min")]),
    ("HR one ten", [("heart-rate", ("110",), "/min")]),
    ("heart rate eighty eight bpm", [("heart-rate", ("88",), "/min")]),
    # respiratory rate
    ("respiratory rate sixteen", [("respiratory-rate", ("16",), "/min")]),
    ("respirations eighteen per minute", [("respiratory-rate", ("18",), "/min")]),
    ("resp rate of twenty two breaths per minute", [("respiratory-rate", ("22",), "/min")]),
    ("breathing at twenty four a minute", [("respiratory-rate", ("24",), "/min")]),
    # temperature, the scale as spoken or as the range alone allows
    ("temperature a hundred and four point five", [("temperature", ("104.5",), "[degF]")]),
    ("temp thirty seven point eight degrees celsius", [("temperature", ("37.8",), "Cel")]),
    ("temp ninety eight point six", [("temperature", ("98.6",), "[degF]")]),
    ("temperature thirty eight point two", [("temperature", ("38.2",), "Cel")]),
    ("temperature one oh one point two fahrenheit", [("temperature", ("101.2",), "[degF]")]),
    ("temperature is thirty nine degrees centigrade", [("temperature", ("39",), "Cel")]),
    ("temperature sixty degrees", []),  # fits neither scale
    # oxygen saturation
    ("sats ninety four percent on room air", [("oxygen-saturation", ("94",), "%")]),
    ("oxygen saturation ninety-four {percent}", [("oxygen-saturation", ("94",), "%")]),
    ("saturating ninety six percent", [("oxygen-saturation", ("96",), "%")]),
    ("spo2 ninety nine", [("oxygen-saturation", ("99",), "%")]),
    ("pulse ox ninety two percent", [("oxygen-saturation", ("92",), "%")]),
    ("o2 sats of eighty eight percent on two liters", [("oxygen-saturation", ("88",), "%")]),
    ("sats a hundred percent", [("oxygen-saturation", ("100",), "%")]),
    ("sats ninety four { percent } on room air", [("oxygen-saturation", ("94",), "%")]),  # split braces
    ("temp thirty eight {period", [("temperature", ("38",), "Cel")]),  # a brace lost
    # weight and height: the unit must be spoken
    ("weight seventy two kilograms", [("weight", ("72",), "kg")]),
    ("weighs one hundred sixty pounds", [("weight", ("160",), "[lb_av]")]),
    ("weight is eighty point five kilos", [("weight", ("80.5",), "kg")]),
    ("weight seventy two", []),
    ("height one hundred seventy two centimetres", [("height", ("172",), "cm")]),
    ("height sixty eight inches", [("height", ("68",), "[in_i]")]),
    ("height one point seven eight metres", [("height", ("1.78",), "metres")]),
    # measurements
    ("the nodule measures eleven millimetres", [("measurement", ("11",), "millimetres")]),
    ("right lower lobe nodule measuring eight millimeters", [("measurement", ("8",), "millimetres")]),
    ("the mass measures two point three centimetres", [("measurement", ("2.3",), "cm")]),
    ("a renal stone measuring four mm", [("measurement", ("4",), "millimetres")]),
    ("a mass measuring four by three centimetres", []),  # two dimensions: not taken
    ("the study measures quality", []),  # no structure, no number
    # several in one dictation
    ("vitals blood pressure one twenty over eighty {comma} pulse seventy {comma} temp thirty six "
     "point nine {period}",
     [("blood-pressure", ("120", "80"), "mmHg"), ("heart-rate", ("70",), "/min"),
      ("temperature", ("36.9",), "Cel")]),
    ("sats ninety seven percent and respiratory rate fourteen",
     [("oxygen-saturation", ("97",), "%"), ("respiratory-rate", ("14",), "/min")]),
    # traps: doses, dates, counts, times, ages, things that only mention a sign
    ("take two point five milligrams of amlodipine for blood pressure", []),
    ("start metoprolol twenty five milligrams twice daily", []),
    ("pulse checked three times", []),
    ("temperature at three pm", []),
    ("blood pressure on march fifth was high", []),
    ("weight loss of five pounds", []),
    ("follow up in two weeks", []),
    ("born on the fifth of may nineteen eighty", []),
    ("a ninety-four year old woman", []),
    ("heart rate nine hundred", []),  # impossible
    ("blood pressure eighty over one twenty", []),  # systolic below diastolic
    ("pulse eighty milligrams", []),
    ("temperature was taken at seven o'clock", []),
    ("the pressure ulcer measures", []),
    ("blood pressure one twenty eight", []),  # one number is not a blood pressure
    ("sats were fine", []),
    ("heart rate regular", []),
    ("weight two weeks ago", []),
    ("three tablets of paracetamol", []),
    ("in two thousand and twenty four", []),
    ("the patient sat up at ninety degrees", []),  # "sat" the verb, degrees not a saturation unit
    ("height is four millimetres", []),  # a length, but not a unit of body height
    ("sat in the chair for twenty minutes", []),
]


def words_of(text: str) -> list[TimedWord]:
    return [TimedWord(w, round(i * 0.5, 3), round(i * 0.5 + 0.4, 3)) for i, w in enumerate(text.split())]


@pytest.mark.parametrize(("utterance", "expected"), UTTERANCES)
def test_vital_signs_in_utterances(utterance: str, expected: list[tuple[str, tuple[str, ...], str]]) -> None:
    words = words_of(utterance)
    found = extract(words).values
    assert [(v.kind, tuple(str(n) for n in v.values), v.unit) for v in found] == expected
    for value in found:
        assert verify(value, words)
        cited = words[value.first_word:value.last_word + 1]
        assert (value.start_s, value.end_s) == (cited[0].start_s, cited[-1].end_s)
        assert value.quote == " ".join(w.text for w in cited)


def test_table_is_large_enough() -> None:
    assert len(UTTERANCES) + len(NUMBERS) >= 60
    assert len(UTTERANCES) >= 60


def test_refusals_say_why() -> None:
    refusals = extract(words_of("temperature at three pm {period} heart rate nine hundred")).refusals
    assert [r.reason.split(":")[0] for r in refusals] == [
        "the number is followed by 'pm'", "900 /min is outside what a heart rate can be (20 to 300)"]


def test_the_measured_structure_is_named_and_quoted() -> None:
    value = extract(words_of("the nodule measures eleven millimetres")).values[0]
    assert value.name == "Nodule size" and value.quote == "nodule measures eleven millimetres"


def test_room_air_is_kept_as_context() -> None:
    value = extract(words_of("sats ninety four percent on room air")).values[0]
    assert value.context == "room air" and value.unit_spoken


@pytest.mark.parametrize("change", ["number", "time", "range"])
def test_verify_refuses_a_value_whose_words_do_not_say_it(change: str) -> None:
    words = words_of("blood pressure one twenty eight over eighty two")
    value = extract(words).values[0]
    forged = {
        "number": SpokenValue(**{**value.__dict__, "values": (Decimal(130), Decimal(82))}),
        "time": SpokenValue(**{**value.__dict__, "start_s": value.start_s + 1}),
        "range": SpokenValue(**{**value.__dict__, "last_word": 40}),
    }[change]
    assert not verify(forged, words)


def test_a_command_spoken_as_a_unit_is_quoted_to_its_closing_brace() -> None:
    value = extract(words_of("sats ninety four { percent } on room air")).values[0]
    assert value.quote == "sats ninety four { percent }"
