"""The database the CDS service keeps its tables in (used JWT ids, feedback): the service's
`database_url`, the one the analysis jobs use.

On SQLite the file is switched to write-ahead logging with `synchronous=NORMAL` for these
connections: every hook call records its JWT id, and with SQLite's default rollback journal each
such write waits for a disk flush (about 13 ms here, one writer at a time across all workers)
where WAL takes about 0.1 ms. WAL is a property of the file, so the job store's connections use it
too; it is safe for several processes on one host (not on a network file system).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url


def cds_engine(database_url: str) -> Engine:
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if url.database not in (None, "", ":memory:"):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 15})

    @event.listens_for(engine, "connect")
    def _wal(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        if url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine


class WriterTurn:
    """Writers to one SQLite file take turns: the threads of a process with a lock, the worker
    processes of this host with an advisory lock on a file beside the database. A writer waiting
    here wakes the moment the turn is free; one that meets another inside SQLite waits in SQLite's
    busy handler, which sleeps in growing steps (up to 100 ms) and made the slowest hook calls
    slow under load (bench/cds_hooks.py)."""

    def __init__(self, lock_path: Path | None) -> None:
        self._threads = threading.Lock()
        self._lock_path = lock_path
        self._fd: int | None = None
        self._pid = 0

    def __enter__(self) -> None:
        self._threads.acquire()
        try:
            if self._lock_path is not None:
                fcntl.flock(self._file(), fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        try:
            if self._lock_path is not None and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def _file(self) -> int:
        if self._fd is None or self._pid != os.getpid():  # a forked worker opens its own
            assert self._lock_path is not None
            self._fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            self._pid = os.getpid()
        return self._fd


def writer_turn(engine: Engine) -> contextlib.AbstractContextManager[None]:
    """Turn-taking for writes that happen on every request (used JWT ids); none is needed for a
    server database."""
    if engine.dialect.name != "sqlite":
        return contextlib.nullcontext()
    database = engine.url.database
    return WriterTurn(Path(f"{database}.writer-lock") if database not in (None, "", ":memory:") else None)

