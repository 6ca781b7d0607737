"""Recordings a read-only session keeps in memory are bounded."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from plugin.app import create_app
from plugin.config import Settings
from plugin.fhir import FhirClient
from plugin.pipelines.registry import InstalledPipeline
from smart_launch.views.context import runs_of
from smart_launch.views.runs import MAX_KEPT_SOURCES, SessionRuns, TooManyRecordings


def _pipeline(gate: threading.Event) -> InstalledPipeline:
    def run(context: Any) -> Any:
        gate.wait(10)
        raise ValueError("stops here")  # reported as failed: the bookkeeping is what is tested
    return InstalledPipeline("speech", "test", lambda client, patient: [], run)


def _recording(n: int) -> dict[str, Any]:
    return {"resourceType": "DocumentReference", "id": f"preview-{n}", "meta": {"versionId": "1"}}


def _wait_finished(runs: SessionRuns, session: str, count: int) -> None:
    deadline = time.monotonic() + 10
    while sum(s.state == "failed" for s in runs.statuses(session).values()) < count:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_a_session_keeps_a_bounded_number_of_recordings() -> None:
    runs, gate = SessionRuns(workers=MAX_KEPT_SOURCES + 1), threading.Event()
    client = FhirClient("http://127.0.0.1:9/fhir")
    for n in range(MAX_KEPT_SOURCES):
        runs.start("s1", f"speech:{n}", _pipeline(gate), client, _recording(n), "Patient/1", keep_source=True)
    with pytest.raises(TooManyRecordings):  # all still being analysed: the next is refused
        runs.start("s1", "speech:new", _pipeline(gate), client, _recording(99), "Patient/1", keep_source=True)
    assert len(runs.sources("s1")) == MAX_KEPT_SOURCES
    gate.set()
    _wait_finished(runs, "s1", MAX_KEPT_SOURCES)
    runs.start("s1", "speech:new", _pipeline(gate), client, _recording(99), "Patient/1", keep_source=True)
    kept = [source["id"] for source in runs.sources("s1")]
    assert len(kept) == MAX_KEPT_SOURCES and "preview-0" not in kept and kept[-1] == "preview-99"
    runs.start("s2", "speech:0", _pipeline(gate), client, _recording(0), "Patient/2", keep_source=True)
    assert len(runs.sources("s2")) == 1  # another session's count is its own


def test_a_preview_past_its_time_limit_fails_and_frees_the_worker(tmp_path: Path) -> None:
    """A read-only session's run has its pipeline's time limit (job_timeout_speech_s), as a job
    has: a run that never ends fails with the reason, and the one app-run worker takes the next."""
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path}/jobs.db", job_workers=1,
                              job_timeout_speech_s=0.3))
    runs, gate = runs_of(app), threading.Event()
    client = FhirClient("http://127.0.0.1:9/fhir")
    runs.start("s1", "speech:stuck", _pipeline(gate), client, _recording(1), "Patient/1")
    runs.start("s1", "speech:next", _pipeline(gate), client, _recording(2), "Patient/1")
    deadline = time.monotonic() + 10
    while runs.statuses("s1")["speech:stuck"].state != "failed":
        assert time.monotonic() < deadline, runs.statuses("s1")
        time.sleep(0.02)
    status = runs.statuses("s1")["speech:stuck"]
    assert "time limit of 0.3 s" in status.text and "job_timeout_speech_s" in status.text
    while runs.statuses("s1")["speech:next"].state != "failed":  # the worker was freed for it
        assert time.monotonic() < deadline, runs.statuses("s1")
        time.sleep(0.02)
    gate.set()
