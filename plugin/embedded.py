"""The embedded default: with no broker configured, `chartlight serve` runs jobs in one local
worker process (`chartlight worker`, taking jobs from the job table) started beside the web
tier and stopped with it. Loaded by gunicorn as its configuration module (`-c
python:plugin.embedded`): its hooks start the worker once gunicorn is ready and stop it when
gunicorn exits; the worker also ends itself when gunicorn dies without a word (SIGKILL)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

STOP_TIMEOUT_S = 30.0


def local_worker_command(parent_pid: int) -> list[str]:
    return [sys.executable, "-m", "plugin.cli", "worker", "--parent-pid", str(parent_pid)]


def start_local_worker() -> subprocess.Popen[bytes]:
    """The local worker, a child of this process with this process's settings (environment)."""
    return subprocess.Popen(local_worker_command(os.getpid()), stdin=subprocess.DEVNULL)


def stop_local_worker(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM: the worker stops claiming and ends; a job it was running is taken back by the
    next worker once its lease runs out (its write is idempotent)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ---- gunicorn's hooks (this module is its configuration) ----------------------------------------

def when_ready(server: Any) -> None:
    server.chartlight_local_worker = start_local_worker()
    server.log.info("local job worker started (pid %d): no job_broker_url is configured",
                    server.chartlight_local_worker.pid)


def on_exit(server: Any) -> None:
    process = getattr(server, "chartlight_local_worker", None)
    if process is not None:
        stop_local_worker(process)
