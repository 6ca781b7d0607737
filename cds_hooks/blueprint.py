"""The CDS Hooks 2.0.1 endpoints: discovery, hook calls and feedback.

Every endpoint authenticates the EHR's JWT first (its `aud` must be the exact URL called), and
turns the service's errors into HTTP answers in one place (`_error_response`): 401 with no
detail, 400 for an invalid body, 404 for an unknown service, 412 when data the service needs was
neither prefetched nor fetchable. The access token in `fhirAuthorization` is used only on the
request's `fhirServer`, and only when that server is allow-listed for the calling EHR.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any, TypeVar

from flask import Blueprint, Response, current_app, jsonify, request
from pydantic import BaseModel, ValidationError

from cds_hooks import prefetch
from cds_hooks.auth import Caller
from cds_hooks.cards import CardContext
from cds_hooks.cors import install_cors
from cds_hooks.errors import (
    BadHookRequest,
    CdsHooksError,
    NotAuthenticated,
    PrefetchUnavailable,
    UnknownService,
)
from cds_hooks.models import CdsResponse, Discovery, FeedbackRequest, HookRequest, response_json
from cds_hooks.runtime import CdsRuntime, runtime_of
from cds_hooks.services import SERVICES, SERVICES_BY_ID, CdsService, HookCall
from plugin.app import job_store_of
from plugin.config import Settings
from plugin.fhir import FhirClient

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
PIPELINES_EXTENSION = "chartlight.pipelines"
APP_LAUNCH_PATH = "/smart/launch"


def create_blueprint(settings: Settings) -> Blueprint:
    blueprint = Blueprint("cds_hooks", __name__)
    install_cors(blueprint, settings.cds_allowed_origins)
    blueprint.add_url_rule("/cds-services", view_func=_discovery, methods=["GET"])
    blueprint.add_url_rule("/cds-services/<service_id>", view_func=_call, methods=["POST"])
    blueprint.add_url_rule("/cds-services/<service_id>/feedback", view_func=_feedback, methods=["POST"])
    blueprint.register_error_handler(CdsHooksError, _error_response)
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
        client = _fhir_client(runtime, caller, hook_request)
        data = prefetch.resolve(service.prefetch, hook_request.prefetch, hook_request.context, client)
        patient_id = str(hook_request.context["patientId"])
        status = runtime.scanner.status(
            store=job_store_of(current_app), pipelines=current_app.extensions.get(PIPELINES_EXTENSION, {}),
            client=client, patient_id=patient_id)
        card_context = CardContext(service_id=service.id, hook_instance=hook_request.hookInstance,
                                   patient_id=patient_id, user=str(hook_request.context["userId"]),
                                   app_launch_url=_app_launch_url(runtime.settings))
        cards = service.handler(HookCall(context=context, data=data, status=status, cards=card_context))
    log.info("CDS %s %s from %s: %d card(s) in %.0f ms", service.id, hook_request.hookInstance,
             caller.ehr.label, len(cards), (time.perf_counter() - started) * 1000)
    return jsonify(response_json(CdsResponse(cards=cards)))


def _feedback(service_id: str) -> Response:
    runtime = runtime_of(current_app)
    caller = _authenticate(runtime)
    service = _service(service_id)
    body = _parse(FeedbackRequest, _json_body(runtime.settings))
    outcome = runtime.feedback.record(service.id, body.feedback, issuer=caller.ehr.iss, now=datetime.now(UTC))
    log.info("CDS %s feedback from %s: %d stored, %d duplicate(s)", service.id, caller.ehr.label,
             outcome.stored, outcome.duplicates)
    return jsonify(stored=outcome.stored, duplicates=outcome.duplicates)


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


def _fhir_client(runtime: CdsRuntime, caller: Caller, hook_request: HookRequest) -> FhirClient | None:
    """A client for the request's fhirServer with its token, when the calling EHR may send us
    to that server; else None (then only prefetched data is used)."""
    server = hook_request.fhirServer
    if server is None:
        return None
    if not caller.ehr.allows_fhir_server(server):
        log.warning("fhirServer %s is not allow-listed for %s: not contacted", server[:200], caller.ehr.label)
        return None
    auth = hook_request.fhirAuthorization
    return FhirClient(server, token=auth.access_token.get_secret_value() if auth else None,
                      session=runtime.fhir_session(), timeout_s=runtime.settings.cds_fhir_timeout_s,
                      max_retries=0, max_response_bytes=runtime.settings.max_response_bytes)


def _app_launch_url(settings: Settings) -> str:
    if settings.cds_app_launch_url:
        return settings.cds_app_launch_url
    base = settings.cds_public_base_url or request.host_url
    return base.rstrip("/") + APP_LAUNCH_PATH


def _error_response(exc: CdsHooksError) -> tuple[Response, int] | Response:
    if isinstance(exc, NotAuthenticated):
        log.warning("CDS Hooks call refused (401): %s", exc)
        response = jsonify(error="unauthorized")
        response.status_code = 401
        response.headers["WWW-Authenticate"] = "Bearer"
        return response
    if isinstance(exc, UnknownService):
        return jsonify(error="not found", detail=str(exc)), 404
    if isinstance(exc, PrefetchUnavailable):
        log.warning("CDS Hooks call cannot be answered (412): %s", exc)
        return jsonify(error="precondition failed", detail=str(exc)), 412
    if isinstance(exc, BadHookRequest):
        return jsonify(error="bad request", detail=str(exc)), 400
    log.error("CDS Hooks call failed: %s", exc)
    return jsonify(error="internal error"), 500
