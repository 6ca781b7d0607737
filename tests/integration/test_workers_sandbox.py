"""The scale-out layout against real servers: `chartlight serve` (the web tier) queues jobs that
a CDS hook finds, through Celery on a real Redis, into a PostgreSQL job table; separate
`chartlight worker` processes run them against the HAPI sandbox. A worker killed with SIGKILL
mid-job loses nothing (the job is taken back and finished) and duplicates nothing; the web
tier's processes hold no model and no torch. Redis and PostgreSQL outages mid-run lose and
duplicate nothing, and the CDS service keeps answering and says what is down."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from fhir_mappers.systems import SID_RESULT
from plugin.fhir import FhirClient
from plugin.jobs import Job, JobState, JobStore
from tests.support import postgres
from tests.support import redis_server as redis_support
from tests.support.cds_ehr import PATIENT_VIEW, Ehr, bearer, ehr_with_jwks, rsa_key
from tests.support.fleet import Fleet, fleet_env, free_port, lab_documents, patient_view
from tests.support.postgres import new_database, start_postgres
from tests.support.redis_server import RedisServer, start_redis

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


def all_ended(store: JobStore, patient_id: str, count: int, timeout_s: float) -> list[Job]:
    """The patient's `count` jobs, once every one has ended."""
    return wait_for(lambda: store.list(subject=f"Patient/{patient_id}"),
                    lambda jobs: len(jobs) == count and all(
                        j.state in (JobState.SUCCEEDED, JobState.FAILED) for j in jobs),
                    timeout_s, f"every job of Patient/{patient_id} ended")


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

        jobs = all_ended(store, patient_id, 6, 600)
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


def card_text(answer: requests.Response) -> str:
    assert answer.status_code == 200, answer.text
    return "\n".join(f"{c['summary']}\n{c.get('detail', '')}" for c in answer.json()["cards"])


def until_card_says(port: int, ehr: Ehr, body: dict[str, Any], words: str, timeout_s: float) -> str:
    """Call the hook until its card says `words` (the web tier learns of an outage within its
    broker ping interval); every call must be answered."""
    deadline = time.monotonic() + timeout_s
    while True:
        text = card_text(hook(port, ehr, {**body, "hookInstance": str(uuid.uuid4())}))
        if words in text or time.monotonic() > deadline:
            return text
        time.sleep(1)


OUTAGE_S = 30.0


def test_redis_and_postgresql_outages_lose_and_duplicate_nothing(
        sandbox_url: str, fhir: FhirClient, ehr: Ehr, tmp_path: Path) -> None:
    """Redis stopped for 30 s (it keeps nothing on disk: it comes back empty, its messages lost),
    then PostgreSQL stopped for 30 s, while workers run a backlog: the web tier answers every
    CDS call from the FHIR data and says on the card what is down; jobs queued during the Redis
    outage run once it is back; every job ends succeeded with one copy of each resource."""
    redis = start_redis(free_port())
    pg = start_postgres(free_port())
    port = free_port()
    database = new_database(pg.admin_url)
    fleet = Fleet(fleet_env(fhir_base=sandbox_url, database_url=database, broker_url=redis.url,
                            jwks_url=ehr.jwks_url, iss=ehr.iss, public_base=f"http://127.0.0.1:{port}"),
                  logs=tmp_path)
    first, first_documents = lab_documents(fhir, 6, scanned=3)
    second, second_documents = lab_documents(fhir, 3)
    store = JobStore(database)
    try:
        fleet.web(port)
        fleet.worker("--queues", "documents", "--concurrency", "1", name="a")
        fleet.worker("--queues", "documents", "--concurrency", "1", name="b")
        assert hook(port, ehr, patient_view(first, sandbox_url)).status_code == 200
        wait_for(lambda: store.list(subject=f"Patient/{first}"),
                 lambda jobs: any(j.state is JobState.SUCCEEDED for j in jobs), 300, "a first job done")

        redis_support.stop(redis)  # mid-run: messages waiting and held are lost with it
        down_at = time.monotonic()
        text = until_card_says(port, ehr, patient_view(second, sandbox_url),
                               "job queue is not reachable", 20)
        assert "job queue is not reachable" in text, text
        wait_for(lambda: store.list(subject=f"Patient/{second}"), lambda jobs: len(jobs) == 3, 20,
                 "the second patient's jobs recorded while the broker is down")
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
        redis = start_redis(redis.port)

        postgres.stop(pg, keep_folder=True)
        down_at = time.monotonic()
        text = until_card_says(port, ehr, patient_view(first, sandbox_url),
                               "could not read its analysis jobs", 20)
        assert "could not read its analysis jobs" in text, text
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
        pg = postgres.start_again(pg)

        for patient, documents in ((first, first_documents), (second, second_documents)):
            jobs = all_ended(store, patient, len(documents), 600)
            assert {j.source_id for j in jobs} == set(documents)
            assert all(j.state is JobState.SUCCEEDED for j in jobs), [(j.id, j.error) for j in jobs]
            copies = written(fhir, patient)
            assert copies and max(copies.values()) == 1, [k for k, n in copies.items() if n > 1]
        text = card_text(hook(port, ehr, patient_view(second, sandbox_url)))
        assert "not reachable" not in text and "could not read" not in text, text
    finally:
        fleet.stop_all()
        store.engine.dispose()
        redis_support.stop(redis)
        postgres.stop(pg)


def test_serve_without_a_broker_runs_jobs_in_one_local_worker_that_ends_with_it(
        sandbox_url: str, fhir: FhirClient, ehr: Ehr, tmp_path: Path) -> None:
    """The embedded default: no job_broker_url, a SQLite job table; `chartlight serve` starts one
    local worker process, which runs what the hook queued and ends when the web tier is killed."""
    port = free_port()
    database = f"sqlite:///{tmp_path}/jobs.db"
    fleet = Fleet(fleet_env(fhir_base=sandbox_url, database_url=database, broker_url=None,
                            jwks_url=ehr.jwks_url, iss=ehr.iss, public_base=f"http://127.0.0.1:{port}"),
                  logs=tmp_path)
    patient_id, documents = lab_documents(fhir, 2)
    store = JobStore(database)
    try:
        web = fleet.web(port)
        assert hook(port, ehr, patient_view(patient_id, sandbox_url)).status_code == 200
        jobs = all_ended(store, patient_id, 2, 300)
        assert all(j.state is JobState.SUCCEEDED for j in jobs), [(j.id, j.error) for j in jobs]
        local = [pid for pid in web_process_ids(web.pid)
                 if b"--parent-pid" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert len(local) == 1, "one local worker process"
        gunicorn_workers = [p for p in web_process_ids(web.pid)[1:] if p not in local]
        assert gunicorn_workers and not any(maps_torch(p) for p in gunicorn_workers)
        os.kill(web.pid, signal.SIGKILL)  # gunicorn's master alone, no hook runs: the worker
        web.wait(timeout=30)  # ends because its parent died
        deadline = time.monotonic() + 30
        while Path(f"/proc/{local[0]}").exists() and b"--parent-pid" in Path(
                f"/proc/{local[0]}/cmdline").read_bytes():
            assert time.monotonic() < deadline, "the local worker outlived the web tier"
            time.sleep(0.2)
    finally:
        fleet.stop_all()
        store.engine.dispose()
