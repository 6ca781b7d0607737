"""Prometheus metrics of the job table, the same on the web tier (`GET /metrics`) and on a worker's
metrics port (`start_worker_metrics`): read from the database at each scrape, so every process
reports the whole deployment's queue, whichever process serves the scrape.

    chartlight_jobs{pipeline, state, fhir_server}                    queued and running jobs
    chartlight_oldest_queued_job_age_seconds{pipeline, fhir_server}  age of the oldest queued job
    chartlight_jobs_finished_total{pipeline, outcome, fhir_server}   succeeded / failed
    chartlight_job_failures_total{pipeline, reason, fhir_server}     failed jobs by error kind
    chartlight_job_table_up                                          0 when the database did not answer

`fhir_server` is the FHIR base in its plain form (scheme and host lower-cased, no trailing slash;
a stored base that is not plain is reported as "invalid"): never a token, a query or a patient.
`reason` is one of FAILURE_REASONS, read from the error each failed job recorded.

Access (docs/deploy.md, docs/configuration.md "Metrics"): only clients whose address is in
`metrics_allowed_networks`, and with `metrics_token` set, only requests carrying it as a bearer
token; anything else gets 403 with no detail.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from plugin.config import Settings, plain_fhir_base
from plugin.jobs.schema import JobRow

log = logging.getLogger(__name__)

# Error kinds of failed jobs, matched in this order against the error text the job runner and
# the pipelines record (plugin.jobs.runner, plugin.fhir.backend_services, smart_launch.jobs).
FAILURE_REASONS: tuple[tuple[str, Callable[[str, bool], bool]], ...] = (
    ("transient_gave_up", lambda error, transient: transient),
    ("internal_error", lambda error, transient: error.startswith("internal error:")),
    ("time_limit", lambda error, transient: "time limit" in error),
    ("service_credentials", lambda error, transient: error.startswith("EHR ") and (
        "token" in error or "scopes" in error)),
    ("session_ended", lambda error, transient: error.startswith("the clinician's session ended")),
    ("wrong_subject", lambda error, transient: "as its subject, not" in error),
    ("no_pipeline", lambda error, transient: error.startswith("no pipeline named")),
    ("fhir_refused", lambda error, transient: " -> HTTP " in error),
)
OTHER_REASON = "input_or_other"


def failure_reason(error: str, transient: bool) -> str:
    """The error kind of a failed job (FAILURE_REASONS), or OTHER_REASON: the input's own
    problem (an unreadable file, a budget exceeded) or a message no rule names."""
    return next((name for name, matches in FAILURE_REASONS if matches(error, transient)), OTHER_REASON)


def server_label(fhir_base_url: str) -> str:
    """A FHIR base as a label: its plain form, or "invalid" (never a query, credentials or path
    beyond what the stored base holds)."""
    return plain_fhir_base(fhir_base_url) or "invalid"


class JobTableCollector(Collector):
    """Reads the job table at each scrape (three grouped queries)."""

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._engine = engine
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily("chartlight_jobs", "Jobs queued or running, per pipeline, state and FHIR "
                                 "server", labels=["pipeline", "state", "fhir_server"])
        oldest = GaugeMetricFamily("chartlight_oldest_queued_job_age_seconds", "Seconds since the oldest "
                                   "queued job was created, per pipeline and FHIR server",
                                   labels=["pipeline", "fhir_server"])
        finished = CounterMetricFamily("chartlight_jobs_finished", "Jobs that ended, per pipeline, outcome "
                                       "and FHIR server", labels=["pipeline", "outcome", "fhir_server"])
        failures = CounterMetricFamily("chartlight_job_failures", "Failed jobs per error kind, pipeline and "
                                       "FHIR server", labels=["pipeline", "reason", "fhir_server"])
        up = GaugeMetricFamily("chartlight_job_table_up", "1 when the job table answered this scrape")
        try:
            counts, ages, errors = self._read()
        except SQLAlchemyError as exc:  # a scrape during a database outage says so, and no more
            log.warning("metrics: the job database did not answer (%s)", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        now = self._clock()
        for (pipeline, state, server), count in sorted(counts.items()):
            family = jobs if state in ("queued", "running") else None
            if family is not None:
                family.add_metric([pipeline, state, server], count)
            else:
                finished.add_metric([pipeline, state, server], count)
        for (pipeline, server), created in sorted(ages.items()):
            oldest.add_metric([pipeline, server], max(0.0, (now - _aware(created)).total_seconds()))
        for (pipeline, reason, server), count in sorted(errors.items()):
            failures.add_metric([pipeline, reason, server], count)
        up.add_metric([], 1)
        yield from (jobs, oldest, finished, failures, up)

    def _read(self) -> tuple[dict[tuple[str, str, str], int], dict[tuple[str, str], datetime],
                             dict[tuple[str, str, str], int]]:
        counts: dict[tuple[str, str, str], int] = {}
        ages: dict[tuple[str, str], datetime] = {}
        errors: dict[tuple[str, str, str], int] = {}
        with self._engine.connect() as connection:
            for pipeline, state, base, count in connection.execute(
                    select(JobRow.pipeline, JobRow.state, JobRow.fhir_base_url, func.count())
                    .group_by(JobRow.pipeline, JobRow.state, JobRow.fhir_base_url)):
                key = (pipeline, state, server_label(base))
                counts[key] = counts.get(key, 0) + count
            for pipeline, base, created in connection.execute(
                    select(JobRow.pipeline, JobRow.fhir_base_url, func.min(JobRow.created_at))
                    .where(JobRow.state == "queued").group_by(JobRow.pipeline, JobRow.fhir_base_url)):
                label = (pipeline, server_label(base))
                if created is not None and (label not in ages or _aware(created) < _aware(ages[label])):
                    ages[label] = created
            for pipeline, base, error, transient, count in connection.execute(
                    select(JobRow.pipeline, JobRow.fhir_base_url, JobRow.error, JobRow.transient,
                           func.count())
                    .where(JobRow.state == "failed")
                    .group_by(JobRow.pipeline, JobRow.fhir_base_url, JobRow.error, JobRow.transient)):
                key = (pipeline, failure_reason(error or "", bool(transient)), server_label(base))
                errors[key] = errors.get(key, 0) + count
        return counts, ages, errors


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # SQLite returns naive UTC


def metrics_registry(engine: Engine) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobTableCollector(engine))
    return registry


def metrics_wsgi_app(settings: Settings, engine: Engine) -> Callable[..., Iterable[bytes]]:
    """The Prometheus exposition as a WSGI app, behind the access rules of `settings`."""
    return guarded(settings, make_wsgi_app(metrics_registry(engine)))


def guarded(settings: Settings, app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    networks = allowed_networks(settings.metrics_allowed_networks)

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not allows(networks, settings.metrics_token, environ.get("REMOTE_ADDR", ""),
                      environ.get("HTTP_AUTHORIZATION", "")):
            start_response("403 Forbidden", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"forbidden\n"]
        return app(environ, start_response)
    return wsgi


def allowed_networks(cidrs: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def allows(networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...], token: str | None,
           remote_addr: str, authorization: str) -> bool:
    """Whether a scrape from `remote_addr` with this Authorization header may read the metrics."""
    try:
        address = ipaddress.ip_address(remote_addr.split("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if not any(address in network for network in networks):
        return False
    if not token:
        return True
    scheme, _, given = authorization.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def start_worker_metrics(settings: Settings, port: int) -> None:
    """Serve the same metrics on `settings.metrics_worker_host`:`port` from a daemon thread of
    this (worker) process; returns once the port is bound (an error when it cannot be)."""
    from werkzeug.serving import make_server

    from plugin.jobs import JobStore

    engine = JobStore(settings.database_url).engine
    server = make_server(settings.metrics_worker_host, port, metrics_wsgi_app(settings, engine),
                         threaded=True)
    threading.Thread(target=server.serve_forever, name="chartlight-metrics", daemon=True).start()
    log.info("metrics on http://%s:%d/metrics", settings.metrics_worker_host, server.server_port)
