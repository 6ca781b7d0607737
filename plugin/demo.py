"""`make demo`: start the sandbox, seed the synthetic patient, run every pipeline built so far,
and print what was written."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from rich.console import Console

from plugin.analysis import analyze_patient, print_run, service_client_for
from plugin.config import Settings
from plugin.fhir import FhirClient
from plugin.jobs import JobStore
from plugin.pipelines.registry import installed_pipelines
from plugin.sandbox.ehr import EhrSandbox, app_environment, ensure_user
from plugin.sandbox.hapi import HapiSandbox
from plugin.sandbox.orthanc import OrthancSandbox
from plugin.sandbox.seed import print_seed_report, seed_demo_patient


def run_demo(settings: Settings, sandbox: HapiSandbox, console: Console | None = None, *,
             pacs: OrthancSandbox | None = None, ehr: EhrSandbox | None = None) -> None:
    console = console or Console()
    console.rule("chartlight demo")
    console.print("1. starting the HAPI FHIR sandbox (the first start builds it with Maven) ...")
    fresh = not sandbox.is_running()
    base_url = sandbox.start()
    console.print(f"   up at {base_url}")
    client = FhirClient(base_url, timeout_s=settings.fhir_timeout_s,
                        max_response_bytes=settings.max_response_bytes)

    console.print("2. seeding the synthetic patient's documents, dictation and imaging ...")
    pacs_url = None
    if pacs is not None:
        pacs_url = pacs.start()
        console.print(f"   imaging goes to the Orthanc PACS sandbox, DICOMweb at {pacs_url}")
        # The demo's own PACS is one the service may call (without the token).
        allowed = (*settings.imaging_allowed_endpoints, pacs_url)
        settings = replace(settings, imaging_allowed_endpoints=allowed)
    report = seed_demo_patient(client, pacs_url=pacs_url)
    print_seed_report(report, console)

    console.print("3. analysing the patient's inputs with every installed pipeline ...")
    store = JobStore(_demo_jobs_url(sandbox, fresh))
    for name, pipeline in installed_pipelines(settings).items():
        if pipeline.unavailable_reason:
            console.print(f"   [yellow]{name}: not run[/yellow] — {pipeline.unavailable_reason}")
            continue
        console.print(f"   {name}: {pipeline.description}")
        if pipeline.engine_note:
            console.print(f"   engine: {pipeline.engine_note}")
        run = analyze_patient(client, store, pipeline, report.patient_id,
                              client_for=service_client_for(settings), console=console)
        print_run(run, console)
    console.print(f"\nResults are on the sandbox at {base_url} (preliminary, labelled as AI output).")
    if ehr is not None:
        extra = {"CHARTLIGHT_IMAGING_ALLOWED_ENDPOINTS": ",".join(settings.imaging_allowed_endpoints)} \
            if settings.imaging_allowed_endpoints else {}
        _print_smart_launch(ehr, client, report.patient_id, console, extra)
    console.print("The sandbox keeps running; stop it with `make sandbox-down`.")


def _demo_jobs_url(sandbox: HapiSandbox, fresh: bool) -> str:
    """The demo's jobs belong to this sandbox's data: a freshly started in-memory sandbox has
    none of the results an older job list would claim, so that list starts over."""
    path = Path(sandbox.state_dir) / f"demo-jobs-{sandbox.port}.db"
    if fresh and not sandbox.persistent:
        path.unlink(missing_ok=True)
    return f"sqlite:///{path}"


def _print_smart_launch(ehr: EhrSandbox, client: FhirClient, patient_id: str, console: Console,
                        extra_env: dict[str, str]) -> None:
    """Start the sandbox EHR and say how to open the SMART app inside it for the patient."""
    ensure_user(client)
    ehr.start()
    env = " ".join(f"{name}='{value}'" for name, value in {**app_environment(ehr), **extra_env}.items())
    console.print(f"\nThe SMART app inside a sandbox EHR ({ehr.base_url}):")
    console.print(f"   start the app:  {env} chartlight serve", soft_wrap=True)
    console.print(f"   then open:      {ehr.launch_page(patient_id)}", soft_wrap=True)
