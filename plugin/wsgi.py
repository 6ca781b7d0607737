"""What gunicorn runs. `create_web()` is `chartlight serve`'s web tier: the app, the pipelines'
descriptions (which exist, which can run: CDS hooks and the SMART pages queue jobs for them) and,
with a broker, the publisher of queued jobs; it runs no job and loads no model (`chartlight
worker` does). `create_service()` is the single-process layout of earlier releases, kept for
bench/throughput.py's baseline: the app plus a job runner in each web worker process (claims
are atomic and leased, so workers never run the same job twice at once). Jobs started in the
SMART app run with the clinician's session; the others with the service's client."""

from __future__ import annotations

import gc
import logging
import sys

from flask import Flask

from cds_hooks.blueprint import DISPATCH_EXTENSION
from plugin.analysis import service_client_for
from plugin.app import create_app, job_store_of, settings_of
from plugin.config import Settings
from plugin.jobs import JobLimits, JobRunner
from plugin.pipelines.registry import installed_pipelines
from smart_launch.jobs import client_for_jobs

log = logging.getLogger(__name__)


def create_web() -> Flask:
    app = create_app()
    settings = settings_of(app)
    # Built from the settings without loading a model (plugin.pipelines.registry loads lazily).
    app.extensions["chartlight.pipelines"] = installed_pipelines(settings)
    for warning in models_in_the_web_tier(settings):
        log.warning("%s", warning)
    if settings.job_broker_url:
        from plugin.jobs.dispatch import CeleryPublisher, make_celery

        publisher = CeleryPublisher(make_celery(settings))
        job_store_of(app).publish = publisher
        app.extensions[DISPATCH_EXTENSION] = publisher
    tune_for_serving()
    return app


def models_in_the_web_tier(settings: Settings) -> list[str]:
    """What would load a model in this web tier when used, worth saying when the deployment
    means the web tier to be model-free (a broker: the jobs run on `chartlight worker`s)."""
    if not settings.job_broker_url:
        return []
    found = []
    if settings.speech_live:
        found.append("live dictation (speech_live) loads MedASR in the web tier on the first live "
                     "recording; speech_live = false keeps the web tier model-free (docs/deploy.md)")
    if settings.medgemma_engine == "local":
        found.append("ask the chart with the local MedGemma engine loads MedGemma in the web tier on "
                     "the first question; medgemma_engine = \"remote\" (vLLM) keeps it out (docs/deploy.md)")
    return found


def create_service() -> Flask:
    app = create_app()
    settings = settings_of(app)
    pipelines = installed_pipelines(settings)
    app.extensions["chartlight.pipelines"] = pipelines  # CDS hooks queue unanalysed inputs
    runnable = {name: p.run for name, p in pipelines.items() if not p.unavailable_reason}
    runner = JobRunner(job_store_of(app), runnable,
                       client_for_jobs(app, service_client_for(settings)),
                       workers=settings.job_workers, lease_s=settings.job_lease_s,
                       limits=JobLimits.from_settings(settings))
    runner.start()
    app.extensions["chartlight.runner"] = runner
    tune_for_serving()
    return app


def tune_for_serving() -> None:
    """Shorter pauses for a request-serving process (bench/cds_hooks.py: p99 of patient-view
    under load).

    Everything built at start-up (modules, settings, pipelines) lives as long as the process:
    frozen, the garbage collector no longer walks it on every full collection, and a larger
    first-generation threshold collects a request's short-lived objects in fewer pauses.
    A request thread that holds a lock (the used-JWT writer's turn) and loses the interpreter
    lock waits for the switch interval before it runs again; 1 ms instead of Python's 5 ms keeps
    the threads behind it from waiting that long."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    sys.setswitchinterval(0.001)
