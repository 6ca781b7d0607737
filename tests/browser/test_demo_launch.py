"""`chartlight demo --test-models`, as a newcomer runs it, on test ports: every pipeline runs
(speech and imaging on the tiny random-weight models, each result marked as test output), and
the SMART launch it prints completes in Chromium: the app opens inside the sandbox EHR's page
with the demo patient's inputs. A sandbox EHR left on the demo's EHR port by an earlier run,
proxying to a FHIR server that is gone (what once made the launch answer 500), is restarted.
Everything it started is stopped after."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from plugin.sandbox.ehr import EhrSandbox
from plugin.sandbox.orthanc import OrthancSandbox
from tests.browser.conftest import Screenshot

pytestmark = pytest.mark.sandbox
CHARTLIGHT = [sys.executable, "-c", "from plugin.cli import main; main()"]


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [int(s.getsockname()[1]) for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_demo_with_test_models_then_the_printed_launch_completes(
        sandbox_url: str, tmp_path: Path, page: Any, screenshot: Screenshot) -> None:
    pacs_port, ehr_port, app_port = _free_ports(3)
    state = tmp_path / "state"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CHARTLIGHT_")},
           "CHARTLIGHT_SANDBOX_PORT": sandbox_url.split(":")[2].split("/")[0],
           "CHARTLIGHT_PACS_PORT": str(pacs_port), "CHARTLIGHT_SANDBOX_EHR_PORT": str(ehr_port),
           "CHARTLIGHT_PORT": str(app_port), "CHARTLIGHT_SANDBOX_STATE_DIR": str(state),
           "CHARTLIGHT_TEST_MODELS_DIR": str(tmp_path / "models"), "COLUMNS": "160"}
    server = None
    leftover = EhrSandbox(state_dir=tmp_path / "earlier-run", fhir_upstream="http://127.0.0.1:9/fhir",
                          app_base=f"http://127.0.0.1:{app_port}", port=ehr_port)
    try:
        leftover.start()
        # Run where a newcomer would, outside the checkout (serve writes .chartlight/ keys there).
        demo = subprocess.run([*CHARTLIGHT, "demo", "--test-models", "--json"], env=env, capture_output=True,
                              text=True, timeout=900, check=False, cwd=tmp_path)
        assert demo.returncode == 0, demo.stderr[-4000:]
        summary = json.loads(demo.stdout)
        assert "TEST MODELS" in demo.stderr and "TEST OUTPUT, not clinical" in demo.stderr
        assert summary["test_models"] is True
        assert "restarting it" in demo.stderr  # the leftover EHR
        for name in ("speech", "imaging"):
            inputs = summary["pipelines"][name]["inputs"]
            assert inputs and all(i["state"] == "succeeded" and i["test_output"] for i in inputs), inputs
            assert all(i["open"] for i in inputs)
        first = summary["pipelines"]["speech"]["inputs"][0]["open"]["DocumentReference"]
        assert requests.get(first, headers={"Accept": "application/fhir+json"}, timeout=30).status_code == 200

        launch = summary["launch"]
        server = subprocess.Popen([*CHARTLIGHT, "serve"], env={**env, **launch["serve_environment"]},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{app_port}/health", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "chartlight serve did not start"
            time.sleep(0.5)
        page.goto(launch["ehr_page"])
        app = page.frame_locator("iframe#app")
        # Generous: `chartlight serve` starts with a fresh job database, so the EHR's patient-view
        # hook queues the demo's inputs again and the tiny models rerun beside the page on 2 cores
        # (idempotent: nothing is written twice; a full `make test` run once took > 120 s here).
        app.locator('tr[data-testid="input-row"]').first.wait_for(timeout=300_000)
        assert app.locator('tr[data-testid="input-row"]').count() >= 5
        # The speech and imaging results the test models wrote say so in the app (2 + 3 inputs).
        assert app.locator('tr[data-testid="input-row"] .test-marker').count() >= 5
        # The EHR called chartlight's patient-view with the key the printed environment trusts.
        assert page.locator('[data-testid="cds-card"]').count() >= 1
        assert page.locator('[data-testid="cds-problem"]').count() == 0
        screenshot(page, "quickstart-demo-patient-in-ehr")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        OrthancSandbox(state_dir=state / "orthanc", port=pacs_port).stop()
        EhrSandbox(state_dir=state / "ehr", fhir_upstream="", app_base="", port=ehr_port).stop()
        leftover.stop()
