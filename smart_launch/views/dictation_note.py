"""The structured note of a dictation as the app shows it: sections of sentences, each with the
time range of the words it came from (a click plays them), the withheld sentences with their
reasons, and the vital signs read from the dictation. Read from the note's JSON companion
(plugin.pipelines.speech.dictation_note.note_json); nothing here fetches."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from fhir_mappers import normalise_unit

NOTE_KINDS = frozenset({"clinic-note", "radiology-note"})


@dataclass(frozen=True)
class SpokenSentence:
    text: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class NoteView:
    structured: bool
    reason: str
    sections: tuple[tuple[str, tuple[SpokenSentence, ...]], ...]
    withheld: tuple[tuple[str, str], ...]  # (sentence, why it was withheld)
    vitals: tuple[SpokenSentence, ...]  # "Blood pressure 128/82 mmHg" with the words' times


def note_view(resource: dict[str, Any]) -> NoteView | None:
    """The note's view, or None when the DocumentReference carries no readable note JSON."""
    for content in resource.get("content", []):
        attachment = content.get("attachment", {})
        if attachment.get("contentType") != "application/json" or not attachment.get("data"):
            continue
        try:
            details = json.loads(base64.b64decode(attachment["data"]))
            return _view(details)
        except (ValueError, KeyError, TypeError, IndexError):
            return None
    return None


def _view(details: dict[str, Any]) -> NoteView:
    sections = []
    for section in details.get("sections", []):
        sentences = tuple(
            # A sentence citing several segments plays from the first one's start to the last's end.
            SpokenSentence(str(s["text"]), float(s["ranges"][0]["start_s"]), float(s["ranges"][-1]["end_s"]))
            for s in section.get("sentences", []))
        if sentences:
            sections.append((str(section["title"]), sentences))
    vitals = tuple(SpokenSentence(f"{v['name']} {'/'.join(v['values'])} {normalise_unit(v['unit']).display}",
                                  float(v["start_s"]), float(v["end_s"]))
                   for v in details.get("vitals", []))
    return NoteView(bool(details.get("structured")), str(details.get("reason", "")), tuple(sections),
                    tuple((str(w["text"]), str(w["reason"])) for w in details.get("withheld", [])),
                    vitals)
