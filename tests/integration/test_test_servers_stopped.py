"""Servers a test session starts are stopped however it ends: a failing session, one
interrupted with Ctrl-C (SIGINT), and one killed outright (SIGKILL), whose servers the next
session reclaims at its start. Each session is a real pytest run in a subprocess, with the
project's conftest, on ports of its own; afterwards nothing listens on those ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from plugin.sandbox.ehr import EhrSandbox
from plugin.sandbox.hapi import HapiSandbox
from plugin.sandbox.orthanc import OrthancSandbox
from tests.support.ctrl_c import restore_ctrl_c

pytestmark = pytest.mark.sandbox
REPO_ROOT = Path(__file__).resolve().parents[2]

# The inner sessions' tests: each starts HAPI and Orthanc through the session fixtures, and a
# sandbox EHR of its own that it never stops (as a careless test would).
INNER = '''
import os, time
from pathlib import Path
from plugin.sandbox.ehr import EhrSandbox

def _leak_an_ehr(sandbox_url):
    EhrSandbox(state_dir=Path(os.environ["INNER_STATE"]), fhir_upstream=sandbox_url,
               app_base="http://127.0.0.1:8000", port=int(os.environ["INNER_EHR_PORT"])).start()

def test_fails(sandbox_url, pacs_url):
    _leak_an_ehr(sandbox_url)
    assert False, "this session fails on purpose"

def test_waits_for_ctrl_c(sandbox_url, pacs_url):
    _leak_an_ehr(sandbox_url)
    Path(os.environ["INNER_READY"]).touch()
    time.sleep(600)

def test_killed(pacs_url):
    _leak_an_ehr("http://127.0.0.1:9/fhir")
    Path(os.environ["INNER_READY"]).touch()
    time.sleep(600)

def test_nothing():
    pass
'''


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def inner_session(tmp_path: Path, test: str, ports: list[int]) -> tuple[subprocess.Popen[str], Path]:
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(INNER))
    ready = tmp_path / f"{test}.ready"
    env = {**os.environ, "CHARTLIGHT_SANDBOX_PORT": str(ports[0]), "CHARTLIGHT_PACS_PORT": str(ports[1]),
           "INNER_EHR_PORT": str(ports[2]), "INNER_STATE": str(tmp_path / "state"),
           "INNER_READY": str(ready), "PYTHONPATH": str(REPO_ROOT)}
    env.pop("SANDBOX_SERVER_LEDGER", None)  # the inner session keeps its own ledger
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider",
         f"{tmp_path / 'test_inner.py'}::{test}", "--rootdir", str(tmp_path), "-c", os.devnull],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=restore_ctrl_c)  # Ctrl-C must reach it even when this session ignores it
    return process, ready


def wait_for(path: Path, process: subprocess.Popen[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, f"{path.name} not reached in {timeout_s} s"
        time.sleep(0.5)


def assert_nothing_left(tmp_path: Path, ports: list[int]) -> None:
    state = tmp_path / "state"
    for server in (HapiSandbox(state_dir=state, port=ports[0]),
                   OrthancSandbox(state_dir=state, port=ports[1]),
                   EhrSandbox(state_dir=state, fhir_upstream="", app_base="", port=ports[2])):
        assert server.servers_on_port() == [], f"{type(server).__name__} still runs"
    assert [p for p in ports if listening(p)] == []


def test_a_failing_session_stops_its_servers(tmp_path: Path) -> None:
    ports = free_ports(3)
    process, _ = inner_session(tmp_path, "test_fails", ports)
    output = process.communicate(timeout=600)[0]
    assert process.returncode == 1, output
    assert "this session fails on purpose" in output and "left running" in output
    assert_nothing_left(tmp_path, ports)


def test_an_interrupted_session_stops_its_servers(tmp_path: Path) -> None:
    ports = free_ports(3)
    process, ready = inner_session(tmp_path, "test_waits_for_ctrl_c", ports)
    try:
        wait_for(ready, process, 600)
        assert listening(ports[0]) and listening(ports[1]) and listening(ports[2])
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=180)[0]
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 2 and "KeyboardInterrupt" in output, output
    assert_nothing_left(tmp_path, ports)


def test_a_killed_sessions_servers_are_reclaimed_by_the_next(tmp_path: Path) -> None:
    ports = free_ports(3)
    process, ready = inner_session(tmp_path, "test_killed", ports)
    try:
        wait_for(ready, process, 300)
        process.kill()  # SIGKILL: no finaliser runs
        process.communicate(timeout=60)
        assert listening(ports[1]) and listening(ports[2])  # left behind
        following, _ = inner_session(tmp_path, "test_nothing", ports)
        output = following.communicate(timeout=300)[0]
    finally:
        state = tmp_path / "state"
        for server in (OrthancSandbox(state_dir=state, port=ports[1]),
                       EhrSandbox(state_dir=state, fhir_upstream="", app_base="", port=ports[2])):
            server.stop()
    assert following.returncode == 0 and "left running by an earlier test session (killed)" in output, output
    assert_nothing_left(tmp_path, ports)
