"""A job belongs to one FHIR server: identity, in-place upgrade of older tables, racing submits."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from plugin.jobs import JobState, JobStore

EHR_A = "http://ehr-a.test/fhir"
EHR_B = "http://ehr-b.test/fhir"

# The table exactly as the release before this one created it (its unique key had no server).
OLD_DDL = """
CREATE TABLE chartlight_jobs (
	id INTEGER NOT NULL,
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
	next_attempt_at DATETIME NOT NULL,
	error TEXT NOT NULL,
	summary_json TEXT NOT NULL,
	created_at DATETIME NOT NULL,
	updated_at DATETIME NOT NULL,
	session_id VARCHAR(64) DEFAULT '' NOT NULL,
	on_behalf_of VARCHAR(300) DEFAULT '' NOT NULL,
	PRIMARY KEY (id),
	UNIQUE (pipeline, source_type, source_id, source_version)
);
CREATE INDEX ix_chartlight_jobs_state ON chartlight_jobs (state);
CREATE INDEX ix_chartlight_jobs_subject ON chartlight_jobs (subject);
"""


def submit(store: JobStore, base: str, subject: str = "Patient/1", **extra: str):  # type: ignore[no-untyped-def]
    return store.submit(pipeline="documents", source_type="DocumentReference", source_id="1",
                        source_version="1", subject=subject, fhir_base_url=base, **extra)


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return JobStore(f"sqlite:///{tmp_path}/jobs.db")


def test_equal_ids_on_two_servers_are_two_jobs_each_keeping_its_patient(store: JobStore) -> None:
    a = submit(store, EHR_A, "Patient/1")
    b = submit(store, EHR_B, "Patient/2", session_id="s-b", on_behalf_of="Practitioner/9")
    assert a.id != b.id
    assert (store.get(a.id).fhir_base_url, store.get(a.id).subject, store.get(a.id).session_id) == (
        EHR_A, "Patient/1", "")
    assert (b.fhir_base_url, b.subject) == (EHR_B, "Patient/2")
    assert submit(store, EHR_A + "/").id == a.id  # one server, however its base is spelled


def test_a_finished_job_of_one_server_is_not_the_answer_for_another(store: JobStore) -> None:
    submit(store, EHR_A)
    claimed = store.claim_next()
    assert claimed is not None
    store.succeed(claimed, {"created": ["Observation/5/_history/1"]})
    other = submit(store, EHR_B)
    assert other.state is JobState.QUEUED and other.summary == {}


def test_reads_name_the_server(store: JobStore) -> None:
    submit(store, EHR_A)
    submit(store, EHR_B)
    assert [j.fhir_base_url for j in store.list(fhir_base_url=EHR_B + "/")] == [EHR_B]
    assert [b.fhir_base_url for b in store.briefs(subject="Patient/1", fhir_base_url=EHR_A)] == [EHR_A]
    assert len(store.list()) == 2  # operators may still see every server


def test_an_old_table_is_upgraded_in_place_when_opened(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    with sqlite3.connect(db) as connection:
        connection.executescript(OLD_DDL)
        connection.execute(
            "INSERT INTO chartlight_jobs (pipeline, source_type, source_id, source_version, subject,"
            " fhir_base_url, state, progress, progress_text, attempts, next_attempt_at, error,"
            " summary_json, created_at, updated_at, session_id, on_behalf_of) VALUES ('documents',"
            " 'DocumentReference', '1', '1', 'Patient/1', ?, 'succeeded', 1.0, 'done', 1,"
            " '2026-11-01 10:00:00', '', '{\"created\": []}', '2026-11-01 10:00:00',"
            " '2026-11-01 10:00:05', 's1', 'Practitioner/7')", (EHR_A + "/",))
    store = JobStore(f"sqlite:///{db}")
    [old] = store.list()
    assert (old.fhir_base_url, old.subject, old.state, old.session_id, old.summary) == (
        EHR_A, "Patient/1", JobState.SUCCEEDED, "s1", {"created": []})
    assert old.lease_token == "" and old.deadline_at is None and not old.transient
    assert submit(store, EHR_A).id == old.id
    assert submit(store, EHR_B).id != old.id  # the old key would have refused this row
    JobStore(f"sqlite:///{db}")  # opening it again changes nothing
    assert len(store.list()) == 2
    with sqlite3.connect(db) as connection:
        indexes = {row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'chartlight_jobs'")}
    assert {"ix_chartlight_jobs_state", "ix_chartlight_jobs_subject"} <= indexes


def test_processes_submitting_one_job_at_once_share_it(tmp_path: Path) -> None:
    """Each thread has a store of its own (as separate processes would): the same 40 jobs
    submitted by 6 at once give 40 jobs and no IntegrityError."""
    url = f"sqlite:///{tmp_path}/jobs.db"
    stores = [JobStore(url) for _ in range(6)]
    start = threading.Barrier(len(stores))
    errors: list[BaseException] = []
    ids: list[set[int]] = []

    def submit_all(store: JobStore) -> None:
        start.wait()
        try:
            ids.append({store.submit(pipeline="documents", source_type="DocumentReference",
                                     source_id=str(n), source_version="1", subject="Patient/1",
                                     fhir_base_url=EHR_A).id for n in range(40)})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=submit_all, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(ids) == 6 and all(found == ids[0] for found in ids)
    assert len(stores[0].list(limit=100)) == 40


def test_stores_opening_an_old_table_at_once_upgrade_it_once(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    with sqlite3.connect(db) as connection:
        connection.executescript(OLD_DDL)
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def open_store() -> None:
        start.wait()
        try:
            JobStore(f"sqlite:///{db}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    store = JobStore(f"sqlite:///{db}")
    assert submit(store, EHR_A).id != submit(store, EHR_B).id
