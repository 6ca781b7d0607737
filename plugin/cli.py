"""The `chartlight` command line. Every command runs inside the app context.

Imports are lazy: parsing the arguments (and `--help`) loads click and nothing of the service;
the app (Flask, the CDS Hooks stack, SQLAlchemy) is built when a command runs, and models load
only where a pipeline runs (bench/cli_startup.py measures this).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from plugin import __version__

if TYPE_CHECKING:
    from flask import Flask

    from plugin.config import Settings
    from plugin.jobs import Job
    from plugin.sandbox.ehr import EhrSandbox
    from plugin.sandbox.hapi import HapiSandbox
    from plugin.sandbox.orthanc import OrthancSandbox

# gunicorn's default access log line without the query string (%(U)s is the path alone): SMART
# callbacks carry an authorization code and state there, and app URLs may carry resource ids.
ACCESS_LOG_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "-" "%(a)s"'
CONFIG_FILE_ENV = "CHARTLIGHT_CONFIG"  # plugin.config.CONFIG_FILE_ENV (a test keeps them equal)
# plugin.jobs.JobState's values, spelled out so that parsing needs no SQLAlchemy (a test keeps them equal).
JOB_STATES = ("queued", "running", "succeeded", "failed")
T = TypeVar("T")


class _CurrentApp:
    """flask.current_app, with Flask imported only when a command body first uses it."""

    def _get_current_object(self) -> Flask:
        from flask import current_app as app

        return app._get_current_object()  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get_current_object(), name)


current_app: Any = _CurrentApp()


def _push_app(ctx: click.Context) -> None:
    """Build the app from the settings once per invocation and enter its context."""
    root = ctx.find_root()
    if root.obj is not None:
        return
    from plugin.app import create_app
    from plugin.config import load_settings
    from plugin.errors import ChartlightError

    try:
        app = create_app(load_settings(root.params.get("config_file")))
    except ChartlightError as exc:
        raise click.UsageError(str(exc)) from None
    root.obj = app
    root.with_resource(app.app_context())


class AppCommand(click.Command):
    """A command whose body runs inside the app context, built after its arguments parsed."""

    def invoke(self, ctx: click.Context) -> Any:
        _push_app(ctx)
        return super().invoke(ctx)


class AppGroup(click.Group):
    """Commands (and groups) added to it run in the app context; its help needs no app."""

    command_class = AppCommand
    group_class = type  # sub-groups are AppGroups too

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str]] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy or {}  # name -> ("module:attribute", one-line help)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            return LazyGroup(cmd_name, *self.lazy[cmd_name])
        return super().get_command(ctx, cmd_name)


class LazyGroup(click.Group):
    """A command group of another package, imported only when it runs or shows its own help."""

    def __init__(self, name: str, target: str, short_help: str) -> None:
        super().__init__(name, short_help=short_help, help=short_help)
        self.target = target

    def real(self) -> click.Group:
        module, _, attribute = self.target.partition(":")
        group: click.Group = getattr(importlib.import_module(module), attribute)
        return group

    def list_commands(self, ctx: click.Context) -> list[str]:
        return self.real().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self.real().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        _push_app(ctx)
        return super().invoke(ctx)


@click.group(cls=AppGroup, lazy={
    "feedback": ("cds_hooks.cli:feedback", "Feedback EHRs sent on chartlight's CDS Hooks cards.")})
@click.version_option(__version__, prog_name="chartlight")
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              envvar=CONFIG_FILE_ENV, help="TOML settings file (else $CHARTLIGHT_CONFIG).")
def cli(config_file: str | None) -> None:
    """chartlight: FHIR-native AI for documents, dictation and imaging."""


def settings_of(app: Any) -> Settings:
    from plugin.app import settings_of as settings

    return settings(app)


def job_store_of(app: Any) -> Any:
    from plugin.app import job_store_of as store

    return store(app)


def service_fhir_client(settings: Settings) -> Any:
    from plugin.app import service_fhir_client as client

    return client(settings)


@cli.command()
@click.option("--dev", is_flag=True, help="Flask's development server instead of gunicorn.")
@click.pass_context
def serve(ctx: click.Context, dev: bool) -> None:
    """Start the web tier (gunicorn, as deployed): SMART app, CDS Hooks, health. It runs no job
    and loads no model: `chartlight worker` processes do. With no job_broker_url, one local
    worker process is started beside it and stopped with it."""
    from cds_hooks.audience import serving_audience

    settings = settings_of(current_app)
    click.echo(_run(lambda: serving_audience(settings)), err=True)
    config_file = ctx.find_root().params.get("config_file")
    if config_file:  # gunicorn's workers and the local worker load the settings from the environment
        os.environ[CONFIG_FILE_ENV] = os.path.abspath(config_file)
    if dev:
        from plugin.embedded import start_local_worker, stop_local_worker
        from plugin.wsgi import create_web

        local = None if settings.job_broker_url else start_local_worker()
        try:
            create_web().run(host=settings.host, port=settings.port)
        finally:
            if local is not None:
                stop_local_worker(local)
        return
    args = gunicorn_command(settings)
    os.execv(args[0], args)  # noqa: S606 -- replaces this process; settings reach workers via env/file


def gunicorn_command(settings: Settings, *, app: str = "plugin.wsgi:create_web()") -> list[str]:
    """The web tier as deployed: gunicorn's threaded workers running `app` and, with no broker,
    the local job worker its hooks start (plugin.embedded). bench/cds_hooks.py measures this."""
    local_worker = [] if settings.job_broker_url else ["--config", "python:plugin.embedded"]
    return [sys.executable, "-m", "gunicorn", *local_worker, "--bind", f"{settings.host}:{settings.port}",
            "--workers", str(settings.workers), "--threads", str(settings.threads),
            "--worker-class", "gthread",
            "--access-logfile", "-", "--access-logformat", ACCESS_LOG_FORMAT, app]


@cli.command()
@click.option("--queues", default="documents,speech,imaging,reasoning", show_default=True,
              help="The pipelines' queues this worker takes jobs from (GPU machines: "
                   "imaging,speech,reasoning).")
@click.option("--concurrency", type=int, default=None,
              help="Worker processes (each loads its models once). Default: worker_concurrency.")
@click.option("--parent-pid", type=int, default=None, hidden=True,
              help="Started by `chartlight serve`: end when that process ends.")
@click.option("--metrics-port", type=click.IntRange(1, 65535), default=None,
              help="Serve Prometheus metrics (/metrics) on this port of metrics_worker_host.")
def worker(queues: str, concurrency: int | None, parent_pid: int | None, metrics_port: int | None) -> None:
    """Run analysis jobs: from the broker's queues (job_broker_url), else from the job table (one
    process, job_workers at once: the embedded default). Models load here, once per process."""
    from plugin.worker import parse_queues, run_celery, run_embedded

    settings = settings_of(current_app)
    try:
        chosen = parse_queues(queues)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if concurrency is not None and concurrency <= 0:
        raise click.UsageError("--concurrency must be positive")
    if metrics_port is not None:  # in this (parent) process, before any pool process starts
        from plugin.metrics import start_worker_metrics

        _run(lambda: start_worker_metrics(settings, metrics_port))
    if settings.job_broker_url and parent_pid is None:
        _run(lambda: run_celery(settings, chosen, concurrency or settings.worker_concurrency))
    else:
        if concurrency not in (None, 1):
            raise click.UsageError("with no job_broker_url the worker is one process: --concurrency "
                                   "applies to a broker's workers (job_workers sets its threads)")
        _run(lambda: run_embedded(settings, chosen, parent_pid=parent_pid))


@cli.group()
def sandbox() -> None:
    """The local HAPI FHIR sandbox, Orthanc PACS sandbox and sandbox EHR (tests and demo)."""


def _state_root() -> Path:
    from plugin.sandbox.places import default_state_dir

    configured = settings_of(current_app).sandbox_state_dir
    return Path(configured).expanduser() if configured else default_state_dir()


def _pacs() -> OrthancSandbox:
    from plugin.sandbox.orthanc import default_pacs

    return default_pacs(_state_root(), port=settings_of(current_app).pacs_port)


def _ehr() -> EhrSandbox:
    from plugin.sandbox.ehr import default_ehr_sandbox

    settings = settings_of(current_app)
    return default_ehr_sandbox(_state_root(), fhir_upstream=_sandbox().base_url,
                               port=settings.sandbox_ehr_port,
                               app_base=f"http://{settings.host}:{settings.port}")


def _sandbox() -> HapiSandbox:
    from plugin.sandbox.hapi import default_sandbox

    settings = settings_of(current_app)
    return default_sandbox(_state_root(), port=settings.sandbox_port,
                           persistent=settings.sandbox_persistent,
                           heap_mb=settings.sandbox_heap_mb)


@sandbox.command("up")
def sandbox_up() -> None:
    """Build (first time) and start the HAPI FHIR sandbox, the PACS and the EHR; wait until they
    answer. A server of ours on a port, started differently (another upstream, configuration or
    build), is restarted, and this says so."""
    click.echo("starting HAPI FHIR sandbox (first start builds it with Maven) ...")
    base = _run(lambda: _sandbox().start(say=click.echo))
    click.echo(f"HAPI FHIR sandbox up at {base}")
    click.echo(f"Orthanc PACS sandbox (DICOMweb) up at {_run(lambda: _pacs().start(say=click.echo))}")
    ehr = _run(lambda: _ehr().start(say=click.echo))
    click.echo(f"sandbox EHR (SMART authorization + FHIR proxy) up at {ehr}")


@sandbox.command("down")
def sandbox_down() -> None:
    """Stop the HAPI FHIR sandbox, the PACS and the EHR on the configured ports."""
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
@click.option("--test-models", is_flag=True, default=None,
              help="Run speech and imaging on tiny random-weight models (every result marked TEST "
                   "OUTPUT, not clinical); sandbox only. Default: the test_models setting.")
@click.option("--auto-test-models", is_flag=True,
              help="Use the test models when MedASR or MedGemma weights are absent (make demo does).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the results as JSON on stdout (progress goes to stderr).")
def demo(test_models: bool | None, auto_test_models: bool, as_json: bool) -> None:
    """Start the sandboxes, seed the synthetic patient, run every pipeline, print the results."""
    from rich.console import Console

    from plugin.demo import run_demo

    settings = settings_of(current_app)
    if test_models is not None:
        settings = _run(lambda: _with_test_models(settings, test_models))
    summary = _run(lambda: run_demo(settings, _sandbox(), Console(stderr=as_json), pacs=_pacs(),
                                    ehr=_ehr(), auto_test_models=auto_test_models))
    if as_json:
        click.echo(json.dumps(summary, indent=2))


def _with_test_models(settings: Settings, on: bool) -> Settings:
    """The settings with test_models set; replace() validates them again, so a FHIR server that
    is not a sandbox refuses it here."""
    from dataclasses import replace

    return replace(settings, test_models=on)


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
    """Analyse a patient's inputs with one pipeline (documents, speech, imaging, pathology, ...)
    and write the results back, with a progress bar per input."""
    from rich.console import Console

    from plugin.analysis import analyze_patient, print_run, service_client_for
    from plugin.errors import ChartlightError
    from plugin.jobs import JobLimits
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
@click.option("--state", type=click.Choice(JOB_STATES), default=None)
@click.option("--patient", "patient_id", default=None, help="Only this patient's jobs (FHIR id).")
@click.option("--server", default=None,
              help="The FHIR server whose jobs to list (default: the configured fhir_base_url).")
@click.option("--all-servers", is_flag=True, help="Jobs of every FHIR server, with a server column.")
@click.option("--limit", type=int, default=50, show_default=True)
def jobs_list(state: str | None, patient_id: str | None, server: str | None, all_servers: bool,
              limit: int) -> None:
    """The newest jobs of one FHIR server (or of all), one line each."""
    from rich.console import Console
    from rich.table import Table

    from plugin.jobs import JobState

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
    import dataclasses

    job = _job(job_id)
    click.echo(json.dumps({**dataclasses.asdict(job), "source": job.source}, indent=2,
                          default=str))


@jobs.command("retry")
@click.argument("job_id", type=int)
def jobs_retry(job_id: int) -> None:
    """Queue a failed or finished job again (it runs when a worker is free); a running job is
    refused."""
    from plugin.jobs import JobBusy

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
    from plugin.review import approve

    client = service_fhir_client(settings_of(current_app))
    version = _run(lambda: approve(client, reference, clinician=clinician, now=datetime.now(UTC)))
    click.echo(f"approved: {version}")


@review.command("reject")
@click.argument("reference")
@click.option("--clinician", required=True, help='The reviewing clinician, e.g. "Practitioner/7".')
@click.option("--reason", required=True, help="Why the result is wrong (kept with the result).")
def review_reject(reference: str, clinician: str, reason: str) -> None:
    """Mark an AI result entered-in-error, with the reason."""
    from plugin.review import reject

    client = service_fhir_client(settings_of(current_app))
    version = _run(lambda: reject(client, reference, clinician=clinician, reason=reason,
                                  now=datetime.now(UTC)))
    click.echo(f"rejected: {version}")


@cli.group()
@click.option("--offline", is_flag=True,
              help="Set HF_HUB_OFFLINE=1: nothing is fetched (pull refuses); list and verify never connect.")
def models(offline: bool) -> None:
    """Model weights: which each pipeline uses and where they are, fetch, verify.

    The Hub is HF_ENDPOINT (default https://huggingface.co), the cache HF_HUB_CACHE / HF_HOME, the
    token HF_TOKEN or `hf auth login`'s. With --offline or HF_HUB_OFFLINE=1 nothing is fetched.
    """
    if offline:  # before huggingface_hub is imported: it reads the variable once
        os.environ["HF_HUB_OFFLINE"] = "1"


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of tables.")
def models_list(as_json: bool) -> None:
    """Each model the settings choose: where it is, its revision and checksum; and which
    pipelines can run here."""
    from plugin.engines import model_store
    from plugin.pipelines.registry import installed_pipelines

    settings = settings_of(current_app)
    found = [model_store.status(spec, getattr(settings, spec.setting)) for spec in model_store.MODELS]
    pipelines = {name: (p.unavailable_reason or "", p.engine_note)
                 for name, p in installed_pipelines(settings).items()}
    if as_json:
        runs_here = {name: {"can_run": not reason, "reason": reason, "engine": note}
                     for name, (reason, note) in pipelines.items()}
        click.echo(json.dumps({"models": [model_store.describe(s) for s in found], "pipelines": runs_here,
                               "offline": model_store.hub_offline()}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="models")
    for column in ("model", "setting", "used by", "where", "revision", "checksum", "size"):
        table.add_column(column)
    for s in found:
        table.add_row(s.spec.key, f"{s.spec.setting} = {s.reference}", ", ".join(s.spec.pipelines),
                      str(s.folder) if s.folder else f"absent: {s.problem}", s.revision,
                      s.checksum[:19], f"{s.size_bytes / 1e6:.1f} MB" if s.folder else "")
    runs = Table(title="pipelines")
    runs.add_column("pipeline")
    runs.add_column("can run here")
    runs.add_column("engine")
    for name, (reason, note) in pipelines.items():
        runs.add_row(name, "no: " + reason if reason else "yes", note)
    console = Console()
    console.print(table)
    console.print(runs)


@models.command("pull")
@click.argument("name")
@click.option("--revision", default=None, help="A branch, tag or commit (default: main).")
def models_pull(name: str, revision: str | None) -> None:
    """Fetch a model into the Hugging Face cache: medasr, medgemma (the checkpoints the settings
    name) or any Hub id. Resumes cut-off downloads; files already here are not fetched again."""
    from plugin.engines import model_store

    spec = model_store.spec_of(name)
    if spec is not None:
        configured = getattr(settings_of(current_app), spec.setting)
        repo_id = configured if model_store.is_hub_id(configured) else spec.default
    elif model_store.is_hub_id(name):
        repo_id = name
    else:
        raise click.UsageError(f"{name!r} is neither medasr, medgemma nor a Hugging Face id (owner/name)")
    folder = _run(lambda: model_store.pull(repo_id, revision=revision))
    click.echo(f"{repo_id}: {folder} (revision {folder.name})")
    if spec is not None and repo_id != getattr(settings_of(current_app), spec.setting):
        click.echo(f"note: {spec.setting} names a folder; set it to {repo_id} to use this copy")


@models.command("verify")
@click.argument("names", nargs=-1)
@click.option("--no-smoke", is_flag=True, help="Skip the one-second smoke run (loading the model).")
def models_verify(names: tuple[str, ...], no_smoke: bool) -> None:
    """Check each model (default: both): files complete, safetensors headers, config classes load,
    a one-second smoke run. Exit status 1 when any check fails or a model is absent."""
    from plugin.engines import model_store

    settings = settings_of(current_app)
    specs = []
    for name in names or tuple(spec.key for spec in model_store.MODELS):
        spec = model_store.spec_of(name)
        if spec is None:
            raise click.UsageError(f"unknown model {name!r}: medasr or medgemma")
        specs.append(spec)
    failed = False
    for spec in specs:
        reference = getattr(settings, spec.setting)
        folder = model_store.locate(reference)
        if folder is None:
            click.echo(f"{spec.key} ({reference}): absent: not on this machine")
            failed = True
            continue
        report = model_store.verify(spec, folder, smoke=not no_smoke)
        click.echo(f"{spec.key} ({reference}) at {folder}:")
        for check in report.checks:
            click.echo(f"  {'ok  ' if check.ok else 'FAIL'} {check.name}: {check.detail}")
        failed = failed or not report.ok
    if failed:
        raise SystemExit(1)


@cli.command("backend-jwks")
@click.option("--name", help="Only this backend_services entry (its name or fhir_server).")
def backend_jwks(name: str | None) -> None:
    """The public JWK Set of each backend_services key, to register with its EHR (the private key
    never leaves the file)."""
    import functools

    from plugin.fhir.backend_services import load_key

    services = [s for s in settings_of(current_app).backend_services
                if name is None or name in (s.name, s.fhir_server)]
    if not services:
        raise click.UsageError(f"no backend_services entry {name!r}" if name else "backend_services is empty")
    sets = {s.label: {"keys": [_run(functools.partial(load_key, s)).public_jwk()]} for s in services}
    click.echo(json.dumps(next(iter(sets.values())) if name else sets, indent=2))


def _job(job_id: int) -> Job:
    try:
        return job_store_of(current_app).get(job_id)
    except KeyError:
        raise click.UsageError(f"there is no job {job_id}") from None


def _run(action: Callable[[], T]) -> T:
    """Run a command body; chartlight's own errors become a clean message and exit status 1."""
    from plugin.errors import ChartlightError

    try:
        return action()
    except ChartlightError as exc:
        raise click.ClickException(str(exc)) from None


def main() -> None:
    cli(prog_name="chartlight")


if __name__ == "__main__":
    main()
