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
from plugin.pipelines.speech.dictation_note import MAX_NOTE_WORDS, DictationNotePipeline, recorded_at
from plugin.results import MeasuredValue, ModelInfo, Narrative
from tests.support.fake_transport import Reply, ScriptedAdapter, session_with

BASE = "https://ehr.example/fhir"
NOW = datetime(2026, 12, 4, tzinfo=UTC)
SECURITY = [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": code}
            for code in ("AIAST", "DICTAST")]
KIND = {"coding": [{"system": "https://chartlight.dev/fhir/CodeSystem/document-kind", "code": "transcript"}]}
MEDIA = {"resourceType": "Media", "id": "m1", "meta": {"versionId": "2"}, "status": "completed",
         "subject": {"reference": "Patient/p1"}, "createdDateTime": "2026-11-30T09:15:00+01:00",
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


def test_vital_signs_are_charted_at_the_time_the_recording_says_it_was_made() -> None:
    result = DictationNotePipeline(engine=Answers())(context(transcript(
        ["heart", "rate", "seventy", "two"])))
    values = [i for i in result.items if isinstance(i, MeasuredValue)]
    assert [v.effective for v in values] == [datetime.fromisoformat("2026-11-30T09:15:00+01:00")]


@pytest.mark.parametrize(("recording", "expected"), [
    ({"resourceType": "Media", "content": {"creation": "2026-11-29T08:00:00Z"}}, "2026-11-29T08:00:00+00:00"),
    ({"resourceType": "DocumentReference", "date": "2026-11-28T07:00:00Z",
      "content": [{"attachment": {"contentType": "audio/wav"}}]}, "2026-11-28T07:00:00+00:00"),
    ({"resourceType": "Media", "createdDateTime": "2026-11-30"}, None),  # a day: no time to chart at
    ({"resourceType": "Media", "createdDateTime": "2026-11-30T09:15:00"}, None),  # no zone: ambiguous
    ({"resourceType": "DocumentReference"}, None),
])
def test_the_recording_time_is_taken_only_as_a_full_zoned_date_time(recording: dict[str, Any],
                                                                    expected: str | None) -> None:
    when = recorded_at(recording)
    assert (when.isoformat() if when else None) == expected
