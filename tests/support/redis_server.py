"""A throwaway Redis server (Debian `redis-server`), the Celery broker of the scale-out tests.

`start_redis` starts one on the given port (127.0.0.1 only) with its working folder in a
temporary directory, records it in the session's ledger ($SANDBOX_SERVER_LEDGER) so that a killed
test run's server is stopped by the next run, and waits until it answers PING. It keeps nothing
on disk (no RDB snapshot, no append-only file): a restarted server starts empty, as a broker that
lost its messages would — what the outage tests need. `stop` stops it (and removes the folder
unless asked to keep it for a restart on the same port).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from plugin.sandbox.processes import LEDGER_ENV, ServerProcess, record

START_TIMEOUT_S = 30.0


class RedisUnavailable(RuntimeError):
    """Redis could not be started; the message says why (with the server's log)."""


@dataclass(frozen=True)
class RedisServer:
    port: int
    folder: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def start_redis(port: int, folder: Path | None = None) -> RedisServer:
    """redis-server on `port`, in `folder` (a new temporary one when None)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisUnavailable("no redis-server on PATH: install the Debian package `redis-server` "
                               "(make deps)")
    folder = folder or Path(tempfile.mkdtemp(prefix="chartlight-redis-"))
    log = folder / "server.log"
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
            "--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", str(log)]
    # Its own session: Ctrl-C reaches the test run, whose finaliser stops the server.
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    ledger = os.environ.get(LEDGER_ENV)
    if ledger:
        record(Path(ledger), ServerProcess(process.pid, tuple(argv)))
    server = RedisServer(port, folder, process)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not answers(port):
        if process.poll() is not None or time.monotonic() > deadline:
            stop(server)
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RedisUnavailable(f"redis-server did not answer on port {port} "
                                   f"(exit {process.poll()}):\n{tail}")
        time.sleep(0.05)
    return server


def answers(port: int) -> bool:
    """Whether a Redis server answers PING on 127.0.0.1:`port`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def stop(server: RedisServer, *, keep_folder: bool = False) -> None:
    """SIGTERM (redis-server's clean shutdown), then reap it."""
    try:
        if server.process.poll() is None:
            server.process.send_signal(signal.SIGTERM)
            try:
                server.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait(timeout=10)
    finally:
        if not keep_folder:
            shutil.rmtree(server.folder, ignore_errors=True)
