"""`chartlight serve` as deployed: gunicorn workers answering /health with the sandbox behind."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.sandbox
REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_runs_gunicorn_with_a_health_endpoint(sandbox_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "CHARTLIGHT_PORT": str(port), "CHARTLIGHT_FHIR_BASE_URL": sandbox_url,
           "CHARTLIGHT_DATABASE_URL": f"sqlite:///{tmp_path}/jobs.db", "CHARTLIGHT_WORKERS": "2"}
    server = subprocess.Popen([sys.executable, "-m", "plugin.cli", "serve"], cwd=REPO_ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                body = requests.get(f"http://127.0.0.1:{port}/health", timeout=2).json()
                break
            except requests.RequestException:
                assert server.poll() is None, server.stdout.read().decode() if server.stdout else ""
                assert time.monotonic() < deadline, "chartlight serve did not answer in 60 s"
                time.sleep(0.3)
        assert body["status"] == "ok" and body["fhir"]["reachable"] is True
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0].decode()
    assert "gunicorn" in output.lower() or "Booting worker" in output
