"""Several worker processes and a storm of reruns on one patient, against the real HAPI sandbox:
afterwards one copy of every result, one Provenance per write, and no job failed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fhir_mappers.systems import SID_RESULT
from plugin.fhir import FhirClient
from plugin.jobs import JobBusy, JobRunner, JobState, JobStore
from tests.support.pipelines import fixed_pipeline
from tests.support.sources import create_patient_with_document

pytestmark = pytest.mark.sandbox
REPO_ROOT = Path(__file__).resolve().parents[2]
PER_SOURCE = {"Observation": 3, "DiagnosticReport": 1, "DocumentReference": 1}


def test_worker_processes_and_a_rerun_storm_leave_one_copy_and_one_provenance_per_write(
        fhir: FhirClient, run_id: str, tmp_path: Path) -> None:
    subject, first = create_patient_with_document(fhir, run_id, "Storm")
    copy = {k: v for k, v in first.items() if k not in ("id", "meta")}
    docs = [first, *(fhir.create(copy) for _ in range(2))]
    db = f"sqlite:///{tmp_path}/jobs.db"
    store = JobStore(db)

    def submit_all() -> list:
        return [store.submit(pipeline="test-fixed", source_type="DocumentReference", source_id=d["id"],
                             source_version=d["meta"]["versionId"], subject=subject,
                             fhir_base_url=fhir.base_url) for d in docs]

    jobs = submit_all()
    command = [sys.executable, "-m", "tests.support.job_worker", db, fhir.base_url, "storm"]
    workers = [subprocess.Popen(command, cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
               for _ in range(4)]
    refused = reruns = 0
    try:
        storm_ends = time.monotonic() + 8
        while time.monotonic() < storm_ends:  # hooks, app visits and operators asking again
            submit_all()
            for job in jobs:
                try:
                    store.retry(job.id)
                    reruns += 1
                except JobBusy:
                    refused += 1
            time.sleep(0.1)
        for worker in workers:
            assert worker.wait(timeout=120) == 0
    finally:
        for worker in workers:
            worker.kill()
    JobRunner(store, {"test-fixed": fixed_pipeline()}, lambda j: FhirClient(j.fhir_base_url)).run_until_idle()

    done = [store.get(j.id) for j in jobs]
    assert [(j.state, j.error) for j in done] == [(JobState.SUCCEEDED, "")] * 3
    assert reruns > 3 and refused > 0  # the storm did rerun finished jobs and met running ones
    written = [r for t in PER_SOURCE for r in fhir.search(t, {"subject": subject})
               if any(i.get("system") == SID_RESULT for i in r.get("identifier", []))]
    counts = {t: sum(r["resourceType"] == t for r in written) for t in PER_SOURCE}
    assert counts == {t: n * 3 for t, n in PER_SOURCE.items()}
    keys = [(i["system"], i["value"]) for r in written for i in r["identifier"]
            if i.get("system") == SID_RESULT]
    assert len(keys) == len(set(keys))  # one copy of every result
    refs = ",".join(f"{r['resourceType']}/{r['id']}" for r in written)
    provenances = list(fhir.search("Provenance", {"target": refs, "_count": 100}))
    assert len(provenances) == 3  # one per source's first write; reruns wrote nothing
    targeted = sorted(t["reference"].split("/_history")[0] for p in provenances for t in p["target"])
    assert targeted == sorted(refs.split(","))  # each result named by exactly one Provenance
