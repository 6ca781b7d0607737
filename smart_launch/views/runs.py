"""Previews: analyses started from the app by a session that may not write, run on a worker
thread with the user's own FHIR client (the launch's access token and granted scopes, never the
service's credentials). Nothing is written — not even tried: the result is mapped to the same FHIR
resources a write would create (fhir_mappers, pure) and kept in memory for that session only, to
be shown. A run has its pipeline's time limit (job_timeout_<pipeline>_s), as a job has, so one
hostile input cannot hold the app's run workers. Runs expire; a run's status lives in memory.
(Sessions that may write start jobs of the service's job store instead: smart_launch.pages._start.)"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fhir_mappers import to_device
from plugin.errors import ChartlightError
from plugin.fhir import FhirClient
from plugin.jobs import Job, JobContext, JobLimits, JobState, JobTimedOut, run_with_time_limit
from plugin.pipelines.registry import InstalledPipeline
from plugin.writeback import plan_resources
from smart_launch.errors import SmartError

from .inputs import Status

log = logging.getLogger(__name__)
Resource = dict[str, Any]


@dataclass
class SessionRun:
    status: Status
    resources: list[Resource] = field(default_factory=list)
    devices: list[Resource] = field(default_factory=list)
    source: Resource | None = None  # an input that exists only here (an unstored dictation)
    started: float = field(default_factory=time.monotonic)


# Recordings a session without write scope may keep in memory at once (each up to 20 MB).
MAX_KEPT_SOURCES = 5


class TooManyRecordings(SmartError):
    status = 429


class SessionRuns:
    """Runs by (session id, input row key)."""

    def __init__(self, *, ttl_s: float = 3600.0, workers: int = 1,
                 limits: JobLimits | None = None) -> None:
        self.ttl_s = ttl_s
        self.limits = limits or JobLimits()  # a preview gets its pipeline's time limit, as a job does
        self._runs: dict[tuple[str, str], SessionRun] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="chartlight-app-run")

    def start(self, session_id: str, key: str, pipeline: InstalledPipeline, client: FhirClient,
              source: Resource, subject: str, *, keep_source: bool = False) -> None:
        """Queue the run unless one for this input is already queued or running. With
        `keep_source` the input itself is kept too (it is not on the EHR)."""
        with self._lock:
            self._expire()
            current = self._runs.get((session_id, key))
            if current is not None and current.status.state in ("queued", "running"):
                return
            if keep_source:
                self._make_room_for_a_source(session_id)
            self._runs[(session_id, key)] = SessionRun(Status("queued", 0.0, "waiting for a worker"),
                                                       source=source if keep_source else None)
        self._pool.submit(self._run, session_id, key, pipeline, client, source, subject)

    def statuses(self, session_id: str) -> dict[str, Status]:
        with self._lock:
            self._expire()
            return {key: run.status for (sid, key), run in self._runs.items() if sid == session_id}

    def sources(self, session_id: str) -> list[Resource]:
        """The inputs kept for this session (unstored dictations), oldest first."""
        with self._lock:
            runs = [run for (sid, _), run in self._runs.items() if sid == session_id and run.source]
        return [run.source for run in sorted(runs, key=lambda r: r.started) if run.source]

    def results(self, session_id: str) -> tuple[list[Resource], list[Resource]]:
        """Every result resource and model Device of the session's finished runs."""
        with self._lock:
            runs = [run for (sid, _), run in self._runs.items() if sid == session_id]
        return ([r for run in runs for r in run.resources], [d for run in runs for d in run.devices])

    def _set(self, session_id: str, key: str, **changes: Any) -> None:
        with self._lock:
            run = self._runs.get((session_id, key))
            if run is not None:
                for name, value in changes.items():
                    setattr(run, name, value)

    def _run(self, session_id: str, key: str, pipeline: InstalledPipeline, client: FhirClient,
             source: Resource, subject: str) -> None:
        limit = self.limits.time_limit(pipeline.name)
        stopped = threading.Event()

        def progress(fraction: float, text: str) -> None:
            if stopped.is_set():  # past its time limit: the abandoned run stops at its next report
                raise JobTimedOut(f"{pipeline.name} was stopped at its time limit")
            self._set(session_id, key, status=Status("running", max(0.0, min(1.0, fraction)), text))

        progress(0.0, "starting")
        context = JobContext(job=_job_for(pipeline.name, source, subject, client), client=client,
                             source=source, report_progress=progress)
        try:
            result = run_with_time_limit(pipeline.run, context, limit,
                                         f"{pipeline.name} took longer than its time limit of {limit:g} s; "
                                         f"stopped (job_timeout_{pipeline.name}_s)")
        except JobTimedOut as exc:
            stopped.set()
            self._set(session_id, key, status=Status("failed", 0.0, str(exc)))
            return
        except ChartlightError as exc:
            self._set(session_id, key, status=Status("failed", 0.0, str(exc)))
            return
        except Exception as exc:  # a bug: the page says so, the worker survives
            log.exception("an analysis run crashed")
            self._set(session_id, key, status=Status("failed", 0.0,
                                                     f"internal error: {type(exc).__name__}"))
            return
        test = " — TEST OUTPUT, not clinical (random test weights)" if result.model.test_weights else ""
        device = {**to_device(result.model), "id": f"preview-{key_id(key)}-device"}
        resources = []
        for n, planned in enumerate(plan_resources(result, subject=subject)):
            resources.append({**_resolve_device(planned.resource, device["id"]),
                              "id": f"preview-{key_id(key)}-{n}"})
        note = f"{len(resources)} result(s) shown, not written{test}"
        self._set(session_id, key, status=Status("done", 1.0, note), resources=resources,
                  devices=[device])

    def _make_room_for_a_source(self, session_id: str) -> None:
        """A session keeps at most MAX_KEPT_SOURCES inputs (recordings held in memory): the oldest
        finished one makes room; when all are still being analysed, the new one is refused."""
        kept = sorted(((k, run) for k, run in self._runs.items() if k[0] == session_id and run.source),
                      key=lambda item: item[1].started)
        while len(kept) >= MAX_KEPT_SOURCES:
            finished = next((item for item in kept if item[1].status.state in ("done", "failed")), None)
            if finished is None:
                raise TooManyRecordings(f"{len(kept)} recordings of this session are still being analysed; "
                                        "wait for one to finish")
            del self._runs[finished[0]]
            kept.remove(finished)

    def _expire(self) -> None:
        now = time.monotonic()
        for stale in [k for k, run in self._runs.items() if now - run.started > self.ttl_s]:
            del self._runs[stale]


def key_id(key: str) -> str:
    """A short FHIR-id-safe token for an input row key ("documents:DocumentReference/5")."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _resolve_device(value: Any, device_id: str) -> Any:
    """The mappers name the model's Device "@device" (resolved by the write); here it becomes
    the preview Device's id."""
    if isinstance(value, dict):
        if value.get("reference") == "@device":
            return {**value, "reference": f"Device/{device_id}"}
        return {k: _resolve_device(v, device_id) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_device(v, device_id) for v in value]
    return value


def _job_for(pipeline: str, source: Resource, subject: str, client: FhirClient) -> Job:
    """A job record for the pipeline's context; a preview is never stored as a job."""
    now = datetime.now(UTC)
    return Job(id=0, pipeline=pipeline, source_type=source["resourceType"], source_id=source["id"],
               source_version=str(source.get("meta", {}).get("versionId", "")), subject=subject,
               fhir_base_url=client.base_url, state=JobState.RUNNING, progress=0.0,
               progress_text="", attempts=1, next_attempt_at=now, error="", summary={},
               created_at=now, updated_at=now)
