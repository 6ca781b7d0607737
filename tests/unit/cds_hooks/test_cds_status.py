"""The status card of a hook shows only the calling EHR's own jobs: one job store holds jobs of
two FHIR servers whose patients share an id (HAPI numbers ids 1, 2, 3 on every server)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from flask import Flask
from sqlalchemy import create_engine

from cds_hooks.analysis_status import SourceScanner
from cds_hooks.cards import CardContext, patient_view_cards
from plugin.app import create_app, job_store_of
from plugin.config import TrustedEhr
from plugin.jobs import JobScope, JobStore
from tests.support.cds_ehr import PATIENT_VIEW, PUBLIC_BASE, Ehr, bearer, cds_settings, patient_view_body

SERVER_A = "https://ehr.example.org/fhir"
SERVER_B = "https://other-ehr.example.net/fhir"
URL = PUBLIC_BASE + PATIENT_VIEW


def two_servers(store: JobStore) -> None:
    """Patient/1 on each server: A has one queued job; B has a failed one and a queued one."""
    store.submit(pipeline="documents", source_type="DocumentReference", source_id="a-doc", source_version="1",
                 subject="Patient/1", fhir_base_url=SERVER_A)
    for doc in ("b-doc-1", "b-doc-2"):
        store.submit(pipeline="documents", source_type="DocumentReference", source_id=doc, source_version="1",
                     subject="Patient/1", fhir_base_url=SERVER_B)
    failed = store.claim_next(JobScope(subject="Patient/1", fhir_base_url=SERVER_B))  # b-doc-1, the oldest
    assert failed is not None and failed.source_id == "b-doc-1"
    store.fail(failed, "B-ONLY ERROR: unreadable PDF of the other EHR")


def test_status_counts_only_the_callers_server(tmp_path: Path) -> None:
    store = JobStore(f"sqlite:///{tmp_path}/jobs.db")
    two_servers(store)
    scanner = SourceScanner()
    of_a = scanner.status(store=store, pipelines={}, fhir_base=SERVER_A, client=None,
                           patient_id="1")
    assert (of_a.queued, of_a.failed, of_a.failures) == (1, 0, ())
    of_b = scanner.status(store=store, pipelines={}, fhir_base=SERVER_B + "/", client=None,
                           patient_id="1")
    assert (of_b.queued, of_b.failed) == (1, 1) and "B-ONLY ERROR" in of_b.failures[0]


def test_an_unknown_server_shows_nothing_about_jobs(tmp_path: Path) -> None:
    store = JobStore(f"sqlite:///{tmp_path}/jobs.db")
    two_servers(store)
    status = SourceScanner().status(store=store, pipelines={}, fhir_base=None, client=None, patient_id="1")
    assert (status.queued, status.running, status.failed, status.failures) == (0, 0, 0, ())


def test_a_locked_job_database_leaves_the_card_answering_and_saying_so(tmp_path: Path) -> None:
    """Another process's long write (SQLite "database is locked"; a Postgres failover alike) must
    not turn the hook into a 500: the card says the jobs' status is not known."""
    db = tmp_path / "jobs.db"
    store = JobStore(create_engine(f"sqlite:///{db}", connect_args={"timeout": 0.05}))
    two_servers(store)
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        status = SourceScanner().status(store=store, pipelines={"documents": object()}, fhir_base=SERVER_B,
                                        client=None, patient_id="1")
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert status.jobs_unreadable and (status.queued, status.failed, status.failures) == (0, 0, ())
    context = CardContext(service_id="chartlight-patient-results", hook_instance="h-1", patient_id="1",
                          user="Practitioner/dr", app_launch_url="https://chartlight.example.org/smart/launch")
    [card] = patient_view_cards([], {}, status, context)
    assert "could not read its analysis jobs" in (card.detail or "")


def _app(ehr: Ehr, tmp_path: Path) -> Flask:
    trusted = TrustedEhr(iss=ehr.iss, jwks_url=ehr.jwks_url, fhir_servers=(SERVER_A,))
    app = create_app(cds_settings(ehr, tmp_path, cds_trusted_ehrs=(trusted,)))
    two_servers(job_store_of(app))
    return app


def _status_text(app: Flask, ehr: Ehr, **extra: object) -> str:
    response = app.test_client().post(PATIENT_VIEW, json=patient_view_body("1", **extra),
                                      headers=bearer(ehr.token(URL)))
    assert response.status_code == 200, response.get_data(as_text=True)
    return " ".join(f"{c['summary']} {c.get('detail', '')}" for c in response.get_json()["cards"])


def test_hook_without_fhir_server_leaks_no_other_ehrs_jobs(ehr: Ehr, tmp_path: Path) -> None:
    text = _status_text(_app(ehr, tmp_path), ehr)
    assert "B-ONLY ERROR" not in text and "failed" not in text and "queued" not in text


def test_hook_naming_a_server_not_allow_listed_sees_none_of_its_jobs(ehr: Ehr, tmp_path: Path) -> None:
    """The EHR may name B's server, but B's jobs are not the caller's to see."""
    text = _status_text(_app(ehr, tmp_path), ehr, fhirServer=SERVER_B)
    assert "B-ONLY ERROR" not in text and "failed" not in text


def test_hook_of_the_allow_listed_server_sees_its_own_jobs(ehr: Ehr, tmp_path: Path) -> None:
    text = _status_text(_app(ehr, tmp_path), ehr, fhirServer=SERVER_A)
    assert "1 input(s) awaiting AI analysis (0 running, 1 queued)" in text
    assert "B-ONLY ERROR" not in text
