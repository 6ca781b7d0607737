"""CDS Hooks `patient-view` latency under concurrent EHR clients, against the service as
deployed: the command `chartlight serve` runs (gunicorn, 2 worker processes x 4 threads,
`plugin.wsgi:create_web()` with the local job worker beside it, and the access log) with its
settings in the environment, the HAPI FHIR sandbox behind it holding AI results.

Every request carries a real RS384-signed JWT (a fresh jti each; the replay cache is the
default shared database table) and, in the measured variant, the prefetch an EHR sends. The
baseline in the same run sends no prefetch: the service must fetch the four searches from the
FHIR server itself with fhirAuthorization. Tokens and bodies are made before timing starts; the
load generator (threads on this machine) shares its two cores with the service and HAPI.

Run: .venv/bin/python bench/cds_hooks.py [--requests 2000] [--clients 50] [--patients 10]
(CHARTLIGHT_SANDBOX_PORT picks the sandbox; one is started, and stopped again, if none answers.)
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

# Run as a script, this file's folder is first on sys.path and its name would hide the cds_hooks
# package: the repository root (which also holds tests.support) takes its place.
sys.path[0] = str(Path(__file__).resolve().parents[1])

from cds_hooks.prefetch import render  # noqa: E402
from cds_hooks.services import SERVICES_BY_ID  # noqa: E402
from plugin.cli import gunicorn_command  # noqa: E402
from plugin.config import load_settings  # noqa: E402
from plugin.fhir import FhirClient  # noqa: E402
from plugin.results import SourceRef  # noqa: E402
from plugin.sandbox.hapi import default_sandbox  # noqa: E402
from plugin.writeback import write_result  # noqa: E402
from tests.support.cds_ehr import Ehr, ehr_with_jwks, rsa_key  # noqa: E402
from tests.support.pipelines import fixed_result  # noqa: E402
from tests.support.sources import create_patient_with_document  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVICE = "chartlight-patient-results"
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def seed_patients(fhir: FhirClient, count: int) -> list[str]:
    """Patients with AI results on the server (the fixed test pipeline's lab values)."""
    patients = []
    for i in range(count):
        subject, doc = create_patient_with_document(fhir, uuid.uuid4().hex, f"CdsBench{i}")
        write_result(
            fhir,
            fixed_result(SourceRef("DocumentReference", doc["id"], doc["meta"]["versionId"])),
            subject=subject,
            now=NOW,
        )
        patients.append(subject.removeprefix("Patient/"))
    return patients


def prefetch_for(sandbox_url: str, patient_id: str) -> dict[str, Any]:
    context = {"userId": "Practitioner/bench", "patientId": patient_id}
    sent = {}
    for key, template in SERVICES_BY_ID[SERVICE].prefetch.items():
        url = render(template, context)
        sent[key] = requests.get(
            f"{sandbox_url}/{url}", headers={"Accept": "application/fhir+json"}, timeout=60
        ).json()
    return sent


def start_service(port: int, ehr: Ehr, sandbox_url: str, db: Path, replay: str) -> subprocess.Popen[bytes]:
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "CHARTLIGHT_FHIR_BASE_URL": sandbox_url,
        "CHARTLIGHT_DATABASE_URL": f"sqlite:///{db}",
        "CHARTLIGHT_CDS_PUBLIC_BASE_URL": base,
        "CHARTLIGHT_LOG_LEVEL": "WARNING",
        "CHARTLIGHT_CDS_REPLAY_CACHE": replay,
        "CHARTLIGHT_CDS_TRUSTED_EHRS": json.dumps(
            [{"iss": ehr.iss, "jwks_url": ehr.jwks_url, "fhir_servers": [sandbox_url]}]
        ),
    }
    env.pop("CHARTLIGHT_SANDBOX_PORT", None)
    env.update({"CHARTLIGHT_HOST": "127.0.0.1", "CHARTLIGHT_PORT": str(port)})
    # Exactly what `chartlight serve` runs (settings' workers and threads: 2 x 4 by default).
    server = subprocess.Popen(gunicorn_command(load_settings(environ=env)), cwd=REPO_ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            requests.get(f"{base}/health", timeout=2)
            return server
        except requests.RequestException:
            if server.poll() is not None:
                raise RuntimeError(
                    (server.stderr.read() if server.stderr else b"").decode()[-2000:]
                ) from None
            time.sleep(0.3)
    server.terminate()
    raise RuntimeError("gunicorn did not answer in 60 s")


def bodies(patients: list[str], count: int, sandbox_url: str, *, with_prefetch: bool) -> list[bytes]:
    prefetched = {p: prefetch_for(sandbox_url, p) for p in patients} if with_prefetch else {}
    made = []
    for i in range(count):
        patient = patients[i % len(patients)]
        body: dict[str, Any] = {
            "hook": "patient-view",
            "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/bench", "patientId": patient},
        }
        if with_prefetch:
            body["prefetch"] = prefetched[patient]
        else:
            body["fhirServer"] = sandbox_url
            body["fhirAuthorization"] = {
                "access_token": "bench-token",
                "token_type": "Bearer",
                "expires_in": 300,
                "scope": "user/*.read",
                "subject": "chartlight",
            }
        made.append(json.dumps(body).encode())
    return made


def run(url: str, payloads: list[bytes], tokens: list[str], clients: int) -> tuple[list[float], int, float]:
    """Send every payload from `clients` threads, each on its own keep-alive connection
    (http.client: the lightest client, so the load generator takes little of the shared CPU)."""
    parts = urlsplit(url)
    local = threading.local()

    def one(i: int) -> tuple[float, bool]:
        connection = getattr(local, "connection", None)
        if connection is None:
            connection = local.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        started = time.perf_counter()
        connection.request(
            "POST",
            parts.path,
            body=payloads[i],
            headers={"Authorization": f"Bearer {tokens[i]}", "Content-Type": "application/json"},
        )
        response = connection.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - started
        return elapsed, response.status == 200 and b'"cards":[{' in body.replace(b" ", b"")

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        results = list(pool.map(one, range(len(payloads))))
    wall = time.perf_counter() - started
    return [r[0] * 1000 for r in results], sum(not r[1] for r in results), wall


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--patients", type=int, default=10)
    args = parser.parse_args()

    box = default_sandbox(REPO_ROOT / ".sandbox", port=int(os.environ.get("CHARTLIGHT_SANDBOX_PORT", "8080")))
    started_sandbox = not box.is_running()
    box.start()
    fhir = FhirClient(box.base_url, timeout_s=120)
    variants = (
        ("prefetch, replay cache in database", True, "database"),
        ("prefetch, replay cache in memory", True, "memory"),
        ("baseline: no prefetch, service fetches", False, "database"),
    )
    rows = []
    try:
        with ehr_with_jwks([rsa_key("bench-rs384", "RS384")]) as ehr, tempfile.TemporaryDirectory() as tmp:
            print(f"seeding {args.patients} patients with AI results on {box.base_url} ...")
            patients = seed_patients(fhir, args.patients)
            for name, with_prefetch, replay in variants:
                port = free_port()
                server = start_service(port, ehr, box.base_url, Path(tmp) / f"{replay}.db", replay)
                url = f"http://127.0.0.1:{port}/cds-services/{SERVICE}"
                try:
                    payloads = bodies(patients, args.requests, box.base_url, with_prefetch=with_prefetch)
                    tokens = [ehr.token(url, exp_in=600) for _ in payloads]
                    warm = min(100, len(payloads))
                    run(url, payloads[:warm], tokens[:warm], args.clients)  # connections, caches, JWK Set
                    cpu = time.process_time()
                    latencies, errors, wall = run(url, payloads[warm:], tokens[warm:], args.clients)
                    client_cores = (time.process_time() - cpu) / wall
                finally:
                    server.terminate()
                    server.wait(timeout=30)
                rows.append(
                    (
                        name,
                        len(latencies),
                        errors,
                        statistics.median(latencies),
                        percentile(latencies, 95),
                        percentile(latencies, 99),
                        len(latencies) / wall,
                        client_cores,
                    )
                )
    finally:
        if started_sandbox:
            box.stop()

    print(
        f"\npatient-view, {args.clients} concurrent clients, gunicorn 2 workers x 4 threads (gthread), "
        f"{os.cpu_count()} CPU(s) shared by service, HAPI and load generator"
    )
    header = (
        f"{'variant':40} {'requests':>8} {'errors':>6} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} "
        f"{'req/s':>7} {'client CPU':>10}"
    )
    print(header)
    print("-" * len(header))
    for name, count, errors, p50, p95, p99, rate, client in rows:
        print(f"{name:40} {count:8d} {errors:6d} {p50:7.1f} {p95:7.1f} {p99:7.1f} {rate:7.1f} {client:9.2f}c")
    ours, _, base = rows
    print(
        f"\nbaseline / prefetch (database replay cache): p50 x{base[3] / ours[3]:.1f}, "
        f"p99 x{base[5] / ours[5]:.1f}; throughput x{ours[6] / base[6]:.1f} with prefetch"
    )


if __name__ == "__main__":
    main()
