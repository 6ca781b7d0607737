"""Degrade, don't fail (docs/writeback.md) for jobs as the product runs them, against the real HAPI
sandbox: a job whose credentials were not granted Observation writes writes the document only —
the CLI's and CDS hooks' jobs with the service's own token (`fhir_token_scopes`, or a 403 from the
server), the app's jobs with the clinician's SMART session (scopes the sandbox EHR granted)."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from rich.console import Console

from fhir_mappers.systems import SID_RESULT
from plugin.analysis import analyze_patient, service_client_for
from plugin.app import job_store_of, service_fhir_client
from plugin.config import SMART_DEFAULT_SCOPES, Settings
from plugin.fhir import FhirClient
from plugin.jobs import Job, JobState, JobStore
from plugin.pipelines.registry import InstalledPipeline
from tests.support.loopback import ServerState, loopback_server
from tests.support.pipelines import fixed_pipeline
from tests.support.smart_stack import smart_stack
from tests.support.sources import create_patient_with_document

pytestmark = pytest.mark.sandbox

DOCUMENTS_ONLY = ("patient/DocumentReference.crus", "patient/Provenance.c", "user/Device.crus",
                  "patient/Observation.rs", "patient/DiagnosticReport.rs")
SCOPE_REASON = "the granted scopes do not allow Observation writes"


def documents_pipeline() -> InstalledPipeline:
    """The patient's source documents as inputs (not our own outputs); the fixed test results."""
    def sources(client: FhirClient, patient_id: str) -> list[dict[str, Any]]:
        found = client.search("DocumentReference", {"subject": f"Patient/{patient_id}"})
        return [d for d in found if not any(i.get("system") == SID_RESULT for i in d.get("identifier", []))]
    return InstalledPipeline("documents", "fixed test results", sources, fixed_pipeline())


def ours(fhir: FhirClient, resource_type: str, subject: str) -> list[dict[str, Any]]:
    return [r for r in fhir.search(resource_type, {"subject": subject})
            if any(i.get("system") == SID_RESULT for i in r.get("identifier", []))]


def run_cli(settings: Settings, subject: str) -> Job:
    """What `chartlight analyze documents <patient>` does, with its client and job runner."""
    run = analyze_patient(service_fhir_client(settings), JobStore(settings.database_url),
                          documents_pipeline(), subject.removeprefix("Patient/"),
                          client_for=service_client_for(settings),
                          console=Console(file=io.StringIO()), timeout_s=300)
    [job] = run.jobs
    assert job.state is JobState.SUCCEEDED, job.error
    return job


def test_cli_jobs_follow_fhir_token_scopes(sandbox_url: str, fhir: FhirClient, run_id: str,
                                           tmp_path: Path) -> None:
    subject, _ = create_patient_with_document(fhir, run_id, "DegradeCli")
    limited = Settings(fhir_base_url=sandbox_url, database_url=f"sqlite:///{tmp_path}/a.db",
                       fhir_token_scopes=DOCUMENTS_ONLY)
    job = run_cli(limited, subject)
    assert (job.summary["path"], job.summary["reason"]) == ("document-only", SCOPE_REASON)
    assert ours(fhir, "Observation", subject) == [] and ours(fhir, "DiagnosticReport", subject) == []
    assert len(ours(fhir, "DocumentReference", subject)) == 2  # the narrative and the structured results

    # The same job with the setting unset (HAPI allows everything): Observations are written.
    other, _ = create_patient_with_document(fhir, run_id, "DegradeCliFull")
    full = run_cli(Settings(fhir_base_url=sandbox_url, database_url=f"sqlite:///{tmp_path}/b.db"), other)
    assert full.summary["path"] == "observations" and len(ours(fhir, "Observation", other)) == 3


def test_a_403_on_the_observation_write_of_a_service_job_degrades(sandbox_url: str, fhir: FhirClient,
                                                                   run_id: str, tmp_path: Path) -> None:
    """Scopes not configured: the server's refusal decides, and the job writes the document."""
    subject, _ = create_patient_with_document(fhir, run_id, "DegradeRefused")
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(sandbox_url))
    state = ServerState(upstream=origin, refuse_body_containing=b'"Observation"', fail_status=403)
    with loopback_server(state) as proxy:
        base = proxy + urlsplit(sandbox_url).path
        job = run_cli(Settings(fhir_base_url=base, database_url=f"sqlite:///{tmp_path}/c.db"), subject)
    assert job.summary["path"] == "document-only" and "HTTP 403" in job.summary["reason"]
    assert ours(fhir, "Observation", subject) == []
    assert len(ours(fhir, "DocumentReference", subject)) == 2


def _wait_for(job_id: int, store: JobStore, timeout_s: float = 120) -> Job:
    deadline = time.monotonic() + timeout_s
    while (job := store.get(job_id)).state not in (JobState.SUCCEEDED, JobState.FAILED):
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job.state.value}")
        time.sleep(0.2)
    return job


def test_app_jobs_follow_the_sessions_granted_scopes(sandbox_url: str, fhir: FhirClient, run_id: str,
                                                    tmp_path: Path) -> None:
    subject, doc = create_patient_with_document(fhir, run_id, "DegradeApp")
    scopes = (SMART_DEFAULT_SCOPES.replace("patient/Observation.crus", "patient/Observation.rs")
              .replace("patient/DiagnosticReport.crus", "patient/DiagnosticReport.rs"))
    with smart_stack(sandbox_url, tmp_path, scopes=scopes) as stack:
        stack.use_pipelines({"documents": documents_pipeline()})
        browser = stack.launched(subject.removeprefix("Patient/"))
        session = stack.session_of(browser)
        assert session is not None and "patient/Observation.rs" in session.scopes
        home = browser.get(f"{stack.app_base}/smart/app", timeout=60).text
        assert 'data-testid="document-only-notice"' in home and "as one document" in home
        started = browser.post(f"{stack.app_base}/smart/app/analyze",
                               json={"source": f"DocumentReference/{doc['id']}"},
                               headers={"X-CSRF-Token": session.csrf_token}, timeout=60).json()
        assert started["ok"] and started["written"] is True
        [queued] = job_store_of(stack.app).list(subject=subject)
        assert queued.session_id == session.id
        job = _wait_for(queued.id, job_store_of(stack.app))
    assert job.state is JobState.SUCCEEDED, job.error
    assert (job.summary["path"], job.summary["reason"]) == ("document-only", SCOPE_REASON)
    assert ours(fhir, "Observation", subject) == []
    assert len(ours(fhir, "DocumentReference", subject)) == 2
