"""JobRunner against a scripted FHIR server and a real SQLite job store: fenced attempts, time
limits, the retry horizon, scoped claims, the patient check, and loops that outlive a locked
database."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from plugin.config import Settings
from plugin.jobs import JobContext, JobLimits, JobRunner, JobScope, JobState, JobStore
from plugin.results import PipelineResult
from tests.support.pipelines import fixed_pipeline
from tests.unit.jobs.fake_ehr import FakeEhr

EHR_A = "http://ehr-a.test/fhir"
EHR_B = "http://ehr-b.test/fhir"


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return JobStore(f"sqlite:///{tmp_path}/jobs.db")


@pytest.fixture
def ehr() -> FakeEhr:
    box = FakeEhr(EHR_A)
    box.add_source("7", "Patient/1")
    return box


def submit(store: JobStore, pipeline: str, *, source_id: str = "7", subject: str = "Patient/1",
           base: str = EHR_A):  # type: ignore[no-untyped-def]
    return store.submit(pipeline=pipeline, source_type="DocumentReference", source_id=source_id,
                        source_version="1", subject=subject, fhir_base_url=base)


def wait_for(predicate: Callable[[], bool], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


# ---- patient safety -------------------------------------------------------------------------

def test_a_source_naming_another_patient_fails_the_job_and_writes_nothing(
        store: JobStore, ehr: FakeEhr) -> None:
    ehr.add_source("8", "Patient/2")  # the EHR's document 8 belongs to patient 2
    wrong = submit(store, "test-fixed", source_id="8", subject="Patient/1")
    JobRunner(store, {"test-fixed": fixed_pipeline()}, lambda job: ehr.client()).run_until_idle()
    failed = store.get(wrong.id)
    assert failed.state is JobState.FAILED
    assert failed.error == ("DocumentReference/8 names Patient/2 as its subject, not Patient/1: "
                            "nothing was written for it")
    assert ehr.transactions == []


# ---- fencing ----------------------------------------------------------------------------------

def test_a_worker_that_lost_its_lease_writes_nothing_and_leaves_the_new_attempt_alone(
        store: JobStore, ehr: FakeEhr) -> None:
    job = submit(store, "slow")
    taken = threading.Event()
    newer: list = []

    def slow(context: JobContext) -> PipelineResult:
        # Meanwhile this worker's lease is lost and another worker claims the job.
        time.sleep(0.05)
        store.resume_stale(lease_s=0.01)
        newer.append(store.claim_next())
        taken.set()
        return fixed_pipeline()(context)

    JobRunner(store, {"slow": slow}, lambda j: ehr.client()).run_until_idle()
    assert taken.is_set() and newer[0] is not None and newer[0].attempts == 2
    assert ehr.transactions == []  # the stale attempt dropped its result
    current = store.get(job.id)
    assert current.state is JobState.RUNNING and current.lease_token == newer[0].lease_token
    store.succeed(newer[0], {"created": []})  # the newer attempt still holds the job
    assert store.get(job.id).state is JobState.SUCCEEDED


# ---- time limits ------------------------------------------------------------------------------

@pytest.mark.parametrize("pipeline", ["documents", "speech", "imaging"])
def test_a_pipeline_past_its_time_limit_fails_frees_the_worker_and_never_writes(
        store: JobStore, ehr: FakeEhr, pipeline: str) -> None:
    release = threading.Event()
    ended: list[str] = []

    def stuck(context: JobContext) -> PipelineResult:
        release.wait(10)
        try:
            context.report_progress(0.5, "still here")
        except Exception as exc:
            ended.append(type(exc).__name__)
            raise
        return fixed_pipeline()(context)

    ehr.add_source("9", "Patient/1")
    first = submit(store, pipeline)
    second = submit(store, pipeline, source_id="9")
    settings = Settings(**{f"job_timeout_{pipeline}_s": 0.3})
    calls = iter([stuck, fixed_pipeline()])
    runner = JobRunner(store, {pipeline: lambda context: next(calls)(context)}, lambda j: ehr.client(),
                       workers=1, limits=JobLimits.from_settings(settings))
    started = time.monotonic()
    runner.run_until_idle()
    assert time.monotonic() - started < 5
    timed_out = store.get(first.id)
    assert timed_out.state is JobState.FAILED
    assert timed_out.error.startswith(f"{pipeline} took longer than its time limit of 0.3 s")
    assert store.get(second.id).state is JobState.SUCCEEDED  # the worker was free again
    release.set()  # the abandoned attempt wakes: its next report is refused
    wait_for(lambda: ended == ["StaleJob"])
    assert len(ehr.transactions) == 1  # the second job's write only


def test_the_default_time_limit_lets_the_same_pipeline_finish(store: JobStore, ehr: FakeEhr) -> None:
    job = submit(store, "documents")
    JobRunner(store, {"documents": fixed_pipeline(delay_s=0.5)}, lambda j: ehr.client(),
              limits=JobLimits.from_settings(Settings())).run_until_idle()
    assert store.get(job.id).state is JobState.SUCCEEDED


def test_a_heartbeat_does_not_renew_an_attempt_past_its_deadline(store: JobStore) -> None:
    job = submit(store, "documents")
    claimed = store.claim_next(time_limits={"documents": 0.3})
    assert claimed is not None and claimed.deadline_at is not None
    assert store.heartbeat([claimed]) == {job.id}
    time.sleep(0.4)
    assert store.heartbeat([claimed]) == set()
    time.sleep(0.1)
    assert store.resume_stale(lease_s=0.05) == 1  # its worker went silent: failed, not re-run
    stopped = store.get(job.id)
    assert stopped.state is JobState.FAILED and "time limit" in stopped.error


# ---- transient failures: the retry horizon ----------------------------------------------------

def test_an_outage_is_retried_until_the_horizon_then_fails_as_transient(
        store: JobStore, ehr: FakeEhr) -> None:
    ehr.down = True
    job = submit(store, "test-fixed")
    limits = JobLimits.from_settings(Settings(job_retry_horizon_s=0.6, job_retry_max_delay_s=0.1))
    JobRunner(store, {"test-fixed": fixed_pipeline()}, lambda j: ehr.client(), backoff_s=0.05,
              poll_s=0.02, limits=limits).run_until_idle(include_delayed=True, timeout_s=20)
    failed = store.get(job.id)
    assert failed.state is JobState.FAILED and failed.transient
    assert failed.attempts >= 4 and "job_retry_horizon_s" in failed.error and "HTTP 503" in failed.error

    ehr.down = False  # a later hook or app visit submits it again: it runs again
    again = submit(store, "test-fixed")
    assert again.id == job.id and again.state is JobState.QUEUED and again.attempts == 0
    JobRunner(store, {"test-fixed": fixed_pipeline()}, lambda j: ehr.client()).run_until_idle()
    assert store.get(job.id).state is JobState.SUCCEEDED


def test_a_longer_horizon_keeps_the_job_queued_through_the_same_outage(
        store: JobStore, ehr: FakeEhr) -> None:
    ehr.down = True
    job = submit(store, "test-fixed")
    runner = JobRunner(store, {"test-fixed": fixed_pipeline()}, lambda j: ehr.client(),
                       limits=JobLimits.from_settings(Settings(job_retry_horizon_s=900)))
    claimed = store.claim_next()
    assert claimed is not None
    runner.execute(claimed)
    waiting = store.get(job.id)
    assert waiting.state is JobState.QUEUED and waiting.retry_since is not None
    assert 1.0 <= (waiting.next_attempt_at - waiting.updated_at).total_seconds() <= 2.1


def test_retry_delays_double_with_jitter_up_to_the_configured_cap() -> None:
    limits = JobLimits.from_settings(Settings(job_retry_max_delay_s=10))
    assert [limits.retry_delay(n, rand=lambda: 1.0) for n in range(1, 7)] == [2, 4, 8, 10, 10, 10]
    assert [limits.retry_delay(n, rand=lambda: 0.0) for n in range(1, 4)] == [1, 2, 4]
    assert JobLimits.from_settings(Settings()).retry_delay(10, rand=lambda: 1.0) == 120


# ---- a runner claims only its own work --------------------------------------------------------

def test_a_runner_claims_only_its_pipelines_and_scope(store: JobStore, ehr: FakeEhr) -> None:
    orphan = submit(store, "speech", source_id="10", subject="Patient/2")
    assert store.claim_next() is not None  # a killed run left another patient's job running
    documents = submit(store, "documents")
    other_patient = submit(store, "speech", source_id="8", subject="Patient/2")
    other_server = submit(store, "speech", base=EHR_B)
    mine = submit(store, "speech")
    time.sleep(0.3)  # the orphan's lease is over
    JobRunner(store, {"speech": fixed_pipeline()}, lambda j: ehr.client(), lease_s=0.2,
              scope=JobScope(subject="Patient/1", fhir_base_url=EHR_A + "/")).run_until_idle()
    assert store.get(mine.id).state is JobState.SUCCEEDED
    assert [store.get(j.id).state for j in (documents, other_patient, other_server)] == [JobState.QUEUED] * 3
    assert store.get(orphan.id).state is JobState.RUNNING  # not this run's to resume


def test_a_pipeline_added_later_is_claimed_too(store: JobStore, ehr: FakeEhr) -> None:
    """The SMART app swaps in the speech pipeline once MedASR is there: its jobs must run."""
    runner = JobRunner(store, {"documents": fixed_pipeline()}, lambda j: ehr.client())
    speech = submit(store, "speech")
    runner.run_until_idle()
    assert store.get(speech.id).state is JobState.QUEUED
    runner.use_pipelines({"documents": fixed_pipeline(), "speech": fixed_pipeline()})
    runner.run_until_idle()
    assert store.get(speech.id).state is JobState.SUCCEEDED


# ---- the loops outlive database faults --------------------------------------------------------

def test_loop_and_heartbeat_survive_a_locked_database(
        tmp_path: Path, ehr: FakeEhr, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "jobs.db"
    # The runner's store gives up on a lock at once; the test reads with the usual patience.
    store = JobStore(create_engine(f"sqlite:///{db}", connect_args={"timeout": 0.05}))
    reader = JobStore(f"sqlite:///{db}")
    go = threading.Event()

    def waits(context: JobContext) -> PipelineResult:
        context.report_progress(0.1, "waiting")
        go.wait(10)
        return fixed_pipeline()(context)

    first = submit(reader, "test-fixed")
    runner = JobRunner(store, {"test-fixed": waits}, lambda j: ehr.client(), poll_s=0.05, lease_s=0.4)
    runner.start()
    try:
        wait_for(lambda: reader.get(first.id).progress_text == "waiting")
        locker = sqlite3.connect(db, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")  # what another process's long write does
        time.sleep(1.2)  # the loop polls and the heartbeat renews meanwhile: both fail
        locker.execute("ROLLBACK")
        locker.close()
        assert runner.alive()
        second = submit(reader, "test-fixed", source_id="9")
        ehr.add_source("9", "Patient/1")
        go.set()
        wait_for(lambda: reader.get(second.id).state is JobState.SUCCEEDED)
        assert reader.get(first.id).state is JobState.SUCCEEDED  # its lease was renewed after the fault
        assert runner.alive()
    finally:
        go.set()
        runner.stop()
    faults = [r.getMessage() for r in caplog.records if "job store fault" in r.getMessage()]
    assert any("claiming a job" in f and "database is locked" in f for f in faults)
    assert any("renewing leases" in f for f in faults)


# ---- follow-ups -------------------------------------------------------------------------------

def test_a_written_transcript_queues_its_note_for_the_same_server_patient_and_session(
        store: JobStore, ehr: FakeEhr) -> None:
    speech = store.submit(pipeline="speech", source_type="DocumentReference", source_id="7",
                          source_version="1", subject="Patient/1", fhir_base_url=EHR_A,
                          session_id="session-1", on_behalf_of="Practitioner/9")
    lab = submit(store, "documents")
    JobRunner(store, {"speech": fixed_pipeline(), "documents": fixed_pipeline()},
              lambda job: ehr.client()).run_until_idle()
    done = store.get(speech.id)
    assert done.state is JobState.SUCCEEDED and store.get(lab.id).state is JobState.SUCCEEDED
    written = [w for w in done.summary["created"] if w.startswith("DocumentReference/")]
    notes = [j for j in store.list() if j.pipeline == "dictation-note"]
    # one note job per DocumentReference the speech job wrote; none for the lab report's
    assert [(f"{j.source_type}/{j.source_id}/_history/{j.source_version}", j.subject, j.fhir_base_url,
             j.session_id, j.state) for j in notes] == [
        (w, "Patient/1", EHR_A, "session-1", JobState.QUEUED) for w in written]
    assert len(written) == 1


def test_an_imaging_task_runs_under_the_imaging_limit() -> None:
    limits = JobLimits.from_settings(Settings(job_timeout_imaging_s=120, job_timeout_summary_s=60))
    assert limits.time_limit("imaging-question-3f2a") == 120
    assert limits.time_limit("imaging-compare") == 120
    assert limits.limit_name("imaging-compare") == "imaging"
    assert limits.time_limit("summary") == 60
    # a pipeline without a limit of its own or its family's keeps the default
    assert limits.time_limit("dictation-note") == limits.default_time_limit_s
    assert limits.limit_name("dictation-note") == "dictation-note"
