"""Where the patient's AI analysis stands, for the status card: jobs queued, running and failed,
and inputs not analysed yet. Looking for new inputs reads the FHIR server, so it runs on a
small thread pool, at most once per patient and server per `interval_s`; a hook waits for it
only `wait_s` and otherwise says the look is still going on. Jobs are only queued here: the job
runner of the service (plugin.wsgi) runs them, so a hook never waits for a model.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from cds_hooks.cards import AnalysisStatus
from plugin.errors import ChartlightError
from plugin.fhir import FhirClient
from plugin.jobs import JobBrief, JobState, JobStore, queue_sources

log = logging.getLogger(__name__)


@dataclass
class _Scan:
    started: float
    future: Future[int]


class SourceScanner:
    def __init__(self, *, interval_s: float = 300.0, wait_s: float = 0.25, workers: int = 2,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self.wait_s = wait_s
        self._clock = clock
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="chartlight-cds-scan")
        self._scans: dict[tuple[str, str], _Scan] = {}
        self._lock = threading.Lock()

    def status(self, *, store: JobStore, pipelines: Mapping[str, Any], fhir_base: str | None,
               client: FhirClient | None, patient_id: str) -> AnalysisStatus:
        """The analysis status of `patient_id` on the FHIR server `fhir_base`; queues jobs for
        inputs not analysed yet when a client (that server with the EHR's token) is available.

        Jobs are read only for the calling EHR's own server (`fhir_base`: a `fhirServer`
        allow-listed for that EHR). Without one the server is unknown, and a patient id alone
        names no one (HAPI numbers ids 1, 2, 3 on every server): nothing about jobs is shown, so
        no other EHR's counts or error lines can leak into this card."""
        unavailable = {name: str(getattr(p, "unavailable_reason", "") or "")
                       for name, p in pipelines.items()}
        runnable = {name: p for name, p in pipelines.items() if not unavailable[name]}
        newly_queued, checking = 0, False
        if client is not None and fhir_base is not None and runnable:
            started_here, scan = self._scan_for(store, runnable, client, patient_id)
            try:
                queued_now = scan.future.result(timeout=self.wait_s)
                newly_queued = queued_now if started_here else 0
            except FutureTimeout:
                checking = True
            except Exception as exc:  # the card still answers; the failure is visible in the log
                log.warning("looking for new inputs of Patient/%s on %s failed: %s", patient_id,
                            fhir_base, type(exc).__name__, exc_info=True)
        jobs, unreadable = [], False
        if fhir_base is not None:
            try:
                jobs = server_jobs(store, fhir_base, patient_id)
            except SQLAlchemyError as exc:  # a locked database, a failover: the card says so
                unreadable = True
                log.warning("reading the jobs of Patient/%s on %s failed (%s); the card says their "
                            "status is not known", patient_id, fhir_base, type(exc).__name__)
        counts = {state: sum(j.state is state for j in jobs) for state in JobState}
        failures = tuple(f"{j.pipeline}: {j.source}: {(j.error or 'failed').splitlines()[0][:160]}"
                         for j in jobs if j.state is JobState.FAILED)
        return AnalysisStatus(
            pipelines=tuple(sorted(pipelines)),
            unavailable=tuple(f"{name}: {reason}" for name, reason in sorted(unavailable.items()) if reason),
            queued=max(0, counts[JobState.QUEUED] - newly_queued), running=counts[JobState.RUNNING],
            failed=counts[JobState.FAILED], newly_queued=newly_queued, checking=checking,
            failures=failures, jobs_unreadable=unreadable)

    def _scan_for(self, store: JobStore, pipelines: Mapping[str, Any], client: FhirClient,
                  patient_id: str) -> tuple[bool, _Scan]:
        key = (client.base_url, patient_id)
        now = self._clock()
        with self._lock:
            scan = self._scans.get(key)
            if scan is not None and (not scan.future.done() or now - scan.started < self.interval_s):
                return False, scan
            if len(self._scans) > 10_000:  # forget finished looks of long ago
                self._scans = {k: s for k, s in self._scans.items()
                               if not s.future.done() or now - s.started < self.interval_s}
            scan = _Scan(now, self._executor.submit(_queue_new_inputs, store, pipelines, client, patient_id))
            self._scans[key] = scan
            return True, scan

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def server_jobs(store: JobStore, fhir_base: str, patient_id: str) -> list[JobBrief]:
    """The jobs of `Patient/<patient_id>` on the FHIR server `fhir_base`, and of no other."""
    return store.briefs(subject=f"Patient/{patient_id}", fhir_base_url=fhir_base)


def _queue_new_inputs(store: JobStore, pipelines: Mapping[str, Any], client: FhirClient,
                      patient_id: str) -> int:
    """Submit a job per input of each pipeline; returns how many jobs are new."""
    started = datetime.now(UTC)
    created = 0
    for name, pipeline in pipelines.items():
        try:
            sources = pipeline.find_sources(client, patient_id)
        except ChartlightError as exc:
            log.warning("pipeline %s: could not list inputs of Patient/%s: %s", name, patient_id,
                        type(exc).__name__)
            continue
        intake = queue_sources(store, name, sources, subject=f"Patient/{patient_id}",
                               fhir_base_url=client.base_url)
        created += sum(job.created_at >= started for job in intake.jobs)
        # A pipeline over the whole chart (the summary) is queued again when the chart changed.
        refresh = getattr(pipeline, "refresh", None)
        if refresh is not None:
            try:
                created += refresh(store, client, patient_id)
            except ChartlightError as exc:
                log.warning("pipeline %s: could not check Patient/%s for changes: %s", name, patient_id,
                            type(exc).__name__)
    if created:
        log.info("queued %d analysis job(s) for Patient/%s", created, patient_id)
    return created
