"""A written transcript's words with their times, and the segments (spoken sentences) a note
cites. Pure: the transcript's details JSON (plugin.pipelines.speech.pipeline.details_json) comes
in, typed words and numbered segments go out.

A segment ends where the speaker said a sentence end ({period}, {question mark}, a new line or
paragraph), after a pause of PAUSE_S, or after MAX_SEGMENT_WORDS words, so a note sentence can
cite the few seconds of audio it rests on.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from plugin.errors import InputError
from plugin.pipelines.speech.formatting import format_transcript

PAUSE_S = 1.2
MAX_SEGMENT_WORDS = 40
# The last word of each command that ends a sentence or a line ({full stop}, {next line}, ...).
_END_WORDS = frozenset({"period", "stop", "mark", "point", "line", "newline", "paragraph"})


@dataclass(frozen=True)
class TimedWord:
    text: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Segment:
    """Words [first, last] (inclusive indices into the transcript's words) and their times."""

    id: str  # "s1", "s2", ...: what the model cites
    first: int
    last: int
    start_s: float
    end_s: float
    text: str  # formatted, as a reader sees it


def words_from_details(details: str | bytes, *, source: str) -> tuple[TimedWord, ...]:
    """The words of a transcript's details JSON; InputError naming `source` when it has none."""
    try:
        parsed: Any = json.loads(details)
        words = tuple(TimedWord(str(w["text"]), float(w["start_s"]), float(w["end_s"]))
                      for w in parsed["words"])
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(source, f"the transcript's word list cannot be read "
                                 f"({type(exc).__name__}: {exc})") from None
    if not words:
        raise InputError(source, "the transcript has no words")
    return words


def segments_of(words: Sequence[TimedWord]) -> tuple[Segment, ...]:
    """The transcript cut into numbered segments (see the module docstring)."""
    segments: list[Segment] = []
    first = 0
    for i, word in enumerate(words):
        last_word = i == len(words) - 1
        spoken_end = _ends_sentence(word.text)
        pause = not last_word and words[i + 1].start_s - word.end_s >= PAUSE_S
        if last_word or spoken_end or pause or i - first + 1 >= MAX_SEGMENT_WORDS:
            segment = _segment(words, first, i, len(segments) + 1)
            if segment is not None:
                segments.append(segment)
            first = i + 1
    return tuple(segments)


def _segment(words: Sequence[TimedWord], first: int, last: int, number: int) -> Segment | None:
    text = format_transcript(" ".join(w.text for w in words[first:last + 1]))
    if not any(ch.isalnum() for ch in text):
        return None  # a lone command ("{new paragraph}") says nothing to cite
    return Segment(f"s{number}", first, last, words[first].start_s, words[last].end_s, text)


def _ends_sentence(text: str) -> bool:
    """A brace word that closes a sentence or line: "{period}", "{period", "mark}", "line}"."""
    name = text.strip().lower()
    return ("{" in name or "}" in name) and name.strip("{} ") in _END_WORDS
