"""The sandbox EHR's FHIR endpoint: a proxy in front of the HAPI sandbox that lets a request through
only with a live bearer token whose SMART scopes allow that interaction on that resource type.

SMART v2 scopes `<patient|user|system>/<Type|*>.<c?r?u?d?s?>` and v1 `.read`/`.write`/`.*` are
understood. With only `patient/` scopes for a type, a read of another Patient, or a search naming
another patient, is refused. Transactions are checked entry by entry. The proxy's base replaces the
upstream's in every answer, so resources and links point at the proxy (the app's `iss`/`aud`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import requests
from flask import Response, request

from plugin.sandbox.ehr_server.oauth import EhrState, Token

FHIR_JSON = "application/fhir+json"
_SCOPE = re.compile(r"^(patient|user|system)/([A-Za-z]+|\*)\.(c?r?u?d?s?|read|write|\*)(\?.*)?$")
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_FORWARDED_HEADERS = ("Accept", "Content-Type", "Prefer", "If-Match", "If-None-Exist", "If-None-Match",
                      "If-Modified-Since", "Cache-Control")


@dataclass(frozen=True)
class Grant:
    context: str
    resource_type: str
    permissions: str


def parse_scopes(scope: str) -> tuple[Grant, ...]:
    grants = []
    for item in scope.split():
        match = _SCOPE.match(item)
        if match:
            context, resource_type, permissions, _ = match.groups()
            grants.append(Grant(context, resource_type, _V1.get(permissions, permissions)))
    return tuple(grants)


def interactions(method: str, path: str, query: str, body: bytes) -> list[tuple[str, str, str]]:
    """(resource type, permission letter, patient named or "") for each interaction the request
    makes; a transaction or batch yields one per entry."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        if method != "POST":
            return [("*", "s", "")]  # whole-system search/history: only wildcard scopes allow it
        try:
            bundle = json.loads(body or b"{}")
        except ValueError:
            return [("*", "c", "")]
        found = []
        for entry in bundle.get("entry", []):
            entry_request = entry.get("request", {})
            url = entry_request.get("url", "")
            entry_path, _, entry_query = url.partition("?")
            found.extend(interactions(entry_request.get("method", "GET"), entry_path, entry_query,
                                      json.dumps(entry.get("resource", {})).encode()))
        return found or [("*", "c", "")]
    resource_type = parts[0]
    if resource_type.startswith(("_", "$")):
        return [("*", "s", "")]
    if method == "GET":
        letter = "r" if len(parts) > 1 and parts[1] != "_history" else "s"
    elif method == "POST":
        letter = "s" if len(parts) > 1 and parts[1] == "_search" else "c"
    else:
        letter = {"PUT": "u", "PATCH": "u", "DELETE": "d"}.get(method, "c")
    if method == "POST" and letter == "s":
        query = body.decode(errors="replace") + "&" + query
    patient = ""
    if resource_type == "Patient" and len(parts) > 1 and not parts[1].startswith(("_", "$")):
        patient = parts[1]
    for key, value in parse_qsl(query):
        if key.split(":")[0] in {"patient", "subject"}:
            patient = value.removeprefix("Patient/")
    return [(resource_type, letter, patient)]


def allowed(grants: Iterable[Grant], context_patient: str | None,
            wanted: list[tuple[str, str, str]]) -> str | None:
    """None when every interaction is allowed, else why not."""
    grants = tuple(grants)
    for resource_type, letter, patient in wanted:
        matching = [g for g in grants
                    if g.resource_type in (resource_type, "*") and letter in g.permissions]
        if not matching:
            return f"no scope allows '{letter}' on {resource_type}"
        if all(g.context == "patient" for g in matching) and patient and patient != context_patient:
            return f"patient/ scopes do not reach another patient's {resource_type}"
    return None


def proxy(state: EhrState, upstream: str, path: str, public: str) -> Response:
    """Forward one FHIR request to the upstream server once the token and scopes allow it; the
    token must have been issued for this FHIR base (`public`, the `aud` it was asked for)."""
    token = _bearer(state)
    if token is None:
        return _outcome(401, "login", "missing, unknown or expired access token",
                        {"WWW-Authenticate": 'Bearer error="invalid_token"'})
    if token.context.aud and token.context.aud.rstrip("/") != public.rstrip("/"):
        return _outcome(401, "login", "this access token was issued for another FHIR base",
                        {"WWW-Authenticate": 'Bearer error="invalid_token"'})
    body = request.get_data()
    wanted = interactions(request.method, path, request.query_string.decode(), body)
    why_not = allowed(parse_scopes(token.scope), token.context.patient, wanted)
    if why_not:
        return _outcome(403, "forbidden", why_not)
    headers = {name: request.headers[name] for name in _FORWARDED_HEADERS if name in request.headers}
    answer = requests.request(request.method, f"{upstream}/{path}", params=request.query_string,
                              data=body, headers=headers, timeout=120)
    content = answer.content.replace(upstream.encode(), public.encode())
    response = Response(content, status=answer.status_code,
                        content_type=answer.headers.get("Content-Type", FHIR_JSON))
    for name in ("Location", "Content-Location", "ETag", "Last-Modified"):
        if name in answer.headers:
            response.headers[name] = answer.headers[name].replace(upstream, public)
    return response


def metadata(upstream: str, public: str) -> Response:
    """The capability statement is public (SMART clients read it before they have a token)."""
    answer = requests.get(f"{upstream}/metadata", headers={"Accept": FHIR_JSON}, timeout=60)
    return Response(answer.content.replace(upstream.encode(), public.encode()), status=answer.status_code,
                    content_type=answer.headers.get("Content-Type", FHIR_JSON))


def _bearer(state: EhrState) -> Token | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value:
        return None
    return state.token(value.strip())


def _outcome(status: int, code: str, diagnostics: str, headers: dict[str, str] | None = None) -> Response:
    body: dict[str, Any] = {"resourceType": "OperationOutcome",
                            "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}]}
    return Response(json.dumps(body), status=status, content_type=FHIR_JSON, headers=headers or {})
