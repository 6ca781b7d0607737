"""The `postgres_url` fixture's server is stopped however the test session ends: interrupted
(Ctrl-C) by its own finaliser, killed outright (SIGKILL) by the next session through the servers
ledger. Each session is a real pytest run in a subprocess with the project's conftest, on a port
of its own; afterwards nothing listens there."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from tests.support.ctrl_c import restore_ctrl_c
from tests.support.postgres import FOLDER_PREFIX

pytestmark = pytest.mark.sandbox
REPO_ROOT = Path(__file__).resolve().parents[2]

INNER = '''
import os, time
from pathlib import Path

def test_holds_postgres(postgres_url):
    Path(os.environ["INNER_READY"]).write_text(postgres_url)
    time.sleep(600)

def test_nothing():
    pass
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def inner_session(tmp_path: Path, test: str, port: int) -> tuple[subprocess.Popen[str], Path]:
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(INNER))
    ready = tmp_path / f"{test}.ready"
    env = {**os.environ, "TEST_POSTGRES_PORT": str(port), "INNER_READY": str(ready),
           "PYTHONPATH": str(REPO_ROOT)}
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
        time.sleep(0.2)


def _remove_cluster_folder(port: int) -> None:
    """The folder of the cluster that ran on `port` (postmaster.opts keeps its command line)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{FOLDER_PREFIX}*"):
        with contextlib.suppress(OSError):
            if f'"-p" "{port}"' in (folder / "data" / "postmaster.opts").read_text():
                shutil.rmtree(folder, ignore_errors=True)


def test_an_interrupted_session_stops_its_postgres(tmp_path: Path) -> None:
    port = free_port()
    process, ready = inner_session(tmp_path, "test_holds_postgres", port)
    try:
        wait_for(ready, process, 120)
        assert listening(port)
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=120)[0]
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 2 and "KeyboardInterrupt" in output, output
    assert not listening(port)


def test_a_killed_sessions_postgres_is_reclaimed_by_the_next(tmp_path: Path) -> None:
    port = free_port()
    process, ready = inner_session(tmp_path, "test_holds_postgres", port)
    try:
        wait_for(ready, process, 120)
        process.kill()  # SIGKILL: no finaliser runs
        process.communicate(timeout=60)
        assert listening(port)  # left behind
        following, _ = inner_session(tmp_path, "test_nothing", port)
        output = following.communicate(timeout=300)[0]
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        _remove_cluster_folder(port)  # the killed session could not; a later run would, in time
    assert following.returncode == 0 and "left running by an earlier test session (killed)" in output, output
    assert not listening(port)
