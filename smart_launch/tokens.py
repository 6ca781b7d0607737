"""The token endpoint, client side: exchange an authorization code (with the PKCE verifier) and
refresh, authenticating as a public client (client_id) or with a private_key_jwt assertion. The
answer is read streamed with a size limit; the EHR's `error_description` is kept for the error page.
(The id_token in the answer is checked by smart_launch.id_tokens.)"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from plugin.config import SmartEhr
from smart_launch.errors import TokenError
from smart_launch.http_json import BodyError, request_json
from smart_launch.keys import KeyRing

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DEFAULT_EXPIRES_IN_S = 300  # an EHR that omits expires_in gets treated as short-lived
MAX_BYTES = 256 * 1024
MAX_CONTEXT_ITEMS = 20
_RELATIVE = re.compile(r"[A-Z][A-Za-z]{1,63}/[A-Za-z0-9\-.]{1,64}")


@dataclass(frozen=True)
class TokenResponse:
    access_token: str
    refresh_token: str | None
    expires_at: float
    scope: str
    patient: str | None
    encounter: str | None
    need_patient_banner: bool
    smart_style_url: str | None
    id_token: str | None
    # SMART 2.2 `fhirContext`: the resources the launch is about beyond patient and encounter
    # (relative references such as "DocumentReference/5"; canonical/identifier items are ignored).
    fhir_context: tuple[str, ...] = ()

    def __repr__(self) -> str:  # never show the tokens
        return f"TokenResponse(scope={self.scope!r}, expires_at={self.expires_at})"


class TokenClient:
    def __init__(self, session: requests.Session, keys: KeyRing, *, timeout_s: float,
                 clock: Callable[[], float] = time.time) -> None:
        self._session = session
        self._keys = keys
        self.timeout_s = timeout_s
        self._clock = clock

    def exchange_code(self, ehr: SmartEhr, token_endpoint: str, *, code: str, redirect_uri: str,
                      code_verifier: str) -> TokenResponse:
        return self._post(ehr, token_endpoint, {"grant_type": "authorization_code", "code": code,
                                                "redirect_uri": redirect_uri, "code_verifier": code_verifier})

    def refresh(self, ehr: SmartEhr, token_endpoint: str, refresh_token: str) -> TokenResponse:
        return self._post(ehr, token_endpoint,
                          {"grant_type": "refresh_token", "refresh_token": refresh_token})

    def _post(self, ehr: SmartEhr, token_endpoint: str, form: dict[str, str]) -> TokenResponse:
        now = self._clock()
        if ehr.client_auth == "private_key_jwt":
            form = {**form, "client_assertion_type": ASSERTION_TYPE,
                    "client_assertion": self._keys.client_assertion(ehr.alg, ehr.client_id, token_endpoint,
                                                                      now)}
        else:
            form = {**form, "client_id": ehr.client_id}
        try:
            answer = request_json(self._session, "POST", token_endpoint, data=form, max_bytes=MAX_BYTES,
                                  timeout_s=self.timeout_s)
        except BodyError as exc:
            raise TokenError(f"the EHR's token endpoint could not be read: {exc.reason}") from None
        body = answer.body
        if not isinstance(body, dict):
            raise TokenError(f"the EHR's token endpoint answered HTTP {answer.status} without JSON")
        if answer.status != 200 or "error" in body:
            error = str(body.get("error", ""))[:100]
            description = body.get("error_description")
            raise TokenError(f"the EHR refused the token request ({error or answer.status})",
                             error=error,
                             description=str(description)[:500] if description else "")
        return parse_token_response(body, now)


def parse_token_response(body: dict[str, Any], now: float) -> TokenResponse:
    if not isinstance(body.get("access_token"), str) or str(body.get("token_type", "")).lower() != "bearer":
        raise TokenError("the EHR's token response has no bearer access_token")
    try:
        expires_in = float(body.get("expires_in", DEFAULT_EXPIRES_IN_S))
    except (TypeError, ValueError):
        expires_in = DEFAULT_EXPIRES_IN_S

    def text(name: str) -> str | None:
        value = body.get(name)
        return value if isinstance(value, str) and value else None

    return TokenResponse(
        access_token=body["access_token"], refresh_token=text("refresh_token"), expires_at=now + expires_in,
        scope=text("scope") or "", patient=text("patient"), encounter=text("encounter"),
        need_patient_banner=bool(body.get("need_patient_banner", True)),
        smart_style_url=text("smart_style_url"), id_token=text("id_token"),
        fhir_context=context_references(body.get("fhirContext")))


def context_references(items: object) -> tuple[str, ...]:
    """The relative references of a `fhirContext` array ("Type/id"); absolute or malformed ones are
    left out (the app only follows references on its own FHIR server)."""
    found: list[str] = []
    for item in items if isinstance(items, list) else ():
        reference = item.get("reference") if isinstance(item, dict) else None
        if isinstance(reference, str) and _RELATIVE.fullmatch(reference) and reference not in found:
            found.append(reference)
    return tuple(found[:MAX_CONTEXT_ITEMS])
