"""Job dispatch on Celery with a Redis broker: which queue a job goes to, the Celery app both
tiers share, and the web tier's publisher.

The job table (plugin.jobs.store) stays the record of every job; a message carries only the job's
id. A worker claims the job through the store's fenced claim, so a message delivered twice (a
redelivery after a worker died, a sweep that published a job again) runs the job once, and the
write-back is idempotent besides. A message may be lost (the broker was down when the job was
queued, or lost what it held): workers sweep the table for queued jobs no worker took and publish
them again (plugin.jobs.worker).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from plugin.jobs.store import Job

if TYPE_CHECKING:
    from celery import Celery

    from plugin.config import Settings

log = logging.getLogger(__name__)

RUN_JOB = "chartlight.run_job"  # the one task: run the job whose id the message carries
# documents: CPU (OCR, text layers); speech: MedASR; imaging: MedGemma over images; reasoning:
# MedGemma over text (the patient summary, structured notes from dictations) — the GPU queues.
QUEUES = ("documents", "speech", "imaging", "reasoning")
REASONING_PIPELINES = ("summary", "dictation-note")
IMAGE_PIPELINES = ("pathology",)  # MedGemma over images other than imaging's own
# Sockets to the broker fail fast: a web request that queues a job never waits on a broker that
# is down (the job is in the table; the sweep publishes it once the broker is back).
CONNECT_TIMEOUT_S = 2.0
SOCKET_TIMEOUT_S = 10.0


def queue_of(pipeline: str) -> str:
    """The queue a pipeline's jobs go to: the pipeline's name; imaging tasks other than
    findings ("imaging-question-...") and whole-slide pathology go to the imaging queue too
    (they need the same GPU), and the pipelines that reason over text with MedGemma to the
    reasoning queue."""
    if pipeline in REASONING_PIPELINES:
        return "reasoning"
    return "imaging" if pipeline.startswith("imaging") or pipeline in IMAGE_PIPELINES else pipeline


def make_celery(settings: Settings) -> Celery:
    """The Celery app of both tiers. Late acknowledgement and one message prefetched per
    process: a message is acknowledged once its job has ended, so a worker that dies mid-job
    leaves it to be delivered again (at once when the pool's child died — reject on worker
    lost — else after the visibility timeout, longer than any job's time limit)."""
    from celery import Celery

    app = Celery("chartlight", broker=settings.job_broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": settings.job_visibility_timeout_s,
                                  "socket_connect_timeout": CONNECT_TIMEOUT_S,
                                  "socket_timeout": SOCKET_TIMEOUT_S},
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a worker waits out a broker outage, however long
        task_publish_retry=False,  # the publisher handles a failed publish (the sweep retries)
        task_ignore_result=True,  # results live in the job table
        task_serializer="json", accept_content=["json"],
        task_default_queue=QUEUES[0],
        task_create_missing_queues=True,
        worker_hijack_root_logger=False,
        worker_proc_alive_timeout=120.0,  # a child builds its app and pipelines at start
        worker_send_task_events=False,
        broker_heartbeat=0,
    )
    return app


class CeleryPublisher:
    """JobStore.publish for the web tier: one message per queued job. A publish that fails
    (broker down) is logged and left to the workers' sweep; `down_since` says since when the
    broker has not answered (the CDS status card says so)."""

    def __init__(self, app: Celery, *, check_every_s: float = 5.0,
                 clock: Any = time.monotonic) -> None:
        self.app = app
        self.check_every_s = check_every_s
        self._clock = clock
        self._down_since: float | None = None
        self._checked_at = -1e18
        self._lock = threading.Lock()

    def __call__(self, job: Job, *, countdown_s: float | None = None) -> bool:
        """Publish `job`'s id on its pipeline's queue; False when the broker refused it."""
        try:
            self.app.send_task(RUN_JOB, args=[job.id], queue=queue_of(job.pipeline),
                               countdown=countdown_s, retry=False)
        except Exception as exc:  # kombu/redis raise many types; none may fail a submission
            self._mark(down=True)
            log.warning("job %d queued in the job table; the broker did not take its message (%s): "
                        "the sweep publishes it again", job.id, type(exc).__name__)
            return False
        self._mark(down=False)
        return True

    def broker_down(self) -> bool:
        """Whether the broker is unreachable: the last publish or ping failed. Never waits: a
        ping (at most every `check_every_s`) runs on a thread of its own, and its answer serves
        the calls after it."""
        now = self._clock()
        with self._lock:
            due = now - self._checked_at >= self.check_every_s
            if due:
                self._checked_at = now
        if due:
            threading.Thread(target=lambda: self._mark(down=not self._ping()),
                             name="chartlight-broker-ping", daemon=True).start()
        return self._down_since is not None

    def _ping(self) -> bool:
        try:
            with self.app.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, interval_start=0, timeout=CONNECT_TIMEOUT_S)
                connection.default_channel.client.ping()  # the redis transport's client
            return True
        except Exception:  # any failure means: not reachable now
            return False

    def _mark(self, *, down: bool) -> None:
        with self._lock:
            if down and self._down_since is None:
                self._down_since = self._clock()
            elif not down:
                self._down_since = None


def queue_depth(app: Celery, queue: str) -> int:
    """Messages waiting on `queue` in the broker (not those a worker holds). Raises when the
    broker is unreachable."""
    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, interval_start=0, timeout=CONNECT_TIMEOUT_S)
        # Not passive: an empty queue is no key at all in Redis, which a passive declare refuses.
        declared = connection.default_channel.queue_declare(queue=queue, passive=False)
        return int(declared.message_count)
