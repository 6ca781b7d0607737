"""Runs queued jobs on an in-process thread pool: read the source at its exact version, check it
names the job's patient, run the pipeline within the pipeline's time limit, write the result
back, record the outcome. Transient failures (server unreachable, overloaded, version conflict)
are retried with capped, jittered exponential backoff until the retry horizon; bad input fails
the job with its reason. Every update is fenced by the attempt's lease token (JobStore), so an
attempt that lost its job — lease over, time limit passed — writes nothing more.

The loop and heartbeat threads outlive database faults (SQLite "database is locked", a
PostgreSQL failover): they log, back off and carry on."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from random import SystemRandom
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import SQLAlchemyError

from plugin.errors import ChartlightError, EngineError, FhirResponseError, FhirTransportError
from plugin.fhir import FhirClient
from plugin.jobs.store import Job, JobScope, JobStore, StaleJob
from plugin.results import PipelineResult
from plugin.writeback import check_source_subject, write_result

if TYPE_CHECKING:
    from plugin.config import Settings

log = logging.getLogger(__name__)

# What a pipeline's written resources are read by next: (resource type, pipeline). The speech
# pipeline's transcript DocumentReference is the dictation-note pipeline's input.
FOLLOW_UPS = {"speech": ("DocumentReference", "dictation-note")}

TRANSIENT_STATUSES = frozenset({408, 409, 412, 429, 500, 502, 503, 504})
_jitter = SystemRandom().random  # spreads retries; not for secrets, but needs no seeding per process


@dataclass(frozen=True)
class JobContext:
    """What a pipeline gets: the job, a client for its FHIR server, the source resource as it
    was at the job's version, and a way to report progress (which raises StaleJob once the
    attempt no longer holds the job: a pipeline abandoned at its time limit stops there)."""

    job: Job
    client: FhirClient
    source: dict[str, Any]
    report_progress: Callable[[float, str], None]


Pipeline = Callable[[JobContext], PipelineResult]


@dataclass(frozen=True)
class JobLimits:
    """How long transient failures are retried, and how long one attempt may run.

    A transient failure is retried after `first_delay_s`, doubling per attempt up to
    `retry_max_delay_s`, each delay drawn between half and all of that (jitter, so that jobs
    failed by one outage do not all return at once); once `retry_horizon_s` has passed since
    the first failure of the run, the job fails as transient (a later submission retries it).
    Each attempt may run `time_limits[pipeline]` seconds (`default_time_limit_s` for others)."""

    retry_horizon_s: float = 1800.0
    retry_max_delay_s: float = 120.0
    first_delay_s: float = 2.0
    time_limits: Mapping[str, float] = field(default_factory=dict)
    default_time_limit_s: float = 3600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> JobLimits:
        return cls(retry_horizon_s=settings.job_retry_horizon_s,
                   retry_max_delay_s=settings.job_retry_max_delay_s,
                   time_limits={"documents": settings.job_timeout_documents_s,
                                "speech": settings.job_timeout_speech_s,
                                "imaging": settings.job_timeout_imaging_s,
                                "pathology": settings.job_timeout_imaging_s,
                                "summary": settings.job_timeout_summary_s})

    def time_limit(self, pipeline: str) -> float:
        return self.time_limits.get(pipeline, self.default_time_limit_s)

    def retry_delay(self, attempt: int, rand: Callable[[], float] = _jitter) -> float:
        """The wait before try `attempt + 1` (attempt counts from 1). Pure given `rand`."""
        ceiling = min(self.retry_max_delay_s, self.first_delay_s * 2 ** min(attempt - 1, 30))
        return ceiling / 2 + rand() * ceiling / 2


class JobTimedOut(ChartlightError):
    """The attempt ran past its pipeline's wall-clock limit."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


class JobRunner:
    """`client_for(job)` gives the FHIR client a job runs with: the service's own, or, for a job
    started in the SMART app (`job.session_id`), one with that user's token. It raises a
    ChartlightError when a job cannot be run (its session ended): the job fails with that message.

    The runner claims only jobs of its own pipelines, and only within `scope` (a CLI run for
    one patient claims that patient's jobs on that server, nothing else)."""

    def __init__(
        self,
        store: JobStore,
        pipelines: Mapping[str, Pipeline],
        client_for: Callable[[Job], FhirClient],
        *,
        workers: int = 2,
        poll_s: float = 0.5,
        lease_s: float = 60.0,
        backoff_s: float | None = None,
        limits: JobLimits | None = None,
        scope: JobScope | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.store = store
        self.client_for = client_for
        self.workers = workers
        self.poll_s = poll_s
        self.lease_s = lease_s
        limits = limits or JobLimits()
        self.limits = limits if backoff_s is None else replace(limits, first_delay_s=backoff_s)
        self._base_scope = scope or JobScope()
        self.clock = clock
        self.use_pipelines(pipelines)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._running: dict[int, Job] = {}
        self._running_lock = threading.Lock()

    def use_pipelines(self, pipelines: Mapping[str, Pipeline]) -> None:
        """Run these pipelines from now on: what the runner claims follows them (a runner claims
        only jobs of pipelines it has)."""
        self.pipelines = dict(pipelines)
        base = self._base_scope
        self.scope = JobScope(frozenset(self.pipelines), base.subject, base.fhir_base_url)
        self._time_limits = {name: self.limits.time_limit(name) for name in self.pipelines}

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self, *, claim: bool = True) -> None:
        """Run queued jobs in the background; jobs a dead process left running are resumed
        once their lease runs out (checked by the heartbeat). Without `claim`, only the
        heartbeat runs: jobs come to `execute` from elsewhere (a broker's messages)."""
        self._stop.clear()
        self._threads = [
            *([threading.Thread(target=self._loop, name="chartlight-jobs", daemon=True)] if claim else []),
            threading.Thread(target=self._heartbeat_loop, name="chartlight-jobs-heartbeat",
                             daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout_s: float = 30) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout_s)
        self._threads = []

    def alive(self) -> bool:
        """Whether the background loop and heartbeat threads are running."""
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def run_until_idle(self, *, include_delayed: bool = False, timeout_s: float = 600) -> None:
        """Run queued jobs in this thread until none is due (CLI, demo, tests). With
        `include_delayed`, waits out retry delays too."""
        try:
            self.store.resume_stale(self.lease_s, self.scope)
        except SQLAlchemyError as exc:  # the heartbeat thread tries again
            _store_fault("resuming jobs of dead workers", exc, 1)
        heartbeat = threading.Thread(target=self._heartbeat_loop, daemon=True)
        self._stop.clear()
        heartbeat.start()
        try:
            self._drain(include_delayed, timeout_s)
        finally:
            self._stop.set()
            heartbeat.join()

    def _drain(self, include_delayed: bool, timeout_s: float) -> None:
        deadline = self.clock().timestamp() + timeout_s
        faults = 0
        while self.clock().timestamp() < deadline:
            try:
                job = self._claim()
                idle = job is None and (not include_delayed or not self.store.has_queued(self.scope))
            except SQLAlchemyError as exc:
                faults += 1
                self._stop.wait(_store_fault("claiming a job", exc, faults))
                continue
            faults = 0
            if job is not None:
                self.execute(job)
            elif idle:
                return
            else:
                self._stop.wait(min(self.poll_s, 0.5))

    def run_claimed(self, job_id: int) -> bool:
        """Claim job `job_id` (a broker's message names it) and run it in this thread; False
        when it cannot be claimed here: done, running elsewhere, waiting to retry, or not one
        of this runner's pipelines. Store faults are raised."""
        job = self.store.claim(job_id, self.scope, time_limits=self._time_limits)
        if job is None:
            return False
        self.execute(job)
        return True

    def _claim(self) -> Job | None:
        return self.store.claim_next(self.scope, time_limits=self._time_limits)

    # ---- one job -------------------------------------------------------------------------------

    def execute(self, job: Job) -> None:
        with self._running_lock:
            self._running[job.id] = job
        try:
            self._execute(job)
        except StaleJob as exc:
            log.warning("%s", exc)
        finally:
            with self._running_lock:
                self._running.pop(job.id, None)

    def _execute(self, job: Job) -> None:
        pipeline = self.pipelines.get(job.pipeline)
        if pipeline is None:  # claims are scoped to our pipelines: only a job handed to execute()
            self._record(self.store.fail, job, f"no pipeline named {job.pipeline!r} is installed")
            return
        limit = self.limits.time_limit(job.pipeline)
        deadline = (job.deadline_at.timestamp() if job.deadline_at
                    else self.clock().timestamp() + limit)
        try:
            client = self.client_for(job)
            source = client.vread(job.source_type, job.source_id, job.source_version)
            check_source_subject(source, subject=job.subject, base_url=job.fhir_base_url)
            context = JobContext(job=job, client=client, source=source,
                                 report_progress=lambda f, t: self._report(job, f, t))
            result = run_with_time_limit(pipeline, context, deadline - self.clock().timestamp(),
                                      f"{job.pipeline} took longer than its time limit of "
                                      f"{limit:g} s; stopped (job_timeout_{job.pipeline}_s)")
            if self.clock().timestamp() > deadline:
                raise JobTimedOut(f"{job.pipeline} ran past its time limit of {limit:g} s before "
                                  "writing; nothing was written")
            self.store.set_progress(job, 0.95, "writing results")
            if not self.store.holds(job):
                raise StaleJob(job.id, job.attempts)
            outcome = write_result(client, result, subject=job.subject, now=self.clock(),
                                   on_behalf_of=job.on_behalf_of or None, source=source,
                                   job_pipeline=job.pipeline)
        except StaleJob:
            raise
        except SQLAlchemyError as exc:  # the job store, not the job: its lease decides what next
            _store_fault(f"running job {job.id}", exc, 1)
            return
        except (FhirTransportError, FhirResponseError, EngineError) as exc:
            self._retry_or_fail(job, exc)
            return
        except ChartlightError as exc:
            self._record(self.store.fail, job, str(exc))
            return
        except Exception as exc:  # a bug: keep the worker alive, record what broke
            log.exception("job %d crashed", job.id)
            self._record(self.store.fail, job, f"internal error: {type(exc).__name__}: {exc}")
            return
        summary = asdict(outcome)
        summary["problems"] = [asdict(p) for p in result.problems]
        summary["model"] = {"name": result.model.name, "version": result.model.version,
                            "test_weights": result.model.test_weights}
        self._record(self.store.succeed, job, summary)
        self._queue_follow_ups(job, outcome.written)

    def _queue_follow_ups(self, job: Job, written: list[str]) -> None:
        """Queue the pipeline that reads what this job wrote (FOLLOW_UPS), for the same server,
        patient and session: a transcript is structured into a note without waiting for the next
        CDS scan. Any worker taking that pipeline's queue runs it."""
        follow_up = FOLLOW_UPS.get(job.pipeline)
        if follow_up is None:
            return
        for location in written:
            parts = location.split("/")
            if len(parts) != 4 or parts[0] != follow_up[0] or parts[2] != "_history":
                continue
            try:
                self.store.submit(pipeline=follow_up[1], source_type=parts[0], source_id=parts[1],
                                  source_version=parts[3], subject=job.subject,
                                  fhir_base_url=job.fhir_base_url, session_id=job.session_id,
                                  on_behalf_of=job.on_behalf_of)
            except SQLAlchemyError as exc:  # the next CDS scan or `analyze` queues it instead
                _store_fault(f"queueing {follow_up[1]} for {location}", exc, 1)

    def _report(self, job: Job, fraction: float, text: str) -> None:
        """A pipeline's progress report: a store fault is logged, not raised into the pipeline
        (progress is a display); a lost lease is raised (StaleJob), to stop the pipeline."""
        try:
            self.store.set_progress(job, fraction, text)
        except SQLAlchemyError as exc:
            _store_fault(f"reporting progress of job {job.id}", exc, 1)

    def _retry_or_fail(self, job: Job, exc: FhirTransportError | FhirResponseError | EngineError) -> None:
        if not is_transient(exc):
            self._record(self.store.fail, job, str(exc))
            return
        since = job.retry_since or self.clock()
        waited = (self.clock() - since).total_seconds()
        delay = self.limits.retry_delay(job.attempts)
        if waited + delay > self.limits.retry_horizon_s:
            self._record(self.store.fail, job, f"gave up after {job.attempts} attempt(s) over "
                         f"{waited:.0f} s (job_retry_horizon_s {self.limits.retry_horizon_s:g} s); "
                         f"the next analysis request retries it: {exc}", transient=True)
            return
        log.info("job %d: transient failure (%s); retry in %.0fs", job.id, type(exc).__name__, delay)
        self._record(self.store.requeue, job, str(exc), delay)

    def _record(self, update: Callable[..., None], job: Job, *args: Any, **kwargs: Any) -> None:
        """Record an outcome, waiting out a database fault for up to one lease; if it cannot be
        recorded, the lease runs out and the job is run again (its write is idempotent)."""
        waited, faults = 0.0, 0
        while True:
            try:
                update(job, *args, **kwargs)
                return
            except SQLAlchemyError as exc:
                faults += 1
                delay = _store_fault(f"recording job {job.id}", exc, faults)
                if waited + delay > self.lease_s:
                    log.warning("job %d: outcome not recorded; it runs again once its lease is over",
                                job.id)
                    return
                waited += delay
                self._stop.wait(delay)

    # ---- background loop -------------------------------------------------------------------

    def _loop(self) -> None:
        with ThreadPoolExecutor(self.workers, thread_name_prefix="chartlight-job") as pool:
            slots = threading.Semaphore(self.workers)
            faults = 0
            while not self._stop.is_set():
                if not slots.acquire(timeout=self.poll_s):
                    continue
                try:
                    job = self._claim()
                except SQLAlchemyError as exc:
                    slots.release()
                    faults += 1
                    self._stop.wait(_store_fault("claiming a job", exc, faults))
                    continue
                faults = 0
                if job is None:
                    slots.release()
                    self._stop.wait(self.poll_s)
                    continue
                pool.submit(self._execute_and_release, job, slots)

    def _execute_and_release(self, job: Job, slots: threading.Semaphore) -> None:
        try:
            self.execute(job)
        except Exception:  # never lose a slot, never die silently in the pool
            log.exception("job %d: the runner failed around it", job.id)
        finally:
            slots.release()

    def _heartbeat_loop(self) -> None:
        """Renew our running jobs' lease and take back jobs whose worker died."""
        faults = 0
        while True:
            with self._running_lock:
                running = list(self._running.values())
            try:
                renewed = self.store.heartbeat(running)
                resumed = self.store.resume_stale(self.lease_s, self.scope)
            except SQLAlchemyError as exc:
                faults += 1
                if self._stop.wait(_store_fault("renewing leases", exc, faults)):
                    return
                continue
            faults = 0
            for job in running:
                if job.id not in renewed:
                    log.warning("job %d: attempt %d no longer holds its lease (time limit passed "
                                "or taken over); its work will be dropped", job.id, job.attempts)
            if resumed:
                log.info("resumed %d job(s) whose worker died", resumed)
            if self._stop.wait(self.lease_s / 4):
                return


def _store_fault(doing: str, exc: SQLAlchemyError, faults: int) -> float:
    """Log a database fault (its driver message only: the SQL's parameters may name patients)
    and return how long to back off: 0.5 s doubling to 30 s, jittered."""
    delay = min(30.0, 0.5 * 2 ** min(faults - 1, 10)) * (0.5 + _jitter() / 2)
    reason = str(getattr(exc, "orig", None) or type(exc).__name__).splitlines()[0][:200]
    log.warning("job store fault while %s (%s: %s); retrying in %.1f s", doing, type(exc).__name__,
                reason, delay)
    return delay


def run_with_time_limit(pipeline: Pipeline, context: JobContext, timeout_s: float,
                     message: str) -> PipelineResult:
    """Run the pipeline on a thread of its own and wait at most `timeout_s`. Python cannot kill
    a thread: past the limit it is abandoned (left to end on its own) and JobTimedOut is raised,
    freeing the worker; the job is then failed, so the abandoned thread's next progress report
    raises StaleJob and nothing it produces is ever written."""
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            outcome["result"] = pipeline(context)
        except BaseException as exc:  # handed to the waiting worker, raised there
            outcome["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name=f"chartlight-job-{context.job.id}-pipeline", daemon=True).start()
    if not done.wait(max(0.0, timeout_s)):
        raise JobTimedOut(message)
    if "error" in outcome:
        raise outcome["error"]
    result: PipelineResult = outcome["result"]
    return result


def is_transient(exc: FhirTransportError | FhirResponseError | EngineError) -> bool:
    """Whether the same job may succeed if tried again later."""
    if isinstance(exc, FhirResponseError):
        return exc.status in TRANSIENT_STATUSES
    if isinstance(exc, EngineError):
        return exc.transient
    return True  # no answer from the FHIR server at all
