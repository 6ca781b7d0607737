"""Analyse a patient's inputs with one pipeline: find the sources, queue a job per source
version, run the jobs with a progress bar each, and report what every job wrote. The run claims
only this patient's jobs of this pipeline on this FHIR server."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from plugin.app import service_fhir_client
from plugin.config import Settings
from plugin.errors import ChartlightError
from plugin.fhir import FhirClient
from plugin.jobs import (
    Intake,
    Job,
    JobLimits,
    JobRunner,
    JobScope,
    JobState,
    JobStore,
    queue_sources,
)
from plugin.pipelines.registry import InstalledPipeline

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnalysisRun:
    pipeline: str
    jobs: tuple[Job, ...]  # as they ended
    skipped: tuple[str, ...] = ()  # inputs that could not be queued, each with the reason

    @property
    def failed(self) -> tuple[Job, ...]:
        return tuple(j for j in self.jobs if j.state is JobState.FAILED)


def service_client_for(settings: Settings) -> Callable[[Job], FhirClient]:
    """Clients for background jobs run with the service's own credentials: the configured token
    goes only to the configured FHIR server, never to a job's other base URL. Jobs started in the
    SMART app are refused (smart_launch.jobs gives those the user's client).

    A server with a `backend_services` client gets that client's SMART Backend Services tokens
    (one cache per call of this function: one per runner); otherwise fhir_base_url gets the
    static fhir_token (CLI, development) and any other server no token."""
    from plugin.fhir.backend_services import backend_client, tokens_for
    tokens = tokens_for(settings)
    for ehr in settings.cds_trusted_ehrs:
        for server in ehr.fhir_servers:
            own = server.rstrip("/") == settings.fhir_base_url.rstrip("/")
            if tokens.service_for(server) is None and not own:
                log.warning("CDS hooks of EHR %s queue jobs for %s, which has no backend_services entry: "
                            "those jobs will run without a token", ehr.label, server)

    def client_for(job: Job) -> FhirClient:
        if job.session_id:  # never the service's credentials for what a clinician started
            raise ChartlightError("this analysis runs with the clinician's app session: only the "
                                  "service (chartlight serve) can run it")
        service = tokens.service_for(job.fhir_base_url)
        if service is not None:
            return backend_client(settings, tokens, service)
        client = service_fhir_client(settings)
        if client.base_url == job.fhir_base_url.rstrip("/"):
            return client  # with fhir_token and what it was granted (fhir_token_scopes)
        return foreign_server_client(settings, job.fhir_base_url)
    return client_for


def foreign_server_client(settings: Settings, base_url: str) -> FhirClient:
    """A client for a FHIR server other than the configured one: no token (fhir_token is for
    fhir_base_url only) and so no known grant; the timeouts, retries and limits of every client."""
    return FhirClient(base_url, timeout_s=settings.fhir_timeout_s, max_retries=settings.fhir_max_retries,
                      retry_backoff_s=settings.fhir_retry_backoff_s,
                      max_response_bytes=settings.max_response_bytes, max_pages=settings.fhir_max_pages)


def print_run(run: AnalysisRun, console: Console) -> None:
    """Per input: what was written (resource type, ids, status) or why the input failed."""
    table = Table(title=f"{run.pipeline}: {len(run.jobs)} input(s)")
    for column in ("input", "job", "resources", "ids", "status"):
        table.add_column(column)
    for job in run.jobs:
        source = f"{job.source_type}/{job.source_id} v{job.source_version}"
        if job.state is not JobState.SUCCEEDED:
            table.add_row(source, job.state.value, "-", "-", job.error or job.progress_text)
            continue
        summary = job.summary
        path = summary.get("path", "")
        rows = [*_grouped(summary.get("created", []) + summary.get("updated", []),
                          "written, preliminary" + ("" if path == "observations" else f" ({path})")),
                *_grouped(summary.get("unchanged", []), "unchanged (already written)"),
                *_grouped(summary.get("kept_signed", []), "kept: reviewed by a clinician")]
        if summary.get("reason"):
            rows.append(("-", "-", summary["reason"]))
        problems = summary.get("problems") or []
        if problems:  # e.g. a model answer that could not be read: say so beside what was written
            first = problems[0].get("reason", "")
            more = f" (+{len(problems) - 1} more: chartlight jobs show {job.id})" if len(problems) > 1 else ""
            rows.append(("-", "-", f"to check: {first}{more}"))
        for n, (resources, ids, status) in enumerate(rows or [("-", "-", "nothing to write")]):
            table.add_row(source if n == 0 else "", job.state.value if n == 0 else "", resources,
                          ids, status)
        table.add_row("", "", "", "", _model_note(summary), end_section=True)
    for reason in run.skipped:
        table.add_row(reason.split(":")[0], "not queued", "-", "-", reason.split(": ", 1)[-1])
    console.print(table)


def _grouped(locations: list[str], status: str) -> list[tuple[str, str, str]]:
    """["Observation/7/_history/1", ...] -> one row per resource type with its ids."""
    by_type: dict[str, list[str]] = {}
    for location in locations:
        resource_type, resource_id = location.split("/")[:2]
        by_type.setdefault(resource_type, []).append(resource_id)
    return [(f"{len(ids)} {resource_type}", ", ".join(ids), status)
            for resource_type, ids in by_type.items()]


def _model_note(summary: dict[str, Any]) -> str:
    model = summary.get("model") or {}
    if not model:
        return ""
    note = f"by {model.get('name')} {model.get('version')}"
    return note + " (TEST OUTPUT, not clinical: random test weights)" if model.get("test_weights") else note


def submit_patient_jobs(client: FhirClient, store: JobStore, pipeline: InstalledPipeline,
                        patient_id: str) -> Intake:
    """One job per source (at its current version) on the client's server; existing jobs are
    reused, not duplicated."""
    return queue_sources(store, pipeline.name, pipeline.find_sources(client, patient_id),
                         subject=f"Patient/{patient_id}", fhir_base_url=client.base_url)


def analyze_patient(
    client: FhirClient,
    store: JobStore,
    pipeline: InstalledPipeline,
    patient_id: str,
    *,
    client_for: Callable[[Job], FhirClient],
    workers: int = 1,
    lease_s: float = 60.0,
    console: Console | None = None,
    timeout_s: float = 3600,
    limits: JobLimits | None = None,
) -> AnalysisRun:
    """Queue and run the patient's jobs for `pipeline`, showing each job's progress. The runner
    claims only this patient's `pipeline` jobs on the client's server: another patient's job
    (say, one a killed run left behind) is not this run's to resume."""
    console = console or Console()
    intake = submit_patient_jobs(client, store, pipeline, patient_id)
    pending = [j.id for j in intake.jobs if j.state is not JobState.SUCCEEDED]
    if pending:
        scope = JobScope(subject=f"Patient/{patient_id}", fhir_base_url=client.base_url)
        runner = JobRunner(store, {pipeline.name: pipeline.run}, client_for, workers=workers,
                           poll_s=0.2, lease_s=lease_s, limits=limits, scope=scope)
        runner.start()
        try:
            _follow(store, pending, console, timeout_s)
        finally:
            runner.stop()
    return AnalysisRun(pipeline.name, tuple(_read(store, j.id) for j in intake.jobs), intake.skipped)


def _follow(store: JobStore, job_ids: list[int], console: Console, timeout_s: float) -> None:
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[status]}"),
               TimeElapsedColumn())
    deadline = time.monotonic() + timeout_s
    with Progress(*columns, console=console) as progress:
        tasks = {}
        for job_id in job_ids:
            job = _read(store, job_id)
            tasks[job_id] = progress.add_task(job.source, total=1.0, status=job.state.value)
        faults = 0
        while time.monotonic() < deadline:
            done = 0
            try:
                for job_id, task in tasks.items():
                    job = store.get(job_id)
                    finished = job.state in (JobState.SUCCEEDED, JobState.FAILED)
                    done += finished
                    status = job.state.value if finished else f"{job.state.value}: {job.progress_text}"
                    progress.update(task, completed=1.0 if finished else job.progress, status=status)
            except SQLAlchemyError as exc:  # the runner's threads wait it out too: so does the display
                faults += 1
                time.sleep(_store_backoff(exc, faults))
                continue
            faults = 0
            if done == len(tasks):
                return
            time.sleep(0.2)


def _read(store: JobStore, job_id: int, *, patience_s: float = 60.0) -> Job:
    """The job, waiting out a job database fault (a locked SQLite file, a failover) for up to
    `patience_s`."""
    waited, faults = 0.0, 0
    while True:
        try:
            return store.get(job_id)
        except SQLAlchemyError as exc:
            faults += 1
            delay = _store_backoff(exc, faults)
            if waited + delay > patience_s:
                raise
            waited += delay
            time.sleep(delay)


def _store_backoff(exc: SQLAlchemyError, faults: int) -> float:
    delay = min(5.0, 0.2 * 2 ** min(faults - 1, 5))
    log.warning("the job database did not answer (%s); trying again in %.1f s", type(exc).__name__, delay)
    return delay
