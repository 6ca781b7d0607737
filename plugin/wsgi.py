"""What `chartlight serve` runs under gunicorn: the app plus a job runner in each worker
process (claims are atomic and leased, so workers never run the same job twice at once)."""

from __future__ import annotations

import gc

from flask import Flask

from plugin.analysis import service_client_for
from plugin.app import create_app, job_store_of, settings_of
from plugin.jobs import JobRunner
from plugin.pipelines.registry import installed_pipelines


def create_service() -> Flask:
    app = create_app()
    settings = settings_of(app)
    pipelines = installed_pipelines(settings)
    app.extensions["chartlight.pipelines"] = pipelines  # CDS hooks queue unanalysed inputs
    runnable = {name: p.run for name, p in pipelines.items() if not p.unavailable_reason}
    runner = JobRunner(job_store_of(app), runnable, service_client_for(settings),
                       workers=settings.job_workers, lease_s=settings.job_lease_s)
    runner.start()
    app.extensions["chartlight.runner"] = runner
    tune_garbage_collection()
    return app


def tune_garbage_collection() -> None:
    """Fewer, cheaper collections for a request-serving process. Everything built at start-up
    (modules, settings, pipelines) lives as long as the process: frozen, the collector no longer
    walks it on every full collection. A hook call allocates thousands of short-lived objects:
    a larger first-generation threshold collects them in fewer pauses (bench/cds_hooks.py: p99
    of patient-view under load)."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
