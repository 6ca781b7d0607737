"""Background jobs' service clients: the service's token goes only to its own FHIR server, and a
job started in the SMART app never runs with the service's credentials."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from plugin.analysis import service_client_for
from plugin.config import Settings
from plugin.errors import ChartlightError
from plugin.jobs import Job, JobState

NOW = datetime(2026, 11, 28, tzinfo=UTC)
BASE = "http://127.0.0.1:8091/fhir"


def _job(session_id: str) -> Job:
    return Job(id=1, pipeline="documents", source_type="DocumentReference", source_id="d1",
               source_version="1", subject="Patient/p1", fhir_base_url=BASE, state=JobState.RUNNING,
               progress=0.0, progress_text="", attempts=1, next_attempt_at=NOW, error="", summary={},
               created_at=NOW, updated_at=NOW, session_id=session_id)


def test_a_session_job_is_refused_the_services_credentials() -> None:
    client_for = service_client_for(Settings(fhir_base_url=BASE))
    assert client_for(_job("")).base_url == BASE
    with pytest.raises(ChartlightError, match="clinician's app session"):
        client_for(_job("s1"))


def test_a_patients_run_claims_only_that_patients_jobs_of_its_pipeline(tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    from io import StringIO

    from rich.console import Console

    from plugin.analysis import analyze_patient, print_run
    from plugin.jobs import JobStore
    from plugin.pipelines.registry import InstalledPipeline
    from tests.support.pipelines import fixed_pipeline
    from tests.unit.jobs.fake_ehr import FakeEhr

    ehr = FakeEhr(BASE)
    ehr.add_source("s1", "Patient/p1")
    store = JobStore(f"sqlite:///{tmp_path}/jobs.db")
    orphan = store.submit(pipeline="speech", source_type="DocumentReference", source_id="x",
                          source_version="1", subject="Patient/p2", fhir_base_url=BASE)
    assert store.claim_next() is not None  # left running by a killed run for another patient
    documents = store.submit(pipeline="documents", source_type="DocumentReference", source_id="s1",
                             source_version="1", subject="Patient/p1", fhir_base_url=BASE)
    sources = [ehr.sources["DocumentReference/s1"], {"resourceType": "Media", "id": "m1", "meta": {}}]
    speech = InstalledPipeline("speech", "test", lambda client, patient: sources, fixed_pipeline())
    output = StringIO()
    console = Console(file=output, width=200)
    time.sleep(0.6)  # the orphan's lease is over
    run = analyze_patient(ehr.client(), store, speech, "p1", client_for=lambda job: ehr.client(),
                          console=console, lease_s=0.5, timeout_s=30)
    assert [(j.pipeline, j.subject, j.state) for j in run.jobs] == [
        ("speech", "Patient/p1", JobState.SUCCEEDED)]
    assert run.skipped == ("Media/m1: no meta.versionId",)
    assert store.get(documents.id).state is JobState.QUEUED
    assert store.get(orphan.id).state is JobState.RUNNING
    print_run(run, console)
    assert "Media/m1" in output.getvalue() and "not queued" in output.getvalue()


def test_following_a_run_waits_out_a_locked_job_database(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Another process's long write (SQLite "database is locked") while `chartlight analyze`
    shows progress: the display waits it out and the run ends normally, as the runner does."""
    import sqlite3
    import threading
    from io import StringIO

    from rich.console import Console
    from sqlalchemy import create_engine

    from plugin.analysis import _follow
    from plugin.jobs import JobStore

    db = tmp_path / "jobs.db"
    impatient = JobStore(create_engine(f"sqlite:///{db}", connect_args={"timeout": 0.05}))
    worker = JobStore(f"sqlite:///{db}")
    job = worker.submit(pipeline="documents", source_type="DocumentReference", source_id="d1",
                        source_version="1", subject="Patient/p1", fhir_base_url=BASE)
    claimed = worker.claim_next()
    assert claimed is not None
    locker = sqlite3.connect(db, isolation_level=None, check_same_thread=False)

    def lock_then_finish() -> None:
        locker.execute("BEGIN EXCLUSIVE")
        time.sleep(1.0)  # the display polls every 0.2 s meanwhile: each poll fails
        locker.execute("ROLLBACK")
        worker.succeed(claimed, {})

    thread = threading.Thread(target=lock_then_finish)
    thread.start()
    time.sleep(0.1)
    try:
        _follow(impatient, [job.id], Console(file=StringIO()), timeout_s=30)
    finally:
        thread.join()
        locker.close()
    assert impatient.get(job.id).state is JobState.SUCCEEDED
