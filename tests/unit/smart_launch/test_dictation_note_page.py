"""The recording's review page shows the structured note made from its transcript: sections of
sentences that carry the time range of the words behind them (a click plays them), the withheld
sentences with their reasons, and the vital signs read from the dictation."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from flask import Flask
from flask.testing import FlaskClient

from plugin.pipelines import speech
from plugin.pipelines.registry import InstalledPipeline
from plugin.pipelines.speech import note as notes
from plugin.pipelines.speech.dictation_note import note_result
from plugin.pipelines.speech.transcript_words import TimedWord, segments_of
from plugin.results import ModelInfo, Narrative, PipelineResult, SourceRef
from plugin.writeback import plan_resources
from smart_launch.views.dictation_note import note_view
from tests.support.pipelines import fixed_pipeline
from tests.unit.smart_launch.test_pages_routes import FakeEhr, app, browser, ehr  # noqa: F401

DICTATION = ("blood pressure one twenty eight over eighty two {period} sats ninety four percent "
             "{period} no new nodules {period}")
WORDS = tuple(TimedWord(w, round(i * 0.5, 2), round(i * 0.5 + 0.4, 2))
              for i, w in enumerate(DICTATION.split()))
MODEL = ModelInfo("scripted/medgemma", "1", ("Large-Language-Models",))
MEDIA = {"resourceType": "Media", "id": "m1", "meta": {"versionId": "1"}, "status": "completed",
         "subject": {"reference": "Patient/p1"}, "content": {"contentType": "audio/wav", "data": "UklGRg=="}}


def with_id(resource: dict, resource_id: str) -> dict:  # type: ignore[type-arg]
    return {**resource, "id": resource_id, "meta": {**resource["meta"], "versionId": "1",
                                                    "lastUpdated": datetime.now(UTC).isoformat()}}


def written(result: PipelineResult) -> list[dict]:  # type: ignore[type-arg]
    """The resources as the write-back plans them, with ids as a server would give them."""
    return [with_id(p.resource, f"{result.pipeline}-{n}") for n, p in
            enumerate(plan_resources(result, subject="Patient/p1"))]


def test_the_recording_page_shows_the_note_with_playable_sentences(
        app: Flask, browser: FlaskClient, ehr: FakeEhr) -> None:  # noqa: F811
    app.extensions["chartlight.pipelines"]["speech"] = InstalledPipeline(
        speech.PIPELINE, "speech", speech.find_sources, fixed_pipeline())
    transcript_result = PipelineResult(
        "speech", "1", SourceRef("Media", "m1", "1"), ModelInfo("asr", "1", ("Deep-Learning-Models",)),
        items=(Narrative("transcript", "transcript", "Transcript of dictation", DICTATION, dictated=True,
                         details_json=json.dumps({"words": [w.__dict__ for w in WORDS]})),))
    [transcript] = written(transcript_result)
    segments = segments_of(WORDS)
    answer = json.dumps({"sections": [{"title": "Objective", "sentences": [
        {"text": "Blood pressure 128/82 mmHg.", "cites": ["s1"]},
        {"text": "SpO2 94%, no new nodules.", "cites": ["s2", "s3"]},
        {"text": "Heart rate 70.", "cites": ["s1"]}]}]})
    checked = notes.read_note(answer, kind="clinic", segments=segments, words=WORDS)
    note_items = written(note_result(WORDS, transcript=SourceRef("DocumentReference", transcript["id"], "1"),
                                     recording=SourceRef("Media", "m1", "1"), model=MODEL, note=checked,
                                     type_texts=[]))
    for resource in [MEDIA, transcript, *note_items]:
        ehr.resources[f"{resource['resourceType']}/{resource['id']}"] = resource

    page = browser.get("/smart/app/source/Media/m1").get_data(as_text=True)
    assert 'data-testid="dictation-note"' in page
    s1, s2, s3 = segments
    assert (f'data-start="{s1.start_s}" data-end="{s1.end_s}" title="Play the words behind this '
            f'sentence">Blood pressure 128/82 mmHg.</span>') in page
    # Two cited segments: played from the first one's start to the last one's end.
    assert f'data-start="{s2.start_s}" data-end="{s3.end_s}"' in page
    assert "Heart rate 70. — 70 is not spoken in the cited segments s1" in page
    assert "Blood pressure 128/82 mmHg</span>" in page  # the vital sign read from the words
    assert 'data-testid="note-not-structured"' not in page


def test_an_unstructured_note_says_so() -> None:
    result = note_result(WORDS, transcript=SourceRef("DocumentReference", "t", "1"), recording=None,
                         model=MODEL, note=None, type_texts=[],
                         unstructured_reason="no MedGemma engine is configured: the note was not structured")
    [note, *_] = written(result)
    view = note_view(note)
    assert view is not None and not view.structured and view.sections == ()
    assert view.reason.startswith("no MedGemma engine") and len(view.vitals) == 2


def test_a_document_without_note_json_has_no_view() -> None:
    assert note_view({"resourceType": "DocumentReference", "content": [
        {"attachment": {"contentType": "application/json", "data": "bm90IGpzb24="}}]}) is None
