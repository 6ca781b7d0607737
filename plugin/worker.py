"""What `chartlight worker` runs: the job runner of one process, fed either by a Celery broker
(a message per job id, on one queue per pipeline) or, with no broker configured (the embedded
default), by the job table itself. Models load in this process, on a pipeline's first job, once.

Each worker process also renews its running jobs' leases, takes back jobs whose process died
(plugin.jobs.runner's heartbeat), and, with a broker, sweeps: a queued job nothing has taken for
`job_republish_after_s` while its queue in the broker is empty had its message lost (the broker
was down at submission, or restarted empty) and is published again. Duplicates that this or a
redelivery makes are harmless: a job is claimed through its fenced lease, once.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from plugin.config import Settings
from plugin.jobs import JobLimits, JobRunner, JobScope, JobState, JobStore
from plugin.jobs.dispatch import QUEUES, queue_of

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger(__name__)


def parse_queues(text: str) -> tuple[str, ...]:
    """"documents,speech" -> ("documents", "speech"); a ValueError names an unknown queue."""
    queues = tuple(dict.fromkeys(q.strip() for q in text.split(",") if q.strip()))
    unknown = [q for q in queues if q not in QUEUES]
    if unknown or not queues:
        raise ValueError(f"--queues: {', '.join(unknown) or 'none given'}: the queues are "
                         f"{', '.join(QUEUES)}")
    return queues


@dataclass
class WorkerProcess:
    """One process's runner over the pipelines of its queues, and its sweep."""

    store: JobStore
    runner: JobRunner
    queues: tuple[str, ...]
    republish_after_s: float
    publish: Callable[..., bool] | None = None  # plugin.jobs.dispatch.CeleryPublisher
    depth: Callable[[str], int] | None = None  # messages waiting on a queue in the broker
    _stop: threading.Event = field(default_factory=threading.Event)
    _faults: set[str] = field(default_factory=set)  # queues whose last sweep failed

    def run_job(self, job_id: int) -> str:
        """A message's work: run job `job_id` here unless it cannot be claimed; says what
        happened. A transient failure queues the job to retry later: a message is published
        for that moment."""
        try:
            if not self.runner.run_claimed(job_id):
                return "not claimed (done, running elsewhere, or not due)"
            job = self.store.get(job_id)
        except SQLAlchemyError as exc:  # still queued in the table: the sweep publishes it again
            log.warning("job %d: the job store did not answer (%s); the sweep publishes it again",
                        job_id, type(exc).__name__)
            return "job store unavailable"
        if job.state is JobState.QUEUED and self.publish is not None:
            self.publish(job, countdown_s=max(0.0, (job.next_attempt_at - datetime.now(UTC)).total_seconds()))
        return job.state.value

    def sweep(self) -> int:
        """Publish again the queued jobs of this process's pipelines whose message is lost;
        returns how many. A queue the broker still holds messages for is left alone (its jobs
        are on their way); a broker or database that does not answer is tried next time."""
        if self.publish is None or self.depth is None:
            return 0
        published = 0
        for queue in self.queues:
            pipelines = frozenset(p for p in self.runner.pipelines if queue_of(p) == queue)
            if not pipelines:
                continue
            try:
                if self.depth(queue):
                    self._faults.discard(queue)
                    continue
                lost = self.store.take_unclaimed(self.republish_after_s, JobScope(pipelines))
            except Exception as exc:  # the store or the broker's client (which raises many types)
                if queue not in self._faults:  # once per outage, not every sweep
                    what = "job store" if isinstance(exc, SQLAlchemyError) else "broker"
                    log.warning("sweep of queue %s: the %s did not answer (%s); trying again every "
                                "%.1f s", queue, what, type(exc).__name__, self.sweep_every_s)
                self._faults.add(queue)
                continue
            if queue in self._faults:
                log.info("sweep of queue %s: answered again", queue)
                self._faults.discard(queue)
            published += sum(bool(self.publish(job)) for job in lost)
        if published:
            log.info("sweep: published %d queued job(s) again (their message was lost)", published)
        return published

    @property
    def sweep_every_s(self) -> float:
        return max(0.5, min(self.republish_after_s, self.runner.lease_s) / 2)

    def start_sweeping(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self.sweep_every_s):
                self.sweep()

        threading.Thread(target=loop, name="chartlight-sweep", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self.runner.stop()


def build_worker_process(settings: Settings, queues: Iterable[str], *,
                         publish: Callable[..., bool] | None = None,
                         depth: Callable[[str], int] | None = None) -> WorkerProcess:
    """The runner of one worker process: the installed pipelines of `queues` that can run
    here, with the clients jobs run with (a SMART session's for jobs a clinician started, the
    service's for the others)."""
    from plugin.analysis import service_client_for
    from plugin.app import create_app, job_store_of
    from plugin.pipelines.registry import installed_pipelines
    from smart_launch.jobs import client_for_jobs

    queues = tuple(queues)
    app = create_app(settings)
    pipelines = installed_pipelines(settings)
    runnable = {name: p.run for name, p in pipelines.items()
                if queue_of(name) in queues and not p.unavailable_reason}
    for name, p in pipelines.items():
        if queue_of(name) in queues and p.unavailable_reason:
            log.warning("pipeline %s cannot run here (%s): this worker takes none of its jobs", name,
                        p.unavailable_reason)
    store = job_store_of(app)
    runner = JobRunner(store, runnable, client_for_jobs(app, service_client_for(settings)),
                       workers=settings.job_workers, lease_s=settings.job_lease_s,
                       limits=JobLimits.from_settings(settings))
    return WorkerProcess(store, runner, queues, settings.job_republish_after_s, publish, depth)


def run_embedded(settings: Settings, queues: Iterable[str], *, parent_pid: int | None = None) -> None:
    """No broker: run jobs from the job table (job_workers at once) until SIGTERM or SIGINT,
    or until `parent_pid` (the web tier that started this process) is gone."""
    if parent_pid is not None:
        _die_with_parent(parent_pid)
    process = build_worker_process(settings, queues)
    stopped = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopped.set())
    process.runner.start()
    log.info("local worker (no broker) running %s", ", ".join(sorted(process.runner.pipelines)) or "nothing")
    while not stopped.wait(1.0):
        if parent_pid is not None and os.getppid() != parent_pid:
            break
    process.stop()


def _die_with_parent(parent_pid: int) -> None:
    """SIGTERM this process when its parent dies, even by SIGKILL (Linux); elsewhere the loop's
    parent check ends it within a second."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        raise SystemExit(0)


def run_celery(settings: Settings, queues: Iterable[str], concurrency: int) -> None:
    """Consume `queues` from the broker with `concurrency` processes (Celery's prefork pool);
    each process builds its runner once, when it starts."""
    from celery.signals import worker_process_init

    from plugin.jobs.dispatch import RUN_JOB, CeleryPublisher, make_celery, queue_depth

    queues = tuple(queues)
    celery = make_celery(settings)
    held: dict[str, WorkerProcess] = {}

    def process() -> WorkerProcess:
        if "process" not in held:
            made = build_worker_process(settings, queues, publish=CeleryPublisher(celery),
                                        depth=lambda queue: queue_depth(celery, queue))
            made.runner.start(claim=False)  # the heartbeat: leases, jobs of dead processes
            made.start_sweeping()
            held["process"] = made
        return held["process"]

    longest = max(settings.job_timeout_documents_s, settings.job_timeout_speech_s,
                  settings.job_timeout_imaging_s, settings.job_timeout_summary_s)

    # The runner enforces each pipeline's own limit; Celery's hard limit ends a child stuck past
    # every limit (its job is taken back once its lease runs out).
    @celery.task(name=RUN_JOB, time_limit=longest + 300)
    def run_job(job_id: int) -> str:
        return process().run_job(int(job_id))

    worker_process_init.connect(lambda **_: process(), weak=False)
    _celery_main(celery, queues, concurrency, settings.log_level)


def _celery_main(celery: Celery, queues: tuple[str, ...], concurrency: int, level: str) -> None:
    celery.worker_main(["worker", "--loglevel", level.upper(), "--queues", ",".join(queues),
                        "--concurrency", str(concurrency), "--pool", "prefork",
                        "--hostname", f"chartlight-{'-'.join(queues)}-{os.getpid()}@%h",
                        "--without-gossip", "--without-mingle"])
