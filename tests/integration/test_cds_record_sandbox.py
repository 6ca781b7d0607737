"""The CDS source scan against the real HAPI sandbox: what one job store's run wrote for an input is
read back from the record by a fresh job store (a new SQLite file) scanning the same patient, which
queues nothing for it, while a new version of the input and an input never analysed are queued.
Results on one EHR's server never stop an analysis on another's (a second HAPI, same ids)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cds_hooks.analysis_status import SourceScanner
from cds_hooks.cards import AnalysisStatus
from plugin.fhir import FhirClient
from plugin.jobs import JobRunner, JobState, JobStore
from plugin.pipelines.documents.inputs import find_sources
from tests.support.pipelines import fixed_pipeline

pytestmark = pytest.mark.sandbox


@dataclass(frozen=True)
class PatientDocuments:
    """A pipeline's inputs as the documents pipeline finds them (chartlight's own writes left out)."""

    unavailable_reason: str = ""

    def find_sources(self, client: FhirClient, patient_id: str) -> list[dict[str, Any]]:
        return find_sources(client, patient_id)


def _put_patient_with_documents(client: FhirClient, patient_id: str, *doc_ids: str,
                                title: str = "Lab") -> None:
    client.update({"resourceType": "Patient", "id": patient_id, "name": [{"family": patient_id}]})
    for doc_id in doc_ids:
        pdf = base64.b64encode(f"%PDF {doc_id}".encode()).decode()
        client.update({"resourceType": "DocumentReference", "id": doc_id, "status": "current",
                       "description": title,
                       "subject": {"reference": f"Patient/{patient_id}"},
                       "content": [{"attachment": {"contentType": "application/pdf", "data": pdf}}]})


def _scan(store: JobStore, client: FhirClient, patient_id: str) -> AnalysisStatus:
    return SourceScanner(wait_s=300).status(store=store, pipelines={"test-fixed": PatientDocuments()},
                                            fhir_base=client.base_url, client=client, patient_id=patient_id)


def _jobs(store: JobStore, client: FhirClient, patient_id: str) -> list[str]:
    jobs = store.list(subject=f"Patient/{patient_id}", fhir_base_url=client.base_url)
    return sorted(j.source for j in jobs)


def test_a_fresh_job_store_leaves_analyses_on_the_record_alone(
        sandbox_url: str, sandbox2_url: str, run_id: str, tmp_path: Path) -> None:
    ehr_a, ehr_b = FhirClient(sandbox_url, timeout_s=120), FhirClient(sandbox2_url, timeout_s=120)
    patient, first, later = f"cr{run_id[:10]}-p", f"cr{run_id[:10]}-1", f"cr{run_id[:10]}-2"
    _put_patient_with_documents(ehr_a, patient, first)
    _put_patient_with_documents(ehr_b, patient, first)  # EHR B: the same ids, another person

    # One chartlight instance scans EHR A and runs what it queued: results and Provenance on A.
    old_store = JobStore(f"sqlite:///{tmp_path}/old-jobs.db")
    assert _scan(old_store, ehr_a, patient).newly_queued == 1
    JobRunner(old_store, {"test-fixed": fixed_pipeline()},
              lambda job: FhirClient(job.fhir_base_url, timeout_s=120)).run_until_idle()
    assert [j.state for j in old_store.list(fhir_base_url=sandbox_url)] == [JobState.SUCCEEDED]

    # A fresh job store (a new database, another instance) scanning the same patient on A.
    fresh = JobStore(f"sqlite:///{tmp_path}/fresh-jobs.db")
    status = _scan(fresh, ehr_a, patient)
    assert _jobs(fresh, ehr_a, patient) == []
    assert (status.newly_queued, status.on_record, status.queued) == (0, 1, 0)

    # A new version of that input, and an input never analysed, are queued.
    _put_patient_with_documents(ehr_a, patient, first, later, title="Lab, corrected")
    status = _scan(fresh, ehr_a, patient)
    assert _jobs(fresh, ehr_a, patient) == [f"DocumentReference/{first}/_history/2",
                                            f"DocumentReference/{later}/_history/1"]
    assert (status.newly_queued, status.on_record) == (2, 0)

    # EHR B's document of the same id and version has no results on B: A's say nothing about it.
    status = _scan(fresh, ehr_b, patient)
    assert _jobs(fresh, ehr_b, patient) == [f"DocumentReference/{first}/_history/1"]
    assert (status.newly_queued, status.on_record) == (1, 0)
