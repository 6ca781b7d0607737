"""MedASR brace tokens -> punctuation and layout; malformed braces; no word ever lost."""

from __future__ import annotations

import random

import pytest

from plugin.pipelines.speech.formatting import COMMANDS, format_transcript, parse, spoken_words
from plugin.sandbox.synthetic import DICTATION_TEXT


@pytest.mark.parametrize(("raw", "expected"), [
    ("exam {colon} ct chest {period}", "Exam: ct chest."),
    ("nodule {comma} smooth margins {period} no effusion {period}",
     "Nodule, smooth margins. No effusion."),
    ("findings {colon} {next line} one {period} two {new paragraph} impression {colon} stable",
     "Findings:\nOne. Two\n\nImpression: stable"),
    ("is it growing {question mark} yes", "Is it growing? Yes"),
    ("lesion {open paren} likely benign {close paren} noted", "Lesion (likely benign) noted"),
    ("left {hyphen} sided and t2 {slash} flair", "Left-sided and t2/flair"),
    ("{new paragraph} text {next line}", "Text"),
    ("a {period} {period} b", "A.. B"),
])
def test_well_formed_commands(raw: str, expected: str) -> None:
    assert format_transcript(raw) == expected


@pytest.mark.parametrize("raw", [
    "nodule {period} next",
    "nodule {period next",
    "nodule period} next",
    "nodule { period } next",
    "nodule {period}next",
    "nodule{period} next",
    "nodule {  period} next",
])
def test_malformed_period_variants(raw: str) -> None:
    assert format_transcript(raw) == "Nodule. Next"


@pytest.mark.parametrize("raw", [
    "one {next line} two", "one {next line two", "one next line} two", "one { next line } two",
    "one {next}{line} two".replace("}{", " "),
])
def test_malformed_two_word_commands(raw: str) -> None:
    assert format_transcript(raw) == "One\nTwo"


def test_unknown_brace_tokens_stay_visible() -> None:
    assert format_transcript("dose {unknown thing} given {period}") == "Dose {unknown thing} given."
    assert format_transcript("value {} here") == "Value {} here"
    assert format_transcript("stray { brace and } other") == "Stray {brace and} other"


def test_words_that_name_commands_without_braces_stay_words() -> None:
    assert format_transcript("the period of observation") == "The period of observation"
    assert format_transcript("colon cancer screening {period}") == "Colon cancer screening."


def test_seeded_dictation_reads_as_a_report() -> None:
    # The seeded dictation, as MedASR would write it: spoken commands in braces, lower case.
    raw = DICTATION_TEXT.lower()
    for name in sorted(COMMANDS, key=len, reverse=True):
        raw = raw.replace(f" {name} ", f" {{{name}}} ")
    text = format_transcript(raw)
    assert text.startswith("Exam: ct chest without contrast.\nClinical history: sixty four year old")
    assert "\n\nFindings: there is a solid nodule" in text
    assert "measuring two point zero centimeters, with smooth margins." in text
    assert "\n\nImpression:\nOne. Two centimeter right lower lobe nodule, enlarged" in text
    assert text.endswith("Two. No other acute findings. End of dictation")


def test_no_word_is_ever_lost_or_reordered() -> None:
    rng = random.Random(7)
    words = ["nodule", "lobe", "period", "colon", "next", "line", "the", "{foo}", "new"]
    braces = ["{period}", "{comma}", "{next line}", "{period", "period}", "{ colon }", "{", "}",
              "{new paragraph}", "{unknown}"]
    for _ in range(500):
        raw = " ".join(rng.choice(words + braces) for _ in range(rng.randint(1, 14)))
        kept = spoken_words(raw)
        text = format_transcript(raw).lower()
        position = 0
        for word in kept:  # every spoken word appears, in order
            found = text.find(word.lower(), position)
            assert found >= 0, (raw, text, word)
            position = found + len(word)
        # ... and every word heard is either one of those or part of a recognised command.
        pieces = parse(raw)
        heard = [w for w in raw.replace("{", " { ").replace("}", " } ").split() if w not in "{}"]
        accounted = sum(len(p.text.replace("{", " ").replace("}", " ").split()) for p in pieces)
        assert accounted == len(heard), (raw, pieces)
