"""Job throughput and CDS Hooks latency while a backlog drains, for three process layouts in
one run: (a) the earlier layout, a job runner inside each gunicorn web worker
(`plugin.wsgi:create_service()`); (b) the web tier (`chartlight serve`) plus one `chartlight
worker` process; (c) the web tier plus two. Every layout uses the same PostgreSQL job table
server, Redis broker (b, c) and HAPI FHIR sandbox, started here.

Per layout: new patients with text-layer lab reports, scanned lab reports (OCR) and dictations
(the tiny random-weight test MedASR: TEST OUTPUT), made by plugin.sandbox.synthetic; an idle
phase measures patient-view latency with no backlog; then one patient-view call per patient
queues every input through the web tier, and EHR clients keep calling patient-view until every
job has ended. Reported: documents/min (inputs per minute from the first submission to the last
job's end), p50/p99 job latency (queued to ended), CDS patient-view p50/p99 idle and while the
backlog drains, their ratio, failures and duplicate resources (must be 0).

Run: .venv/bin/python bench/throughput.py [--scale 1.0] [--clients 10] [--patients 10]
(--scale 1.0 is 300 text reports + 60 scans + 30 dictations per layout; --scale 0.05 a quick run.)
CHARTLIGHT_SANDBOX_PORT picks the sandbox (started, and stopped again, if none answers);
TEST_POSTGRES_PORT and TEST_REDIS_PORT the servers started here (default: free ports).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# Run as a script, this file's folder is first on sys.path and would hide the packages.
sys.path[0] = str(Path(__file__).resolve().parents[1])

from fhir_mappers.systems import SID_RESULT  # noqa: E402
from plugin.engines.test_models import ensure_test_models  # noqa: E402
from plugin.fhir import FhirClient  # noqa: E402
from plugin.jobs import Job, JobState, JobStore  # noqa: E402
from plugin.sandbox import synthetic  # noqa: E402
from plugin.sandbox.hapi import default_sandbox  # noqa: E402
from plugin.sandbox.places import default_cache_dir  # noqa: E402
from tests.support import postgres, redis_server  # noqa: E402
from tests.support.cds_ehr import PATIENT_VIEW, Ehr, ehr_with_jwks, rsa_key  # noqa: E402
from tests.support.fleet import Fleet, fleet_env, free_port, patient_view  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
FULL = {"text": 300, "scan": 60, "dictation": 30}
MEDIA_TYPES = "http://terminology.hl7.org/CodeSystem/media-type"
DRAIN_TIMEOUT_S = 4 * 3600.0


@dataclass(frozen=True)
class Layout:
    name: str
    app: str | None  # gunicorn's app (None: `chartlight serve`)
    workers: int  # `chartlight worker` processes
    broker: bool


LAYOUTS = (
    Layout("(a) runner in each web worker", "plugin.wsgi:create_service()", 0, False),
    Layout("(b) web tier + 1 worker", None, 1, True),
    Layout("(c) web tier + 2 workers", None, 2, True),
)


def seed(fhir: FhirClient, counts: dict[str, int], patients: int, tag: str) -> list[str]:
    """`patients` new patients sharing the inputs round-robin; their ids."""
    report = synthetic.DEMO_LAB_REPORT
    data = {"text": ("application/pdf", synthetic.text_pdf(report)),
            "scan": ("application/pdf", synthetic.scanned_pdf(report, seed=7)),
            "dictation": ("audio/wav", synthetic.espeak_wav(synthetic.DICTATION_TEXT))}
    ids = [fhir.create({"resourceType": "Patient", "name": [{"family": f"Bench-{tag}-{n}"}]})["id"]
           for n in range(patients)]
    n = 0
    for kind, count in counts.items():
        content_type, body = data[kind]
        for _ in range(count):
            attachment = {"contentType": content_type, "data": base64.b64encode(body).decode()}
            subject = {"reference": f"Patient/{ids[n % patients]}"}
            if kind == "dictation":
                fhir.create({"resourceType": "Media", "status": "completed", "subject": subject,
                             "type": {"coding": [{"system": MEDIA_TYPES, "code": "audio"}]},
                             "content": attachment})
            else:
                fhir.create({"resourceType": "DocumentReference", "status": "current", "subject": subject,
                             "description": f"{kind} lab report {n}",
                             "content": [{"attachment": attachment}]})
            n += 1
    return ids


class HookLoad:
    """EHR clients calling patient-view in a loop, each on its own keep-alive connection."""

    def __init__(self, url: str, ehr: Ehr, patients: list[str], fhir_base: str, clients: int) -> None:
        self.url, self.ehr, self.patients = url, ehr, patients
        self.fhir_base, self.clients = fhir_base, clients
        self.latencies: list[float] = []
        self.errors = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def _client(self) -> None:
        parts = urlsplit(self.url)
        connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
        while not self._stop.is_set():
            body = json.dumps(patient_view(random.choice(self.patients), self.fhir_base)).encode()
            token = self.ehr.token(self.url)
            started = time.perf_counter()
            try:
                connection.request("POST", parts.path, body=body, headers={
                    "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
            with self._lock:
                self.latencies.append((time.perf_counter() - started) * 1000)
                self.errors += not ok

    def run_for(self, seconds: float) -> None:
        self.start()
        time.sleep(seconds)
        self.stop()

    def start(self) -> None:
        self._pool = ThreadPoolExecutor(self.clients)
        for _ in range(self.clients):
            self._pool.submit(self._client)

    def stop(self) -> None:
        self._stop.set()
        self._pool.shutdown(wait=True)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def duplicates(fhir: FhirClient, patients: list[str]) -> int:
    seen: Counter[str] = Counter()
    for patient in patients:
        for resource_type in ("Observation", "DiagnosticReport", "DocumentReference"):
            for resource in fhir.search(resource_type, {"subject": f"Patient/{patient}", "_count": 500}):
                for identifier in resource.get("identifier", []):
                    if identifier.get("system") == SID_RESULT:
                        seen[f"{resource_type}|{identifier['value']}"] += 1
    return sum(n - 1 for n in seen.values() if n > 1)


def measure(layout: Layout, *, fhir: FhirClient, database: str, broker: str, ehr: Ehr,
            counts: dict[str, int], patients: int, clients: int, idle_s: float, logs: Path) -> dict[str, Any]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = fleet_env(fhir_base=fhir.base_url, database_url=database,
                    broker_url=broker if layout.broker else None, jwks_url=ehr.jwks_url, iss=ehr.iss,
                    public_base=base,
                    extra={"CHARTLIGHT_TEST_MODELS": "true", "CHARTLIGHT_LOG_LEVEL": "WARNING",
                           "CHARTLIGHT_WORKERS": "2", "CHARTLIGHT_JOB_LEASE_S": "60",
                           "CHARTLIGHT_CDS_SOURCE_CHECK_INTERVAL_S": "3600"})
    tag = uuid.uuid4().hex[:6]
    ids = seed(fhir, counts, patients, tag)
    total = sum(counts.values())
    fleet = Fleet(env, logs=logs)
    store = JobStore(database)
    url = f"{base}{PATIENT_VIEW}"
    try:
        fleet.web(port, app=layout.app)
        for n in range(layout.workers):
            fleet.worker("--concurrency", "1", name=f"worker{n}")
        idle = HookLoad(url, ehr, [f"idle-{tag}"], fhir.base_url, clients)  # a chart with nothing to queue
        idle.run_for(idle_s)
        submitted = time.time()
        for patient in ids:  # one call per patient: the hook's scan queues the patient's inputs
            status = http_call(url, ehr, patient, fhir.base_url)
            assert status == 200, f"patient-view answered {status}"
        draining = HookLoad(url, ehr, [f"idle-{tag}"], fhir.base_url, clients)
        draining.start()
        jobs: list[Job] = []
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while True:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{layout.name}: the backlog did not drain in {DRAIN_TIMEOUT_S:.0f} s")
            jobs = [j for p in ids for j in store.list(subject=f"Patient/{p}", limit=1000)]
            if len(jobs) == total and all(j.state in (JobState.SUCCEEDED, JobState.FAILED) for j in jobs):
                break
            time.sleep(1)
        draining.stop()
        ended = max(j.updated_at.timestamp() for j in jobs)
        latencies = [(j.updated_at - j.created_at).total_seconds() for j in jobs]
        return {
            "layout": layout.name, "inputs": total,
            "per_min": total / ((ended - submitted) / 60),
            "job_p50_s": statistics.median(latencies), "job_p99_s": percentile(latencies, 99),
            "idle_p50": percentile(idle.latencies, 50), "idle_p99": percentile(idle.latencies, 99),
            "drain_p50": percentile(draining.latencies, 50), "drain_p99": percentile(draining.latencies, 99),
            "cds_calls": len(draining.latencies), "cds_errors": idle.errors + draining.errors,
            "failed": sum(j.state is JobState.FAILED for j in jobs), "duplicates": duplicates(fhir, ids),
        }
    finally:
        fleet.stop_all()
        store.engine.dispose()


def http_call(url: str, ehr: Ehr, patient: str, fhir_base: str) -> int:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=120)
    connection.request("POST", parts.path, body=json.dumps(patient_view(patient, fhir_base)).encode(),
                       headers={"Authorization": f"Bearer {ehr.token(url)}",
                                "Content-Type": "application/json"})
    status = connection.getresponse().status
    connection.close()
    return status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0,
                        help="fraction of 300 text reports + 60 scans + 30 dictations")
    parser.add_argument("--clients", type=int, default=10, help="EHR clients calling patient-view")
    parser.add_argument("--patients", type=int, default=10)
    parser.add_argument("--idle-s", type=float, default=20.0, help="seconds of the idle CDS phase")
    args = parser.parse_args()
    counts = {kind: max(1, round(n * args.scale)) for kind, n in FULL.items()}
    ensure_test_models(default_cache_dir() / "test-models")  # built once here, not in a timed phase

    box = default_sandbox(REPO_ROOT / ".sandbox",
                          port=int(os.environ.get("CHARTLIGHT_SANDBOX_PORT", "8080")))
    started_sandbox = not box.is_running()
    box.start()
    pg = postgres.start_postgres(int(os.environ.get("TEST_POSTGRES_PORT", "0")) or free_port())
    redis = redis_server.start_redis(int(os.environ.get("TEST_REDIS_PORT", "0")) or free_port())
    rows = []
    try:
        fhir = FhirClient(box.base_url, timeout_s=120)
        with ehr_with_jwks([rsa_key("bench-throughput")]) as ehr, tempfile.TemporaryDirectory() as tmp:
            for layout in LAYOUTS:
                print(f"{layout.name}: {counts} ...", flush=True)
                rows.append(measure(layout, fhir=fhir, database=postgres.new_database(pg.admin_url),
                                    broker=redis.url, ehr=ehr, counts=counts, patients=args.patients,
                                    clients=args.clients, idle_s=args.idle_s, logs=Path(tmp)))
    finally:
        redis_server.stop(redis)
        postgres.stop(pg)
        if started_sandbox:
            box.stop()
    print(f"\n{counts['text']} text reports + {counts['scan']} scans + {counts['dictation']} dictations per "
          f"layout, {args.clients} CDS clients, {os.cpu_count()} cores")
    header = ("layout", "inputs/min", "job p50 s", "job p99 s", "CDS idle p50/p99 ms",
              "CDS draining p50/p99 ms", "p99 drain/idle", "CDS calls", "errors", "failed", "dups")
    print(" | ".join(header))
    for r in rows:
        print(" | ".join((r["layout"], f"{r['per_min']:.1f}", f"{r['job_p50_s']:.1f}",
                          f"{r['job_p99_s']:.1f}", f"{r['idle_p50']:.0f}/{r['idle_p99']:.0f}",
                          f"{r['drain_p50']:.0f}/{r['drain_p99']:.0f}",
                          f"{r['drain_p99'] / r['idle_p99']:.2f}x", str(r["cds_calls"]), str(r["cds_errors"]),
                          str(r["failed"]), str(r["duplicates"]))))
    one, two = rows[1]["per_min"], rows[2]["per_min"]
    print(f"throughput, 2 workers / 1 worker: {two / one:.2f}x; "
          f"(b) vs (a): {one / rows[0]['per_min']:.2f}x")


if __name__ == "__main__":
    main()
