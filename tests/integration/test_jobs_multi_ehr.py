"""Two real HAPI servers (two EHRs) whose resource ids collide: every job belongs to its own
server, and every result lands on the right server under the right patient."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from fhir_mappers.systems import SID_RESULT
from plugin.fhir import FhirClient
from plugin.jobs import JobRunner, JobState, JobStore
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
