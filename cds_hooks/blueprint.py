"""The CDS Hooks endpoints (2.0.1, and 3.0 as balloted): discovery, hook calls and feedback.

Every endpoint authenticates the EHR's JWT first (its `aud` must be the exact URL called), and
turns the service's errors into HTTP answers in one place (`_error_response`), each with a FHIR
OperationOutcome body: 401 with no detail, 400 for an invalid body, 404 for an unknown service,
405 for a method a URL does not answer, 413 for a body over the limit, 412 when data the service
needs was neither prefetched nor fetchable. The access token in `fhirAuthorization` is used only
on the request's `fhirServer`, only when that server is allow-listed for the calling EHR, only
when a patient-bound token is bound to the hook's patient, and only for reads its scopes grant.
Jobs, results and feedback are read for the calling EHR only: its allow-listed `fhirServer`, its
issuer.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from datetime import UTC, datetime
from typing import Any, TypeVar

from flask import Blueprint, Response, current_app, jsonify, request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import HTTPException

from cds_hooks import prefetch
from cds_hooks.auth import Caller
from cds_hooks.cards import CardContext
from cds_hooks.cors import install_cors
from cds_hooks.errors import (
    BadHookRequest,
    CdsHooksError,
    NotAllowed,
    NotAuthenticated,
    PrefetchUnavailable,
    UnknownService,
    operation_outcome,
)
from cds_hooks.models import CdsResponse, Discovery, FeedbackRequest, HookRequest, response_json
from cds_hooks.override_reasons import check_reason
from cds_hooks.runtime import CdsRuntime, runtime_of
from cds_hooks.services import SERVICES, SERVICES_BY_ID, CdsService, HookCall
from plugin.app import job_store_of
from plugin.config import Settings
from plugin.fhir import FhirClient

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
PIPELINES_EXTENSION = "chartlight.pipelines"
DISPATCH_EXTENSION = "chartlight.dispatch"  # the web tier's job publisher (plugin.jobs.dispatch)
APP_LAUNCH_PATH = "/smart/launch"
ANY_METHOD = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def create_blueprint(settings: Settings) -> Blueprint:
    blueprint = Blueprint("cds_hooks", __name__)
    install_cors(blueprint, settings.cds_allowed_origins)
    blueprint.add_url_rule("/cds-services", view_func=_discovery, methods=["GET"])
    blueprint.add_url_rule("/cds-services/<service_id>", view_func=_call, methods=["POST"])
    blueprint.add_url_rule("/cds-services/<service_id>/feedback", view_func=_feedback, methods=["POST"])
    # Every other method and path under /cds-services: answered here, so the answer is an
    # OperationOutcome too (Flask's own 404/405 pages are HTML).
    blueprint.add_url_rule("/cds-services", endpoint="discovery_other", view_func=_other,
                           defaults={"rest": ""}, methods=["POST", "PUT", "PATCH", "DELETE"])
    blueprint.add_url_rule("/cds-services/<path:rest>", view_func=_other, methods=ANY_METHOD)
    blueprint.register_error_handler(CdsHooksError, _error_response)
    blueprint.register_error_handler(HTTPException, _http_error_response)
    return blueprint


# ---- views ---------------------------------------------------------------------------------------


def _discovery() -> Response:
    _authenticate(runtime_of(current_app))
    return jsonify(response_json(Discovery(services=[s.describe() for s in SERVICES])))


def _call(service_id: str) -> Response:
    started = time.perf_counter()
    runtime = runtime_of(current_app)
    caller = _authenticate(runtime)
    service = _service(service_id)
    hook_request = _parse(HookRequest, _json_body(runtime.settings))
    if hook_request.hook != service.hook:
        raise BadHookRequest(f"service {service.id} answers {service.hook}, not {hook_request.hook}")
    context = _parse(service.context_model, hook_request.context, where="context")
    cards = []
    if service.relevant(context):
        patient_id = str(hook_request.context["patientId"])
        server = _fhir_server(caller, hook_request)
        client = _fhir_client(runtime, hook_request, server, patient_id)
        data = prefetch.resolve(service.prefetch, hook_request.prefetch, hook_request.context, client)
        status = runtime.scanner.status(
            store=job_store_of(current_app), pipelines=current_app.extensions.get(PIPELINES_EXTENSION, {}),
            fhir_base=server, client=client, patient_id=patient_id)
        dispatch = current_app.extensions.get(DISPATCH_EXTENSION)
        if dispatch is not None and dispatch.broker_down():
            status = dataclasses.replace(status, queue_unreachable=True)
        card_context = CardContext(service_id=service.id, hook_instance=hook_request.hookInstance,
                                   patient_id=patient_id, user=str(hook_request.context["userId"]),
                                   app_launch_url=_app_launch_url(runtime.settings), fhir_server=server or "")
        cards = service.handler(HookCall(context=context, data=data, status=status, cards=card_context))
    log.info("CDS %s %s from %s: %d card(s) in %.0f ms", service.id, hook_request.hookInstance,
             caller.ehr.label, len(cards), (time.perf_counter() - started) * 1000)
    return jsonify(response_json(CdsResponse(cards=cards)))


def _feedback(service_id: str) -> Response:
    runtime = runtime_of(current_app)
    caller = _authenticate(runtime)
    service = _service(service_id)
    body = _parse(FeedbackRequest, _json_body(runtime.settings))
    for n, item in enumerate(body.feedback):  # all checked before any is stored
        reason = item.overrideReason.reason if item.overrideReason else None
        problem = check_reason(reason.system, reason.code) if reason else None
        if problem:
            raise BadHookRequest(f"feedback.{n}.overrideReason.reason: {problem}")
    outcome = runtime.feedback.record(service.id, body.feedback, issuer=caller.ehr.iss, now=datetime.now(UTC))
    log.info("CDS %s feedback from %s: %d stored, %d duplicate(s)", service.id, caller.ehr.label,
             outcome.stored, outcome.duplicates)
    return jsonify(stored=outcome.stored, duplicates=outcome.duplicates)


def _other(rest: str) -> Response:
    """A method or path the service does not answer: 405 where the path exists, else 404."""
    _authenticate(runtime_of(current_app))
    parts = rest.split("/") if rest else []
    if not parts:
        raise NotAllowed(request.method, ("GET",))
    _service(parts[0])
    if len(parts) == 1 or (len(parts) == 2 and parts[1] == "feedback"):
        raise NotAllowed(request.method, ("POST",))
    raise UnknownService(f"no such path under the service {parts[0][:100]!r}")


# ---- steps ---------------------------------------------------------------------------------------


def _authenticate(runtime: CdsRuntime) -> Caller:
    base = runtime.settings.cds_public_base_url
    audience = base.rstrip("/") + request.path if base else request.base_url
    return runtime.verifier.verify(request.headers.get("Authorization"), audience)


def _service(service_id: str) -> CdsService:
    service = SERVICES_BY_ID.get(service_id)
    if service is None:
        raise UnknownService(f"no CDS service {service_id[:100]!r}")
    return service


def _json_body(settings: Settings) -> Any:
    request.max_content_length = settings.cds_max_request_bytes
    body = request.get_json(force=True, silent=True)
    if body is None:
        raise BadHookRequest("the body is not JSON")
    return body


def _parse(model: type[M], data: Any, *, where: str = "") -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        # Field names and messages only: the input (which may hold the access token) stays out.
        problems = "; ".join(
            f"{'.'.join(str(p) for p in ((where,) if where else ()) + tuple(e['loc']))}: {e['msg']}"
            for e in exc.errors(include_input=False, include_url=False)[:10])
        raise BadHookRequest(problems) from None


def _fhir_server(caller: Caller, hook_request: HookRequest) -> str | None:
    """The request's fhirServer when the calling EHR may send us to it; else None (the server is
    then unknown: only prefetched data is used, and nothing about jobs is shown)."""
    server = hook_request.fhirServer
    if server is None:
        return None
    if not caller.ehr.allows_fhir_server(server):
        log.warning("fhirServer %s is not allow-listed for %s: not contacted", server[:200], caller.ehr.label)
        return None
    return server.rstrip("/")


def _fhir_client(runtime: CdsRuntime, hook_request: HookRequest, server: str | None,
                 patient_id: str) -> FhirClient | None:
    """A client for the allow-listed `server` with the request's token; None when there is no
    server, or the token is bound to another patient than the hook's (CDS Hooks:
    `fhirAuthorization.patient`; such a token would read someone else's chart, or fail)."""
    if server is None:
        return None
    auth = hook_request.fhirAuthorization
    if auth is not None and auth.patient and auth.patient.removeprefix("Patient/") != patient_id:
        log.warning("fhirAuthorization is bound to another patient than the hook's: token not used")
        return None
    return FhirClient(server, token=auth.access_token.get_secret_value() if auth else None,
                      session=runtime.fhir_session(), timeout_s=runtime.settings.cds_fhir_timeout_s,
                      max_retries=0, max_response_bytes=runtime.settings.max_response_bytes,
                      max_pages=runtime.settings.fhir_max_pages,
                      granted_scopes=auth.granted if auth and auth.granted.resources else None)


def _app_launch_url(settings: Settings) -> str:
    if settings.cds_app_launch_url:
        return settings.cds_app_launch_url
    base = settings.cds_public_base_url or request.host_url
    return base.rstrip("/") + APP_LAUNCH_PATH


def _error_response(exc: CdsHooksError) -> Response:
    if isinstance(exc, NotAuthenticated):
        log.warning("CDS Hooks call refused (401): %s", exc)
        response = _outcome(401, "login", "unauthorized")  # no detail: the log has the reason
        response.headers["WWW-Authenticate"] = "Bearer"
        return response
    if isinstance(exc, UnknownService):
        return _outcome(404, "not-found", "not found", str(exc))
    if isinstance(exc, NotAllowed):
        response = _outcome(405, "not-supported", "method not allowed", str(exc))
        response.headers["Allow"] = ", ".join((*exc.allowed, "OPTIONS"))
        return response
    if isinstance(exc, PrefetchUnavailable):
        log.warning("CDS Hooks call cannot be answered (412): %s", exc)
        return _outcome(412, "processing", "precondition failed: data this service needs was neither "
                        "prefetched nor fetchable", str(exc), expression=f"prefetch.{exc.key}")
    if isinstance(exc, BadHookRequest):
        return _outcome(400, "invalid", "bad request", str(exc))
    log.error("CDS Hooks call failed: %s", exc)
    return _outcome(500, "exception", "internal error")


def _http_error_response(exc: HTTPException) -> Response:
    """HTTP errors raised while reading a request (413 body too large, ...)."""
    status = exc.code or 500
    code = {413: "too-long", 415: "not-supported"}.get(status, "exception" if status >= 500 else "invalid")
    return _outcome(status, code, (exc.name or "error").lower(), exc.description)


def _outcome(status: int, code: str, text: str, diagnostics: str | None = None, *,
             expression: str | None = None) -> Response:
    response = jsonify(operation_outcome(code, text, diagnostics, expression))
    response.status_code = status
    return response
