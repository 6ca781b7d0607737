"""A dictation transcript -> a structured note whose every sentence cites the audio it came from.
Pure: the prompt is built from numbered segments, and the model's answer is read and checked here;
the engine call is the caller's.

A radiology dictation becomes Findings / Impression / Recommendations, a clinic note Subjective /
Objective / Assessment / Plan. The model answers JSON in which each sentence cites segment ids
("s3"). A sentence is kept only when it cites at least one segment that exists and every number
in it is spoken in the cited segments' words; any other is withheld and listed with its reason.
An answer that is not readable JSON (cut off at the token limit, prose) structures nothing and
says why: nothing is guessed from it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from plugin.engines.answers import AnswerFormatError, find_json
from plugin.pipelines.speech.spoken_numbers import numbers_in, read_number, tokenize
from plugin.pipelines.speech.transcript_words import Segment, TimedWord

# Bump when the prompt or the checks change: a re-run then updates the note it wrote before.
PROMPT_VERSION = "1"
NoteKind = Literal["radiology", "clinic"]
SECTIONS: dict[NoteKind, tuple[str, ...]] = {
    "radiology": ("Findings", "Impression", "Recommendations"),
    "clinic": ("Subjective", "Objective", "Assessment", "Plan"),
}
# Words of a document type, or of the dictation itself, that say which kind of note it is.
RADIOLOGY_WORDS = frozenset({"radiology", "imaging", "ct", "mri", "mr", "x-ray", "xray",
                             "radiograph", "ultrasound", "sonogram", "mammogram", "pet",
                             "impression", "findings", "contrast", "axial", "nodule", "18748-4"})
CLINIC_WORDS = frozenset({"clinic", "progress", "consult", "consultation", "office", "visit",
                          "subjective", "complains", "presents", "history", "medications",
                          "examination", "exam", "plan", "follow", "11506-3"})
_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?")


@dataclass(frozen=True)
class NoteSentence:
    section: str
    text: str
    segments: tuple[str, ...]  # cited segment ids, in the order cited
    ranges: tuple[tuple[float, float], ...]  # their time ranges (s), for the app to play


@dataclass(frozen=True)
class WithheldSentence:
    section: str
    text: str
    cited: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class StructuredNote:
    kind: NoteKind
    structured: bool  # False: no model ran, or its answer could not be read (see `reason`)
    sentences: tuple[NoteSentence, ...] = ()
    withheld: tuple[WithheldSentence, ...] = ()
    reason: str = ""


def choose_kind(type_texts: Sequence[str], words: Sequence[TimedWord]) -> NoteKind:
    """The note kind: from the audio's Media/DocumentReference type (codes and text) when it
    says, else from the dictation's words; a clinic note when neither does."""
    for texts in ([t.lower() for t in type_texts], [w.text.lower().strip("{},.") for w in words]):
        found = set(" ".join(texts).replace("/", " ").split())
        radiology, clinic = len(found & RADIOLOGY_WORDS), len(found & CLINIC_WORDS)
        if radiology != clinic:
            return "radiology" if radiology > clinic else "clinic"
    return "clinic"


def note_prompt(kind: NoteKind, segments: Sequence[Segment]) -> str:
    """The instruction and the numbered transcript, one user turn."""
    sections = ", ".join(SECTIONS[kind])
    lines = "\n".join(f"[{s.id}] {s.text}" for s in segments)
    return (
        f"You are writing a structured {'radiology report' if kind == 'radiology' else 'clinic note'} "
        f"from a dictation transcript. Use only these sections: {sections}.\n"
        "Write only what the transcript says; do not add findings, numbers or advice of your own. "
        "Every sentence must cite the transcript segments it comes from by their ids.\n"
        "Answer with JSON only, in this form:\n"
        '{"sections": [{"title": "<section>", "sentences": [{"text": "<sentence>", '
        '"cites": ["s1"]}]}]}\n\n'
        f"Transcript segments:\n{lines}"
    )


def read_note(answer: str, *, kind: NoteKind, segments: Sequence[Segment],
              words: Sequence[TimedWord]) -> StructuredNote:
    """The model's answer, checked against the transcript (see the module docstring)."""
    try:
        parsed = find_json(answer, expect=dict)
    except AnswerFormatError as exc:
        return StructuredNote(kind, structured=False,
                              reason=f"the model's answer could not be read ({exc}); "
                                     "the note was not structured")
    sections = parsed.get("sections")
    if not isinstance(sections, list):
        return StructuredNote(kind, structured=False, reason="the model's answer has no "
                              "\"sections\" list; the note was not structured")
    by_id = {s.id: s for s in segments}
    allowed = {title.lower(): title for title in SECTIONS[kind]}
    kept: list[NoteSentence] = []
    withheld: list[WithheldSentence] = []
    for section in sections:
        if not isinstance(section, dict):
            continue
        title = str(section.get("title", "")).strip()
        for raw in section.get("sentences") or []:
            sentence = _sentence(raw)
            if sentence is None:
                continue
            text, cited = sentence
            reason = _why_withheld(title, text, cited, allowed, by_id, words)
            if reason:
                withheld.append(WithheldSentence(title, text, cited, reason))
                continue
            order = tuple(dict.fromkeys(cited))
            kept.append(NoteSentence(allowed[title.lower()], text, order,
                                     tuple((by_id[c].start_s, by_id[c].end_s) for c in order)))
    section_order = {title: n for n, title in enumerate(SECTIONS[kind])}
    kept.sort(key=lambda s: section_order[s.section])  # stable: the model's order within a section
    return StructuredNote(kind, structured=True, sentences=tuple(kept), withheld=tuple(withheld))


def sentence_numbers(text: str) -> set[Decimal]:
    """Numbers a note sentence states, in digits ("128/82", "11 mm") or in words."""
    found: set[Decimal] = set()
    for match in _NUMBER.findall(text):
        try:
            found.add(Decimal(match))
        except InvalidOperation:
            continue
    words = re.findall(r"[a-z]+(?:-[a-z]+)*", text.lower())
    tokens = tokenize(words)
    for i in range(len(tokens)):
        number = read_number(tokens, i)
        # "one" alone is as often a pronoun ("a new one") as a number: not held against a sentence.
        if number is not None and not (number.value == 1 and number.end == i + 1):
            found.add(number.value)
    return found


def _sentence(raw: Any) -> tuple[str, tuple[str, ...]] | None:
    if not isinstance(raw, dict):
        return None
    text = " ".join(str(raw.get("text", "")).split())
    cites = raw.get("cites", raw.get("citations", []))
    if isinstance(cites, str):
        cites = [cites]
    cited = tuple(str(c).strip().strip("[]") for c in cites) if isinstance(cites, list) else ()
    return (text, cited) if text else None


def _why_withheld(title: str, text: str, cited: tuple[str, ...], allowed: dict[str, str],
                  by_id: dict[str, Segment], words: Sequence[TimedWord]) -> str:
    if title.lower() not in allowed:
        return f"section {title!r} is not one of {', '.join(allowed.values())}"
    if not cited:
        return "it cites no transcript segment"
    missing = [c for c in cited if c not in by_id]
    if missing:
        return f"it cites segments that do not exist: {', '.join(missing)}"
    spoken: set[Decimal] = set()
    for c in cited:
        segment = by_id[c]
        spoken |= numbers_in(tokenize([w.text for w in words[segment.first:segment.last + 1]]))
    unspoken = sorted(n for n in sentence_numbers(text) if n not in spoken)
    if unspoken:
        return (f"{', '.join(str(n) for n in unspoken)} is not spoken in the cited segments "
                f"{', '.join(cited)}")
    return ""
