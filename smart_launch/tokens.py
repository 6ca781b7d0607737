"""The token endpoint, client side: exchange an authorization code (with the PKCE verifier) and
refresh, authenticating as a public client (client_id) or with a private_key_jwt assertion; and the
OpenID Connect id_token, checked against the EHR's keys, for the user's fhirUser."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
import requests

from plugin.config import SmartEhr
from smart_launch.discovery import SmartConfiguration
from smart_launch.errors import TokenError
from smart_launch.keys import KeyRing

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DEFAULT_EXPIRES_IN_S = 300  # an EHR that omits expires_in gets treated as short-lived
MAX_BYTES = 256 * 1024
ID_TOKEN_ALGORITHMS = ["RS256", "RS384", "ES256", "ES384"]


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
            response = self._session.post(token_endpoint, data=form, headers={"Accept": "application/json"},
                                          timeout=self.timeout_s, allow_redirects=False)
            body = response.json() if len(response.content) <= MAX_BYTES else None
        except requests.RequestException as exc:
            raise TokenError(f"the EHR's token endpoint did not answer ({type(exc).__name__})") from None
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise TokenError(f"the EHR's token endpoint answered HTTP {response.status_code} without JSON")
        if response.status_code != 200 or "error" in body:
            error = str(body.get("error", ""))
            detail = f": {str(body['error_description'])[:200]}" if body.get("error_description") else ""
            raise TokenError(f"the EHR refused the token request ({error or response.status_code}{detail})",
                             error=error)
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
        smart_style_url=text("smart_style_url"), id_token=text("id_token"))


def fhir_user(id_token: str, *, config: SmartConfiguration, ehr: SmartEhr, nonce: str,
              jwks_client: Callable[[str], jwt.PyJWKClient], fhir_base: str) -> str | None:
    """The `fhirUser` of a verified id_token as a reference relative to the FHIR base
    ("Practitioner/123"), or None when the EHR gave none. A bad id_token is an error."""
    if not config.jwks_uri or not config.issuer:
        raise TokenError("the EHR sent an id_token but publishes no issuer/jwks_uri to check it")
    try:
        key = jwks_client(config.jwks_uri).get_signing_key_from_jwt(id_token)
        claims = jwt.decode(id_token, key.key, algorithms=ID_TOKEN_ALGORITHMS, audience=ehr.client_id,
                            issuer=config.issuer, options={"require": ["exp", "iat", "iss", "aud", "sub"]})
    except jwt.PyJWTError as exc:
        raise TokenError(f"the EHR's id_token is not valid ({type(exc).__name__})") from None
    if claims.get("nonce") != nonce:
        raise TokenError("the EHR's id_token nonce does not match this launch")
    user = claims.get("fhirUser")
    if not isinstance(user, str) or not user:
        return None
    return user[len(fhir_base.rstrip("/")) + 1:] if user.startswith(fhir_base.rstrip("/") + "/") else user
