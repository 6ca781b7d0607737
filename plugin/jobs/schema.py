"""The jobs table, and the in-place upgrade of tables made by older releases.

A job is identified by the FHIR server it came from and its source version and pipeline:
(fhir_base_url, pipeline, source_type, source_id, source_version). Releases before this one
left the server out of that key, so two EHRs whose resource ids collide (HAPI numbers them 1, 2,
3...) shared one job; `upgrade` widens the key of such a table when a store opens it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    Engine,
    Float,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    inspect,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.schema import CreateIndex, CreateTable

from plugin.schema_lock import schema_change

TABLE = "chartlight_jobs"
KEY = ("fhir_base_url", "pipeline", "source_type", "source_id", "source_version")
KEY_NAME = "uq_chartlight_jobs_source"
# The key of releases that did not name the server.
OLD_KEY = frozenset({"pipeline", "source_type", "source_id", "source_version"})


class Base(DeclarativeBase):
    pass


def _table() -> Table:
    table: Table = JobRow.__table__  # type: ignore[assignment]  # a declarative class's Table
    return table


class JobRow(Base):
    __tablename__ = TABLE
    __table_args__ = (UniqueConstraint(*KEY, name=KEY_NAME),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pipeline: Mapped[str] = mapped_column(String(40))
    source_type: Mapped[str] = mapped_column(String(40))
    source_id: Mapped[str] = mapped_column(String(64))
    source_version: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(100), index=True)
    fhir_base_url: Mapped[str] = mapped_column(String(500))  # stored without a trailing "/"
    state: Mapped[str] = mapped_column(String(16), index=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    progress_text: Mapped[str] = mapped_column(String(200), default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    error: Mapped[str] = mapped_column(Text, default="")
    summary_json: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Added after the first release: databases created before them gain them at start (upgrade).
    session_id: Mapped[str] = mapped_column(String(64), default="", server_default="")
    on_behalf_of: Mapped[str] = mapped_column(String(300), default="", server_default="")
    # The attempt that holds the job: a new random token per claim; every update a worker makes
    # names it, so a worker that lost the job (lease over, time limit) can no longer change it.
    lease_token: Mapped[str] = mapped_column(String(32), default="", server_default="")
    # When the running attempt's wall-clock limit ends (null: no limit was given at the claim).
    deadline_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # When the current run of transient failures began (the retry horizon counts from here).
    retry_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # A failed job whose last error was transient: a later submission queues it again.
    transient: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")


# Older releases stored a FHIR base as it was given; keys compare it without a trailing "/".
_NORMALISE_SERVERS = "UPDATE chartlight_jobs SET fhir_base_url = rtrim(fhir_base_url, '/')"
# Columns later releases added, with what rows that predate them hold.
_ADDED = {"session_id": "NOT NULL DEFAULT ''", "on_behalf_of": "NOT NULL DEFAULT ''",
          "lease_token": "NOT NULL DEFAULT ''", "deadline_at": "NULL", "retry_since": "NULL",
          "transient": "NOT NULL DEFAULT '0'"}


def create_or_upgrade(engine: Engine) -> None:
    """Create the table, or bring one made by an older release up to this schema in place."""
    if engine.dialect.name != "sqlite":
        # One transaction under the schema lock: processes opening the database at once take
        # turns, and the second finds the table made and upgraded (see plugin.schema_lock).
        with schema_change(engine) as connection:
            Base.metadata.create_all(connection)
            for name, clause in _ADDED.items():
                if name not in _columns(connection):
                    connection.execute(text(_add_column(engine, name, clause)))
            if _has_old_key(inspect(connection)):
                _rekey(connection)
        return
    Base.metadata.create_all(engine)
    for name, clause in _ADDED.items():
        if name in _columns(engine):
            continue
        try:
            with engine.begin() as connection:
                connection.execute(text(_add_column(engine, name, clause)))
        except DBAPIError:
            if name not in _columns(engine):  # not another worker process that added it first
                raise
    if _has_old_key(inspect(engine)):
        _rekey_sqlite(engine)


def _add_column(engine: Engine, name: str, clause: str) -> str:
    kind = JobRow.__table__.c[name].type.compile(dialect=engine.dialect)
    return f"ALTER TABLE {TABLE} ADD COLUMN {name} {kind} {clause}"


def _columns(bind: Engine | Connection) -> set[str]:
    return {column["name"] for column in inspect(bind).get_columns(TABLE)}


def _has_old_key(inspector: object) -> bool:
    constraints = inspector.get_unique_constraints(TABLE)  # type: ignore[attr-defined]
    return any(frozenset(c["column_names"]) == OLD_KEY for c in constraints)


def _rekey_sqlite(engine: Engine) -> None:
    """SQLite cannot drop a constraint: the table is rebuilt, in one transaction that holds the
    database's write lock from the start (BEGIN IMMEDIATE), so two processes opening an old
    database at once upgrade it once and nobody sees it half done."""
    raw = engine.raw_connection()
    driver: Any = raw.driver_connection
    level = driver.isolation_level
    driver.isolation_level = None  # we issue BEGIN and COMMIT ourselves
    try:
        cursor = driver.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        try:
            cursor.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,))
            (ddl,) = cursor.fetchone()
            if "fhir_base_url, pipeline" in ddl:  # another process upgraded it while we waited
                cursor.execute("ROLLBACK")
                return
            columns = ", ".join(c.name for c in JobRow.__table__.columns)
            for index in _table().indexes:
                cursor.execute(f"DROP INDEX IF EXISTS {index.name}")
            cursor.execute(f"ALTER TABLE {TABLE} RENAME TO {TABLE}_before_upgrade")
            for statement in _create_statements(engine):
                cursor.execute(statement)
            # Only our own constant names are formatted into these statements.
            cursor.execute(f"INSERT INTO {TABLE} ({columns}) "  # noqa: S608
                           f"SELECT {columns} FROM {TABLE}_before_upgrade")
            cursor.execute(_NORMALISE_SERVERS)
            cursor.execute(f"DROP TABLE {TABLE}_before_upgrade")
            cursor.execute("COMMIT")
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
    finally:
        driver.isolation_level = level  # the connection goes back to the pool as it came
        raw.close()


def _create_statements(engine: Engine) -> list[str]:
    table = _table()
    return [str(CreateTable(table).compile(dialect=engine.dialect)),
            *(str(CreateIndex(index).compile(dialect=engine.dialect)) for index in table.indexes)]


def _rekey(connection: Connection) -> None:
    """Databases that can alter constraints (PostgreSQL): swap the key inside the caller's
    transaction (which holds the schema lock), under a table lock so that queries of processes
    already running wait for the swap rather than see it half done."""
    connection.execute(text(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE"))
    for name in _old_key_names(connection):
        connection.execute(text(f'ALTER TABLE {TABLE} DROP CONSTRAINT "{name}"'))
        connection.execute(text(_NORMALISE_SERVERS))
        connection.execute(text(f"ALTER TABLE {TABLE} ADD CONSTRAINT {KEY_NAME} "
                                f"UNIQUE ({', '.join(KEY)})"))


def _old_key_names(connection: Connection) -> list[str]:
    return [c["name"] for c in inspect(connection).get_unique_constraints(TABLE)
            if frozenset(c["column_names"]) == OLD_KEY and c["name"]]
