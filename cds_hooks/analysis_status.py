"""Where the patient's AI analysis stands, for the status card: jobs queued, running and failed,
and inputs not analysed yet. Looking for new inputs reads the FHIR server, so it runs on a
small thread pool, at most once per patient and server per `interval_s`; a hook waits for it
only `wait_s` and otherwise says the look is still going on. Jobs are only queued here: the job
runner of the service (plugin.wsgi) runs them, so a hook never waits for a model.

An input version that the local job store does not know is first looked up on the record: when
chartlight's results of the same pipeline for that exact version are already on the calling EHR's
server (written by another instance, another worker's database, before a new job database), it is
counted as analysed and not queued again (plugin.jobs.on_record).
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

from cds_hooks.ai_results import REJECTED, read_results
from cds_hooks.cards import AnalysisStatus
from fhir_mappers.systems import SID_RESULT
from plugin.errors import ChartlightError, FhirResponseError
from plugin.fhir import FhirClient
from plugin.jobs import (
    JobBrief,
    JobState,
    JobStore,
    Recorded,
    ResultOnRecord,
    analysed_by,
    analysed_versions,
    queue_sources,
)
from plugin.jobs.on_record import RESULT_TYPES

log = logging.getLogger(__name__)
# One page per result type, newest first: an input whose results fall beyond it is queued (as it
# would be without the record), never wrongly left out.
RECORD_PAGE_SIZE = 200


@dataclass(frozen=True)
class ScanOutcome:
    queued: int = 0  # jobs this look created
    on_record: int = 0  # input versions it left alone: their results are on the record


@dataclass
class _Scan:
    started: float
    future: Future[ScanOutcome]


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
        newly_queued, on_record, checking = 0, 0, False
        if client is not None and fhir_base is not None and runnable:
            started_here, scan = self._scan_for(store, runnable, client, patient_id)
            try:
                outcome = scan.future.result(timeout=self.wait_s)
                if started_here:
                    newly_queued, on_record = outcome.queued, outcome.on_record
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
            failed=counts[JobState.FAILED], newly_queued=newly_queued, on_record=on_record, checking=checking,
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
                      patient_id: str) -> ScanOutcome:
    """Submit a job per input of each pipeline, except for input versions whose results are on the
    record; returns how many jobs are new and how many inputs the record covered."""
    started = datetime.now(UTC)
    subject = f"Patient/{patient_id}"
    found: dict[str, list[dict[str, Any]]] = {}
    for name, pipeline in pipelines.items():
        try:
            found[name] = pipeline.find_sources(client, patient_id)
        except ChartlightError as exc:
            log.warning("pipeline %s: could not list inputs of Patient/%s: %s", name, patient_id,
                        type(exc).__name__)
    # The record is read only when the job store does not already know some input version.
    known = {(b.pipeline, b.source) for b in store.briefs(subject=subject, fhir_base_url=client.base_url,
                                                          limit=5_000)}
    unknown = any((name, _versioned(s)) not in known for name, sources in found.items() for s in sources)
    recorded = record_of(client, patient_id) if unknown else {}
    created = on_record = 0
    for name, sources in found.items():
        to_queue = []
        for source in sources:
            if (name, _versioned(source)) not in known and analysed_by(recorded, name, source):
                on_record += 1
            else:
                to_queue.append(source)
        intake = queue_sources(store, name, to_queue, subject=subject, fhir_base_url=client.base_url)
        created += sum(job.created_at >= started for job in intake.jobs)
        # A pipeline over the whole chart (the summary) is queued again when the chart changed.
        refresh = getattr(pipelines[name], "refresh", None)
        if refresh is not None:
            try:
                created += refresh(store, client, patient_id)
            except ChartlightError as exc:
                log.warning("pipeline %s: could not check Patient/%s for changes: %s", name, patient_id,
                            type(exc).__name__)
    if created or on_record:
        log.info("queued %d analysis job(s) for Patient/%s; %d input(s) already analysed on the record",
                 created, patient_id, on_record)
    return ScanOutcome(created, on_record)


def record_of(client: FhirClient, patient_id: str) -> dict[tuple[str, str], Recorded]:
    """Which input versions of `patient_id` have chartlight results on `client`'s server (the
    calling EHR's own, with its token; never another): one search per result type, patient-scoped,
    one page of RECORD_PAGE_SIZE, with the Provenances that target them. A type the token may not
    read, or a server that does not answer, tells nothing: those inputs are queued as before."""
    resources: list[dict[str, Any]] = []
    provenances: list[dict[str, Any]] = []
    for resource_type in RESULT_TYPES:
        params: dict[str, str | int] = {
            "subject": f"Patient/{patient_id}", "identifier": f"{SID_RESULT}|",
            "_revinclude": "Provenance:target", "_sort": "-_lastUpdated", "_count": RECORD_PAGE_SIZE}
        try:
            page = next(client.search_pages(resource_type, params), {})
        except FhirResponseError as exc:
            log.info("the record of Patient/%s: %s search refused (HTTP %s); not used", patient_id,
                     resource_type, exc.status)
            continue
        except ChartlightError as exc:
            log.warning("the record of Patient/%s on %s could not be read (%s); inputs are queued "
                        "without it", patient_id, client.base_url, type(exc).__name__)
            return {}
        for entry in page.get("entry", []):
            resource = entry.get("resource", {})
            if resource.get("resourceType") == "Provenance":
                provenances.append(resource)
            elif resource.get("resourceType") == resource_type:
                resources.append(resource)
    return analysed_versions(_on_record(resources, patient_id, client.base_url), provenances)


def _on_record(resources: list[dict[str, Any]], patient_id: str, base_url: str) -> list[ResultOnRecord]:
    """chartlight's results about the patient on this server; a rejected one counts as signed (a
    clinician decided on that analysis: running it again would not change the decision)."""
    rejected = [{**r, "status": "final"} for r in resources if r.get("status") in REJECTED]
    kept = [r for r in resources if r.get("status") not in REJECTED]
    return [ResultOnRecord(r.reference, r.source, not r.preliminary, r.preliminary)
            for r in read_results(kept + rejected, patient_id, fhir_base=base_url)]


def _versioned(source: dict[str, Any]) -> str:
    """"DocumentReference/7/_history/2", as a job brief names its source."""
    version = (source.get("meta") or {}).get("versionId") or ""
    return f"{source.get('resourceType')}/{source.get('id')}/_history/{version}"
