"""`chartlight demo` (`make demo`): start the sandboxes, seed the synthetic patient, run every
pipeline, and print per input what was written (counts per resource type, the first one's URL),
or the same as JSON. With test models (--test-models, or --auto-test-models when weights are
absent) speech and imaging run on tiny random-weight models and every result says so."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console

from plugin.analysis import AnalysisRun, analyze_patient, service_client_for
from plugin.config import Settings
from plugin.engines.test_models import TEST_OUTPUT, why_not_sandbox
from plugin.errors import ConfigError
from plugin.fhir import FhirClient
from plugin.jobs import Job, JobLimits, JobState, JobStore
from plugin.pipelines.registry import installed_pipelines
from plugin.sandbox.ehr import EhrSandbox, app_environment, ensure_user
from plugin.sandbox.hapi import HapiSandbox
from plugin.sandbox.orthanc import OrthancSandbox
from plugin.sandbox.seed import print_seed_report, seed_demo_patient

Summary = dict[str, Any]


def run_demo(settings: Settings, sandbox: HapiSandbox, console: Console | None = None, *,
             pacs: OrthancSandbox | None = None, ehr: EhrSandbox | None = None,
             auto_test_models: bool = False) -> Summary:
    """Run the demo; returns what it wrote (the --json output)."""
    console = console or Console()
    console.rule("chartlight demo")
    if auto_test_models and not settings.test_models:
        settings = _test_models_if_weights_absent(settings, console)
    if settings.test_models:
        console.print(f"[bold red]TEST MODELS: speech and imaging run on tiny random-weight models; "
                      f"every result they write is marked {TEST_OUTPUT}.[/bold red]")
    console.print("1. starting the HAPI FHIR sandbox (the first start builds it with Maven) ...")
    fresh = not sandbox.is_running()
    base_url = sandbox.start(say=_say(console))
    console.print(f"   up at {base_url}")
    client = FhirClient(base_url, timeout_s=settings.fhir_timeout_s,
                        max_response_bytes=settings.max_response_bytes, max_pages=settings.fhir_max_pages)
    if settings.test_models:
        reason = why_not_sandbox(base_url, client.capabilities)
        if reason is not None:
            raise ConfigError(f"test models: {reason}")

    console.print("2. seeding the synthetic patient's documents, dictation and imaging ...")
    pacs_url = None
    if pacs is not None:
        pacs_url = pacs.start(say=_say(console))
        console.print(f"   imaging goes to the Orthanc PACS sandbox, DICOMweb at {pacs_url}")
        # The demo's own PACS is one the service may call (without the token).
        allowed = (*settings.imaging_allowed_endpoints, pacs_url)
        settings = replace(settings, imaging_allowed_endpoints=allowed)
    report = seed_demo_patient(client, pacs_url=pacs_url)
    print_seed_report(report, console)

    console.print("3. analysing the patient's inputs with every installed pipeline ...")
    store = JobStore(_demo_jobs_url(sandbox, fresh))
    summary: Summary = {"fhir_base_url": base_url, "patient": f"Patient/{report.patient_id}",
                        "test_models": settings.test_models, "pipelines": {}}
    not_run = []
    for name, pipeline in installed_pipelines(settings).items():
        if pipeline.unavailable_reason:
            console.print(f"   [yellow]{name}: not run[/yellow] — {pipeline.unavailable_reason}")
            summary["pipelines"][name] = {"run": False, "reason": pipeline.unavailable_reason}
            not_run.append(name)
            continue
        console.print(f"   {name}: {pipeline.description}")
        if pipeline.engine_note:
            console.print(f"   engine: {pipeline.engine_note}")
        run = analyze_patient(client, store, pipeline, report.patient_id,
                              client_for=service_client_for(settings), console=console,
                              limits=JobLimits.from_settings(settings), lease_s=settings.job_lease_s)
        inputs = [input_summary(job, base_url) for job in run.jobs]
        summary["pipelines"][name] = {"run": True, "inputs": inputs}
        print_inputs(run, inputs, console)
    if not_run:
        console.print(f"[bold yellow]{', '.join(not_run)} did not run: the model weights are absent. "
                      f"`chartlight demo --test-models` runs them on tiny random-weight models "
                      f"({TEST_OUTPUT}).[/bold yellow]")
    console.print(f"\nResults are on the sandbox at {base_url} (preliminary, labelled as AI output).")
    if ehr is not None:
        extra = {"CHARTLIGHT_IMAGING_ALLOWED_ENDPOINTS": ",".join(settings.imaging_allowed_endpoints)} \
            if settings.imaging_allowed_endpoints else {}
        if settings.test_models:
            extra["CHARTLIGHT_TEST_MODELS"] = "1"
        summary["launch"] = _print_smart_launch(ehr, client, report.patient_id, console,
                                                {"CHARTLIGHT_PORT": str(settings.port), **extra})
    console.print("The sandbox keeps running; stop it with `chartlight sandbox down` (`make sandbox-down`).")
    return summary


def input_summary(job: Job, base_url: str) -> Summary:
    """One input: its state, resources written per type, the first of each with its URL."""
    item: Summary = {"input": f"{job.source_type}/{job.source_id}/_history/{job.source_version}",
                     "job": job.id, "state": job.state.value}
    if job.state is not JobState.SUCCEEDED:
        item["error"] = job.error or job.progress_text
        return item
    summary = job.summary
    model = summary.get("model") or {}
    item["test_output"] = bool(model.get("test_weights"))
    item["model"] = model.get("name", "")
    for key, locations in (("written", summary.get("created", []) + summary.get("updated", [])),
                           ("unchanged", summary.get("unchanged", [])),
                           ("kept_signed", summary.get("kept_signed", []))):
        item[key] = counts(locations)
    firsts = _first_of_each(summary.get("created", []) + summary.get("updated", [])
                            + summary.get("unchanged", []) + summary.get("kept_signed", []))
    item["open"] = {kind: f"{base_url.rstrip('/')}/{kind}/{rid}" for kind, rid in firsts.items()}
    if summary.get("reason"):
        item["note"] = summary["reason"]
    return item


def counts(locations: list[str]) -> dict[str, int]:
    """["Observation/7/_history/1", ...] -> {"Observation": 1, ...}, in first-seen order."""
    found: dict[str, int] = {}
    for location in locations:
        kind = location.split("/", 1)[0]
        found[kind] = found.get(kind, 0) + 1
    return found


def _first_of_each(locations: list[str]) -> dict[str, str]:
    firsts: dict[str, str] = {}
    for location in locations:
        kind, rid = location.split("/")[:2]
        firsts.setdefault(kind, rid)
    return firsts


def print_inputs(run: AnalysisRun, inputs: list[Summary], console: Console) -> None:
    """Two lines per input: what was written (counts per type), then the main result's URL.
    Lines, not a table: a URL must stay whole to be opened or copied, at any terminal width."""
    console.print(f"   [bold]{run.pipeline}[/bold]: {len(inputs)} input(s)")
    for item in inputs:
        if item["state"] != JobState.SUCCEEDED.value:
            console.print(f"   {item['input']}  [red]{item['state']}[/red]: {item.get('error', '')}",
                          soft_wrap=True, highlight=False)
            continue
        parts = [_phrase(item["written"], "written"), _phrase(item["unchanged"], "unchanged"),
                 _phrase(item["kept_signed"], "kept (signed)")]
        text = "; ".join(p for p in parts if p) or item.get("note", "nothing to write")
        if item["test_output"]:
            text = f"[bold red]{TEST_OUTPUT}[/bold red] — {text}"
        console.print(f"   {item['input']}  {text}", soft_wrap=True, highlight=False)
        url = _main_url(item["open"])
        if url:
            console.print(f"      open {url}", soft_wrap=True, highlight=False)


def _phrase(found: dict[str, int], what: str) -> str:
    return f"{', '.join(f'{n} {kind}' for kind, n in found.items())} {what}" if found else ""


def _main_url(urls: dict[str, str]) -> str:
    """The result a person wants first: the finding or document, not the Provenance or Device."""
    for kind in ("Observation", "DiagnosticReport", "DocumentReference"):
        if kind in urls:
            return urls[kind]
    return next(iter(urls.values()), "")


def _test_models_if_weights_absent(settings: Settings, console: Console) -> Settings:
    absent = [name for name, p in installed_pipelines(settings).items() if p.unavailable_reason]
    if not absent:
        return settings
    console.print(f"[bold red]Model weights are absent for {', '.join(absent)}: using TEST MODELS "
                  f"(tiny random weights) instead; their results are {TEST_OUTPUT}.[/bold red]")
    return replace(settings, test_models=True)


def _demo_jobs_url(sandbox: HapiSandbox, fresh: bool) -> str:
    """The demo's jobs belong to this sandbox's data: a freshly started in-memory sandbox has
    none of the results an older job list would claim, so that list starts over."""
    Path(sandbox.state_dir).mkdir(parents=True, exist_ok=True)
    path = Path(sandbox.state_dir) / f"demo-jobs-{sandbox.port}.db"
    if fresh and not sandbox.persistent:
        path.unlink(missing_ok=True)
    return f"sqlite:///{path}"


def _say(console: Console) -> Callable[[str], None]:
    """Where a sandbox tells why it restarts a server: one unwrapped line."""
    return lambda line: console.print(f"   [yellow]{line}[/yellow]", soft_wrap=True, highlight=False)


def _chartlight_command() -> str:
    """How the person who ran this reaches chartlight: `chartlight` when it is on their PATH,
    else the script they ran (`make demo` runs .venv/bin/chartlight)."""
    script = Path(sys.argv[0])
    if script.name == "chartlight" and shutil.which("chartlight") != str(script.resolve()):
        return str(script)
    return "chartlight"


def _print_smart_launch(ehr: EhrSandbox, client: FhirClient, patient_id: str, console: Console,
                        extra_env: dict[str, str]) -> Summary:
    """Start the sandbox EHR and say how to open the SMART app inside it for the patient."""
    ensure_user(client)
    ehr.start(say=_say(console))
    environment = {**app_environment(ehr), **extra_env}
    env = " ".join(f"{name}='{value}'" for name, value in environment.items())
    console.print(f"\nThe SMART app inside a sandbox EHR ({ehr.base_url}):")
    console.print(f"   start the app:  {env} {_chartlight_command()} serve", soft_wrap=True)
    console.print(f"   then open:      {ehr.launch_page(patient_id)}", soft_wrap=True)
    return {"serve_environment": environment, "ehr_page": ehr.launch_page(patient_id)}

