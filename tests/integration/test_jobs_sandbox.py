"""Jobs against the real sandbox: runs to success, survives its worker dying, retries while the
FHIR server is away."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fhir_mappers.systems import SID_RESULT as RESULT_IDENTIFIER_SYSTEM
from plugin.errors import EngineError
from plugin.fhir import FhirClient
from plugin.jobs import JobContext, JobRunner, JobState, JobStore
from plugin.results import PipelineResult
from plugin.sandbox.hapi import HapiSandbox
from tests.support.loopback import ServerState, loopback_server
from tests.support.pipelines import fixed_pipeline
from tests.support.sources import create_patient_with_document

pytestmark = pytest.mark.sandbox
REPO_ROOT = Path(__file__).resolve().parents[2]


def make_source(fhir: FhirClient, run_id: str) -> tuple[str, dict]:
    return create_patient_with_document(fhir, run_id, "Jobs")


def submit(store: JobStore, fhir: FhirClient, subject: str, doc: dict):  # type: ignore[no-untyped-def]
    return store.submit(pipeline="test-fixed", source_type="DocumentReference", source_id=doc["id"],
                        source_version=doc["meta"]["versionId"], subject=subject,
                        fhir_base_url=fhir.base_url)


def written(fhir: FhirClient, subject: str) -> dict[str, int]:
    counts = {}
    for resource_type in ("Observation", "DiagnosticReport", "DocumentReference"):
        counts[resource_type] = sum(
            1 for r in fhir.search(resource_type, {"subject": subject})
            if any(i.get("system") == RESULT_IDENTIFIER_SYSTEM for i in r.get("identifier", [])))
    return counts


EXPECTED = {"Observation": 3, "DiagnosticReport": 1, "DocumentReference": 1}


def worker(db: str, base: str, mode: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "tests.support.job_worker", db, base, mode],
                            cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})


def wait_for(predicate, timeout_s: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.1)


def test_background_runner_runs_a_job_to_success(fhir: FhirClient, run_id: str, tmp_path: Path) -> None:
    store = JobStore(f"sqlite:///{tmp_path}/jobs.db")
    subject, doc = make_source(fhir, run_id)
    job = submit(store, fhir, subject, doc)
    runner = JobRunner(store, {"test-fixed": fixed_pipeline()}, lambda j: FhirClient(j.fhir_base_url))
    runner.start()
    try:
        wait_for(lambda: store.get(job.id).state is JobState.SUCCEEDED)
    finally:
        runner.stop()
    done = store.get(job.id)
    assert done.summary["path"] == "observations" and len(done.summary["created"]) == 5
    assert done.summary["model"]["test_weights"] is True
    assert written(fhir, subject) == EXPECTED


def test_a_job_of_another_pipeline_waits_a_missing_source_fails_with_a_reason(
        fhir: FhirClient, tmp_path: Path) -> None:
    store = JobStore(f"sqlite:///{tmp_path}/jobs.db")
    odd = store.submit(pipeline="no-such", source_type="DocumentReference", source_id="1",
                       source_version="1", subject="Patient/1", fhir_base_url=fhir.base_url)
    gone = store.submit(pipeline="test-fixed", source_type="DocumentReference", source_id="does-not-exist",
                        source_version="1", subject="Patient/1", fhir_base_url=fhir.base_url)
    JobRunner(store, {"test-fixed": fixed_pipeline()}, lambda j: FhirClient(j.fhir_base_url)).run_until_idle()
    assert store.get(odd.id).state is JobState.QUEUED  # left for a runner that has the pipeline
    missing = store.get(gone.id)
    assert missing.state is JobState.FAILED and "404" in missing.error


def test_a_model_endpoint_that_is_overloaded_is_retried_a_refusal_is_not(
        fhir: FhirClient, run_id: str, tmp_path: Path) -> None:
    store = JobStore(f"sqlite:///{tmp_path}/jobs.db")
    subject, doc = make_source(fhir, run_id)
    calls: list[str] = []

    def flaky(context: JobContext) -> PipelineResult:
        calls.append("flaky")
        if len(calls) == 1:
            raise EngineError("POST http://model/v1/chat/completions -> HTTP 503", transient=True)
        return fixed_pipeline()(context)

    def refused(context: JobContext) -> PipelineResult:
        raise EngineError("POST http://model/v1/chat/completions -> HTTP 400: bad model")

    source = {"source_type": "DocumentReference", "source_id": doc["id"],
              "source_version": doc["meta"]["versionId"], "subject": subject, "fhir_base_url": fhir.base_url}
    retried = store.submit(pipeline="flaky", **source)
    failed = store.submit(pipeline="refused", **source)
    JobRunner(store, {"flaky": flaky, "refused": refused}, lambda j: FhirClient(j.fhir_base_url),
              backoff_s=0.05).run_until_idle(include_delayed=True)
    done = store.get(retried.id)
    assert done.state is JobState.SUCCEEDED and done.attempts == 2 and calls == ["flaky", "flaky"]
    refusal = store.get(failed.id)
    assert refusal.state is JobState.FAILED and refusal.attempts == 1 and "HTTP 400" in refusal.error


@pytest.mark.parametrize("mode", ["slow", "die-after-write"])
def test_worker_killed_mid_job_is_resumed_without_duplicates(
        fhir: FhirClient, run_id: str, tmp_path: Path, mode: str) -> None:
    db = f"sqlite:///{tmp_path}/jobs.db"
    store = JobStore(db)
    subject, doc = make_source(fhir, run_id)
    job = submit(store, fhir, subject, doc)

    first = worker(db, fhir.base_url, mode)
    if mode == "slow":
        wait_for(lambda: store.get(job.id).progress_text == "pretending to read")
        first.kill()  # SIGKILL mid-pipeline: no chance to clean up
        first.wait()
        assert written(fhir, subject) == {k: 0 for k in EXPECTED}
    else:
        assert first.wait(timeout=60) == 9  # died right after the server committed the write
        assert written(fhir, subject) == EXPECTED
    assert store.get(job.id).state is JobState.RUNNING  # as the dead process left it
    time.sleep(1.5)  # let the dead worker's 1 s lease run out

    second = worker(db, fhir.base_url, "normal")
    assert second.wait(timeout=120) == 0
    done = store.get(job.id)
    assert done.state is JobState.SUCCEEDED, done.error
    assert written(fhir, subject) == EXPECTED
    if mode == "die-after-write":
        assert done.summary["created"] == [] and len(done.summary["unchanged"]) == 5


def test_sandbox_killed_mid_write_leaves_nothing_half_written(tmp_path: Path, run_id: str) -> None:
    """A persistent sandbox of its own is SIGKILLed while the job's transaction is in flight;
    after a restart the server holds all of the write or none of it, and the job retries to
    success with exactly one copy."""
    box = HapiSandbox(state_dir=tmp_path / "hapi",
                      port=int(os.environ.get("TEST_KILL_PORT", "8093")), persistent=True)
    box.start()
    try:
        direct = FhirClient(box.base_url, timeout_s=120)
        subject, doc = make_source(direct, run_id)
        killed = threading.Event()

        def kill_during_transaction(body: bytes) -> None:
            if b'"transaction"' in body and not killed.is_set():
                killed.set()
                pid = int(box.pid_file.read_text())
                threading.Timer(0.05, os.kill, (pid, signal.SIGKILL)).start()

        origin = box.base_url.removesuffix("/fhir")
        state = ServerState(upstream=origin, before_forward=kill_during_transaction)
        with loopback_server(state) as proxy:
            store = JobStore(f"sqlite:///{tmp_path}/jobs.db")
            job = store.submit(pipeline="test-fixed", source_type="DocumentReference",
                               source_id=doc["id"], source_version=doc["meta"]["versionId"],
                               subject=subject, fhir_base_url=proxy + "/fhir")
            runner = JobRunner(store, {"test-fixed": fixed_pipeline()},
                               lambda j: FhirClient(j.fhir_base_url, max_retries=0), backoff_s=0.1)
            runner.run_until_idle()
            assert killed.is_set()
            interrupted = store.get(job.id)
            assert interrupted.state is JobState.QUEUED and "no answer" in interrupted.error

            box.stop()  # clears the dead process's pid file
            box.start()
            assert written(direct, subject) in ({k: 0 for k in EXPECTED}, EXPECTED)

            runner.run_until_idle(include_delayed=True)
        done = store.get(job.id)
        assert done.state is JobState.SUCCEEDED, done.error
        assert written(direct, subject) == EXPECTED
    finally:
        box.stop()
