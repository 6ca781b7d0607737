"""What makes the app safe to embed in an EHR: the attributes of its cookies (session id, launch
binding), CSRF checks on every state-changing request, and security headers (CSP with the allowed
frame ancestors, no caching)."""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

from flask import Blueprint, Response, request
from werkzeug.wrappers import Response as BaseResponse

from plugin.config import Settings
from smart_launch.errors import NotLaunched, SmartError
from smart_launch.session import COOKIE, current_session
from smart_launch.store import new_secret
from smart_launch.views.dictation import MAX_DICTATION_BYTES

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
# The callback is a GET from the EHR; listed so a future POST form of it stays reachable.
CSRF_EXEMPT = frozenset({"smart.callback"})
BINDING_COOKIE = "chartlight_smart_browser"


# Largest request bodies: a dictation upload (the recording plus form fields), anything else.
UPLOAD_ENDPOINTS = frozenset({"smart.app_dictation_upload"})
UPLOAD_MAX_BYTES = MAX_DICTATION_BYTES + 64 * 1024
FORM_MAX_BYTES = 256 * 1024


class CsrfRefused(SmartError):
    status = 403


def install(blueprint: Blueprint, settings: Settings) -> None:
    policy = content_security_policy(frame_ancestors(settings))

    @blueprint.before_request
    def _check_csrf() -> None:
        # Bodies are bounded before anything reads them (the form parse below included): an
        # uploaded dictation may be large, every other request of the app is small.
        request.max_content_length = (UPLOAD_MAX_BYTES if request.endpoint in UPLOAD_ENDPOINTS
                                      else FORM_MAX_BYTES)
        if request.method in SAFE_METHODS or request.endpoint in CSRF_EXEMPT:
            return
        session = current_session()
        if session is None:
            raise NotLaunched("no SMART session: launch the app from your EHR")
        sent = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD) or ""
        if not hmac.compare_digest(sent.encode(), session.csrf_token.encode()):
            raise CsrfRefused("missing or wrong CSRF token")

    @blueprint.after_request
    def _headers(response: Response) -> Response:
        response.headers["Content-Security-Policy"] = policy
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"  # the callback URL carries the code
        response.headers["Permissions-Policy"] = "microphone=(self)"
        return response


def frame_ancestors(settings: Settings) -> tuple[str, ...]:
    """Configured, or else the app itself plus the origin of every configured EHR."""
    if settings.smart_frame_ancestors:
        return settings.smart_frame_ancestors
    origins = []
    for ehr in settings.smart_ehrs:
        parts = urlsplit(ehr.iss)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin not in origins:
            origins.append(origin)
    return ("'self'", *origins)


def content_security_policy(ancestors: tuple[str, ...]) -> str:
    return "; ".join((
        "default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data: blob:",
        "media-src 'self' blob:", "connect-src 'self'", "object-src 'none'", "base-uri 'none'",
        "form-action 'self'", f"frame-ancestors {' '.join(ancestors)}"))


def set_session_cookie(response: BaseResponse, value: str, max_age_s: float) -> None:
    """Secure, HttpOnly, and usable inside the EHR's iframe: SameSite=None with Partitioned
    (CHIPS), so browsers that drop third-party cookies keep it within the EHR's site."""
    response.set_cookie(COOKIE, value, max_age=int(max_age_s), path="/smart", secure=True, httponly=True,
                        samesite="None", partitioned=True)


def browser_binding(response: BaseResponse, max_age_s: float) -> str:
    """The browser's binding cookie value (set now if it has none), which ties a launch's `state`
    to the browser that started it. Reused, so launches in two tabs do not undo each other."""
    value = request.cookies.get(BINDING_COOKIE) or new_secret()
    response.set_cookie(BINDING_COOKIE, value, max_age=int(max_age_s), path="/smart", secure=True,
                        httponly=True, samesite="None", partitioned=True)
    return value


def clear_session_cookie(response: BaseResponse) -> None:
    response.delete_cookie(COOKIE, path="/smart", secure=True, httponly=True, samesite="None",
                           partitioned=True)
