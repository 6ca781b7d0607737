"""Start-up schema changes (create tables, add columns, swap keys), one process at a time.

Every chartlight process creates or upgrades its tables when it opens the database, and a
deployment starts several at once. On PostgreSQL two of them creating one table collide in the
catalogue (a UniqueViolation on pg_type) and two upgrading it drop the same constraint twice
(UndefinedObject): `schema_change` runs the whole change in one transaction that first takes a
transaction-level advisory lock, so the others wait, then find the work done. DDL is
transactional there, so nobody ever sees a half-changed table. SQLite needs no such lock (the
stores there use its own write lock where they rebuild a table); other databases get the plain
transaction.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

# One key for all of chartlight's tables: schema changes happen only at start-up, so
# serialising them all costs nothing. (The first 8 bytes of SHA-256("chartlight schema").)
SCHEMA_LOCK_KEY = 0x1C859344CEF96CEA


@contextlib.contextmanager
def schema_change(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that holds the schema lock until it commits."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
        yield connection
