"""The `chartlight` command line. Every command runs inside the app context."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import click
from flask import Flask, current_app
from rich.console import Console
from rich.table import Table

from cds_hooks.audience import serving_audience
from cds_hooks.cli import feedback
from plugin import __version__
from plugin.app import create_app, job_store_of, service_fhir_client, settings_of
from plugin.config import CONFIG_FILE_ENV, Settings, load_settings
from plugin.errors import ChartlightError
from plugin.jobs import Job, JobBusy, JobLimits, JobState
from plugin.review import approve, reject
from plugin.sandbox.ehr import EhrSandbox, default_ehr_sandbox
from plugin.sandbox.hapi import HapiSandbox, default_sandbox
from plugin.sandbox.orthanc import OrthancSandbox, default_pacs

REPO_ROOT = Path(__file__).resolve().parents[1]
# gunicorn's default access log line without the query string (%(U)s is the path alone): SMART
# callbacks carry an authorization code and state there, and app URLs may carry resource ids.
ACCESS_LOG_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "-" "%(a)s"'
T = TypeVar("T")


@click.group()
@click.version_option(__version__, prog_name="chartlight")
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              envvar=CONFIG_FILE_ENV, help="TOML settings file (else $CHARTLIGHT_CONFIG).")
@click.pass_context
def cli(ctx: click.Context, config_file: str | None) -> None:
    """chartlight: FHIR-native AI for documents, dictation and imaging."""
    try:
        app = create_app(load_settings(config_file))
    except ChartlightError as exc:
        raise click.UsageError(str(exc)) from None
    ctx.obj = app
    ctx.with_resource(app.app_context())


@cli.command()
@click.option("--dev", is_flag=True, help="Flask's development server instead of gunicorn.")
def serve(dev: bool) -> None:
    """Start the web service (gunicorn, as deployed)."""
    settings = settings_of(current_app)
    click.echo(_run(lambda: serving_audience(settings)), err=True)
    if dev:
        app: Flask = click.get_current_context().obj
        app.run(host=settings.host, port=settings.port)
        return
    args = gunicorn_command(settings)
    os.execv(args[0], args)  # noqa: S606 -- replaces this process; settings reach workers via env/file


def gunicorn_command(settings: Settings) -> list[str]:
    """The service as deployed: gunicorn's threaded workers running plugin.wsgi:create_service()
    (bench/cds_hooks.py measures exactly this)."""
    return [sys.executable, "-m", "gunicorn", "--bind", f"{settings.host}:{settings.port}",
            "--workers", str(settings.workers), "--threads", str(settings.threads),
            "--worker-class", "gthread",
            "--access-logfile", "-", "--access-logformat", ACCESS_LOG_FORMAT,
            "plugin.wsgi:create_service()"]


@cli.group()
def sandbox() -> None:
    """The local HAPI FHIR sandbox and Orthanc PACS sandbox (tests and demo)."""


def _pacs() -> OrthancSandbox:
    return default_pacs(REPO_ROOT, port=settings_of(current_app).pacs_port)


def _ehr() -> EhrSandbox:
    settings = settings_of(current_app)
    return default_ehr_sandbox(REPO_ROOT, fhir_upstream=_sandbox().base_url, port=settings.sandbox_ehr_port,
                               app_base=f"http://{settings.host}:{settings.port}")


def _sandbox() -> HapiSandbox:
    settings = settings_of(current_app)
    return default_sandbox(REPO_ROOT, port=settings.sandbox_port,
                           persistent=settings.sandbox_persistent,
                           heap_mb=settings.sandbox_heap_mb)


@sandbox.command("up")
def sandbox_up() -> None:
    """Build (first time) and start the HAPI FHIR sandbox; wait until it answers."""
    click.echo("starting HAPI FHIR sandbox (first start builds it with Maven) ...")
    base = _run(_sandbox().start)
    click.echo(f"HAPI FHIR sandbox up at {base}")
    click.echo(f"Orthanc PACS sandbox (DICOMweb) up at {_run(_pacs().start)}")
    click.echo(f"sandbox EHR (SMART authorization + FHIR proxy) up at {_run(_ehr().start)}")


@sandbox.command("down")
def sandbox_down() -> None:
    """Stop the HAPI FHIR sandbox."""
    _run(_sandbox().stop)
    click.echo("HAPI FHIR sandbox stopped")
    _run(_pacs().stop)
    click.echo("Orthanc PACS sandbox stopped")
    _run(_ehr().stop)
    click.echo("sandbox EHR stopped")


@sandbox.command("reset")
def sandbox_reset() -> None:
    """Delete everything stored in the sandbox ($expunge)."""
    _run(_sandbox().reset)
    click.echo("HAPI FHIR sandbox emptied")
    pacs = _pacs()
    if pacs.is_running():
        _run(pacs.reset)
        click.echo("Orthanc PACS sandbox emptied")


@sandbox.command("status")
def sandbox_status() -> None:
    """Say whether the sandbox answers."""
    box = _sandbox()
    click.echo(f"{box.base_url}: {'up' if box.is_running() else 'down'}")
    pacs = _pacs()
    click.echo(f"{pacs.dicomweb_url}: {'up' if pacs.is_running() else 'down'}")
    ehr = _ehr()
    click.echo(f"{ehr.fhir_base}: {'up' if ehr.is_running() else 'down'}")


@sandbox.command("seed")
def sandbox_seed() -> None:
    """Create the synthetic patient and their documents, dictation and imaging."""
    from plugin.sandbox.seed import print_seed_report, seed_demo_patient

    client = service_fhir_client(settings_of(current_app))
    pacs_url = _run(_pacs().start)  # imaging goes to the PACS sandbox, behind an Endpoint
    print_seed_report(_run(lambda: seed_demo_patient(client, pacs_url=pacs_url)))


@cli.command()
def demo() -> None:
    """Start the sandbox, seed the patient, run every pipeline built so far, print the results."""
    from plugin.demo import run_demo

    _run(lambda: run_demo(settings_of(current_app), _sandbox(), pacs=_pacs(), ehr=_ehr()))


@cli.command()
@click.argument("pipeline")
@click.option("--patient", "patient_id", required=True, help="The patient's FHIR id.")
@click.option("--task", type=click.Choice(["findings", "question", "compare", "localize"]),
              default=None, help="imaging only: what to ask MedGemma (default findings).")
@click.option("--question", default=None, help="imaging --task question: the question to ask.")
@click.option("--find", "find", multiple=True,
              help="imaging --task localize: a structure or finding to box (repeat for more).")
def analyze(pipeline: str, patient_id: str, task: str | None, question: str | None,
            find: tuple[str, ...]) -> None:
    """Analyse a patient's inputs with one pipeline (documents, speech, imaging) and write the
    results back, with a progress bar per input."""
    from plugin.analysis import analyze_patient, print_run, service_client_for
    from plugin.pipelines.registry import imaging_pipeline, installed_pipelines

    settings = settings_of(current_app)
    if pipeline == "imaging":
        from plugin.pipelines.imaging import ImagingTask

        try:
            chosen = imaging_pipeline(settings, ImagingTask(task or "findings",  # type: ignore[arg-type]
                                                            question=question or "", find=find))
        except ChartlightError as exc:
            raise click.UsageError(str(exc)) from None
    else:
        if task or question or find:
            raise click.UsageError("--task, --question and --find apply to the imaging pipeline only")
        pipelines = installed_pipelines(settings)
        if pipeline not in pipelines:
            raise click.UsageError(f"no pipeline {pipeline!r}; installed: {', '.join(sorted(pipelines))}")
        chosen = pipelines[pipeline]
    if chosen.unavailable_reason:
        raise click.ClickException(f"{pipeline} cannot run here: {chosen.unavailable_reason}")
    console = Console()
    run = _run(lambda: analyze_patient(
        service_fhir_client(settings), job_store_of(current_app), chosen, patient_id,
        client_for=service_client_for(settings), workers=settings.job_workers, console=console,
        limits=JobLimits.from_settings(settings), lease_s=settings.job_lease_s))
    print_run(run, console)
    if run.failed:
        raise click.ClickException(f"{len(run.failed)} of {len(run.jobs)} input(s) failed (see above)")


@cli.group()
def jobs() -> None:
    """Analysis jobs: list, show, retry."""


@jobs.command("list")
@click.option("--state", type=click.Choice([s.value for s in JobState]), default=None)
@click.option("--patient", "patient_id", default=None, help="Only this patient's jobs (FHIR id).")
@click.option("--server", default=None,
              help="The FHIR server whose jobs to list (default: the configured fhir_base_url).")
@click.option("--all-servers", is_flag=True, help="Jobs of every FHIR server, with a server column.")
@click.option("--limit", type=int, default=50, show_default=True)
def jobs_list(state: str | None, patient_id: str | None, server: str | None, all_servers: bool,
              limit: int) -> None:
    """The newest jobs of one FHIR server (or of all), one line each."""
    if server and all_servers:
        raise click.UsageError("--server and --all-servers exclude each other")
    server = None if all_servers else (server or settings_of(current_app).fhir_base_url)
    store = job_store_of(current_app)
    table = Table(title=f"jobs on {server}" if server else "jobs on every FHIR server")
    columns = ("id", "pipeline", "source", "subject", "state", "progress", "attempts", "updated")
    for column in ("server", *columns) if all_servers else columns:
        table.add_column(column)
    for job in store.list(fhir_base_url=server, state=JobState(state) if state else None,
                          subject=f"Patient/{patient_id}" if patient_id else None, limit=limit):
        row = (str(job.id), job.pipeline, job.source, job.subject, job.state.value,
               f"{job.progress:.0%} {job.progress_text}", str(job.attempts),
               job.updated_at.strftime("%Y-%m-%d %H:%M:%S"))
        table.add_row(*((job.fhir_base_url, *row) if all_servers else row))
    Console().print(table)


@jobs.command("show")
@click.argument("job_id", type=int)
def jobs_show(job_id: int) -> None:
    """Everything about one job, including its error or what it wrote."""
    job = _job(job_id)
    click.echo(json.dumps({**dataclasses.asdict(job), "source": job.source}, indent=2,
                          default=str))


@jobs.command("retry")
@click.argument("job_id", type=int)
def jobs_retry(job_id: int) -> None:
    """Queue a failed or finished job again (it runs when a worker is free); a running job is
    refused."""
    _job(job_id)
    try:
        job = job_store_of(current_app).retry(job_id)
    except JobBusy as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"job {job.id} ({job.source} on {job.fhir_base_url}) queued again")


@cli.group()
def review() -> None:
    """A clinician's decision on an AI result (the SMART app calls the same functions)."""


@review.command("approve")
@click.argument("reference")
@click.option("--clinician", required=True, help='The signing clinician, e.g. "Practitioner/7".')
def review_approve(reference: str, clinician: str) -> None:
    """Make a preliminary AI result final (e.g. Observation/12)."""
    client = service_fhir_client(settings_of(current_app))
    version = _run(lambda: approve(client, reference, clinician=clinician, now=datetime.now(UTC)))
    click.echo(f"approved: {version}")


@review.command("reject")
@click.argument("reference")
@click.option("--clinician", required=True, help='The reviewing clinician, e.g. "Practitioner/7".')
@click.option("--reason", required=True, help="Why the result is wrong (kept with the result).")
def review_reject(reference: str, clinician: str, reason: str) -> None:
    """Mark an AI result entered-in-error, with the reason."""
    client = service_fhir_client(settings_of(current_app))
    version = _run(lambda: reject(client, reference, clinician=clinician, reason=reason,
                                  now=datetime.now(UTC)))
    click.echo(f"rejected: {version}")


def _job(job_id: int) -> Job:
    try:
        return job_store_of(current_app).get(job_id)
    except KeyError:
        raise click.UsageError(f"there is no job {job_id}") from None


def _run(action: Callable[[], T]) -> T:
    """Run a command body; chartlight's own errors become a clean message and exit status 1."""
    try:
        return action()
    except ChartlightError as exc:
        raise click.ClickException(str(exc)) from None


cli.add_command(feedback)


def main() -> None:
    cli(prog_name="chartlight")


if __name__ == "__main__":
    main()
