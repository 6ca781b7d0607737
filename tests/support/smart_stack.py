"""The SMART app's whole stack on loopback for browser and protocol tests: the sandbox EHR
(authorization server + FHIR proxy in front of the HAPI sandbox) and the chartlight service (the
Flask app with the smart blueprint, and a job runner with the installed pipelines), each a real
HTTP server on 127.0.0.1 in this process.

API:

    with smart_stack(sandbox_url, tmp_path) as stack:      # sandbox_url: the conftest fixture
        stack.ehr_page_url(patient_id)     # the EHR page: the app launched in an <iframe> (browser tests)
        stack.launch_url(patient_id)       # what that iframe opens: {app}/smart/launch?iss=..&launch=..
        stack.standalone_url()             # {app}/smart/start (standalone launch, EHR picks patient)
        browser = stack.browser()          # requests.Session that keeps the Secure cookie on http loopback
        browser = stack.launched(patient_id)   # EHR launch done: the session cookie is set
        stack.session_of(browser)          # the SmartSession behind that cookie (csrf_token, scopes, ...)
        stack.ehr                          # ehr_server.SandboxEhr: set_policy, expire_access_tokens
        stack.app, stack.settings          # the chartlight Flask app and its Settings
        stack.app_base, stack.ehr_base, stack.fhir_base (the proxy: iss/aud), stack.fhir_upstream (HAPI)
        stack.client_id, stack.user        # the registered client, the EHR user ("Practitioner/...")

`smart_stack(...)` options: client_auth "public" | "private_key_jwt", alg "RS384" | "ES384", scopes
(the app's requested scopes; default the product default), refused_scopes, refuse_with_error and
token_lifetime_s (the EHR's policy for this client), standalone_patient (patient a standalone launch
gets), ehr (more plugin.sandbox.ehr_server.EhrConfig fields: id_token_alg, id_token_kid, serve_style,
banner_on_ehr_launch, tenants), fhir_bases (SmartEhr.fhir_bases of the app's registration; "{ehr}"
stands for the EHR's base URL), run_jobs (start the job runner; default True: the app's analyses
with write scope are jobs, so tests that analyse need it), cds (the EHR page calls the app's CDS
Hooks patient-view services, signed with the EHR's key, which the app trusts; default False),
settings_extra (more Settings fields, e.g. imaging_allowed_endpoints for a PACS the app may read).
Jobs started in the app run with the session's token through the EHR's FHIR proxy; other jobs use
the service's own client (settings.fhir_base_url is the HAPI sandbox itself, without a token).
`stack.use_pipelines(pipelines)` swaps the installed pipelines (pages and runner). The EHR user
Practitioner is created on the sandbox.

Many EHRs in one app: `more_upstreams=(sandbox2_url,)` starts a further sandbox EHR in front of each
of those HAPI servers, registered in the same app (one more `smart_ehrs` entry each, named
"sandbox-2", ...); `stack.others` are their stacks (same app, runner and settings; their own `ehr`,
`fhir_base`, `fhir_upstream`, `launched`). `stack.bearers` lists every bearer token that EHR's
server received (its FHIR proxy included), to check that no token reached another EHR.

Browsers treat http://127.0.0.1 as a secure context, so the app's Secure cookies work there;
requests does not, hence `browser()`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin

import requests
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from plugin.analysis import service_client_for
from plugin.app import create_app, job_store_of
from plugin.config import SMART_DEFAULT_SCOPES, Settings, SmartEhr, TrustedEhr
from plugin.fhir import FhirClient
from plugin.jobs import JobRunner
from plugin.pipelines.registry import InstalledPipeline, installed_pipelines
from plugin.sandbox.ehr import USER_ID, ensure_user
from plugin.sandbox.ehr_server import (
    EhrConfig,
    SandboxEhr,
    confidential_client,
    create_ehr_app,
    ehr_of,
    public_client,
)
from smart_launch.jobs import client_for_jobs
from smart_launch.runtime import runtime_of
from smart_launch.session import COOKIE, SmartSession, from_record
from smart_launch.store import secret_hash

EHR_NAME = "sandbox"


@dataclass
class SmartStack:
    ehr: SandboxEhr
    app: Flask
    settings: Settings
    ehr_base: str
    fhir_base: str
    fhir_upstream: str
    app_base: str
    client_id: str
    user: str
    bearers: list[str] = field(default_factory=list)  # tokens this EHR's server received
    others: tuple[SmartStack, ...] = ()  # further EHRs registered in the same app

    def launch_url(self, patient_id: str, encounter_id: str | None = None, *,
                   fhir_context: tuple[str, ...] = (), tenant: str | None = None) -> str:
        return self.ehr.launch(self.client_id, patient_id, encounter_id, fhir_context=fhir_context,
                               tenant=tenant)

    def ehr_page_url(self, patient_id: str, encounter_id: str | None = None) -> str:
        query = {"patient": patient_id, "app": self.client_id}
        if encounter_id:
            query["encounter"] = encounter_id
        return f"{self.ehr_base}/ehr?{urlencode(query)}"

    def standalone_url(self) -> str:
        return f"{self.app_base}/smart/start"

    def browser(self) -> requests.Session:
        return LoopbackBrowser()

    def launched(self, patient_id: str, encounter_id: str | None = None, *,
                 fhir_context: tuple[str, ...] = (), tenant: str | None = None) -> requests.Session:
        """A browser that went through the EHR launch (launch → authorize → callback); the app's
        home page (where the callback redirects) is not fetched."""
        browser = self.browser()
        url = self.launch_url(patient_id, encounter_id, fhir_context=fhir_context, tenant=tenant)
        answer = browser.get(url, timeout=60, allow_redirects=False)
        # launch -> EHR authorize -> app callback, which redirects to the app's home (not fetched)
        callback = f"{self.app_base}/smart/callback"
        while answer.status_code in (302, 303) and not answer.url.startswith(callback):
            answer = browser.get(urljoin(answer.url, answer.headers["Location"]), timeout=60,
                                 allow_redirects=False)
        if browser.cookies.get(COOKIE) is None:
            raise AssertionError(f"the EHR launch did not end in a session (HTTP {answer.status_code}): "
                                 f"{answer.text[:500]}")
        return browser

    def use_pipelines(self, pipelines: dict[str, InstalledPipeline]) -> None:
        """The pipelines the pages offer and the job runner (when started) runs."""
        self.app.extensions["chartlight.pipelines"] = pipelines
        runner: JobRunner | None = self.app.extensions.get("chartlight.runner")
        if runner is not None:
            runner.use_pipelines({name: p.run for name, p in pipelines.items() if not p.unavailable_reason})

    def session_of(self, browser: requests.Session) -> SmartSession | None:
        cookie = browser.cookies.get(COOKIE)
        if cookie is None:
            return None
        record = runtime_of(self.app).store.get_session(secret_hash(cookie))
        return from_record(record) if record else None


class LoopbackBrowser(requests.Session):
    """Sends Secure cookies to http://127.0.0.1 as browsers do (a loopback origin is a secure
    context); requests would otherwise keep them for https only."""

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        response = super().send(request, **kwargs)
        for cookie in self.cookies:
            if cookie.domain in {"127.0.0.1", "localhost"}:
                cookie.secure = False
        return response


@contextmanager
def smart_stack(sandbox_url: str, tmp_path: Path, *, client_auth: str = "public", alg: str = "RS384",
                scopes: str = SMART_DEFAULT_SCOPES, refused_scopes: frozenset[str] = frozenset(),
                refuse_with_error: bool = False, token_lifetime_s: int = 3600,
                standalone_patient: str | None = None, ehr: dict[str, Any] | None = None,
                fhir_bases: tuple[str, ...] = (), run_jobs: bool = True,
                more_upstreams: tuple[str, ...] = (), cds: bool = False,
                settings_extra: dict[str, Any] | None = None) -> Iterator[SmartStack]:
    with ExitStack() as servers:
        app_server = servers.enter_context(_server())
        app_base = f"http://127.0.0.1:{app_server.server_port}"
        user = f"Practitioner/{USER_ID}"
        client_id = f"chartlight-{client_auth}-{alg.lower()}"
        make_client = confidential_client if client_auth == "private_key_jwt" else public_client
        sides: list[tuple[SandboxEhr, str, str, list[str]]] = []
        registrations: list[SmartEhr] = []
        for number, upstream in enumerate((sandbox_url, *more_upstreams), start=1):
            ehr_server = servers.enter_context(_server())
            ehr_base = f"http://127.0.0.1:{ehr_server.server_port}"
            # The first EHR calls the app's CDS Hooks service when asked to (cds).
            ehr_app = create_ehr_app(EhrConfig(base_url=ehr_base, fhir_upstream=upstream, user=user,
                                               standalone_patient=standalone_patient,
                                               cds_base=app_base if cds and number == 1 else None,
                                               **(ehr or {})))
            sandbox_ehr = ehr_of(ehr_app)
            sandbox_ehr.register_client(make_client(client_id, app_base, token_lifetime_s=token_lifetime_s,
                                                    refused_scopes=frozenset(refused_scopes),
                                                    refuse_with_error=refuse_with_error))
            registrations.append(SmartEhr(
                name=EHR_NAME if number == 1 else f"{EHR_NAME}-{number}", iss=sandbox_ehr.config.fhir_base,
                client_id=client_id, client_auth=client_auth, alg=alg, scopes=scopes,
                fhir_bases=tuple(b.replace("{ehr}", ehr_base) for b in fhir_bases)))
            bearers: list[str] = []
            ehr_server.app = _recording_bearers(ehr_app, bearers)
            ensure_user(FhirClient(upstream, timeout_s=120))
            sides.append((sandbox_ehr, ehr_base, upstream, bearers))
        settings = Settings(
            fhir_base_url=sandbox_url, database_url=f"sqlite:///{tmp_path}/chartlight-smart.db",
            secret_key="smart-stack-test-secret", job_workers=1, smart_ehrs=tuple(registrations),
            smart_signing_key_path=str(tmp_path / "smart-signing-keys.pem"),
            smart_public_base_url=app_base,
            cds_trusted_ehrs=(TrustedEhr(iss=sides[0][1], jwks_url=f"{sides[0][1]}/ehr/cds-jwks.json",
                                         fhir_servers=(sides[0][0].config.fhir_base,), name=EHR_NAME),)
            if cds else (), **(settings_extra or {}))
        app = create_app(settings)
        app_server.app = app
        runner = _runner(app, settings) if run_jobs else None
        first, *rest = (SmartStack(ehr=side_ehr, app=app, settings=settings, ehr_base=side_base,
                                   fhir_base=side_ehr.config.fhir_base, fhir_upstream=upstream,
                                   app_base=app_base, client_id=client_id, user=user, bearers=bearers)
                        for side_ehr, side_base, upstream, bearers in sides)
        try:
            yield replace(first, others=tuple(rest))
        finally:
            if runner is not None:
                runner.stop()


def _recording_bearers(app: Flask, seen: list[str]) -> Any:
    """`app` as a WSGI callable that first notes the request's bearer token, if any."""
    def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        scheme, _, token = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            seen.append(token.strip())
        return app(environ, start_response)
    return wsgi


def _runner(app: Flask, settings: Settings) -> JobRunner:
    pipelines = installed_pipelines(settings)
    app.extensions["chartlight.pipelines"] = pipelines
    runnable = {name: p.run for name, p in pipelines.items() if not p.unavailable_reason}
    runner = JobRunner(job_store_of(app), runnable,
                       client_for_jobs(app, service_client_for(settings)),
                       workers=settings.job_workers, lease_s=settings.job_lease_s)
    runner.start()
    app.extensions["chartlight.runner"] = runner
    return runner


def _not_ready(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"starting"]


@contextmanager
def _server() -> Iterator[BaseWSGIServer]:
    """A threaded WSGI server on a free loopback port; its app is set once the port is known."""
    server = make_server("127.0.0.1", 0, _not_ready, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
