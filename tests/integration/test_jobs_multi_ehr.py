"""Two real HAPI servers (two EHRs) whose resource ids collide: every job belongs to its own
server, and every result lands on the right server under the right patient, whether the jobs
are submitted directly or queued by each EHR's CDS hooks."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from cds_hooks.blueprint import PIPELINES_EXTENSION
from fhir_mappers.systems import SID_RESULT
from plugin.app import create_app, job_store_of
from plugin.config import TrustedEhr
from plugin.fhir import FhirClient
from plugin.jobs import Job, JobRunner, JobScope, JobState, JobStore
from plugin.pipelines.registry import InstalledPipeline
from tests.support.cds_ehr import (
    PATIENT_VIEW,
    PUBLIC_BASE,
    Ehr,
    bearer,
    cds_settings,
    ehr_with_jwks,
    patient_view_body,
    rsa_key,
)
from tests.support.pipelines import fixed_pipeline

pytestmark = pytest.mark.sandbox
EXPECTED = {"Observation": 3, "DiagnosticReport": 1, "DocumentReference": 1}
NOTHING = {k: 0 for k in EXPECTED}


def put_patient_and_document(client: FhirClient, patients: tuple[str, str], doc_id: str, owner: str) -> None:
    """The same ids on each server; on each, the document belongs to a different patient."""
    for patient_id in patients:
        client.update({"resourceType": "Patient", "id": patient_id, "name": [{"family": patient_id}]})
    client.update({"resourceType": "DocumentReference", "id": doc_id, "status": "current",
                 "subject": {"reference": f"Patient/{owner}"},
                 "content": [{"attachment": {"contentType": "application/pdf",
                                             "data": base64.b64encode(b"%PDF lab").decode()}}]})


def results(client: FhirClient, subject: str) -> dict[str, int]:
    return {t: sum(1 for r in client.search(t, {"subject": subject})
                   if any(i.get("system") == SID_RESULT for i in r.get("identifier", [])))
            for t in EXPECTED}


def test_colliding_ids_on_two_ehrs_each_result_lands_on_its_server_and_patient(
        sandbox_url: str, sandbox2_url: str, run_id: str, tmp_path: Path) -> None:
    ehr_a, ehr_b = FhirClient(sandbox_url, timeout_s=120), FhirClient(sandbox2_url, timeout_s=120)
    first, second, doc = f"mx{run_id[:10]}-1", f"mx{run_id[:10]}-2", f"mx{run_id[:10]}-3"
    put_patient_and_document(ehr_a, (first, second), doc, owner=first)
    put_patient_and_document(ehr_b, (first, second), doc, owner=second)
    store = JobStore(f"sqlite:///{tmp_path}/jobs.db")
    runner = JobRunner(store, {"test-fixed": fixed_pipeline(), "test-fixed-2": fixed_pipeline()},
                       lambda job: FhirClient(job.fhir_base_url, timeout_s=120))
    source = {"source_type": "DocumentReference", "source_id": doc, "source_version": "1"}

    on_a = store.submit(pipeline="test-fixed", subject=f"Patient/{first}", fhir_base_url=sandbox_url,
                        **source)
    runner.run_until_idle()
    assert store.get(on_a.id).state is JobState.SUCCEEDED
    # EHR B's document of the same id and version is a job of its own, not A's finished one.
    on_b = store.submit(pipeline="test-fixed", subject=f"Patient/{second}", fhir_base_url=sandbox2_url,
                        **source)
    assert on_b.id != on_a.id and on_b.state is JobState.QUEUED
    # A job that names the wrong patient for B's document (as a job taken over across servers
    # did) fails before writing.
    wrong = store.submit(pipeline="test-fixed-2", subject=f"Patient/{first}", fhir_base_url=sandbox2_url,
                         **source)
    runner.run_until_idle()

    assert store.get(on_b.id).state is JobState.SUCCEEDED, store.get(on_b.id).error
    failed = store.get(wrong.id)
    assert failed.state is JobState.FAILED
    assert failed.error == (f"DocumentReference/{doc} names Patient/{second} as its subject, not "
                            f"Patient/{first}: nothing was written for it")
    assert results(ehr_a, f"Patient/{first}") == EXPECTED
    assert results(ehr_a, f"Patient/{second}") == NOTHING
    assert results(ehr_b, f"Patient/{second}") == EXPECTED
    assert results(ehr_b, f"Patient/{first}") == NOTHING
    for job, client, patient in ((on_a, ehr_a, first), (on_b, ehr_b, second)):
        done = store.get(job.id)
        provenance = client.read("Provenance", done.summary["provenance"].split("/")[1])
        targets = [t["reference"] for t in provenance["target"]]
        assert len(targets) == 5 and {client.read(*t.split("/")[:2])["subject"]["reference"]
                                      for t in targets} == {f"Patient/{patient}"}
    assert [j.fhir_base_url for j in store.list(fhir_base_url=sandbox2_url)] == [sandbox2_url] * 2
    # The second server keeps its state (pid file, log, database) under .sandbox/ like the first,
    # never in the checkout (it left an untracked hapi/ folder there).
    assert not (Path(__file__).resolve().parents[2] / "hapi").exists()


def test_hooks_from_two_ehrs_with_colliding_ids_each_analyse_their_own_server(
        sandbox_url: str, sandbox2_url: str, run_id: str, tmp_path: Path) -> None:
    """Two EHRs (two issuers, each allow-listed for its own HAPI server) call patient-view for the
    same patient id, whose document has the same id and version on both servers: each hook queues
    a job of its own server, each result lands there, and each status card counts only its own."""
    ehr_a, ehr_b = FhirClient(sandbox_url, timeout_s=120), FhirClient(sandbox2_url, timeout_s=120)
    patient, other, doc = f"mh{run_id[:10]}-1", f"mh{run_id[:10]}-2", f"mh{run_id[:10]}-3"
    put_patient_and_document(ehr_a, (patient, other), doc, owner=patient)
    put_patient_and_document(ehr_b, (patient, other), doc, owner=patient)

    def documents_of(client: FhirClient, patient_id: str) -> list[dict[str, Any]]:
        return list(client.search("DocumentReference", {"subject": f"Patient/{patient_id}", "_id": doc}))

    with ehr_with_jwks([rsa_key("a", "RS384")], iss="https://ehr-a.example.org") as issuer_a, \
            ehr_with_jwks([rsa_key("b", "RS384")], iss="https://ehr-b.example.org") as issuer_b:
        trusted = (TrustedEhr(iss=issuer_a.iss, jwks_url=issuer_a.jwks_url, fhir_servers=(sandbox_url,)),
                   TrustedEhr(iss=issuer_b.iss, jwks_url=issuer_b.jwks_url, fhir_servers=(sandbox2_url,)))
        app = create_app(cds_settings(issuer_a, tmp_path, cds_trusted_ehrs=trusted,
                                      cds_source_check_wait_s=60.0))
        app.extensions[PIPELINES_EXTENSION] = {"test-fixed": InstalledPipeline(
            "test-fixed", "fixed test results", documents_of, fixed_pipeline())}
        hooks = app.test_client()

        def status_of(issuer: Ehr, server: str) -> str:
            response = hooks.post(PATIENT_VIEW, json=patient_view_body(patient, fhirServer=server),
                                  headers=bearer(issuer.token(PUBLIC_BASE + PATIENT_VIEW)))
            assert response.status_code == 200, response.get_data(as_text=True)
            return " ".join(f"{c['summary']} {c.get('detail', '')}" for c in response.get_json()["cards"])

        assert "1 input(s) not analysed yet" in status_of(issuer_a, sandbox_url)
        assert "1 input(s) not analysed yet" in status_of(issuer_b, sandbox2_url)  # not A's job
        store = job_store_of(app)
        jobs = store.list(limit=10)
        assert sorted((j.fhir_base_url, j.subject) for j in jobs) == sorted(
            [(sandbox_url, f"Patient/{patient}"), (sandbox2_url, f"Patient/{patient}")])
        store.fail(_claim_on(store, sandbox2_url), "B-ONLY ERROR")  # B's job fails once ...
        assert "B-ONLY ERROR" not in status_of(issuer_a, sandbox_url)  # ... and A's card never says so
        assert "B-ONLY ERROR" in status_of(issuer_b, sandbox2_url)
        store.retry(next(j.id for j in jobs if j.fhir_base_url == sandbox2_url))
        JobRunner(store, {"test-fixed": fixed_pipeline()},
                  lambda job: FhirClient(job.fhir_base_url, timeout_s=120)).run_until_idle()

    assert [store.get(j.id).state for j in jobs] == [JobState.SUCCEEDED] * 2
    for client in (ehr_a, ehr_b):
        assert results(client, f"Patient/{patient}") == EXPECTED
        assert results(client, f"Patient/{other}") == NOTHING


def _claim_on(store: JobStore, server: str) -> Job:
    claimed = store.claim_next(JobScope(fhir_base_url=server))
    assert claimed is not None
    return claimed
