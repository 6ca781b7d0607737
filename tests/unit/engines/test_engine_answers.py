"""Reading model answers: thought blocks dropped, JSON found fenced, bare or in prose, trailing
commas forgiven, and anything else refused with a reason."""

from __future__ import annotations

import pytest

from plugin.engines.answers import AnswerFormatError, find_json, strip_thoughts


def test_thought_blocks_and_turn_markers_are_dropped() -> None:
    answer = "<unused94>thought\nThe page lists [1, 2].<unused95>[3]<end_of_turn>"
    assert strip_thoughts(answer) == "[3]"
    assert find_json(answer) == [3]


def test_a_thought_that_never_ends_leaves_nothing_to_read() -> None:
    with pytest.raises(AnswerFormatError, match="empty"):
        find_json("<unused94>thought\nStill thinking about [1, 2] when the tokens ran out")


@pytest.mark.parametrize("answer", [
    '```json\n[{"a": 1}]\n```',
    '```\n[{"a": 1}]\n```',
    '[{"a": 1}]',
    'Here are the results:\n```json\n[{"a": 1}]\n```\nLet me know if you need more.',
    'The tests are [{"a": 1}] as printed.',
    '```json\n[{"a": 1},]\n```',
    '[{"a": 1,},]',
    '```json\n[{"a": 1}]',  # the closing fence was cut off
])
def test_json_is_found_however_it_is_wrapped(answer: str) -> None:
    assert find_json(answer) == [{"a": 1}]


def test_brackets_and_commas_inside_strings_are_left_alone() -> None:
    assert find_json('[{"range": "[3.5-5.1],", "note": "x,]"}]') == \
        [{"range": "[3.5-5.1],", "note": "x,]"}]


def test_the_expected_type_skips_other_json() -> None:
    assert find_json('Page {"n": 1}: [{"a": 1}]', expect=list) == [{"a": 1}]


@pytest.mark.parametrize("answer", [
    "I could not find any results on this page.",
    '[{"name": "Glucose", "result": 128',  # cut off mid-object
    "[{'name': 'Glucose'}]",  # Python, not JSON
    "",
])
def test_unreadable_answers_raise(answer: str) -> None:
    with pytest.raises(AnswerFormatError):
        find_json(answer)
