"""Fenced updates: only the attempt that holds a job may change it; a running job cannot be
queued again; a transient failure is queued again by the next submission, a permanent one not."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from plugin.jobs import JobBusy, JobState, JobStore, StaleJob

BASE = "http://ehr-a.test/fhir"


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return JobStore(f"sqlite:///{tmp_path}/jobs.db")


def submit(store: JobStore, source_id: str = "7"):  # type: ignore[no-untyped-def]
    return store.submit(pipeline="documents", source_type="DocumentReference", source_id=source_id,
                        source_version="1", subject="Patient/1", fhir_base_url=BASE)


def test_an_attempt_that_lost_its_lease_cannot_change_the_job(store: JobStore) -> None:
    submit(store)
    stale = store.claim_next()
    assert stale is not None
    time.sleep(0.05)
    assert store.resume_stale(lease_s=0.01) == 1
    newer = store.claim_next()
    assert newer is not None and newer.lease_token != stale.lease_token
    for update in (lambda: store.set_progress(stale, 0.5, "late"),
                   lambda: store.succeed(stale, {"created": ["Observation/9/_history/1"]}),
                   lambda: store.fail(stale, "late failure"),
                   lambda: store.requeue(stale, "late", delay_s=0)):
        with pytest.raises(StaleJob, match=f"job {stale.id}: attempt 1 no longer holds the job"):
            update()
    assert store.heartbeat([stale]) == set() and not store.holds(stale)
    assert store.heartbeat([newer]) == {newer.id} and store.holds(newer)
    current = store.get(newer.id)
    assert (current.state, current.attempts, current.progress_text) == (JobState.RUNNING, 2, "starting")


def test_retry_refuses_a_running_job(store: JobStore) -> None:
    job = submit(store)
    running = store.claim_next()
    assert running is not None
    with pytest.raises(JobBusy, match=f"job {job.id} is running \\(attempt 1\\)"):
        store.retry(job.id)
    store.succeed(running, {"created": []})  # the running attempt still holds it
    assert store.retry(job.id).state is JobState.QUEUED
    with pytest.raises(KeyError):
        store.retry(999)


def test_a_transient_failure_is_queued_again_by_the_next_submission_a_permanent_one_not(
        store: JobStore) -> None:
    outage, bad = submit(store, "7"), submit(store, "8")
    first = store.claim_next()
    assert first is not None
    store.requeue(first, "HTTP 503", delay_s=0)
    again = store.claim_next()
    assert again is not None and again.retry_since is not None
    store.requeue(again, "HTTP 503", delay_s=0)
    assert store.get(outage.id).retry_since == again.retry_since  # the run's start is kept
    last = store.claim_next()
    assert last is not None and last.id == outage.id
    store.fail(last, "gave up: HTTP 503", transient=True)
    broken = store.claim_next()
    assert broken is not None and broken.id == bad.id
    store.fail(broken, "DocumentReference/8: the PDF is encrypted")

    assert submit(store, "8").state is JobState.FAILED
    requeued = submit(store, "7")
    assert (requeued.state, requeued.attempts, requeued.error, requeued.retry_since, requeued.transient) == (
        JobState.QUEUED, 0, "", None, False)
