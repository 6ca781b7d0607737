"""Where jobs live: a SQLAlchemy table (SQLite file by default, any SQLAlchemy URL works).

A job belongs to one FHIR server: its identity is (fhir_base_url, pipeline, source type, id,
version), so equal resource ids on two EHRs are two jobs, and no submission ever moves a job to
another server or patient.

A job started from the SMART app also records on whose behalf it runs: the app session whose
token the runner uses (`session_id`) and the user named in the write's Provenance
(`on_behalf_of`). Both are empty for service jobs (CDS hooks, the CLI).

Each claim gives the job a new `lease_token`. A worker's updates (progress, heartbeat, outcome)
name it, so a worker that lost the job — its lease ran out and another process took the job, or
its time limit passed — changes nothing any more: its updates raise StaleJob.

The runner talks to jobs only through JobStore's methods, so a distributed queue can replace
this class without touching pipelines or the runner's callers.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, bindparam, create_engine, func, or_, select, update
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from plugin.errors import ChartlightError
from plugin.jobs.schema import JobRow, create_or_upgrade

log = logging.getLogger(__name__)


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class StaleJob(ChartlightError):
    """A worker's update names an attempt that no longer holds the job (lease lost, timed out,
    or the job was taken back): the update is refused and the worker drops its work."""

    def __init__(self, job_id: int, attempt: int) -> None:
        super().__init__(f"job {job_id}: attempt {attempt} no longer holds the job (its lease ran "
                         "out or its time limit passed); its work is dropped")
        self.job_id = job_id


class JobBusy(ChartlightError):
    """The job is running; it cannot be queued again until it ends."""


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
    lease_token: str = ""  # the running attempt's fence (see the module docstring)
    deadline_at: datetime | None = None  # the running attempt's wall-clock limit
    retry_since: datetime | None = None  # first of the current run of transient failures
    transient: bool = False  # failed for a reason that may pass (a later submission retries)

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


@dataclass(frozen=True)
class JobScope:
    """Which jobs a runner may claim and resume: those of its pipelines (None: any), and
    optionally of one patient on one FHIR server (a CLI run for that patient)."""

    pipelines: frozenset[str] | None = None
    subject: str | None = None
    fhir_base_url: str | None = None

    def clauses(self) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = []
        if self.pipelines is not None:
            found.append(JobRow.pipeline.in_(sorted(self.pipelines)))
        if self.subject is not None:
            found.append(JobRow.subject == self.subject)
        if self.fhir_base_url is not None:
            found.append(JobRow.fhir_base_url == server_key(self.fhir_base_url))
        return found


def server_key(fhir_base_url: str) -> str:
    """How a FHIR base is stored and compared: without its trailing slash."""
    return fhir_base_url.rstrip("/")


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything stored is UTC.
    return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)


def _job(row: JobRow) -> Job:
    return Job(
        id=row.id, pipeline=row.pipeline, source_type=row.source_type, source_id=row.source_id,
        source_version=row.source_version, subject=row.subject, fhir_base_url=row.fhir_base_url,
        state=JobState(row.state), progress=row.progress, progress_text=row.progress_text,
        attempts=row.attempts, next_attempt_at=_aware(row.next_attempt_at),  # type: ignore[arg-type]
        error=row.error, summary=json.loads(row.summary_json) if row.summary_json else {},
        created_at=_aware(row.created_at), updated_at=_aware(row.updated_at),  # type: ignore[arg-type]
        session_id=row.session_id or "", on_behalf_of=row.on_behalf_of or "",
        lease_token=row.lease_token or "", deadline_at=_aware(row.deadline_at),
        retry_since=_aware(row.retry_since), transient=bool(row.transient),
    )


# The status query of every hook call, built once so that only its values bind per call.
_BRIEF_COLUMNS = (JobRow.pipeline, JobRow.source_type, JobRow.source_id, JobRow.source_version,
                  JobRow.fhir_base_url, JobRow.state, JobRow.error)
_BRIEFS = (select(*_BRIEF_COLUMNS).where(JobRow.subject == bindparam("subject"))
           .order_by(JobRow.id.desc()).limit(bindparam("limit")))
_SERVER_BRIEFS = (select(*_BRIEF_COLUMNS).where(JobRow.subject == bindparam("subject"),
                                                JobRow.fhir_base_url == bindparam("server"))
                  .order_by(JobRow.id.desc()).limit(bindparam("limit")))
# What a claim or a retry resets.
_FRESH = {"progress": 0.0, "progress_text": "", "error": "", "retry_since": None, "transient": False}


class JobStore:
    """Jobs in a SQL database. Safe to share between threads and processes.

    `publish`, when set (the web tier with a broker: plugin.jobs.dispatch), is told of each job
    this store has just queued (a new submission, a retry, a failed job queued again), after the
    commit; it must not raise (a lost message is published again by the workers' sweeper)."""

    publish: Callable[[Job], object] | None = None

    def __init__(self, url_or_engine: str | Engine) -> None:
        if isinstance(url_or_engine, str):
            url = make_url(url_or_engine)
            if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
                Path(url.database).parent.mkdir(parents=True, exist_ok=True)
            # After a database failover the pool's connections are dead: test each before use.
            url_or_engine = create_engine(url, pool_pre_ping=True)
        self.engine = url_or_engine
        create_or_upgrade(self.engine)

    # ---- submitting ------------------------------------------------------------------------

    def submit(self, *, pipeline: str, source_type: str, source_id: str, source_version: str,
               subject: str, fhir_base_url: str, session_id: str = "", on_behalf_of: str = "") -> Job:
        """The job for this source version and pipeline on this FHIR server: the existing one,
        or a new queued one. Safe when several processes submit the same job at once.

        A job that failed for a transient reason (the server or the model endpoint was away for
        longer than the retry horizon) is queued again by any later submission. A submission
        with a `session_id` (an app user asked) takes over an existing job that has not run yet
        or failed: the job is now run with that session for `on_behalf_of`, and a failed one is
        queued again. A succeeded job is done (its results are on the server) and a running one
        is left to finish; both are returned unchanged. No submission changes a job's server or
        patient."""
        if not (source_id and source_version):
            raise ValueError(f"{source_type}/{source_id or '?'}: a job needs the source's id and "
                             "version (meta.versionId)")
        key = {"fhir_base_url": server_key(fhir_base_url), "pipeline": pipeline,
               "source_type": source_type, "source_id": source_id, "source_version": source_version}
        try:
            with Session(self.engine) as session, session.begin():
                now = _now()
                row = JobRow(**key, subject=subject, state=JobState.QUEUED, attempts=0,
                             next_attempt_at=now, summary_json="", created_at=now, updated_at=now,
                             session_id=session_id, on_behalf_of=on_behalf_of, lease_token="",
                             **_FRESH)
                session.add(row)
                session.flush()
                created = _job(row)
            self._published([created])
            return created
        except IntegrityError:
            pass  # it exists (perhaps submitted by another process this instant): use that one
        with Session(self.engine) as session, session.begin():
            row = session.scalars(select(JobRow).filter_by(**key)).one()
            job_id = row.id
            if row.subject != subject:
                log.warning("job %d (%s) is for %s; a submission for %s left it unchanged", job_id,
                            f"{source_type}/{source_id}/_history/{source_version}", row.subject, subject)
                return _job(row)
            again = {"state": JobState.QUEUED, "attempts": 0, "next_attempt_at": _now(),
                     "updated_at": _now(), **_FRESH}
            # Each update is guarded by state, so a worker claiming the job meanwhile keeps it.
            queued_again = session.execute(
                update(JobRow).where(JobRow.id == job_id, JobRow.state == JobState.FAILED,
                                     JobRow.transient.is_(True)).values(**again)).rowcount  # type: ignore[attr-defined]
            if session_id:
                owner = {"session_id": session_id, "on_behalf_of": on_behalf_of, "updated_at": _now()}
                session.execute(update(JobRow).where(JobRow.id == job_id,
                                                     JobRow.state == JobState.QUEUED).values(**owner))
                queued_again += session.execute(update(JobRow).where(JobRow.id == job_id,
                                                                     JobRow.state == JobState.FAILED)
                                                .values({**again, **owner})).rowcount  # type: ignore[attr-defined]
        job = self.get(job_id)
        if queued_again:
            self._published([job])
        return job

    def retry(self, job_id: int) -> Job:
        """Queue a failed (or succeeded) job again, now. A running job is refused (JobBusy)."""
        with Session(self.engine) as session, session.begin():
            done = session.execute(update(JobRow).where(JobRow.id == job_id,
                                                        JobRow.state != JobState.RUNNING)
                                   .values(state=JobState.QUEUED, attempts=0, next_attempt_at=_now(),
                                           updated_at=_now(), **_FRESH))
        if done.rowcount != 1:  # type: ignore[attr-defined]
            job = self.get(job_id)  # KeyError when there is no such job
            raise JobBusy(f"job {job.id} is running (attempt {job.attempts}); retry it once it has ended")
        job = self.get(job_id)
        self._published([job])
        return job

    def requeue_transient(self, *, subject: str, fhir_base_url: str) -> int:
        """Queue again, now, the jobs of `subject` on the FHIR server `fhir_base_url` that failed
        for a transient reason (as a later submission of each would): one UPDATE, cheap enough for
        a page visit. Their owner (session, user) is kept. Returns how many were queued."""
        with Session(self.engine) as session, session.begin():
            done = session.execute(
                update(JobRow).where(JobRow.subject == subject,
                                     JobRow.fhir_base_url == server_key(fhir_base_url),
                                     JobRow.state == JobState.FAILED, JobRow.transient.is_(True))
                .values(state=JobState.QUEUED, attempts=0, next_attempt_at=_now(), updated_at=_now(),
                        **_FRESH).returning(JobRow.id))
            queued = list(done.scalars())
        if queued and self.publish is not None:
            self._published([self.get(job_id) for job_id in queued])
        return len(queued)

    # ---- a worker's side: claims and fenced updates ----------------------------------------

    def claim_next(self, scope: JobScope = JobScope(), *,
                   time_limits: Mapping[str, float] | None = None) -> Job | None:
        """Atomically move the oldest due queued job within `scope` to running, with a new lease
        token and, when `time_limits` names its pipeline, a deadline that many seconds away."""
        return self._claim_due(scope, time_limits, order=True)

    def claim(self, job_id: int, scope: JobScope = JobScope(), *,
              time_limits: Mapping[str, float] | None = None) -> Job | None:
        """Claim job `job_id` as claim_next would (a broker's message names it); None when it is
        not a due queued job within `scope` — done, running elsewhere, or waiting to retry. A
        message delivered twice therefore runs its job once."""
        return self._claim_due(scope, time_limits, job_id=job_id)

    def _claim_due(self, scope: JobScope, time_limits: Mapping[str, float] | None, *,
                   job_id: int | None = None, order: bool = False) -> Job | None:
        query = select(JobRow.id, JobRow.pipeline).where(
            JobRow.state == JobState.QUEUED, JobRow.next_attempt_at <= _now(), *scope.clauses())
        if job_id is not None:
            query = query.where(JobRow.id == job_id)
        with Session(self.engine) as session, session.begin():
            candidates = session.execute(query.order_by(JobRow.id).limit(5) if order else query).all()
            for found, pipeline in candidates:
                now = _now()
                limit = (time_limits or {}).get(pipeline)
                claimed = session.execute(
                    update(JobRow).where(JobRow.id == found, JobRow.state == JobState.QUEUED)
                    .values(state=JobState.RUNNING, attempts=JobRow.attempts + 1,
                            lease_token=secrets.token_hex(16), progress=0.0,
                            progress_text="starting", updated_at=now,
                            deadline_at=None if limit is None else now + timedelta(seconds=limit)))
                if claimed.rowcount == 1:  # type: ignore[attr-defined]
                    return _job(session.get_one(JobRow, found))
        return None

    def take_unclaimed(self, older_than_s: float, scope: JobScope = JobScope(), *,
                       limit: int = 500) -> list[Job]:
        """Due queued jobs within `scope` that nothing has changed for `older_than_s`: their
        message may be lost (the broker was down at submission, or lost what it held). Each is
        marked (updated_at = now) as it is taken, so of several processes sweeping at once one
        takes it, and it is taken again only after another `older_than_s`."""
        now = _now()
        cutoff = now - timedelta(seconds=older_than_s)
        taken = []
        with Session(self.engine) as session, session.begin():
            found = session.scalars(select(JobRow.id).where(
                JobRow.state == JobState.QUEUED, JobRow.next_attempt_at <= now,
                JobRow.updated_at < cutoff, *scope.clauses()).order_by(JobRow.id).limit(limit)).all()
            for job_id in found:
                marked = session.execute(update(JobRow).where(
                    JobRow.id == job_id, JobRow.state == JobState.QUEUED, JobRow.updated_at < cutoff)
                    .values(updated_at=now))
                if marked.rowcount == 1:  # type: ignore[attr-defined]
                    taken.append(_job(session.get_one(JobRow, job_id)))
        return taken

    def has_queued(self, scope: JobScope = JobScope()) -> bool:
        with Session(self.engine) as session:
            return session.scalars(select(JobRow.id).where(JobRow.state == JobState.QUEUED,
                                                           *scope.clauses()).limit(1)).first() is not None

    def set_progress(self, job: Job, fraction: float, text: str) -> None:
        self._fenced(job, progress=max(0.0, min(1.0, fraction)), progress_text=text[:200])

    def succeed(self, job: Job, summary: dict[str, Any]) -> None:
        self._fenced(job, state=JobState.SUCCEEDED, progress=1.0, progress_text="done", error="",
                     summary_json=json.dumps(summary), retry_since=None, transient=False)

    def fail(self, job: Job, error: str, *, transient: bool = False) -> None:
        """Fail the attempt `job`. `transient`: the reason may pass (a later submission of the
        job queues it again)."""
        self._fenced(job, state=JobState.FAILED, error=error, transient=transient)

    def requeue(self, job: Job, error: str, delay_s: float) -> None:
        """Back to the queue after a transient failure, due again after `delay_s`."""
        now = _now()
        self._fenced(job, state=JobState.QUEUED, error=error, progress_text="waiting to retry",
                     next_attempt_at=now + timedelta(seconds=delay_s),
                     retry_since=func.coalesce(JobRow.retry_since, now))

    def heartbeat(self, jobs: Iterable[Job]) -> set[int]:
        """Say these attempts are alive; returns the ids whose lease was renewed. An attempt
        past its deadline is not renewed: a heartbeat never keeps a stuck job alive."""
        renewed = set()
        with Session(self.engine) as session, session.begin():
            now = _now()
            for job in jobs:
                result = session.execute(update(JobRow).where(
                    *self._holds(job), or_(JobRow.deadline_at.is_(None), JobRow.deadline_at > now))
                    .values(updated_at=now))
                if result.rowcount == 1:  # type: ignore[attr-defined]
                    renewed.add(job.id)
        return renewed

    def holds(self, job: Job) -> bool:
        """Whether the attempt `job` still holds its job (checked just before writing)."""
        with Session(self.engine) as session:
            return session.scalars(select(JobRow.id).where(*self._holds(job))).first() is not None

    def resume_stale(self, lease_s: float, scope: JobScope = JobScope()) -> int:
        """Running jobs with no sign of life for `lease_s` belonged to a process that died:
        they go back to the queue — or fail, when their deadline has passed too. Safe to call
        from any number of processes."""
        now = _now()
        stale = [JobRow.state == JobState.RUNNING, JobRow.updated_at < now - timedelta(seconds=lease_s),
                 *scope.clauses()]
        with Session(self.engine) as session, session.begin():
            overdue = session.execute(
                update(JobRow).where(*stale, JobRow.deadline_at.is_not(None), JobRow.deadline_at < now)
                .values(state=JobState.FAILED, lease_token="", updated_at=now,
                        error="stopped: its worker stopped answering and its time limit has passed"))
            resumed = session.execute(
                update(JobRow).where(*stale)
                .values(state=JobState.QUEUED, lease_token="", progress_text="resumed after its worker died",
                        next_attempt_at=now, updated_at=now))
            return int(overdue.rowcount) + int(resumed.rowcount)  # type: ignore[attr-defined]

    # ---- reading -----------------------------------------------------------------------------

    def get(self, job_id: int) -> Job:
        with Session(self.engine) as session:
            row = session.get(JobRow, job_id)
            if row is None:
                raise KeyError(f"no job {job_id}")
            return _job(row)

    def briefs(self, *, subject: str, fhir_base_url: str | None = None, limit: int = 500) -> list[JobBrief]:
        """The newest `limit` jobs of `subject` on the FHIR server `fhir_base_url` (None: on every
        server — for operators, never for an EHR's request), briefly: one light query, as hooks
        call this on every request."""
        query, values = _BRIEFS, {"subject": subject, "limit": limit}
        if fhir_base_url is not None:
            query, values = _SERVER_BRIEFS, {**values, "server": server_key(fhir_base_url)}
        with self.engine.connect() as connection:
            rows = connection.execute(query, values)
            return [JobBrief(row.pipeline, f"{row.source_type}/{row.source_id}/_history/{row.source_version}",
                             row.fhir_base_url, JobState(row.state), row.error or "")
                    for row in rows]

    def list(self, *, fhir_base_url: str | None = None, state: JobState | None = None,
             subject: str | None = None, limit: int = 100) -> list[Job]:
        """The newest jobs on the FHIR server `fhir_base_url` (None: on every server)."""
        query = select(JobRow).order_by(JobRow.id.desc()).limit(limit)
        if fhir_base_url is not None:
            query = query.where(JobRow.fhir_base_url == server_key(fhir_base_url))
        if state is not None:
            query = query.where(JobRow.state == state)
        if subject is not None:
            query = query.where(JobRow.subject == subject)
        with Session(self.engine) as session:
            return [_job(row) for row in session.scalars(query)]

    def _published(self, jobs: Iterable[Job]) -> None:
        if self.publish is not None:
            for job in jobs:
                self.publish(job)

    # ---- fencing -----------------------------------------------------------------------------

    @staticmethod
    def _holds(job: Job) -> tuple[ColumnElement[bool], ...]:
        if not job.lease_token:
            raise ValueError(f"job {job.id}: only a claimed job (from claim_next) can be updated")
        return (JobRow.id == job.id, JobRow.state == JobState.RUNNING,
                JobRow.lease_token == job.lease_token)

    def _fenced(self, job: Job, **values: Any) -> None:
        with Session(self.engine) as session, session.begin():
            result = session.execute(update(JobRow).where(*self._holds(job))
                                     .values(updated_at=_now(), **values))
            if result.rowcount != 1:  # type: ignore[attr-defined]
                raise StaleJob(job.id, job.attempts)
