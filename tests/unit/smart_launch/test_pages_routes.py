"""The SMART pages through Flask's test client with a real session (A's store and cookie) and an
in-memory FHIR server: what a session without write scopes sees and can do, CSRF on every POST,
no patient data in any URL the pages emit."""

from __future__ import annotations

import base64
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine

from plugin.app import create_app
from plugin.config import Settings, SmartEhr
from plugin.fhir import FhirClient
from plugin.jobs import JobStore
from plugin.pipelines.registry import InstalledPipeline
from plugin.sandbox import synthetic
from smart_launch import pages
from smart_launch.runtime import runtime_of
from smart_launch.store import SessionRecord, secret_hash
from tests.support.fake_transport import Reply, ScriptedAdapter, session_with
from tests.support.pipelines import fixed_pipeline

BASE = "https://ehr.example/fhir"
COOKIE_VALUE = "cookie-value-for-the-test-session"
KEY = "documents:DocumentReference/doc1"  # the input's row on the page
READ_ONLY = ("patient/Patient.r patient/DocumentReference.rs patient/Observation.rs "
             "patient/DiagnosticReport.rs patient/Provenance.rs")
PATIENT = {"resourceType": "Patient", "id": "p1", "name": [{"family": "Lindqvist", "given": ["Maren"]}],
           "birthDate": "1962-06-18", "gender": "female",
           "identifier": [{"system": "https://hospital.example/mrn", "value": "CL-004417"}]}
SOURCE = {"resourceType": "DocumentReference", "id": "doc1", "meta": {"versionId": "3"}, "status": "current",
          "subject": {"reference": "Patient/p1"}, "description": "Outside laboratory report",
          "content": [{"attachment": {"contentType": "application/pdf", "data": base64.b64encode(
              synthetic.text_pdf(synthetic.DEMO_LAB_REPORT)).decode()}}]}


class FakeEhr:
    """Answers reads, vreads and searches from a few resources; records every other request."""

    def __init__(self) -> None:
        self.resources = {"Patient/p1": PATIENT, "DocumentReference/doc1": SOURCE}
        self.writes: list[str] = []
        self.down = False

    def __call__(self, request: requests.PreparedRequest) -> Reply:
        url = urlsplit(request.url or "")
        if self.down:
            return Reply(503, _json({"resourceType": "OperationOutcome", "issue": [
                {"severity": "error", "code": "transient", "diagnostics": "maintenance window"}]}))
        path = url.path.removeprefix("/fhir/").split("/")
        if request.method != "GET":
            self.writes.append(f"{request.method} {url.path}")
            return Reply(403, b'{"resourceType": "OperationOutcome", "issue": []}')
        if len(path) >= 2:
            found = self.resources.get(f"{path[0]}/{path[1]}")
            return Reply(200, _json(found)) if found else Reply(404, b'{"resourceType": "OperationOutcome"}')
        subject = parse_qs(url.query).get("subject", [""])[0]
        matches = [r for key, r in self.resources.items() if key.startswith(path[0] + "/")
                   and r.get("subject", {}).get("reference") == subject]
        return Reply(200, _json({"resourceType": "Bundle", "type": "searchset",
                                 "entry": [{"resource": r} for r in matches]}))


def _json(value: Any) -> bytes:
    import json

    return json.dumps(value).encode()


@pytest.fixture
def ehr() -> FakeEhr:
    return FakeEhr()


@pytest.fixture
def app(tmp_path: Path, ehr: FakeEhr, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path}/jobs.db",
                              smart_signing_key_path=str(tmp_path / "k.pem"),
                              smart_ehrs=(SmartEhr(name="e", iss=BASE, client_id="c"),)))
    app.extensions["chartlight.pipelines"] = {"documents": InstalledPipeline(
        "documents", "fixed test results", lambda client, patient: [SOURCE], fixed_pipeline())}
    runtime_of(app).store.create_session(SessionRecord(
        id=secret_hash(COOKIE_VALUE), ehr="e", fhir_base=BASE, token_endpoint=f"{BASE}/token",
        patient_id="p1", encounter_id=None, user="Practitioner/7", scopes=READ_ONLY,
        need_patient_banner=True, smart_style_url=None, csrf_token="csrf-1", access_token="A",
        refresh_token=None, access_expires_at=9e9, expires_at=9e9, version=1))
    monkeypatch.setattr(pages, "fhir_client_for", lambda session: FhirClient(
        session.fhir_base, session=session_with(ScriptedAdapter(ehr)), max_retries=0))
    yield app


@pytest.fixture
def browser(app: Flask) -> FlaskClient:
    client = app.test_client()
    client.set_cookie("chartlight_smart", COOKIE_VALUE, domain="localhost", path="/smart")
    return client


def test_without_a_session_the_pages_say_to_launch_from_the_ehr(app: Flask) -> None:
    answer = app.test_client().get("/smart/app")
    assert answer.status_code == 401 and b"launch the app from your EHR" in answer.data


def test_home_shows_banner_inputs_and_the_no_write_notice(browser: FlaskClient) -> None:
    page = browser.get("/smart/app")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'name="csrf-token" content="csrf-1"' in html
    assert "Maren Lindqvist" in html and "1962-06-18" in html  # need_patient_banner
    assert "results are shown here and not written to the record" in html
    assert "Outside laboratory report" in html and 'data-input="documents:DocumentReference/doc1"' in html
    assert page.headers["Cache-Control"] == "no-store"


def test_no_patient_data_in_any_url_the_pages_emit(browser: FlaskClient) -> None:
    html = browser.get("/smart/app").get_data(as_text=True)
    urls = re.findall(r'(?:href|src|data-[a-z-]*url)="([^"]*)"', html)
    assert urls
    for url in urls:
        for phi in ("Lindqvist", "Maren", "1962", "CL-004417"):
            assert phi not in url


def test_every_post_needs_the_csrf_token(browser: FlaskClient, ehr: FakeEhr) -> None:
    for url in ("/smart/app/analyze", "/smart/app/review/Observation/1/approve",
                "/smart/app/dictation/upload"):
        assert browser.post(url, json={"source": "all"}).status_code == 403
        assert browser.post(url, json={}, headers={"X-CSRF-Token": "wrong"}).status_code == 403
    assert ehr.writes == []


def test_without_write_scope_results_are_shown_and_nothing_is_written(browser: FlaskClient,
                                                                      ehr: FakeEhr) -> None:
    csrf = {"X-CSRF-Token": "csrf-1"}
    started = browser.post("/smart/app/analyze", json={"source": "DocumentReference/doc1"}, headers=csrf)
    assert started.get_json() == {"ok": True, "started": [KEY], "written": False}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = browser.get("/smart/app/status.json").get_json()["inputs"][KEY]
        if status["state"] in ("done", "failed"):
            break
        time.sleep(0.05)
    assert status["state"] == "done" and "shown, not written" in status["text"]
    assert "not clinical" in status["text"]

    review = browser.get("/smart/app/source/DocumentReference/doc1").get_data(as_text=True)
    assert review.count('data-testid="value-row"') == 3
    assert 'data-testid="approve"' not in review and "TEST OUTPUT, not clinical" in review
    first_id = re.search(r'data-ref="Observation/(preview-[^"]+)"', review).group(1)  # type: ignore[union-attr]
    image = browser.get(f"/smart/app/evidence/Observation/{first_id}/page.png?view=crop")
    assert image.status_code == 200 and image.data.startswith(b"\x89PNG")
    refused = browser.post(f"/smart/app/review/Observation/{first_id}/approve", json={}, headers=csrf)
    assert refused.status_code == 403 and "not written" in refused.get_json()["error"]
    # "Analyse everything not analysed yet" leaves the analysed input alone.
    again = browser.post("/smart/app/analyze", json={"source": "all"}, headers=csrf).get_json()
    assert again == {"ok": True, "started": [], "written": False}
    assert ehr.writes == []


def test_bad_requests_name_what_is_wrong(browser: FlaskClient, ehr: FakeEhr) -> None:
    csrf = {"X-CSRF-Token": "csrf-1"}
    answer = browser.post("/smart/app/analyze", json={"source": "DocumentReference/other"}, headers=csrf)
    assert answer.status_code == 400 and "DocumentReference/other" in answer.get_json()["error"]
    assert browser.get("/smart/app/source/Patient/p1").status_code == 404
    assert browser.get("/smart/app/evidence/Observation/nope/page.png").status_code == 404
    assert browser.get("/smart/app/audio/Media/nope").status_code == 404
    assert ehr.writes == []


def test_dictation_without_write_scope_is_transcribed_and_kept_in_the_session(
        app: Flask, browser: FlaskClient, ehr: FakeEhr) -> None:
    from plugin.engines.test_models.tiny_medasr import tiny_engine
    from plugin.pipelines import speech
    from plugin.sandbox.synthetic import espeak_wav

    app.extensions["chartlight.pipelines"]["speech"] = InstalledPipeline(
        speech.PIPELINE, "tiny test MedASR", speech.find_sources,
        speech.SpeechPipeline(speech.SpeechOptions(), engine=tiny_engine()))
    wav = espeak_wav("no pleural effusion period")
    csrf = {"X-CSRF-Token": "csrf-1"}
    refused = browser.post("/smart/app/dictation/upload", data=b"<html></html>", headers=csrf,
                           content_type="text/html")
    assert refused.status_code == 400 and "not audio" in refused.get_json()["error"]
    answer = browser.post("/smart/app/dictation/upload", data=wav, headers=csrf, content_type="audio/wav")
    body = answer.get_json()
    assert body["ok"] and not body["written"] and body["source"].startswith("DocumentReference/preview-")
    key = f"speech:{body['source']}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = browser.get("/smart/app/status.json").get_json()["inputs"][key]
        if status["state"] in ("done", "failed"):
            break
        time.sleep(0.1)
    assert status["state"] == "done", status
    resource_id = body["source"].split("/")[1]
    review = browser.get(f"/smart/app/source/DocumentReference/{resource_id}").get_data(as_text=True)
    assert 'data-testid="transcript-words"' in review and "TEST OUTPUT, not clinical" in review
    assert 'data-testid="approve"' not in review
    audio = browser.get(f"/smart/app/audio/DocumentReference/{resource_id}")
    assert audio.status_code == 200 and audio.data == wav and audio.mimetype == "audio/wav"
    assert ehr.writes == []


def test_an_ehr_that_does_not_answer_gets_a_page_that_says_so(browser: FlaskClient, ehr: FakeEhr) -> None:
    ehr.down = True
    page = browser.get("/smart/app")
    assert page.status_code == 502
    assert "the EHR answered HTTP 503: [error] maintenance window" in page.get_data(as_text=True)
    answer = browser.post("/smart/app/analyze", json={"source": "all"}, headers={"X-CSRF-Token": "csrf-1"})
    assert answer.status_code == 502 and "maintenance window" in answer.get_json()["error"]
    assert browser.get("/smart/app/status.json").status_code == 200  # live updates ask the EHR nothing


def test_a_job_database_that_does_not_answer_gets_a_503_that_says_so(
        app: Flask, browser: FlaskClient, tmp_path: Path) -> None:
    """Another process's long write (SQLite "database is locked"; a PostgreSQL failover alike):
    the pages say the job database did not answer, with what to do, instead of a bare 500."""
    db = tmp_path / "locked-jobs.db"
    app.extensions["chartlight.jobs"] = JobStore(create_engine(f"sqlite:///{db}",
                                                               connect_args={"timeout": 0.05}))
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        answer = browser.get("/smart/app/status.json")
        page = browser.get("/smart/app")
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert answer.status_code == 503 and "job database did not answer" in answer.get_json()["error"]
    assert page.status_code == 503 and "job database did not answer" in page.get_data(as_text=True)
    assert "Try again in a moment" in page.get_data(as_text=True)
    assert browser.get("/smart/app/status.json").status_code == 200  # and answers again once it is back


@pytest.fixture
def live_app(app: Flask, tmp_path: Path) -> Flask:
    """The app with the tiny MedASR as its speech engine and its live spool in tmp_path."""
    from plugin.engines.test_models.tiny_medasr import tiny_engine
    from plugin.pipelines import speech
    from smart_launch.live import LiveLimits, LiveRecordings

    engine = tiny_engine(chunk_s=4.0, stride_s=0.8, batch_size=2)
    app.extensions["chartlight.pipelines"]["speech"] = InstalledPipeline(
        speech.PIPELINE, "tiny test MedASR", speech.find_sources,
        speech.SpeechPipeline(speech.SpeechOptions(), engine=engine), engine=engine)
    app.extensions["chartlight.smart.live"] = LiveRecordings(
        tmp_path / "live", LiveLimits(max_duration_s=600, memory_bytes=1 << 30, idle_s=60, max_recordings=4))
    return app


def test_live_dictation_shows_the_words_so_far_and_stops_once(live_app: Flask, browser: FlaskClient,
                                                              ehr: FakeEhr) -> None:
    from plugin.pipelines.speech.audio import decode_audio
    from plugin.pipelines.speech.formatting import format_transcript
    from plugin.sandbox.synthetic import DICTATION_TEXT, espeak_wav
    from smart_launch.live import wav_bytes

    page = browser.get("/smart/app/dictation").get_data(as_text=True)
    assert 'data-live-url="/smart/app/dictation/live/RECORDING_ID"' in page
    speech = decode_audio(espeak_wav(DICTATION_TEXT[:200]), source="t", max_duration_s=600).samples
    pcm = (np.clip(speech, -1, 32767 / 32768) * 32768).round().astype("<i2").tobytes()
    url = "/smart/app/dictation/live/rec-test-0001"
    csrf = {"X-CSRF-Token": "csrf-1"}
    assert browser.post(f"{url}?seq=0", data=pcm[:3200]).status_code == 403  # no CSRF token
    texts = []
    step = 16_000 * 2  # one second per piece
    for seq, start in enumerate(range(0, len(pcm), step)):
        answer = browser.post(f"{url}?seq={seq}", data=pcm[start:start + step], headers=csrf)
        body = answer.get_json()
        assert answer.status_code == 200 and body["test_weights"] is True, body
        texts.append(body["text"])
        if seq == 1:  # the same piece again (a retried request) is not added twice
            again = browser.post(f"{url}?seq=1", data=pcm[start:start + step], headers=csrf).get_json()
            assert again["seconds"] == body["seconds"] == 2.0
    assert any(texts[: len(texts) // 2])  # words came while the recording was still going
    stopped = browser.post(f"{url}?stop=1", headers=csrf).get_json()
    again = browser.post(f"{url}?stop=1", headers=csrf).get_json()
    assert stopped == again and stopped["final"] and not stopped["written"]
    # The final transcript is the batch transcript of the stored recording.
    engine = live_app.extensions["chartlight.pipelines"]["speech"].engine
    batch = engine.transcribe(decode_audio(wav_bytes(pcm), source="t", max_duration_s=600).samples)
    assert stopped["text"] == format_transcript(batch.text) != ""
    # One recording kept for this session (no write scope), however often the stop came.
    sources = runs_of_app(live_app).sources(secret_hash(COOKIE_VALUE))
    assert [f"DocumentReference/{s['id']}" for s in sources] == [stopped["source"]]
    assert base64.b64decode(sources[0]["content"][0]["attachment"]["data"]) == wav_bytes(pcm)
    late = browser.post(f"{url}?seq=99", data=pcm[:3200], headers=csrf)
    assert late.status_code == 409
    assert ehr.writes == []


def runs_of_app(app: Flask) -> Any:
    from smart_launch.views.context import runs_of

    return runs_of(app)


def test_speech_live_off_leaves_record_then_upload(live_app: Flask, browser: FlaskClient) -> None:
    import dataclasses

    on = browser.get("/smart/app/dictation").get_data(as_text=True)
    live_app.extensions["chartlight.settings"] = dataclasses.replace(
        live_app.extensions["chartlight.settings"], speech_live=False)
    off = browser.get("/smart/app/dictation").get_data(as_text=True)
    assert "data-live-url" in on and "data-live-url" not in off
    assert 'data-testid="record"' in off  # recording and uploading as before
    refused = browser.post("/smart/app/dictation/live/rec-test-0002?seq=0", data=b"\0\0" * 800,
                           headers={"X-CSRF-Token": "csrf-1"})
    assert refused.status_code == 503 and "record, then upload" in refused.get_json()["error"]
