"""`make demo`: start the sandbox, seed the synthetic patient, run every pipeline built so far,
and print what was written."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from plugin.analysis import analyze_patient, print_run, service_client_for
from plugin.config import Settings
from plugin.fhir import FhirClient
from plugin.jobs import JobStore
from plugin.pipelines.registry import installed_pipelines
from plugin.sandbox.hapi import HapiSandbox
from plugin.sandbox.seed import print_seed_report, seed_demo_patient

# Pipelines not built yet, with what each will do. Removed from here as they land.
NOT_BUILT = (
    ("imaging", "CT / chest X-ray -> imaging findings (MedGemma 1.5)"),
)


def run_demo(settings: Settings, sandbox: HapiSandbox, console: Console | None = None) -> None:
    console = console or Console()
    console.rule("chartlight demo")
    console.print("1. starting the HAPI FHIR sandbox (the first start builds it with Maven) ...")
    fresh = not sandbox.is_running()
    base_url = sandbox.start()
    console.print(f"   up at {base_url}")
    client = FhirClient(base_url, timeout_s=settings.fhir_timeout_s,
                        max_response_bytes=settings.max_response_bytes)

    console.print("2. seeding the synthetic patient's documents, dictation and imaging ...")
    report = seed_demo_patient(client)
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
    for name, what in NOT_BUILT:
        console.print(f"   [yellow]{name}: not built yet[/yellow] ({what}); nothing written")
    console.print(f"\nResults are on the sandbox at {base_url} (preliminary, labelled as AI output).")
    console.print("The sandbox keeps running; stop it with `make sandbox-down`.")


def _demo_jobs_url(sandbox: HapiSandbox, fresh: bool) -> str:
    """The demo's jobs belong to this sandbox's data: a freshly started in-memory sandbox has
    none of the results an older job list would claim, so that list starts over."""
    path = Path(sandbox.state_dir) / f"demo-jobs-{sandbox.port}.db"
    if fresh and not sandbox.persistent:
        path.unlink(missing_ok=True)
    return f"sqlite:///{path}"
