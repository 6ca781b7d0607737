"""Recordings a read-only session keeps in memory are bounded."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from plugin.fhir import FhirClient
from plugin.pipelines.registry import InstalledPipeline
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
