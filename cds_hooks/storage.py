"""The database the CDS service keeps its tables in (used JWT ids, feedback): the service's
`database_url`, the one the analysis jobs use.

On SQLite the file is switched to write-ahead logging with `synchronous=NORMAL` for these
connections: every hook call records its JWT id, and with SQLite's default rollback journal each
such write waits for a disk flush (about 13 ms here, one writer at a time across all workers)
where WAL takes about 0.1 ms. WAL is a property of the file, so the job store's connections use it
too; it is safe for several processes on one host (not on a network file system).
"""

from __future__ import annotations

from pathlib import Path
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
