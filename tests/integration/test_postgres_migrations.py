"""The stores on a real PostgreSQL server (started by the `postgres_url` fixture): tables made by
earlier releases are upgraded in place when a store opens them, also by several stores at once,
and the job claims and fenced updates hold between two stores (two processes' worth).

The old tables are written here by hand, as the earlier releases' SQLAlchemy models made them on
PostgreSQL (unnamed UNIQUE constraints get PostgreSQL's own `<table>_<columns>_key` names)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import Engine

from cds_hooks.feedback import FeedbackStore
from cds_hooks.models import FeedbackItem
from cds_hooks.replay import SqlReplayCache
from plugin.jobs import JobState, JobStore
from plugin.jobs.store import StaleJob
from smart_launch.store import SessionRecord, SmartStore, secret_hash
from tests.support.postgres import FOLDER_PREFIX, new_database, remove_abandoned

pytestmark = pytest.mark.sandbox

EHR_A = "http://ehr-a.test/fhir"
EHR_B = "http://ehr-b.test/fhir"

# The jobs table as the release before job identity named the server made it on PostgreSQL.
OLD_JOBS_DDL = """
CREATE TABLE chartlight_jobs (
    id SERIAL NOT NULL,
    pipeline VARCHAR(40) NOT NULL,
    source_type VARCHAR(40) NOT NULL,
    source_id VARCHAR(64) NOT NULL,
    source_version VARCHAR(64) NOT NULL,
    subject VARCHAR(100) NOT NULL,
    fhir_base_url VARCHAR(500) NOT NULL,
    state VARCHAR(16) NOT NULL,
    progress FLOAT NOT NULL,
    progress_text VARCHAR(200) NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at TIMESTAMP WITH TIME ZONE NOT NULL,
    error TEXT NOT NULL,
    summary_json TEXT NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL,
    session_id VARCHAR(64) DEFAULT '' NOT NULL,
    on_behalf_of VARCHAR(300) DEFAULT '' NOT NULL,
    PRIMARY KEY (id),
    UNIQUE (pipeline, source_type, source_id, source_version)
);
CREATE INDEX ix_chartlight_jobs_state ON chartlight_jobs (state);
CREATE INDEX ix_chartlight_jobs_subject ON chartlight_jobs (subject);
"""
OLD_JOB_ROW = """
INSERT INTO chartlight_jobs (pipeline, source_type, source_id, source_version, subject, fhir_base_url,
    state, progress, progress_text, attempts, next_attempt_at, error, summary_json, created_at,
    updated_at, session_id, on_behalf_of)
VALUES ('documents', 'DocumentReference', '1', '1', 'Patient/1', 'http://ehr-a.test/fhir/', 'succeeded',
    1.0, 'done', 1, '2026-11-01 10:00:00+00', '', '{"created": []}', '2026-11-01 10:00:00+00',
    '2026-11-01 10:00:05+00', 's1', 'Practitioner/7')
"""

# The CDS feedback table before the EHR (issuer) was part of its unique key.
OLD_FEEDBACK_DDL = """
CREATE TABLE chartlight_cds_feedback (
    id SERIAL NOT NULL, service_id VARCHAR(100) NOT NULL, card_uuid VARCHAR(100) NOT NULL,
    outcome VARCHAR(20) NOT NULL, outcome_timestamp VARCHAR(40) NOT NULL,
    accepted_suggestions TEXT NOT NULL, override_system VARCHAR(300) NOT NULL,
    override_code VARCHAR(100) NOT NULL, override_display VARCHAR(300) NOT NULL,
    user_comment TEXT NOT NULL, issuer VARCHAR(300) NOT NULL,
    received_at TIMESTAMP WITH TIME ZONE NOT NULL,
    PRIMARY KEY (id),
    UNIQUE (card_uuid, outcome, outcome_timestamp)
);
CREATE INDEX ix_chartlight_cds_feedback_service_id ON chartlight_cds_feedback (service_id);
INSERT INTO chartlight_cds_feedback (service_id, card_uuid, outcome, outcome_timestamp,
    accepted_suggestions, override_system, override_code, override_display, user_comment, issuer,
    received_at)
VALUES ('svc', 'card-1', 'overridden', '2026-01-01T00:00:00.000000+00:00', '[]', '', '', 'old reason',
    '', 'https://a.example', '2026-01-01 00:00:00+00');
"""

# The SMART session table of the first release (no fhir_context, no requested_scopes).
OLD_SESSION_DDL = """
CREATE TABLE chartlight_smart_session (
    id VARCHAR(64) NOT NULL, ehr VARCHAR(200) NOT NULL, fhir_base TEXT NOT NULL,
    token_endpoint TEXT NOT NULL, patient_id VARCHAR(200), encounter_id VARCHAR(200),
    "user" VARCHAR(300), scopes TEXT NOT NULL, need_patient_banner BOOLEAN NOT NULL,
    smart_style_url TEXT, csrf_token VARCHAR(100) NOT NULL, access_enc TEXT NOT NULL,
    refresh_enc TEXT, access_expires_at FLOAT NOT NULL, expires_at FLOAT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (id)
);
CREATE INDEX ix_chartlight_smart_session_expires_at ON chartlight_smart_session (expires_at);
"""


@pytest.fixture
def database(postgres_url: str) -> str:
    """A new, empty database for one test."""
    return new_database(postgres_url)


def _engine(url: str) -> Engine:
    return create_engine(url, pool_pre_ping=True)


def _execute(url: str, script: str) -> None:
    engine = _engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql(script)
    engine.dispose()


def _at_once(count: int, work: Callable[[int], object]) -> list[BaseException]:
    """Run work(0..count-1) in threads released together; the exceptions they raised."""
    start = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(n: int) -> None:
        start.wait()
        try:
            work(n)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def _submit(store: JobStore, base: str, source_id: str = "1", subject: str = "Patient/1"):  # type: ignore[no-untyped-def]
    return store.submit(pipeline="documents", source_type="DocumentReference", source_id=source_id,
                        source_version="1", subject=subject, fhir_base_url=base)


def _unique_keys(url: str, table: str) -> list[tuple[str, ...]]:
    engine = _engine(url)
    try:
        return sorted(tuple(u["column_names"]) for u in inspect(engine).get_unique_constraints(table))
    finally:
        engine.dispose()


# ---- jobs ---------------------------------------------------------------------------------------


def test_an_old_jobs_table_is_upgraded_in_place_on_postgres(database: str) -> None:
    _execute(database, OLD_JOBS_DDL + OLD_JOB_ROW)
    store = JobStore(database)
    [old] = store.list()
    assert (old.fhir_base_url, old.subject, old.state, old.session_id, old.on_behalf_of, old.summary) == (
        EHR_A, "Patient/1", JobState.SUCCEEDED, "s1", "Practitioner/7", {"created": []})
    assert old.lease_token == "" and old.deadline_at is None and old.retry_since is None
    assert not old.transient
    assert _unique_keys(database, "chartlight_jobs") == [
        ("fhir_base_url", "pipeline", "source_type", "source_id", "source_version")]
    assert _submit(store, EHR_A).id == old.id
    other = _submit(store, EHR_B, subject="Patient/2")  # refused by the old key
    assert other.id != old.id and (other.fhir_base_url, other.subject) == (EHR_B, "Patient/2")
    JobStore(database).engine.dispose()  # opening it again changes nothing
    assert sorted((j.fhir_base_url, j.subject) for j in store.list()) == [
        (EHR_A, "Patient/1"), (EHR_B, "Patient/2")]
    store.engine.dispose()


def test_stores_opening_an_old_jobs_table_at_once_upgrade_it_once(database: str) -> None:
    _execute(database, OLD_JOBS_DDL + OLD_JOB_ROW)
    stores: list[JobStore] = []
    errors = _at_once(4, lambda n: stores.append(JobStore(database)))
    assert errors == []
    assert _unique_keys(database, "chartlight_jobs") == [
        ("fhir_base_url", "pipeline", "source_type", "source_id", "source_version")]
    store = stores[0]
    assert len(store.list()) == 1
    assert _submit(store, EHR_A).id != _submit(store, EHR_B).id
    for opened in stores:
        opened.engine.dispose()


def test_stores_opening_an_empty_database_at_once_create_one_table(database: str) -> None:
    stores: list[JobStore] = []
    errors = _at_once(4, lambda n: stores.append(JobStore(database)))
    assert errors == []
    assert _submit(stores[1], EHR_A).id == _submit(stores[2], EHR_A).id
    for opened in stores:
        opened.engine.dispose()


def test_two_stores_never_claim_one_job_twice_on_postgres(database: str) -> None:
    first, second = JobStore(database), JobStore(database)
    submitted = {_submit(first, EHR_A if n % 2 else EHR_B, source_id=str(n)).id for n in range(60)}
    claims: list[list[int]] = [[], []]

    def drain(n: int) -> None:
        store = (first, second)[n % 2]
        while (job := store.claim_next()) is not None:
            claims[n % 2].append(job.id)
            store.succeed(job, {"by": n % 2})

    assert _at_once(2, drain) == []
    every = claims[0] + claims[1]
    assert sorted(every) == sorted(submitted)  # each job claimed once, none left behind
    assert {j.state for j in first.list(limit=100)} == {JobState.SUCCEEDED}
    first.engine.dispose()
    second.engine.dispose()


def test_a_stale_attempt_cannot_overwrite_the_newer_one_on_postgres(database: str) -> None:
    first, second = JobStore(database), JobStore(database)
    _submit(first, EHR_A)
    stale = first.claim_next()
    assert stale is not None
    assert second.resume_stale(lease_s=-1) == 1  # its lease ran out: another process takes it back
    newer = second.claim_next()
    assert newer is not None and newer.id == stale.id and newer.lease_token != stale.lease_token
    for update in (lambda: first.set_progress(stale, 0.5, "half"), lambda: first.succeed(stale, {}),
                   lambda: first.fail(stale, "late"), lambda: first.requeue(stale, "late", 1.0)):
        with pytest.raises(StaleJob):
            update()
    assert first.heartbeat([stale]) == set() and not first.holds(stale)
    second.succeed(newer, {"created": ["Observation/1/_history/1"]})
    done = first.get(stale.id)
    assert (done.state, done.attempts, done.summary) == (
        JobState.SUCCEEDED, 2, {"created": ["Observation/1/_history/1"]})
    first.engine.dispose()
    second.engine.dispose()


# ---- CDS feedback -----------------------------------------------------------------------------


def _feedback() -> FeedbackItem:
    return FeedbackItem.model_validate({"card": "card-1", "outcome": "overridden",
                                        "outcomeTimestamp": "2026-01-01T00:00:00Z"})


def test_an_old_feedback_table_gets_the_ehr_into_its_key_on_postgres(database: str) -> None:
    _execute(database, OLD_FEEDBACK_DDL)
    engine = _engine(database)
    store = FeedbackStore(engine)
    [row] = store.report()
    assert (row.issuer, row.reasons) == ("https://a.example", (("old reason", 1),))
    now = datetime(2026, 1, 2, tzinfo=UTC)
    assert store.record("svc", [_feedback()], issuer="https://b.example", now=now).stored == 1
    assert store.record("svc", [_feedback()], issuer="https://a.example", now=now).duplicates == 1
    FeedbackStore(engine)  # a second start finds the table migrated
    assert len(store.report()) == 2
    assert _unique_keys(database, "chartlight_cds_feedback") == [
        ("issuer", "card_uuid", "outcome", "outcome_timestamp")]
    engine.dispose()


def test_stores_opening_an_old_feedback_table_at_once_on_postgres(database: str) -> None:
    _execute(database, OLD_FEEDBACK_DDL)
    engines = [_engine(database) for _ in range(4)]
    assert _at_once(4, lambda n: FeedbackStore(engines[n])) == []
    assert _unique_keys(database, "chartlight_cds_feedback") == [
        ("issuer", "card_uuid", "outcome", "outcome_timestamp")]
    assert len(FeedbackStore(engines[0]).report()) == 1
    for engine in engines:
        engine.dispose()


# ---- SMART sessions ---------------------------------------------------------------------------


def _session() -> SessionRecord:
    return SessionRecord(
        id=secret_hash("cookie"), ehr="e", fhir_base="https://e.org/fhir", token_endpoint="https://e.org/token",
        patient_id="p1", encounter_id=None, user="Practitioner/1", scopes="launch patient/Patient.r",
        need_patient_banner=True, smart_style_url=None, csrf_token="csrf", access_token="ACCESS-SECRET",
        refresh_token="REFRESH-SECRET", access_expires_at=1300.0, expires_at=5000.0, version=1,
        fhir_context=("DocumentReference/5", "Encounter/2"),
        requested_scopes="launch patient/Patient.r patient/Observation.crus")


def test_an_old_session_table_gets_the_new_columns_on_postgres(database: str) -> None:
    _execute(database, OLD_SESSION_DDL)
    engine = _engine(database)
    store = SmartStore(engine, b"secret", clock=lambda: 1000.0)
    record = _session()
    store.create_session(record)
    found = store.get_session(record.id)
    assert found is not None and found.fhir_context == record.fhir_context
    assert (found.requested_scopes, found.user) == (record.requested_scopes, "Practitioner/1")
    engine.dispose()


def test_stores_opening_an_old_session_table_at_once_on_postgres(database: str) -> None:
    _execute(database, OLD_SESSION_DDL)
    engines = [_engine(database) for _ in range(4)]
    assert _at_once(4, lambda n: SmartStore(engines[n], b"secret", clock=lambda: 1000.0)) == []
    columns = {c["name"] for c in inspect(engines[0]).get_columns("chartlight_smart_session")}
    assert {"fhir_context", "requested_scopes"} <= columns
    for engine in engines:
        engine.dispose()


# ---- every store at once, on an empty database ------------------------------------------------


def test_every_store_opening_an_empty_database_at_once_on_postgres(database: str) -> None:
    """What a deployment's workers do at their first start: each opens every store."""
    engines = [_engine(database) for _ in range(4)]
    opened: list[JobStore] = []

    def open_all(n: int) -> None:
        SqlReplayCache(engines[n])
        FeedbackStore(engines[n])
        SmartStore(engines[n], b"secret", clock=lambda: 1000.0)
        opened.append(JobStore(engines[n]))

    assert _at_once(4, open_all) == []
    assert SqlReplayCache(engines[0]).first_use("jti-1", 2e9) is True
    assert SqlReplayCache(engines[1]).first_use("jti-1", 2e9) is False  # one table, seen by all
    for engine in engines:
        engine.dispose()


# ---- the fixture's own housekeeping -----------------------------------------------------------


def test_only_the_folders_of_killed_runs_are_removed(tmp_path: Path) -> None:
    dead, running, young = (tmp_path / f"{FOLDER_PREFIX}{name}" for name in ("dead", "running", "young"))
    for folder, pid in ((dead, 2**22 + 1), (running, os.getpid()), (young, 2**22 + 1)):
        (folder / "data").mkdir(parents=True)
        (folder / "data" / "postmaster.pid").write_text(f"{pid}\n/data\n")
    old = time.time() - 3600
    for folder in (dead, running):
        os.utime(folder, (old, old))
    assert remove_abandoned(tmp_path) == [dead]
    assert running.is_dir() and young.is_dir()
