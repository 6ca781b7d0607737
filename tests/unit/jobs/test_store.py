"""JobStore: one job per (FHIR server, source version, pipeline), atomic claims, leases, retries."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from plugin.jobs import JobState, JobStore

BASE = "http://127.0.0.1:8091/fhir"


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return JobStore(f"sqlite:///{tmp_path}/state/jobs.db")


def submit(store: JobStore, version: str = "1", pipeline: str = "documents"):  # type: ignore[no-untyped-def]
    return store.submit(pipeline=pipeline, source_type="DocumentReference", source_id="7",
                        source_version=version, subject="Patient/1",
                        fhir_base_url=BASE)


def test_one_job_per_source_version_and_pipeline(store: JobStore) -> None:
    first = submit(store)
    assert submit(store).id == first.id
    assert submit(store, version="2").id != first.id
    assert submit(store, pipeline="speech").id != first.id
    assert first.state is JobState.QUEUED and first.source == "DocumentReference/7/_history/1"


def test_claim_is_exclusive_and_counts_attempts(store: JobStore) -> None:
    job = submit(store)
    claimed = store.claim_next()
    assert claimed is not None and claimed.id == job.id
    assert claimed.state is JobState.RUNNING and claimed.attempts == 1
    assert store.claim_next() is None  # nothing else is queued


def test_requeue_waits_for_its_delay(store: JobStore) -> None:
    submit(store)
    claimed = store.claim_next()
    assert claimed is not None
    store.requeue(claimed, "server down", delay_s=0.3)
    assert store.claim_next() is None
    time.sleep(0.35)
    again = store.claim_next()
    assert again is not None and again.attempts == 2 and again.error == "server down"


def test_stale_running_jobs_are_resumed_fresh_ones_are_not(store: JobStore) -> None:
    job = submit(store)
    claimed = store.claim_next()
    assert claimed is not None
    assert store.resume_stale(lease_s=60) == 0
    time.sleep(0.2)
    assert store.heartbeat([claimed]) == {job.id}
    assert store.resume_stale(lease_s=0.1) == 0  # just renewed
    time.sleep(0.2)
    assert store.resume_stale(lease_s=0.1) == 1
    assert store.get(job.id).state is JobState.QUEUED


def test_fail_then_retry(store: JobStore) -> None:
    job = submit(store)
    claimed = store.claim_next()
    assert claimed is not None
    store.fail(claimed, "DocumentReference/7 content[0]: PDF is encrypted")
    failed = store.get(job.id)
    assert failed.state is JobState.FAILED and "encrypted" in failed.error
    retried = store.retry(job.id)
    assert retried.state is JobState.QUEUED and retried.attempts == 0 and retried.error == ""


def test_jobs_survive_reopening_the_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/jobs.db"
    job = submit(JobStore(url))
    assert JobStore(url).get(job.id).state is JobState.QUEUED


def test_succeed_keeps_the_summary(store: JobStore) -> None:
    job = submit(store)
    claimed = store.claim_next()
    assert claimed is not None
    store.succeed(claimed, {"path": "observations", "created": ["Observation/1/_history/1"]})
    done = store.get(job.id)
    assert done.state is JobState.SUCCEEDED and done.progress == 1.0
    assert done.summary["created"] == ["Observation/1/_history/1"]
    assert [j.id for j in store.list(state=JobState.SUCCEEDED)] == [job.id]


def test_briefs_list_one_subjects_jobs_newest_first(store: JobStore) -> None:
    first, second = submit(store, version="1"), submit(store, version="2")
    claimed = store.claim_next()
    assert claimed is not None and claimed.id == first.id
    store.fail(claimed, "the PDF is encrypted\nmore detail")
    store.submit(pipeline="documents", source_type="DocumentReference", source_id="8", source_version="1",
                 subject="Patient/2", fhir_base_url="http://127.0.0.1:8091/fhir")
    briefs = store.briefs(subject="Patient/1")
    assert [b.source for b in briefs] == [second.source, first.source]
    assert [b.state for b in briefs] == [JobState.QUEUED, JobState.FAILED]
    assert briefs[1].error.startswith("the PDF is encrypted") and briefs[1].pipeline == "documents"
    assert store.briefs(subject="Patient/1", limit=1)[0].source == second.source


def test_an_app_submission_takes_over_a_queued_or_failed_job(store: JobStore) -> None:
    queued = submit(store)
    taken = store.submit(pipeline="documents", source_type="DocumentReference", source_id="7",
                         source_version="1", subject="Patient/1", fhir_base_url=BASE + "/",
                         session_id="s1", on_behalf_of="Practitioner/7")
    assert taken.id == queued.id and taken.state is JobState.QUEUED
    assert (taken.session_id, taken.on_behalf_of, taken.fhir_base_url) == ("s1", "Practitioner/7", BASE)
    assert submit(store).session_id == "s1"  # a later service submission leaves the owner alone

    failed = submit(store, version="2")
    store.claim_next()
    claimed = store.claim_next()
    assert claimed is not None and claimed.id == failed.id
    store.fail(claimed, "HTTP 401")
    retried = store.submit(pipeline="documents", source_type="DocumentReference", source_id="7",
                           source_version="2", subject="Patient/1", fhir_base_url=BASE,
                           session_id="s2", on_behalf_of="Practitioner/8")
    assert retried.state is JobState.QUEUED and retried.error == "" and retried.attempts == 0
    assert (retried.session_id, retried.on_behalf_of) == ("s2", "Practitioner/8")


def test_an_app_submission_leaves_a_running_or_succeeded_job_alone(store: JobStore) -> None:
    running = submit(store)
    store.claim_next()
    succeeded = submit(store, version="2")
    claimed = store.claim_next()
    assert claimed is not None
    store.succeed(claimed, {"created": []})
    for job, state in ((running, JobState.RUNNING), (succeeded, JobState.SUCCEEDED)):
        again = store.submit(pipeline="documents", source_type="DocumentReference", source_id="7",
                             source_version=job.source_version, subject="Patient/1",
                             fhir_base_url=BASE, session_id="s1", on_behalf_of="Practitioner/7")
        assert again.id == job.id and again.state is state and again.session_id == ""
