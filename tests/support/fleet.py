"""The scale-out layout as processes, for tests and bench/throughput.py: `chartlight serve` (the
web tier, gunicorn) and `chartlight worker` processes, each started as the commands an operator
runs, with the settings in their environment; each is recorded in the session's server ledger
(so a killed test run's processes are stopped by the next run) and stopped by `stop_all`.
Also: lab-report documents for a new patient on a FHIR server, and patient-view hook bodies."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from plugin.fhir import FhirClient
from plugin.sandbox import synthetic
from plugin.sandbox.processes import LEDGER_ENV, ServerProcess, record

REPO_ROOT = Path(__file__).resolve().parents[2]
WEB_START_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def lab_documents(fhir: FhirClient, count: int, *, scanned: int = 0, tag: str = "") -> tuple[str, list[str]]:
    """A new patient with `count` lab-report DocumentReferences (the first `scanned` of them
    scanned PDFs, which OCR reads; the others text-layer PDFs); the patient's id and the
    documents' ids. Made by plugin.sandbox.synthetic, not by the code under test."""
    family = f"Fleet-{tag or uuid.uuid4().hex[:8]}"
    patient = fhir.create({"resourceType": "Patient", "name": [{"family": family}]})
    report = synthetic.DEMO_LAB_REPORT
    text, scan = synthetic.text_pdf(report), synthetic.scanned_pdf(report, seed=7)
    ids = []
    for n in range(count):
        data = scan if n < scanned else text
        created = fhir.create({
            "resourceType": "DocumentReference", "status": "current",
            "subject": {"reference": f"Patient/{patient['id']}"},
            "description": f"lab report {n}",
            "content": [{"attachment": {"contentType": "application/pdf",
                                        "data": base64.b64encode(data).decode()}}]})
        ids.append(created["id"])
    return patient["id"], ids


def patient_view(patient_id: str, fhir_base: str) -> dict[str, Any]:
    """A patient-view call without prefetch: the service reads the chart from `fhir_base`."""
    return {"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/fleet", "patientId": patient_id},
            "fhirServer": fhir_base,
            "fhirAuthorization": {"access_token": "fleet-token", "token_type": "Bearer",
                                  "expires_in": 300, "scope": "patient/*.read", "subject": "chartlight"}}


@dataclass
class Fleet:
    """Processes of one layout, all sharing `env` (CHARTLIGHT_* settings)."""

    env: dict[str, str]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: Path | None = None

    def web(self, port: int, *, app: str | None = None) -> subprocess.Popen[bytes]:
        """`chartlight serve` on `port` (or gunicorn on `app`, e.g. the in-web runner
        `plugin.wsgi:create_service()`), once it answers /health."""
        env = {**self.env, "CHARTLIGHT_HOST": "127.0.0.1", "CHARTLIGHT_PORT": str(port)}
        if app is None:
            argv = [sys.executable, "-m", "plugin.cli", "serve"]
        else:
            from plugin.cli import gunicorn_command
            from plugin.config import load_settings

            argv = gunicorn_command(load_settings(environ=env), app=app)
            if "--config" in argv:  # this app runs its jobs itself: no local worker beside it
                at = argv.index("--config")
                del argv[at:at + 2]
        process = self._spawn(argv, env, f"web-{port}")
        deadline = time.monotonic() + WEB_START_TIMEOUT_S
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/health", timeout=5)
                return process
            except requests.RequestException:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the web tier on port {port} did not answer: "
                                       f"{self.log_of(process)}") from None
                time.sleep(0.3)

    def worker(self, *args: str, name: str = "worker") -> subprocess.Popen[bytes]:
        """`chartlight worker ARGS`; its own process group, so that it can be killed whole."""
        return self._spawn([sys.executable, "-m", "plugin.cli", "worker", *args], self.env, name)

    def _spawn(self, argv: list[str], env: Mapping[str, str], name: str) -> subprocess.Popen[bytes]:
        log = self.logs / f"{name}-{len(self.processes)}.log" if self.logs else None
        with log.open("wb") if log else open(os.devnull, "wb") as out:  # the child keeps its own copy
            process = subprocess.Popen(argv, cwd=REPO_ROOT, env=dict(env), stdin=subprocess.DEVNULL,
                                       stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        ledger = os.environ.get(LEDGER_ENV)
        if ledger:
            record(Path(ledger), ServerProcess(process.pid, tuple(argv)))
        process.log_path = log  # type: ignore[attr-defined]
        self.processes.append(process)
        return process

    def log_of(self, process: subprocess.Popen[bytes]) -> str:
        path = getattr(process, "log_path", None)
        return Path(path).read_text(errors="replace")[-3000:] if path else ""

    @staticmethod
    def kill9(process: subprocess.Popen[bytes]) -> None:
        """SIGKILL the process and every process of its group (a Celery worker's pool children)."""
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        self.processes.clear()


def fleet_env(*, fhir_base: str, database_url: str, broker_url: str | None, jwks_url: str, iss: str,
              public_base: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Settings for every process of a layout: one FHIR server, one job table, one broker (None:
    embedded), an EHR trusted for CDS hooks; short leases and sweeps, so that a dead worker's job
    is taken back within seconds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHARTLIGHT_")}
    env.update({
        "CHARTLIGHT_FHIR_BASE_URL": fhir_base, "CHARTLIGHT_DATABASE_URL": database_url,
        "CHARTLIGHT_LOG_LEVEL": "INFO", "CHARTLIGHT_WORKERS": "1",
        "CHARTLIGHT_CDS_PUBLIC_BASE_URL": public_base, "CHARTLIGHT_CDS_REPLAY_CACHE": "memory",
        "CHARTLIGHT_CDS_SOURCE_CHECK_INTERVAL_S": "1",
        "CHARTLIGHT_CDS_TRUSTED_EHRS": json.dumps([{"iss": iss, "jwks_url": jwks_url,
                                                    "fhir_servers": [fhir_base]}]),
        "CHARTLIGHT_JOB_LEASE_S": "6", "CHARTLIGHT_JOB_REPUBLISH_AFTER_S": "3",
        "CHARTLIGHT_JOB_RETRY_MAX_DELAY_S": "5",
    })
    if broker_url:
        env["CHARTLIGHT_JOB_BROKER_URL"] = broker_url
    env.update(extra or {})
    return env
