"""The scale-out layout against real servers: `chartlight serve` (the web tier) queues jobs that
a CDS hook finds, through Celery on a real Redis, into a PostgreSQL job table; separate
`chartlight worker` processes run them against the HAPI sandbox. A worker killed with SIGKILL
mid-job loses nothing (the job is taken back and finished) and duplicates nothing; the web
tier's processes hold no model and no torch."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from fhir_mappers.systems import SID_RESULT
from plugin.fhir import FhirClient
from plugin.jobs import Job, JobState, JobStore
from tests.support.cds_ehr import PATIENT_VIEW, Ehr, bearer, ehr_with_jwks, rsa_key
from tests.support.fleet import Fleet, fleet_env, free_port, lab_documents, patient_view
from tests.support.postgres import new_database
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.sandbox
RESOURCE_TYPES = ("Observation", "DiagnosticReport", "DocumentReference")


@pytest.fixture
def ehr() -> Iterator[Ehr]:
    with ehr_with_jwks([rsa_key("fleet-1")]) as ehr:
        yield ehr


def hook(port: int, ehr: Ehr, body: dict[str, Any]) -> requests.Response:
    url = f"http://127.0.0.1:{port}{PATIENT_VIEW}"
    return requests.post(url, json=body, headers=bearer(ehr.token(url)), timeout=30)


def wait_for(jobs_of: Any, done: Any, timeout_s: float, what: str) -> list[Job]:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            jobs = jobs_of()
        except Exception:  # the job table may be down on purpose
            jobs = None
        if jobs is not None and done(jobs):
            return list(jobs)
        assert time.monotonic() < deadline, f"{what} within {timeout_s:.0f} s: {jobs}"
        time.sleep(0.5)


def written(fhir: FhirClient, patient_id: str) -> Counter[str]:
    """How many resources carry each of our result identifiers, for the patient."""
    seen: Counter[str] = Counter()
    for resource_type in RESOURCE_TYPES:
        for resource in fhir.search(resource_type, {"subject": f"Patient/{patient_id}", "_count": 200}):
            for identifier in resource.get("identifier", []):
                if identifier.get("system") == SID_RESULT:
                    seen[f"{resource_type}|{identifier['value']}"] += 1
    return seen


def web_process_ids(web_pid: int) -> list[int]:
    """gunicorn's master and its worker processes (children)."""
    children = Path(f"/proc/{web_pid}/task/{web_pid}/children").read_text().split()
    return [web_pid, *map(int, children)]


def maps_torch(pid: int) -> bool:
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_web_tier_queues_workers_run_and_a_killed_worker_loses_nothing(
        sandbox_url: str, fhir: FhirClient, postgres_url: str, redis_server: RedisServer, ehr: Ehr,
        tmp_path: Path) -> None:
    port = free_port()
    database = new_database(postgres_url)
    fleet = Fleet(fleet_env(fhir_base=sandbox_url, database_url=database, broker_url=redis_server.url,
                            jwks_url=ehr.jwks_url, iss=ehr.iss, public_base=f"http://127.0.0.1:{port}"),
                  logs=tmp_path)
    patient_id, documents = lab_documents(fhir, 6, scanned=6)
    store = JobStore(database)
    try:
        web = fleet.web(port)
        first = fleet.worker("--queues", "documents", "--concurrency", "1", name="first")
        answer = hook(port, ehr, patient_view(patient_id, sandbox_url))
        assert answer.status_code == 200, answer.text

        # The first worker takes a job: kill it (master and pool child) in the middle.
        running = wait_for(lambda: store.list(subject=f"Patient/{patient_id}"),
                           lambda jobs: any(j.state is JobState.RUNNING for j in jobs), 240,
                           "a job running on the first worker")
        killed = next(j for j in running if j.state is JobState.RUNNING)
        fleet.kill9(first)
        assert store.get(killed.id).state is JobState.RUNNING  # it died holding it
        fleet.worker("--queues", "documents", "--concurrency", "2", name="second")

        jobs = wait_for(lambda: store.list(subject=f"Patient/{patient_id}"),
                        lambda jobs: len(jobs) == 6 and all(j.state in (JobState.SUCCEEDED, JobState.FAILED)
                                                            for j in jobs), 600, "every job ended")
        assert {j.source_id for j in jobs} == set(documents)
        assert all(j.state is JobState.SUCCEEDED for j in jobs), [(j.id, j.error) for j in jobs]
        assert store.get(killed.id).attempts >= 2  # taken back after the kill, run again
        copies = written(fhir, patient_id)
        assert copies and max(copies.values()) == 1, [k for k, n in copies.items() if n > 1]

        # The web tier ran no job: no process of it has torch mapped, and each stays small.
        for pid in web_process_ids(web.pid):
            assert not maps_torch(pid), f"web process {pid} loaded torch"
            assert rss_mb(pid) < 300, f"web process {pid}: {rss_mb(pid):.0f} MB resident"
    finally:
        fleet.stop_all()
        store.engine.dispose()
