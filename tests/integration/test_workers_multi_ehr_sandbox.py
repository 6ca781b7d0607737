"""Mixed multi-EHR load on the scale-out layout: two real HAPI servers holding the same resource
ids, each behind its own sandbox EHR (Authlib token endpoint + FHIR proxy) with its own
backend-services client and key (made by openssl). Both EHRs open the same-id patient in turn,
calling the `chartlight serve` web tier's patient-view hook with their own signed JWTs and
read-only tokens; the hooks queue every lab report through Celery on a real Redis into a
PostgreSQL job table, and two `chartlight worker` processes run them. Every job succeeds, every
result lands once, on its own EHR's server under that server's patient, with that EHR's values;
each EHR's FHIR server only ever saw tokens that EHR issued; no process log holds a token."""

from __future__ import annotations

import base64
import dataclasses
import json
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from fhir_mappers.systems import SID_RESULT
from plugin.fhir import FhirClient
from plugin.jobs import Job, JobState, JobStore
from plugin.sandbox import synthetic
from plugin.sandbox.ehr_server.cds import CDS_CLIENT_ID
from tests.integration.test_backend_services_sandbox import SCOPES
from tests.support.backend_ehr import BackendEhr, backend_ehr, openssl_key
from tests.support.fleet import Fleet, fleet_env, free_port
from tests.support.postgres import new_database
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.sandbox
DOCUMENTS = 5  # per EHR
RESOURCE_TYPES = ("Observation", "DiagnosticReport", "DocumentReference")
# The glucose each report prints: one value per (EHR, document), none printed anywhere else in
# the report, so a result on the wrong server or under the wrong document shows by its value.
GLUCOSE = {"a": [str(161 + n) for n in range(DOCUMENTS)], "b": [str(171 + n) for n in range(DOCUMENTS)]}


def lab_report(glucose: str, accession: str) -> bytes:
    """The demo lab report (plugin.sandbox.synthetic, not the code under test) with its glucose
    changed, as a text-layer PDF."""
    report = synthetic.DEMO_LAB_REPORT
    lines = tuple(dataclasses.replace(line, value=glucose) if line.name == "Glucose" else line
                  for line in report.lines)
    return synthetic.text_pdf(dataclasses.replace(report, lines=lines, accession=accession))


def put_chart(hapi: FhirClient, which: str, patient: str, documents: list[str]) -> None:
    """The same ids on both servers; names, accessions and glucose values differ per EHR."""
    hapi.update({"resourceType": "Patient", "id": patient, "name": [{"family": f"Multi-{which.upper()}"}]})
    for n, doc in enumerate(documents):
        pdf = lab_report(GLUCOSE[which][n], f"NRL-{which.upper()}-{n}")
        hapi.update({"resourceType": "DocumentReference", "id": doc, "status": "current",
                     "subject": {"reference": f"Patient/{patient}"},
                     "description": f"lab report {which}{n}",
                     "content": [{"attachment": {"contentType": "application/pdf",
                                                 "data": base64.b64encode(pdf).decode()}}]})


def results(hapi: FhirClient, patient: str) -> list[dict[str, Any]]:
    """Our results (SID_RESULT identifier) about the patient on one server."""
    return [r for t in RESOURCE_TYPES
            for r in hapi.search(t, {"subject": f"Patient/{patient}", "_count": 500})
            if any(i.get("system") == SID_RESULT for i in r.get("identifier", []))]


def copies(found: list[dict[str, Any]]) -> Counter[str]:
    return Counter(f"{r['resourceType']}|{i['value']}" for r in found for i in r.get("identifier", [])
                   if i.get("system") == SID_RESULT)


def glucose_by_document(found: list[dict[str, Any]]) -> dict[str, set[str]]:
    """The glucose-range values (160-180 mg/dL) of the Observations, by the document they came from."""
    values: dict[str, set[str]] = {}
    for r in found:
        quantity = r.get("valueQuantity") or {}
        if r["resourceType"] != "Observation" or quantity.get("unit") != "mg/dL":
            continue
        if not 160 <= float(quantity.get("value", 0)) < 180:
            continue
        for source in r.get("derivedFrom", []):
            values.setdefault(source["reference"], set()).add(f"{quantity['value']:g}")
    return values


def issued(ehr: BackendEhr) -> dict[str, str]:
    """Every access token the EHR issued, and the client it went to."""
    with ehr.sandbox.state.lock:
        return {t.access_token: t.client_id for t in ehr.sandbox.state.tokens.values()}


@pytest.fixture
def two_ehrs(sandbox_url: str, sandbox2_url: str,
             tmp_path: Path) -> Iterator[tuple[BackendEhr, BackendEhr, int]]:
    """The EHRs, each calling the hooks of the web tier that will listen on the port given."""
    port = free_port()
    web_base = f"http://127.0.0.1:{port}"
    keys = (openssl_key(tmp_path / "ehr-a.pem", "RSA"), openssl_key(tmp_path / "ehr-b.pem", "EC"))
    with ExitStack() as stack:
        a = stack.enter_context(backend_ehr(sandbox_url, "chartlight-a", keys[0], set(SCOPES.split()),
                                            cds_base=web_base))
        b = stack.enter_context(backend_ehr(sandbox2_url, "chartlight-b", keys[1], set(SCOPES.split()),
                                            cds_base=web_base))
        yield a, b, port


def log_text(process: subprocess.Popen[bytes]) -> str:
    """All the process has logged so far (Fleet.log_of keeps only the end)."""
    return Path(process.log_path).read_text(errors="replace")  # type: ignore[attr-defined]


def wait_logged(process: subprocess.Popen[bytes], words: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while words not in log_text(process):
        assert process.poll() is None and time.monotonic() < deadline, \
            f"{words!r} not logged within {timeout_s:.0f} s: {log_text(process)[-2000:]}"
        time.sleep(0.3)


def wait_ended(store: JobStore, patient: str, count: int, timeout_s: float) -> list[Job]:
    """The jobs about the patient (on either server), once at least `count` have all ended."""
    deadline = time.monotonic() + timeout_s
    while True:
        jobs = store.list(subject=f"Patient/{patient}", limit=100)
        if len(jobs) >= count and all(j.state in (JobState.SUCCEEDED, JobState.FAILED) for j in jobs):
            return jobs
        assert time.monotonic() < deadline, f"all {count} jobs ended within {timeout_s:.0f} s: {jobs}"
        time.sleep(0.5)


def test_two_ehrs_with_colliding_ids_and_their_own_credentials_share_the_workers(
        sandbox_url: str, sandbox2_url: str, postgres_url: str, redis_server: RedisServer,
        two_ehrs: tuple[BackendEhr, BackendEhr, int], run_id: str, tmp_path: Path) -> None:
    ehr_a, ehr_b, port = two_ehrs
    hapi = {"a": FhirClient(sandbox_url, timeout_s=120), "b": FhirClient(sandbox2_url, timeout_s=120)}
    ehrs = {"a": ehr_a, "b": ehr_b}
    patient = f"me{run_id[:10]}"
    documents = [f"me{run_id[:10]}-d{n}" for n in range(DOCUMENTS)]
    for which in ("a", "b"):
        put_chart(hapi[which], which, patient, documents)

    trusted = [{"iss": e.base, "jwks_url": f"{e.base}/ehr/cds-jwks.json", "fhir_servers": [e.fhir_base],
                "name": f"ehr-{w}"} for w, e in ehrs.items()]
    services = [{"fhir_server": e.fhir_base, "client_id": e.client_id, "scopes": SCOPES, "name": f"ehr-{w}",
                 "private_key_path": str(tmp_path / f"ehr-{w}.pem")} for w, e in ehrs.items()]
    database = new_database(postgres_url)
    logs = tmp_path / "logs"
    logs.mkdir()
    fleet = Fleet(fleet_env(fhir_base=ehr_a.fhir_base, database_url=database, broker_url=redis_server.url,
                            jwks_url=trusted[0]["jwks_url"], iss=ehr_a.base,
                            public_base=f"http://127.0.0.1:{port}",
                            extra={"CHARTLIGHT_CDS_TRUSTED_EHRS": json.dumps(trusted),
                                   "CHARTLIGHT_BACKEND_SERVICES": json.dumps(services)}),
                  logs=logs)
    store = JobStore(database)
    try:
        fleet.web(port)
        workers = [fleet.worker("--queues", "documents", "--concurrency", "1", name=name)
                   for name in ("w1", "w2")]
        for worker in workers:  # both consuming before the load arrives, so that both share it
            wait_logged(worker, " ready.", 180)
        # Both EHRs open the same-id patient twice, all four hook calls at once.
        def open_chart(which: str) -> None:
            cds = ehrs[which].sandbox.cds
            assert cds is not None
            calls = cds.patient_view(patient, "Practitioner/multi-ehr")
            assert calls and [c.problem for c in calls] == [None] * len(calls), (which, calls)

        with ThreadPoolExecutor(max_workers=4) as pool:
            for opened in [pool.submit(open_chart, w) for w in ("a", "b", "a", "b")]:
                opened.result()

        jobs = wait_ended(store, patient, 2 * DOCUMENTS, 300)
        assert all(j.state is JobState.SUCCEEDED for j in jobs), [(j.fhir_base_url, j.error) for j in jobs]
        assert sorted((j.fhir_base_url, j.source_id) for j in jobs) == sorted(
            (e.fhir_base, d) for e in ehrs.values() for d in documents)

        for which in ("a", "b"):
            found = results(hapi[which], patient)
            counted = copies(found)
            assert counted and max(counted.values()) == 1, [k for k, n in counted.items() if n > 1]
            # Each document's results carry that EHR's value for it, and nothing of the other's.
            assert glucose_by_document(found) == {
                f"DocumentReference/{d}": {GLUCOSE[which][n]} for n, d in enumerate(documents)}, which
            assert hapi[which].read("Patient", patient)["name"][0]["family"] == f"Multi-{which.upper()}"

        # Each FHIR proxy saw only tokens its own EHR issued: the hook's read-only one and its own
        # backend client's, never the other EHR's.
        for which, other in (("a", "b"), ("b", "a")):
            own, foreign = issued(ehrs[which]), issued(ehrs[other])
            seen = set(ehrs[which].bearers)
            assert seen <= set(own), f"EHR {which} was sent tokens it never issued"
            assert seen.isdisjoint(foreign), f"EHR {which} was sent EHR {other}'s tokens"
            assert {own[t] for t in seen} == {CDS_CLIENT_ID, ehrs[which].client_id}, which
            assert 1 <= ehrs[which].tokens_issued() <= 3  # at most one per process

        for worker in workers:
            assert "chartlight.run_job[" in log_text(worker) and "] succeeded in" in log_text(worker)

        # No token, issued to the hooks or to the backend clients, nor a client assertion, is in
        # any process's log.
        # (Named by whose they are: the failure message shows no part of one.)
        secrets = {token: f"EHR {w}'s token for {client}" for w, e in ehrs.items()
                   for token, client in issued(e).items()}
        secrets.update({a: f"a client assertion to EHR {w}" for w, e in ehrs.items() for a in e.assertions})
        assert ehr_a.assertions and ehr_b.assertions
        written = sorted(logs.glob("*.log"))
        assert len(written) == 3 and all(log.stat().st_size for log in written)
        for log in written:
            text = log.read_text(errors="replace")
            leaked = sorted({name for secret, name in secrets.items() if secret in text})
            assert not leaked, f"{log.name} holds {leaked}"
    finally:
        fleet.stop_all()
        store.engine.dispose()
