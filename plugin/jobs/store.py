"""Where jobs live: a SQLAlchemy table (SQLite file by default, any SQLAlchemy URL works).

A job started from the SMART app also records on whose behalf it runs: the app session whose
token the runner uses (`session_id`) and the user named in the write's Provenance
(`on_behalf_of`). Both are empty for service jobs (CDS hooks, the CLI).

The runner talks to jobs only through JobStore's methods, so a distributed queue can replace
this class without touching pipelines or the runner's callers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import (
    DateTime,
    Float,
    Integer,
    String,
    Text,
    UniqueConstraint,
    bindparam,
    create_engine,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class _Base(DeclarativeBase):
    pass


class _JobRow(_Base):
    __tablename__ = "chartlight_jobs"
    __table_args__ = (UniqueConstraint("pipeline", "source_type", "source_id", "source_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    pipeline: Mapped[str] = mapped_column(String(40))
    source_type: Mapped[str] = mapped_column(String(40))
    source_id: Mapped[str] = mapped_column(String(64))
    source_version: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(100), index=True)
    fhir_base_url: Mapped[str] = mapped_column(String(500))
    state: Mapped[str] = mapped_column(String(16), index=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    progress_text: Mapped[str] = mapped_column(String(200), default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    error: Mapped[str] = mapped_column(Text, default="")
    summary_json: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Added after the first release: databases created before them gain them at start (_upgrade).
    session_id: Mapped[str] = mapped_column(String(64), default="", server_default="")
    on_behalf_of: Mapped[str] = mapped_column(String(300), default="", server_default="")


@dataclass(frozen=True)
class Job:
    id: int
    pipeline: str
    source_type: str
    source_id: str
    source_version: str
    subject: str
    fhir_base_url: str
    state: JobState
    progress: float
    progress_text: str
    attempts: int
    next_attempt_at: datetime
    error: str
    summary: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    session_id: str = ""  # the SMART app session whose token runs it ("" = the service's own)
    on_behalf_of: str = ""  # the user it runs for ("Practitioner/7"), named in the Provenance

    @property
    def source(self) -> str:
        return f"{self.source_type}/{self.source_id}/_history/{self.source_version}"


@dataclass(frozen=True)
class JobBrief:
    """The few columns a status display needs, read without building whole jobs."""

    pipeline: str
    source: str
    fhir_base_url: str
    state: JobState
    error: str


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything stored is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _job(row: _JobRow) -> Job:
    return Job(
        id=row.id, pipeline=row.pipeline, source_type=row.source_type, source_id=row.source_id,
        source_version=row.source_version, subject=row.subject, fhir_base_url=row.fhir_base_url,
        state=JobState(row.state), progress=row.progress, progress_text=row.progress_text,
        attempts=row.attempts, next_attempt_at=_aware(row.next_attempt_at), error=row.error,
        summary=json.loads(row.summary_json) if row.summary_json else {},
        created_at=_aware(row.created_at), updated_at=_aware(row.updated_at),
        session_id=row.session_id or "", on_behalf_of=row.on_behalf_of or "",
    )


# The status query of every hook call, built once so that only its values bind per call.
_BRIEFS = (select(_JobRow.pipeline, _JobRow.source_type, _JobRow.source_id, _JobRow.source_version,
                  _JobRow.fhir_base_url, _JobRow.state, _JobRow.error)
           .where(_JobRow.subject == bindparam("subject")).order_by(_JobRow.id.desc())
           .limit(bindparam("limit")))


class JobStore:
    """Jobs in a SQL database. Safe to share between threads and processes."""

    def __init__(self, url_or_engine: str | Engine) -> None:
        if isinstance(url_or_engine, str):
            url = make_url(url_or_engine)
            if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
                Path(url.database).parent.mkdir(parents=True, exist_ok=True)
            url_or_engine = create_engine(url)
        self.engine = url_or_engine
        _Base.metadata.create_all(self.engine)
        _upgrade(self.engine)

    def submit(self, *, pipeline: str, source_type: str, source_id: str, source_version: str,
               subject: str, fhir_base_url: str, session_id: str = "", on_behalf_of: str = "") -> Job:
        """The job for this source version and pipeline: the existing one, or a new queued one.

        A submission with a `session_id` (an app user asked) takes over an existing job that has
        not run yet or failed: the job is now run with that session for `on_behalf_of`, and a
        failed one is queued again. A succeeded job is done (its results are on the server) and a
        running one is left to finish; both are returned unchanged."""
        with Session(self.engine) as session, session.begin():
            row = session.scalars(select(_JobRow).filter_by(
                pipeline=pipeline, source_type=source_type, source_id=source_id,
                source_version=source_version)).one_or_none()
            if row is None:
                now = _now()
                row = _JobRow(pipeline=pipeline, source_type=source_type, source_id=source_id,
                              source_version=source_version, subject=subject,
                              fhir_base_url=fhir_base_url, state=JobState.QUEUED, progress=0.0,
                              progress_text="", attempts=0, next_attempt_at=now, error="",
                              summary_json="", created_at=now, updated_at=now,
                              session_id=session_id, on_behalf_of=on_behalf_of)
                session.add(row)
                session.flush()
                return _job(row)
            job_id = row.id
            if session_id:
                owner = {"session_id": session_id, "on_behalf_of": on_behalf_of,
                         "fhir_base_url": fhir_base_url, "updated_at": _now()}
                # Guarded by state, so a worker claiming the job meanwhile keeps it as it was.
                session.execute(update(_JobRow).where(_JobRow.id == job_id,
                                                      _JobRow.state == JobState.QUEUED).values(**owner))
                session.execute(update(_JobRow).where(_JobRow.id == job_id,
                                                      _JobRow.state == JobState.FAILED).values(
                    state=JobState.QUEUED, attempts=0, error="", next_attempt_at=_now(),
                    progress=0.0, progress_text="", **owner))
        return self.get(job_id)

    def claim_next(self) -> Job | None:
        """Atomically move the oldest due queued job to running and return it."""
        with Session(self.engine) as session, session.begin():
            candidates = session.scalars(
                select(_JobRow.id).where(_JobRow.state == JobState.QUEUED,
                                         _JobRow.next_attempt_at <= _now())
                .order_by(_JobRow.id).limit(5)).all()
            for job_id in candidates:
                claimed = session.execute(
                    update(_JobRow).where(_JobRow.id == job_id, _JobRow.state == JobState.QUEUED)
                    .values(state=JobState.RUNNING, attempts=_JobRow.attempts + 1,
                            progress=0.0, progress_text="starting", updated_at=_now()))
                if claimed.rowcount == 1:  # type: ignore[attr-defined]
                    return _job(session.get_one(_JobRow, job_id))
        return None

    def set_progress(self, job_id: int, fraction: float, text: str) -> None:
        self._set(job_id, progress=max(0.0, min(1.0, fraction)), progress_text=text[:200])

    def succeed(self, job_id: int, summary: dict[str, Any]) -> None:
        self._set(job_id, state=JobState.SUCCEEDED, progress=1.0, progress_text="done", error="",
                  summary_json=json.dumps(summary))

    def fail(self, job_id: int, error: str) -> None:
        self._set(job_id, state=JobState.FAILED, error=error)

    def requeue(self, job_id: int, error: str, delay_s: float) -> None:
        """Back to the queue after a transient failure, due again after `delay_s`."""
        self._set(job_id, state=JobState.QUEUED, error=error, progress_text="waiting to retry",
                  next_attempt_at=_now() + timedelta(seconds=delay_s))

    def retry(self, job_id: int) -> Job:
        """Queue a failed (or succeeded) job again, now."""
        self._set(job_id, state=JobState.QUEUED, attempts=0, error="", next_attempt_at=_now(),
                  progress=0.0, progress_text="")
        return self.get(job_id)

    def heartbeat(self, job_ids: Iterable[int]) -> None:
        """Say these running jobs are alive (their runner renews this well within the lease)."""
        ids = list(job_ids)
        if ids:
            with Session(self.engine) as session, session.begin():
                session.execute(update(_JobRow).where(_JobRow.id.in_(ids))
                                .values(updated_at=_now()))

    def resume_stale(self, lease_s: float) -> int:
        """Running jobs with no sign of life for `lease_s` belonged to a process that died:
        they go back to the queue. Safe to call from any number of processes."""
        with Session(self.engine) as session, session.begin():
            result = session.execute(
                update(_JobRow).where(_JobRow.state == JobState.RUNNING,
                                      _JobRow.updated_at < _now() - timedelta(seconds=lease_s))
                .values(state=JobState.QUEUED, progress_text="resumed after its worker died",
                        next_attempt_at=_now(), updated_at=_now()))
            return int(result.rowcount)  # type: ignore[attr-defined]

    def get(self, job_id: int) -> Job:
        with Session(self.engine) as session:
            row = session.get(_JobRow, job_id)
            if row is None:
                raise KeyError(f"no job {job_id}")
            return _job(row)

    def briefs(self, *, subject: str, limit: int = 500) -> list[JobBrief]:
        """The newest `limit` jobs of `subject`, briefly (one light query: hooks call this on
        every request)."""
        with self.engine.connect() as connection:
            rows = connection.execute(_BRIEFS, {"subject": subject, "limit": limit})
            return [JobBrief(row.pipeline, f"{row.source_type}/{row.source_id}/_history/{row.source_version}",
                             row.fhir_base_url, JobState(row.state), row.error or "")
                    for row in rows]

    def list(self, *, state: JobState | None = None, subject: str | None = None,
             limit: int = 100) -> list[Job]:
        query = select(_JobRow).order_by(_JobRow.id.desc()).limit(limit)
        if state is not None:
            query = query.where(_JobRow.state == state)
        if subject is not None:
            query = query.where(_JobRow.subject == subject)
        with Session(self.engine) as session:
            return [_job(row) for row in session.scalars(query)]

    def _set(self, job_id: int, **values: Any) -> None:
        with Session(self.engine) as session, session.begin():
            session.execute(update(_JobRow).where(_JobRow.id == job_id)
                            .values(updated_at=_now(), **values))


def _upgrade(engine: Engine) -> None:
    """Add the columns a database created by an older release lacks (empty for its jobs)."""
    for name in ("session_id", "on_behalf_of"):
        if name in _columns(engine):
            continue
        kind = _JobRow.__table__.c[name].type.compile(dialect=engine.dialect)
        try:
            with engine.begin() as connection:
                connection.execute(text(f"ALTER TABLE {_JobRow.__tablename__} ADD COLUMN {name} "
                                        f"{kind} NOT NULL DEFAULT ''"))
        except DBAPIError:
            if name not in _columns(engine):  # not another worker process that added it first
                raise


def _columns(engine: Engine) -> set[str]:
    return {column["name"] for column in inspect(engine).get_columns(_JobRow.__tablename__)}
