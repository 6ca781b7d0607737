"""The Flask application factory: settings, shared objects in app.extensions, blueprints."""

from __future__ import annotations

import logging
import secrets
from typing import Any

from flask import Flask, current_app, jsonify

from plugin import __version__
from plugin.config import Settings, load_settings
from plugin.errors import FhirError
from plugin.fhir import FhirClient
from plugin.jobs import JobStore
from plugin.scopes import parse_scopes


def create_app(settings: Settings | None = None) -> Flask:
    """Build the web service. With no settings, they are loaded from file and environment."""
    settings = settings or load_settings()
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("openjpeg").setLevel(logging.WARNING)  # one INFO line per encoded tile
    app = Flask("chartlight")
    # A missing secret only matters once sessions exist; a random one keeps a dev server working.
    app.config["SECRET_KEY"] = settings.secret_key or secrets.token_hex(32)
    app.extensions["chartlight.settings"] = settings
    app.add_url_rule("/health", view_func=_health)
    app.add_url_rule("/metrics", view_func=_metrics)
    from cds_hooks import create_blueprint  # here: cds_hooks uses this module's accessors

    app.register_blueprint(create_blueprint(settings))
    import smart_launch  # here too: the SMART app uses this module's accessors

    app.register_blueprint(smart_launch.create_blueprint(settings))
    return app


def job_store_of(app: Flask) -> JobStore:
    """The app's job store, opened on first use (so commands that need none create no file)."""
    if "chartlight.jobs" not in app.extensions:
        app.extensions["chartlight.jobs"] = JobStore(settings_of(app).database_url)
    store: JobStore = app.extensions["chartlight.jobs"]
    return store


def settings_of(app: Flask) -> Settings:
    settings: Settings = app.extensions["chartlight.settings"]
    return settings


def service_fhir_client(settings: Settings) -> FhirClient:
    """A client for the configured FHIR server with the configured static token (CLI, demo)."""
    return FhirClient(
        settings.fhir_base_url,
        token=settings.fhir_token,
        timeout_s=settings.fhir_timeout_s,
        max_retries=settings.fhir_max_retries,
        retry_backoff_s=settings.fhir_retry_backoff_s,
        max_response_bytes=settings.max_response_bytes,
        granted_scopes=parse_scopes(settings.fhir_token_scopes) if settings.fhir_token_scopes else None,
        max_pages=settings.fhir_max_pages,
    )


def _metrics() -> Any:
    """Prometheus metrics of the job table (plugin.metrics), for allowed scrapers only."""
    from flask import Response, request

    from plugin import metrics

    settings = settings_of(current_app)
    networks = metrics.allowed_networks(settings.metrics_allowed_networks)
    if not metrics.allows(networks, settings.metrics_token, request.remote_addr or "",
                          request.headers.get("Authorization", "")):
        return Response("forbidden\n", status=403, content_type="text/plain; charset=utf-8")
    if "chartlight.metrics" not in current_app.extensions:
        engine = job_store_of(current_app).engine
        current_app.extensions["chartlight.metrics"] = metrics.metrics_registry(engine)
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
    return Response(generate_latest(current_app.extensions["chartlight.metrics"]),
                    content_type=CONTENT_TYPE_LATEST)


def _health() -> Any:
    """Liveness plus whether the configured FHIR server answers its capability statement."""
    settings = settings_of(current_app)
    client = FhirClient(settings.fhir_base_url, timeout_s=5, max_retries=0)
    try:
        fhir_version = client.capabilities().get("fhirVersion", "unknown")
        fhir = {"reachable": True, "fhirVersion": fhir_version}
    except FhirError as exc:
        fhir = {"reachable": False, "error": type(exc).__name__}
    return jsonify(status="ok", version=__version__, fhir=fhir)
