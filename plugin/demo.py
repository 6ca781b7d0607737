"""`make demo`: start the sandbox, seed the synthetic patient, run every pipeline built so far."""

from __future__ import annotations

from rich.console import Console

from plugin.app import service_fhir_client
from plugin.config import Settings
from plugin.sandbox.hapi import HapiSandbox
from plugin.sandbox.seed import print_seed_report, seed_demo_patient

# Pipelines not built yet, with the issue that builds each. Removed from here as they land.
NOT_BUILT = (
    ("documents", "PDF/scan/image lab reports -> lab Observations (document understanding)"),
    ("speech", "dictation audio -> transcript DocumentReference (MedASR)"),
    ("imaging", "CT / chest X-ray -> imaging findings (MedGemma 1.5)"),
)


def run_demo(settings: Settings, sandbox: HapiSandbox, console: Console | None = None) -> None:
    console = console or Console()
    console.rule("chartlight demo")
    console.print("1. starting the HAPI FHIR sandbox (the first start builds it with Maven) ...")
    base_url = sandbox.start()
    console.print(f"   up at {base_url}")
    client = service_fhir_client(settings)
    if client.base_url != base_url:
        client = type(client)(base_url, timeout_s=settings.fhir_timeout_s,
                              max_response_bytes=settings.max_response_bytes)
    console.print("2. seeding the synthetic patient's documents, dictation and imaging ...")
    report = seed_demo_patient(client)
    print_seed_report(report, console)
    console.print("3. pipelines:")
    for name, what in NOT_BUILT:
        console.print(f"   [yellow]not built yet[/yellow]: {name} ({what}); nothing written")
    console.print("4. results written back: none yet (no pipeline is built).")
    console.print(f"\nThe sandbox keeps running at {base_url}; stop it with `make sandbox-down`.")
