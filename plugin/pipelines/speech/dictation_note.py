"""The dictation-note pipeline: a written transcript (our DICTAST DocumentReference) -> a
structured note whose sentences cite their audio, and vital-sign / measurement Observations.

The source of each job is the transcript at its version; the recording it was made from is the
other source, at the version the transcript's Provenance names. The vital signs are read by the
deterministic reader (vitals.py) whether or not MedGemma can run; the note is structured only by
MedGemma (local or remote). Without it the note says it was not structured and lists what the
reader found: nothing is presented as model output that no model wrote.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from fhir_mappers import TEST_WEIGHTS_DISPLAY, normalise_unit
from fhir_mappers.systems import CS_DOCUMENT_KIND, LOINC, V3_OBSERVATION_VALUE
from plugin.engines.vision_language import VisionLanguageEngine
from plugin.errors import InputError
from plugin.fhir import FhirClient, resolve_attachment
from plugin.jobs import JobContext
from plugin.pipelines.speech import note as notes
from plugin.pipelines.speech import vitals
from plugin.pipelines.speech.inputs import is_ai_output
from plugin.pipelines.speech.transcript_words import Segment, TimedWord, segments_of, words_from_details
from plugin.results import (
    AudioEvidence,
    Coding,
    InputProblem,
    MeasuredValue,
    ModelInfo,
    Narrative,
    PipelineResult,
    SourceRef,
)

PIPELINE = "dictation-note"
PIPELINE_VERSION = f"1+prompt{notes.PROMPT_VERSION}"
DETAILS_SCHEMA = "https://chartlight.dev/fhir/dictation-note/1"
NOTE_KEY = "dictation-note"
READER = ModelInfo(name="chartlight/spoken-vitals", version=PIPELINE_VERSION,
                   kinds=("Deterministic-AI",), display="chartlight spoken vital-sign reader")
READER_METHOD = "Read from the dictation transcript by chartlight's deterministic spoken-number reader"
MAX_DETAILS_BYTES = 20 * 1024 * 1024
# About two hours of speech, some 25,000 prompt tokens: well inside Gemma 3's 128k window. A longer
# transcript is not sent to the model (its vital signs are still read).
MAX_NOTE_WORDS = 15_000
# LOINC for each sign; a measurement is coded by the observation mapper from its name.
CODES: dict[str, tuple[str, str]] = {
    "blood-pressure": ("85354-9", "Blood pressure panel with all children optional"),
    "heart-rate": ("8867-4", "Heart rate"),
    "respiratory-rate": ("9279-1", "Respiratory rate"),
    "temperature": ("8310-5", "Body temperature"),
    "oxygen-saturation": ("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"),
    "weight": ("29463-7", "Body weight"),
    "height": ("8302-2", "Body height"),
}
ARTERIAL_SATURATION = ("2708-6", "Oxygen saturation in Arterial blood")
BP_PARTS = (("8480-6", "Systolic blood pressure"), ("8462-4", "Diastolic blood pressure"))


@dataclass(frozen=True)
class NoteOptions:
    max_new_tokens: int = 1536
    attachment_allowed_hosts: tuple[str, ...] = ()


def is_transcript(resource: dict[str, Any]) -> bool:
    """Our own dictation transcript: AI-written, dictation-asserted, of kind `transcript`."""
    labels = {label.get("code") for label in resource.get("meta", {}).get("security", [])
              if label.get("system") == V3_OBSERVATION_VALUE}
    kinds = {c.get("code") for c in resource.get("type", {}).get("coding", [])
             if c.get("system") == CS_DOCUMENT_KIND}
    return is_ai_output(resource) and "DICTAST" in labels and "transcript" in kinds


def find_sources(client: FhirClient, patient_id: str) -> list[dict[str, Any]]:
    """The patient's current dictation transcripts."""
    subject = f"Patient/{patient_id.removeprefix('Patient/')}"
    return [d for d in client.search("DocumentReference", {"subject": subject, "_count": 100})
            if is_transcript(d) and d.get("status") == "current"]


class DictationNotePipeline:
    """Callable job pipeline (plugin.jobs.Pipeline) for PIPELINE = "dictation-note". `engine`
    None, or one that cannot run here, leaves the note unstructured (vital signs still read)."""

    def __init__(self, options: NoteOptions = NoteOptions(),
                 engine: VisionLanguageEngine | None = None) -> None:
        self.options = options
        self.engine = engine

    def engine_missing(self) -> str:
        """Why the note cannot be structured here; "" when MedGemma can run."""
        if self.engine is None:
            return "no MedGemma engine is configured"
        if self.engine.available():
            return ""
        reason = getattr(self.engine, "why_unavailable", lambda: "")() or "it is not available"
        return f"MedGemma cannot run here ({reason})"

    def __call__(self, context: JobContext) -> PipelineResult:
        source = context.source
        where = f"DocumentReference/{source.get('id')}"
        if not is_transcript(source):
            raise InputError(where, "is not a chartlight dictation transcript (DICTAST, kind transcript)")
        details = self._details(context, source, where)
        words = words_from_details(details, source=where)
        audio = recording_of(context.client, source, where)
        type_texts = _type_texts(audio[1]) if audio[1] else []
        missing = self.engine_missing()
        if not missing and len(words) > MAX_NOTE_WORDS:
            missing = (f"the transcript has {len(words)} words, over the {MAX_NOTE_WORDS} a note is "
                       "structured from")
        note = None
        model = READER
        if not missing:
            assert self.engine is not None
            context.report_progress(0.2, "structuring the note")
            segments = segments_of(words)
            kind = notes.choose_kind(type_texts, words)
            answer = self.engine.generate([notes.note_prompt(kind, segments)],
                                          max_new_tokens=self.options.max_new_tokens)
            note = notes.read_note(answer, kind=kind, segments=segments, words=words)
            model = self.engine.model_info()
        context.report_progress(0.9, "reading vital signs")
        transcript = SourceRef("DocumentReference", source["id"], source["meta"]["versionId"],
                               hashlib.sha256(details).hexdigest())
        result = note_result(words, transcript=transcript, recording=audio[0], model=model,
                             note=note, type_texts=type_texts,
                             unstructured_reason=missing and f"{missing}: the note was not structured")
        return with_recorded_time(result, recorded_at(audio[1]) if audio[1] else None)

    def _details(self, context: JobContext, source: dict[str, Any], where: str) -> bytes:
        for content in source.get("content", []):
            attachment = content.get("attachment") or {}
            if (attachment.get("contentType") or "").split(";")[0].strip() == "application/json":
                data = resolve_attachment(context.client, attachment, source=where,
                                          allowed_hosts=self.options.attachment_allowed_hosts)
                if len(data) > MAX_DETAILS_BYTES:
                    raise InputError(where, f"the transcript's word list is {len(data)} bytes, over "
                                            f"the {MAX_DETAILS_BYTES}-byte limit")
                return data
        raise InputError(where, "the transcript has no word list (application/json attachment)")


def recording_of(client: FhirClient, transcript: dict[str, Any],
                 where: str) -> tuple[SourceRef | None, dict[str, Any] | None]:
    """The recording the transcript was made from, at the version its Provenance names (the
    version that was transcribed), and that resource as it was then."""
    related = [r.get("reference", "") for r in transcript.get("context", {}).get("related", [])]
    if not related or related[0].count("/") != 1:
        return None, None
    reference = related[0]
    versions = []
    for provenance in client.search("Provenance", {"target": f"DocumentReference/{transcript['id']}"}):
        for entity in provenance.get("entity", []):
            what = entity.get("what", {}).get("reference", "")
            if what.startswith(reference + "/_history/"):
                versions.append((provenance.get("recorded", ""), what.rsplit("/", 1)[1]))
    if not versions:
        raise InputError(where, f"no Provenance of the transcript names the version of {reference} "
                                "it was made from")
    version = max(versions)[1]
    resource_type, resource_id = reference.split("/")
    resource = client.vread(resource_type, resource_id, version)
    return SourceRef(resource_type, resource_id, version), resource


def note_result(words: tuple[TimedWord, ...], *, transcript: SourceRef, recording: SourceRef | None,
                model: ModelInfo, note: notes.StructuredNote | None, type_texts: list[str],
                unstructured_reason: str = "") -> PipelineResult:
    """The items to write: the note and the verified vital signs. Pure."""
    extraction = vitals.extract(words)
    problems = [InputProblem(f"words {r.first_word}-{r.last_word}", f"{r.quote!r}: {r.reason}")
                for r in extraction.refusals]
    values: list[MeasuredValue] = []
    for value in extraction.values:
        if not vitals.verify(value, words):  # never true of the reader's own output; checked anyway
            problems.append(InputProblem(f"words {value.first_word}-{value.last_word}",
                                         f"{value.quote!r}: the numbers are not in the cited words"))
            continue
        values.append(measured_value(value))
    if note is None:
        note = notes.StructuredNote(notes.choose_kind(type_texts, words), structured=False,
                                    reason=unstructured_reason)
    problems += [InputProblem(f"note sentence in {w.section or 'no section'}",
                              f"withheld: {w.reason}") for w in note.withheld]
    if not note.structured:
        problems.append(InputProblem("note", note.reason))
    segments = segments_of(words)
    text = note_markdown(note, extraction.values, model=model)
    narrative = Narrative(
        key=NOTE_KEY, kind="radiology-note" if note.kind == "radiology" else "clinic-note",
        title=("Radiology note" if note.kind == "radiology" else "Clinic note") + " from dictation",
        text=text, media_type="text/markdown", dictated=True,
        details_json=note_json(note, extraction, segments, model=model),
        evidence=(AudioEvidence(words[0].start_s, words[-1].end_s),))
    return PipelineResult(
        pipeline=PIPELINE, pipeline_version=PIPELINE_VERSION, source=transcript, model=model,
        items=(narrative, *values), problems=tuple(problems),
        other_sources=(recording,) if recording is not None else (),
        # One note per transcript: a clinician signing the transcript (a new version, the same
        # words) must not make a second note, and new words update the note.
        identity=SourceRef(transcript.resource_type, transcript.id, ""))


def recorded_at(recording: dict[str, Any]) -> datetime | None:
    """When the dictation was recorded, as the recording itself says (Media.createdDateTime, the
    attachment's creation, DocumentReference.date): the time its vital signs are charted at.
    None when it says nothing usable; the Observations then carry no time rather than a guess."""
    if recording.get("resourceType") == "Media":
        attachments = [recording.get("content") or {}]
    else:
        attachments = [c.get("attachment") or {} for c in recording.get("content") or []]
    candidates = [recording.get("createdDateTime"), *(a.get("creation") for a in attachments),
                  recording.get("date")]
    for value in candidates:
        if isinstance(value, str) and "T" in value:  # a full date-time, not a bare date
            try:
                when = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
            if when.tzinfo is not None:
                return when
    return None


def with_recorded_time(result: PipelineResult, when: datetime | None) -> PipelineResult:
    if when is None:
        return result
    items = tuple(replace(item, effective=when) if isinstance(item, MeasuredValue) else item
                  for item in result.items)
    return replace(result, items=items)


def measured_value(value: vitals.SpokenValue) -> MeasuredValue:
    evidence = (AudioEvidence(value.start_s, value.end_s, value.quote),)
    category: Literal["exam", "vital-signs"] = "exam" if value.kind == "measurement" else "vital-signs"
    key = f"vital/{value.kind}/{value.first_word}"
    if value.kind == "blood-pressure":
        parts = tuple(MeasuredValue(key=f"{key}/{code}", name=display, value=number, unit=value.unit,
                                    code=Coding(LOINC, code, display), category="vital-signs")
                      for (code, display), number in zip(BP_PARTS, value.values, strict=True))
        return MeasuredValue(key=key, name=value.name, value="", code=Coding(LOINC, *CODES[value.kind]),
                             category=category, method=READER_METHOD, evidence=evidence,
                             components=parts, dictated=True)
    code = None
    if value.kind in CODES:
        arterial = value.kind == "oxygen-saturation" and any(
            w in value.quote.lower().split() for w in ("arterial", "sao2"))
        code = Coding(LOINC, *(ARTERIAL_SATURATION if arterial else CODES[value.kind]))
    return MeasuredValue(key=key, name=value.name, value=value.values[0], unit=value.unit, code=code,
                         category=category, method=READER_METHOD, evidence=evidence, dictated=True)


def note_markdown(note: notes.StructuredNote, found: tuple[vitals.SpokenValue, ...], *,
                  model: ModelInfo) -> str:
    """The note as a reader sees it: sections, each sentence with the time it was spoken."""
    lines = [f"> {TEST_WEIGHTS_DISPLAY}", ""] if model.test_weights else []
    if note.structured:
        for section in notes.SECTIONS[note.kind]:
            sentences = [s for s in note.sentences if s.section == section]
            if sentences:
                lines += [f"## {section}", ""]
                lines += [f"- {s.text} [{_clock(s.ranges[0][0])}]" for s in sentences]
                lines.append("")
        if note.withheld:
            lines += ["## Withheld", ""]
            lines += [f"- {w.text} ({w.reason})" for w in note.withheld]
            lines.append("")
    else:
        lines += [f"**The note was not structured.** {note.reason}", ""]
    if found:
        lines += ["## Vital signs and measurements read from the dictation", ""]
        lines += [f"- {v.name}: {'/'.join(str(n) for n in v.values)} {normalise_unit(v.unit).display} "
                  f"(\"{v.quote}\" at {_clock(v.start_s)})" for v in found]
        lines.append("")
    return "\n".join(lines).strip() + "\n"


def note_json(note: notes.StructuredNote, extraction: vitals.Extraction,
              segments: tuple[Segment, ...], *, model: ModelInfo) -> str:
    """The note's machine-readable companion: sentences with their cited segments and times."""
    return json.dumps({
        "schema": DETAILS_SCHEMA,
        "kind": note.kind,
        "structured": note.structured,
        "reason": note.reason,
        "model": {"name": model.name, "version": model.version, "test_weights": model.test_weights},
        "sections": [{"title": title, "sentences": [
            {"text": s.text, "segments": list(s.segments),
             "ranges": [{"start_s": a, "end_s": b} for a, b in s.ranges]}
            for s in note.sentences if s.section == title]}
            for title in notes.SECTIONS[note.kind]] if note.structured else [],
        "withheld": [{"section": w.section, "text": w.text, "cites": list(w.cited),
                      "reason": w.reason} for w in note.withheld],
        "vitals": [{"kind": v.kind, "name": v.name, "values": [str(n) for n in v.values],
                    "unit": v.unit, "unit_spoken": v.unit_spoken, "words": [v.first_word, v.last_word],
                    "start_s": v.start_s, "end_s": v.end_s, "quote": v.quote, "context": v.context}
                   for v in extraction.values],
        "refused": [{"words": [r.first_word, r.last_word], "quote": r.quote, "reason": r.reason}
                    for r in extraction.refusals],
        "segments": [{"id": s.id, "words": [s.first, s.last], "start_s": s.start_s,
                      "end_s": s.end_s} for s in segments],
    }, ensure_ascii=False, separators=(",", ":"))


def _type_texts(resource: dict[str, Any]) -> list[str]:
    """Codes, displays and text of a Media's or DocumentReference's type (and Media modality)."""
    texts: list[str] = []
    for element in (resource.get("type"), resource.get("modality"), *resource.get("category", [])):
        if isinstance(element, dict):
            texts.append(str(element.get("text", "")))
            for c in element.get("coding", []):
                texts += [str(c.get("code", "")), str(c.get("display", ""))]
    return [t for t in texts if t]


def _clock(seconds: float) -> str:
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}:{rest:04.1f}"
