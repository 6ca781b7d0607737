"""CORS for browser-based EHRs (CDS Hooks 2.0.1, Cross-Origin Resource Sharing): only the
configured origins, no cookies (the JWT travels in the Authorization header), preflight answered
before authentication (a browser sends no Authorization header with it)."""

from __future__ import annotations

from flask import Blueprint, Response, request

ALLOWED_METHODS = "GET, POST, OPTIONS"
ALLOWED_HEADERS = "Authorization, Content-Type"
PREFLIGHT_MAX_AGE_S = 600


def allow_origin(origin: str | None, allowed: tuple[str, ...]) -> str | None:
    """The Access-Control-Allow-Origin value for `origin`, or None when it is not allowed."""
    if not origin:
        return None
    if "*" in allowed:
        return "*"
    return origin if origin.rstrip("/") in {a.rstrip("/") for a in allowed} else None


def install_cors(blueprint: Blueprint, allowed: tuple[str, ...]) -> None:
    @blueprint.before_request
    def _preflight() -> Response | None:
        if request.method != "OPTIONS":
            return None
        response = Response(status=204)
        value = allow_origin(request.headers.get("Origin"), allowed)
        if value is not None:
            response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
            response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            response.headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE_S)
        return response

    @blueprint.after_request
    def _allow(response: Response) -> Response:
        value = allow_origin(request.headers.get("Origin"), allowed)
        if value is not None:
            response.headers["Access-Control-Allow-Origin"] = value
        if "*" not in allowed:
            response.vary.add("Origin")
        return response
