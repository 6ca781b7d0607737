"""Runs queued jobs on an in-process thread pool: read the source at its exact version, run the
pipeline, write the result back, record the outcome. Transient failures (server unreachable,
overloaded, version conflict) are retried with backoff; bad input fails the job with its reason."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from plugin.errors import ChartlightError, EngineError, FhirResponseError, FhirTransportError
from plugin.fhir import FhirClient
from plugin.jobs.store import Job, JobState, JobStore
from plugin.results import PipelineResult
from plugin.writeback import write_result

log = logging.getLogger(__name__)

TRANSIENT_STATUSES = frozenset({408, 409, 412, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class JobContext:
    """What a pipeline gets: the job, a client for its FHIR server, the source resource as it
    was at the job's version, and a way to report progress."""

    job: Job
    client: FhirClient
    source: dict[str, Any]
    report_progress: Callable[[float, str], None]


Pipeline = Callable[[JobContext], PipelineResult]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class JobRunner:
    """`client_for(job)` gives the FHIR client a job runs with: the service's own, or, for a job
    started in the SMART app (`job.session_id`), one with that user's token. It raises a
    ChartlightError when a job cannot be run (its session ended): the job fails with that message."""

    def __init__(
        self,
        store: JobStore,
        pipelines: Mapping[str, Pipeline],
        client_for: Callable[[Job], FhirClient],
        *,
        workers: int = 2,
        poll_s: float = 0.5,
        lease_s: float = 60.0,
        max_attempts: int = 6,
        backoff_s: float = 2.0,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.store = store
        self.pipelines = dict(pipelines)
        self.client_for = client_for
        self.workers = workers
        self.poll_s = poll_s
        self.lease_s = lease_s
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.clock = clock
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._running: set[int] = set()
        self._running_lock = threading.Lock()

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Run queued jobs in the background; jobs a dead process left running are resumed
        once their lease runs out (checked by the heartbeat)."""
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._loop, name="chartlight-jobs", daemon=True),
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

    def run_until_idle(self, *, include_delayed: bool = False, timeout_s: float = 600) -> None:
        """Run queued jobs in this thread until none is due (CLI, demo, tests). With
        `include_delayed`, waits out retry delays too."""
        self.store.resume_stale(self.lease_s)
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
        while self.clock().timestamp() < deadline:
            job = self.store.claim_next()
            if job is not None:
                self.execute(job)
                continue
            if not include_delayed or not self._has_queued():
                return
            self._stop.wait(min(self.poll_s, 0.5))

    # ---- one job -------------------------------------------------------------------------------

    def execute(self, job: Job) -> None:
        with self._running_lock:
            self._running.add(job.id)
        try:
            self._execute(job)
        finally:
            with self._running_lock:
                self._running.discard(job.id)

    def _execute(self, job: Job) -> None:
        pipeline = self.pipelines.get(job.pipeline)
        if pipeline is None:
            self.store.fail(job.id, f"no pipeline named {job.pipeline!r} is installed")
            return
        try:
            client = self.client_for(job)
            source = client.vread(job.source_type, job.source_id, job.source_version)
            context = JobContext(job=job, client=client, source=source,
                                 report_progress=lambda f, t: self.store.set_progress(job.id, f, t))
            result = pipeline(context)
            self.store.set_progress(job.id, 0.95, "writing results")
            outcome = write_result(client, result, subject=job.subject, now=self.clock(),
                                   on_behalf_of=job.on_behalf_of or None)
        except (FhirTransportError, FhirResponseError, EngineError) as exc:
            if not is_transient(exc):
                self.store.fail(job.id, str(exc))
            elif job.attempts >= self.max_attempts:
                self.store.fail(job.id, f"gave up after {job.attempts} attempts: {exc}")
            else:
                delay = self.backoff_s * 2 ** (job.attempts - 1)
                log.info("job %d: transient failure (%s); retry in %.0fs", job.id,
                         type(exc).__name__, delay)
                self.store.requeue(job.id, str(exc), delay)
            return
        except ChartlightError as exc:
            self.store.fail(job.id, str(exc))
            return
        except Exception as exc:  # a bug: keep the worker alive, record what broke
            log.exception("job %d crashed", job.id)
            self.store.fail(job.id, f"internal error: {type(exc).__name__}: {exc}")
            return
        summary = asdict(outcome)
        summary["problems"] = [asdict(p) for p in result.problems]
        summary["model"] = {"name": result.model.name, "version": result.model.version,
                            "test_weights": result.model.test_weights}
        self.store.succeed(job.id, summary)

    # ---- background loop -------------------------------------------------------------------

    def _loop(self) -> None:
        with ThreadPoolExecutor(self.workers, thread_name_prefix="chartlight-job") as pool:
            slots = threading.Semaphore(self.workers)
            while not self._stop.is_set():
                if not slots.acquire(timeout=self.poll_s):
                    continue
                job = self.store.claim_next()
                if job is None:
                    slots.release()
                    self._stop.wait(self.poll_s)
                    continue
                pool.submit(self._execute_and_release, job, slots)

    def _execute_and_release(self, job: Job, slots: threading.Semaphore) -> None:
        try:
            self.execute(job)
        finally:
            slots.release()

    def _heartbeat_loop(self) -> None:
        """Renew our running jobs' lease and take back jobs whose worker died."""
        while True:
            with self._running_lock:
                running = list(self._running)
            self.store.heartbeat(running)
            resumed = self.store.resume_stale(self.lease_s)
            if resumed:
                log.info("resumed %d job(s) whose worker died", resumed)
            if self._stop.wait(self.lease_s / 4):
                return

    def _has_queued(self) -> bool:
        return bool(self.store.list(state=JobState.QUEUED, limit=1))


def is_transient(exc: FhirTransportError | FhirResponseError | EngineError) -> bool:
    """Whether the same job may succeed if tried again later."""
    if isinstance(exc, FhirResponseError):
        return exc.status in TRANSIENT_STATUSES
    if isinstance(exc, EngineError):
        return exc.transient
    return True  # no answer from the FHIR server at all
