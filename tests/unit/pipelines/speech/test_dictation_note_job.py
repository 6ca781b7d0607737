"""The dictation-note pipeline as a job runs it, over an in-memory FHIR server: it reads the
transcript's words and the recording's version from the transcript's Provenance, sends the model
only what it may, and refuses an input that is not a transcript."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from plugin.errors import InputError
from plugin.fhir import FhirClient
from plugin.jobs import Job, JobContext, JobState
from plugin.pipelines.speech.dictation_note import MAX_NOTE_WORDS, DictationNotePipeline
from plugin.results import ModelInfo, Narrative
from tests.support.fake_transport import Reply, ScriptedAdapter, session_with

BASE = "https://ehr.example/fhir"
NOW = datetime(2026, 12, 4, tzinfo=UTC)
SECURITY = [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": code}
            for code in ("AIAST", "DICTAST")]
KIND = {"coding": [{"system": "https://chartlight.dev/fhir/CodeSystem/document-kind", "code": "transcript"}]}
MEDIA = {"resourceType": "Media", "id": "m1", "meta": {"versionId": "2"}, "status": "completed",
         "subject": {"reference": "Patient/p1"},
         "type": {"coding": [{"system": "http://loinc.org", "code": "18748-4"}], "text": "CT chest"}}


class Answers:
    def __init__(self) -> None:
        self.prompts: list[Sequence[Any]] = []

    def available(self) -> bool:
        return True

    def model_info(self) -> ModelInfo:
        return ModelInfo("scripted", "1", ("Large-Language-Models",))

    def generate(self, parts: Sequence[Any], *, max_new_tokens: int = 1024) -> str:
        self.prompts.append(parts)
        return json.dumps({"sections": [{"title": "Findings", "sentences": [
            {"text": "Blood pressure 128/82.", "cites": ["s1"]}]}]})


def transcript(words: list[str]) -> dict[str, Any]:
    details = json.dumps({"words": [{"text": w, "start_s": i * 0.4, "end_s": i * 0.4 + 0.3}
                                    for i, w in enumerate(words)]}).encode()
    return {"resourceType": "DocumentReference", "id": "t1", "meta": {"versionId": "1", "security": SECURITY},
            "status": "current", "type": KIND, "subject": {"reference": "Patient/p1"},
            "context": {"related": [{"reference": "Media/m1"}]},
            "content": [{"attachment": {"contentType": "text/plain", "data": "eA=="}},
                        {"attachment": {"contentType": "application/json",
                                        "data": base64.b64encode(details).decode()}}]}


def ehr(request: requests.PreparedRequest) -> Reply:
    path = urlsplit(request.url or "").path
    if path.endswith("/Provenance"):
        provenance = {"resourceType": "Provenance", "recorded": "2026-12-01T00:00:00Z",
                      "entity": [{"what": {"reference": "Media/m1/_history/2"}}]}
        bundle = {"resourceType": "Bundle", "entry": [{"resource": provenance}]}
        return Reply(200, json.dumps(bundle).encode())
    if path.endswith("/Media/m1/_history/2"):
        return Reply(200, json.dumps(MEDIA).encode())
    return Reply(404, b'{"resourceType": "OperationOutcome"}')


def context(source: dict[str, Any]) -> JobContext:
    job = Job(id=1, pipeline="dictation-note", source_type="DocumentReference", source_id="t1",
              source_version="1", subject="Patient/p1", fhir_base_url=BASE, state=JobState.RUNNING,
              progress=0.0, progress_text="", attempts=1, next_attempt_at=NOW, error="", summary={},
              created_at=NOW, updated_at=NOW)
    client = FhirClient(BASE, session=session_with(ScriptedAdapter(ehr)), max_retries=0)
    return JobContext(job=job, client=client, source=source, report_progress=lambda f, t: None)


def note_json(result: Any) -> dict[str, Any]:
    note = result.items[0]
    assert isinstance(note, Narrative)
    parsed: dict[str, Any] = json.loads(note.details_json)
    return parsed


def test_the_recording_version_comes_from_the_transcripts_provenance_and_its_type_picks_the_kind() -> None:
    engine = Answers()
    result = DictationNotePipeline(engine=engine)(context(transcript(
        ["blood", "pressure", "one", "twenty", "eight", "over", "eighty", "two", "{period}"])))
    assert [s.versioned_reference for s in result.other_sources] == ["Media/m1/_history/2"]
    assert result.source.versioned_reference == "DocumentReference/t1/_history/1"
    assert note_json(result)["kind"] == "radiology"  # from the Media's type, LOINC 18748-4
    assert note_json(result)["structured"] is True and len(engine.prompts) == 1


def test_a_transcript_too_long_for_a_note_is_not_sent_to_the_model() -> None:
    engine = Answers()
    words = ["blood", "pressure", "one", "twenty", "over", "eighty"] + ["word"] * MAX_NOTE_WORDS
    result = DictationNotePipeline(engine=engine)(context(transcript(words)))
    assert engine.prompts == []
    details = note_json(result)
    assert details["structured"] is False and "over the 15000 a note is structured from" in details["reason"]
    assert [v["kind"] for v in details["vitals"]] == ["blood-pressure"]  # still read


def test_what_is_not_a_transcript_is_refused() -> None:
    source = {**transcript(["x"]), "meta": {"versionId": "1"}}  # no AI labels: a clinician's document
    with pytest.raises(InputError, match="is not a chartlight dictation transcript"):
        DictationNotePipeline(engine=Answers())(context(source))
