"""A throwaway PostgreSQL server (Debian `postgresql`) for the tests of that database.

`start_postgres` makes a new cluster with initdb in a temporary folder, starts the server on the
given port (TCP on 127.0.0.1 only; its unix socket in the same folder, not the system's
/var/run/postgresql), records it in the session's ledger ($SANDBOX_SERVER_LEDGER) so a killed test
run's server is stopped by the next run, and waits until it accepts connections. `stop` stops it
and removes the folder.

PostgreSQL refuses to run as root: when the tests run as root, initdb and the server run as the
`postgres` system user the Debian package creates, and the folder is handed to that user. The
cluster trusts local connections without a password: it listens on loopback only, lives as long
as one test session and holds nothing but test data.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from plugin.sandbox.processes import LEDGER_ENV, ServerProcess, alive, record

PG_USER = "postgres"  # the system user (and the cluster's superuser) of Debian's package
BIN_GLOB = "usr/lib/postgresql/*/bin"
START_TIMEOUT_S = 60.0
FOLDER_PREFIX = "chartlight-postgres-"
# A folder left by a killed run (its server was stopped through the ledger, the folder stays) is
# removed once no server runs in it and nothing has changed in it for this long; a run that is
# just creating its folder (initdb, seconds) is far younger.
ABANDONED_AFTER_S = 600.0


class PostgresUnavailable(RuntimeError):
    """PostgreSQL could not be started; the message says why (and holds the server's log)."""


@dataclass(frozen=True)
class PostgresServer:
    port: int
    folder: Path  # data directory, socket and log, all removed by stop()
    start_s: float  # initdb + start until it accepts connections, as measured
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def admin_url(self) -> str:
        """A SQLAlchemy URL of the cluster's own `postgres` database."""
        return self.url("postgres")

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/{database}"


def bin_dir() -> Path:
    """The newest installed PostgreSQL's programs (initdb, postgres)."""
    found = sorted((p for p in Path("/").glob(BIN_GLOB) if p.parent.name.isdigit()),
                   key=lambda p: int(p.parent.name))
    if not found or not (found[-1] / "initdb").exists():
        raise PostgresUnavailable(f"no PostgreSQL programs under /{BIN_GLOB}: install the Debian "
                                  "package `postgresql` (make deps)")
    return found[-1]


def _as_root() -> bool:
    return os.geteuid() == 0


def _log_tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:] if log.exists() else ""


def start_postgres(port: int) -> PostgresServer:
    """initdb, then the server on `port`; PostgresUnavailable with the reason when it does not
    start (initdb's output or the server's log)."""
    programs = bin_dir()
    began = time.monotonic()
    remove_abandoned(Path(tempfile.gettempdir()))
    folder = Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX))
    user = PG_USER if _as_root() else None
    if user:
        shutil.chown(folder, user, user)
    data, log = folder / "data", folder / "server.log"
    # --no-sync and fsync=off: a test cluster is thrown away, durability buys nothing here.
    initdb = subprocess.run([str(programs / "initdb"), "-D", str(data), "-U", PG_USER, "--auth=trust",
                             "-E", "UTF8", "--locale=C", "--no-sync"],
                            capture_output=True, text=True, timeout=120, check=False, user=user)
    if initdb.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        raise PostgresUnavailable(f"PostgreSQL initdb failed (exit {initdb.returncode}): "
                                  f"{(initdb.stderr or initdb.stdout).strip()[-2000:]}")
    server = _launch(programs, folder, port)
    try:
        _wait_ready(server, log)
    except BaseException:
        stop(server)
        raise
    return PostgresServer(port=port, folder=folder, start_s=time.monotonic() - began, process=server.process)


def _launch(programs: Path, folder: Path, port: int) -> PostgresServer:
    argv = [str(programs / "postgres"), "-D", str(folder / "data"), "-p", str(port), "-k", str(folder),
            "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]
    # The server is this process's own child (pg_ctl would daemonise it), so that it is reaped
    # when it stops: container inits often leave orphans as zombies. Its own session: Ctrl-C in
    # the terminal reaches the test run, whose finaliser stops the server.
    with (folder / "server.log").open("ab") as out:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True, user=PG_USER if _as_root() else None)
    ledger = os.environ.get(LEDGER_ENV)
    if ledger:
        record(Path(ledger), ServerProcess(process.pid, tuple(argv)))
    return PostgresServer(port=port, folder=folder, start_s=0.0, process=process)


def start_again(server: PostgresServer) -> PostgresServer:
    """The server `stop(server, keep_folder=True)` stopped, started again on its data and port
    (an outage's end); waits until it accepts connections."""
    began = time.monotonic()
    again = _launch(bin_dir(), server.folder, server.port)
    _wait_ready(again, server.folder / "server.log")
    return PostgresServer(port=server.port, folder=server.folder, start_s=time.monotonic() - began,
                          process=again.process)


def remove_abandoned(root: Path, *, now: float | None = None) -> list[Path]:
    """Remove the cluster folders of killed test runs under `root`; returns those removed."""
    removed = []
    for folder in root.glob(f"{FOLDER_PREFIX}*"):
        try:
            idle = (time.time() if now is None else now) - folder.stat().st_mtime
        except OSError:
            continue  # removed meanwhile
        try:
            pid = int((folder / "data" / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pid = 0  # no server was ever started there, or it was stopped
        if (pid == 0 or not alive(pid)) and idle > ABANDONED_AFTER_S:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _wait_ready(server: PostgresServer, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if server.process.poll() is not None:
            raise PostgresUnavailable(f"PostgreSQL exited (code {server.process.returncode}) on "
                                      f"start on port {server.port}:\n{_log_tail(log)}")
        try:
            with psycopg.connect(_libpq(server.admin_url), connect_timeout=5):
                return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise PostgresUnavailable(
                    f"PostgreSQL did not accept connections on port {server.port} within "
                    f"{START_TIMEOUT_S:.0f} s ({exc}):\n{_log_tail(log)}") from exc
        time.sleep(0.1)


def stop(server: PostgresServer, *, keep_folder: bool = False) -> None:
    """Stop the server (SIGINT: PostgreSQL's fast shutdown, open connections are ended), reap it
    and remove its folder (unless `keep_folder`: an outage, start_again follows)."""
    try:
        if server.process.poll() is None:
            server.process.send_signal(signal.SIGINT)
            try:
                server.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait(timeout=10)
    finally:
        if not keep_folder:
            shutil.rmtree(server.folder, ignore_errors=True)


def new_database(server_url: str) -> str:
    """A new, empty database on the cluster of `server_url` (a fixture's URL); its URL."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(_libpq(server_url), autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return server_url.rsplit("/", 1)[0] + "/" + name


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)
