"""Analyses started in the SMART app are jobs of the service's job store, against the real HAPI
sandbox through the sandbox EHR's FHIR proxy: the job carries the session and the user, runs with
the user's token (the proxy refuses the service's credentials), writes with the user as
onBehalfOf, and any later launch sees it; a job whose session ended fails and says so."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from fhir_mappers.systems import SID_RESULT
from plugin.analysis import service_client_for
from plugin.app import job_store_of
from plugin.errors import FhirResponseError
from plugin.fhir import FhirClient
from plugin.jobs import Job, JobState, JobStore
from plugin.pipelines.registry import InstalledPipeline
from smart_launch.jobs import SESSION_ENDED
from smart_launch.runtime import runtime_of
from tests.support.pipelines import fixed_pipeline
from tests.support.smart_stack import SmartStack, smart_stack
from tests.support.sources import create_patient_with_document

pytestmark = pytest.mark.sandbox


def _use_fixed_documents(stack: SmartStack) -> None:
    """The documents pipeline finds the inputs; its run is the fixed test pipeline (fast)."""
    documents = stack.app.extensions["chartlight.pipelines"]["documents"]
    stack.use_pipelines({"documents": InstalledPipeline(
        "documents", "fixed test results", documents.find_sources, fixed_pipeline())})


def _launched(stack: SmartStack, patient_id: str) -> tuple[requests.Session, str, str]:
    """A browser after the EHR launch: (browser, its session id, its CSRF token)."""
    browser = stack.launched(patient_id)
    session = stack.session_of(browser)
    assert session is not None
    return browser, session.id, session.csrf_token


def _wait(predicate: Callable[[], bool], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.2)


def _status(browser: requests.Session, stack: SmartStack, key: str) -> dict:  # type: ignore[type-arg]
    return browser.get(f"{stack.app_base}/smart/app/status.json", timeout=60).json()["inputs"][key]  # type: ignore[no-any-return]


def _results(fhir: FhirClient, subject: str) -> list[dict]:  # type: ignore[type-arg]
    return [o for o in fhir.search("Observation", {"subject": subject})
            if any(i.get("system") == SID_RESULT for i in o.get("identifier", []))]


def _job_of(stack: SmartStack, subject: str) -> Job:
    [job] = job_store_of(stack.app).list(subject=subject)
    return job


def test_an_app_analysis_is_a_job_run_with_the_users_token_and_seen_by_the_next_launch(
        sandbox_url: str, tmp_path: Path, fhir: FhirClient, run_id: str) -> None:
    subject, doc = create_patient_with_document(fhir, run_id, "AppJobs")
    patient_id = subject.split("/")[1]
    key = f"documents:DocumentReference/{doc['id']}"
    with smart_stack(sandbox_url, tmp_path) as stack:
        _use_fixed_documents(stack)
        store = job_store_of(stack.app)
        # A CDS hook queued the same input with the service's credentials: the EHR's proxy
        # refuses them, so that job fails.
        queued = store.submit(pipeline="documents", source_type="DocumentReference", source_id=doc["id"],
                              source_version=doc["meta"]["versionId"], subject=subject,
                              fhir_base_url=stack.fhir_base)
        _wait(lambda: store.get(queued.id).state is JobState.FAILED)
        assert "HTTP 401" in store.get(queued.id).error
        with pytest.raises(FhirResponseError) as refused:
            service_client_for(stack.settings)(queued).read("DocumentReference", doc["id"])
        assert refused.value.status == 401

        # The clinician starts it in the app: the app takes the job over and runs it as them.
        browser, session_id, csrf = _launched(stack, patient_id)
        started = browser.post(f"{stack.app_base}/smart/app/analyze",
                               json={"source": f"DocumentReference/{doc['id']}"},
                               headers={"X-CSRF-Token": csrf}, timeout=60)
        assert started.json() == {"ok": True, "started": [key], "written": True}
        job = _job_of(stack, subject)
        assert job.id == queued.id
        assert (job.session_id, job.on_behalf_of) == (session_id, stack.user)
        assert job.fhir_base_url == stack.fhir_base
        _wait(lambda: _status(browser, stack, key)["state"] in ("done", "failed"))
        status = _status(browser, stack, key)
        assert status["state"] == "done" and "5 result(s) written" in status["text"], status
        assert store.get(job.id).state is JobState.SUCCEEDED

        values = _results(fhir, subject)
        assert len(values) == 3 and {o["status"] for o in values} == {"preliminary"}
        [write] = list(fhir.search("Provenance", {"target": f"Observation/{values[0]['id']}"}))
        assert write["agent"][0]["onBehalfOf"]["reference"] == stack.user

        # A new launch (another session) for the same patient sees the analysis as done.
        later, later_id, _ = _launched(stack, patient_id)
        assert later_id != session_id
        assert _status(later, stack, key)["state"] == "done"
        home = later.get(f"{stack.app_base}/smart/app", timeout=60).text
        assert f'<tr data-input="{key}" data-state="done"' in home
        # Submitting again (a succeeded job) runs nothing new.
        again = later.post(f"{stack.app_base}/smart/app/analyze", json={"source": "all"},
                           headers={"X-CSRF-Token": stack.session_of(later).csrf_token},  # type: ignore[union-attr]
                           timeout=60).json()
        assert again["started"] == [] and store.get(job.id).state is JobState.SUCCEEDED


def test_a_job_whose_session_ended_fails_and_says_so(sandbox_url: str, tmp_path: Path, fhir: FhirClient,
                                                      run_id: str, caplog: pytest.LogCaptureFixture) -> None:
    subject, doc = create_patient_with_document(fhir, run_id, "AppJobsEnded")
    patient_id = subject.split("/")[1]
    key = f"documents:DocumentReference/{doc['id']}"
    with smart_stack(sandbox_url, tmp_path) as stack:
        _use_fixed_documents(stack)
        stack.app.extensions["chartlight.runner"].stop()  # the service is busy: the job waits
        browser, session_id, csrf = _launched(stack, patient_id)
        token = runtime_of(stack.app).store.get_session(session_id).access_token  # type: ignore[union-attr]
        browser.post(f"{stack.app_base}/smart/app/analyze", json={"source": f"DocumentReference/{doc['id']}"},
                     headers={"X-CSRF-Token": csrf}, timeout=60).raise_for_status()
        assert _status(browser, stack, key)["state"] == "queued"
        browser.post(f"{stack.app_base}/smart/logout", headers={"X-CSRF-Token": csrf},
                     timeout=60).raise_for_status()

        caplog.set_level(logging.DEBUG)
        stack.app.extensions["chartlight.runner"].run_until_idle(timeout_s=60)

        job = _job_of(stack, subject)
        assert job.state is JobState.FAILED and job.error == SESSION_ENDED
        assert token not in caplog.text
        later, _, _ = _launched(stack, patient_id)
        assert _status(later, stack, key) == {"state": "failed", "progress": 0.0, "text": SESSION_ENDED}
    assert _results(fhir, subject) == []  # never the service's credentials instead


def test_a_job_store_created_before_the_session_columns_gains_them(tmp_path: Path) -> None:
    import sqlite3

    database = tmp_path / "old-jobs.db"
    with sqlite3.connect(database) as old:  # the table as the first release created it
        old.execute(
            "CREATE TABLE chartlight_jobs (id INTEGER PRIMARY KEY AUTOINCREMENT, pipeline VARCHAR(40), "
            "source_type VARCHAR(40), source_id VARCHAR(64), source_version VARCHAR(64), "
            "subject VARCHAR(100), fhir_base_url VARCHAR(500), state VARCHAR(16), progress FLOAT, "
            "progress_text VARCHAR(200), attempts INTEGER, next_attempt_at DATETIME, error TEXT, "
            "summary_json TEXT, created_at DATETIME, updated_at DATETIME, "
            "UNIQUE (pipeline, source_type, source_id, source_version))")
        old.execute(
            "INSERT INTO chartlight_jobs (pipeline, source_type, source_id, source_version, subject, "
            "fhir_base_url, state, progress, progress_text, attempts, next_attempt_at, error, "
            "summary_json, created_at, updated_at) VALUES ('documents', 'DocumentReference', '7', '1', "
            "'Patient/1', 'http://ehr/fhir', 'succeeded', 1.0, 'done', 1, '2026-11-01 00:00:00', '', "
            "'', '2026-11-01 00:00:00', '2026-11-01 00:00:00')")
    store = JobStore(f"sqlite:///{database}")
    [kept] = store.list()
    assert (kept.state, kept.session_id, kept.on_behalf_of) == (JobState.SUCCEEDED, "", "")
    job = store.submit(pipeline="documents", source_type="DocumentReference", source_id="8",
                       source_version="1", subject="Patient/1", fhir_base_url="http://ehr/fhir",
                       session_id="s1", on_behalf_of="Practitioner/7")
    assert (store.get(job.id).session_id, store.get(job.id).on_behalf_of) == ("s1", "Practitioner/7")
    JobStore(f"sqlite:///{database}")  # opening it again changes nothing
    with sqlite3.connect(database) as upgraded:
        columns = [row[1] for row in upgraded.execute("PRAGMA table_info(chartlight_jobs)")]
    assert columns.count("session_id") == 1 and columns.count("on_behalf_of") == 1
