"""The sandbox EHR's OAuth 2.0 authorization server (Authlib), strict the way a real EHR is:

- authorization code grant only, PKCE required and S256 only (`plain` and wrong verifiers refused);
- `redirect_uri` must equal a registered one exactly, at authorize and at token time;
- `aud` must be this EHR's FHIR base; an EHR launch's `launch` must be one this EHR issued to that
  client and not used before; a standalone launch gets the configured patient;
- public clients (`none`) and private_key_jwt clients (RS384/ES384 assertions checked against the
  client's JWK Set URL, `aud` = token endpoint, `exp` at most 5 minutes ahead, `jti` once);
- codes are single-use, and a replayed code revokes what it was exchanged for (RFC 6749 4.1.2);
- refresh tokens are issued for `offline_access`/`online_access` and rotate: the old one stops working;
- per-client policy: access token lifetime, scopes the EHR refuses to grant (dropped quietly from
  the grant, or the whole request refused with `invalid_scope` and an `error_description`);
- several FHIR bases (tenants) under one authorization server: `aud` names one of them, and the
  token it gets is good on that base only;
- SMART Backend Services: `client_credentials` for private_key_jwt clients registered with that
  grant (keys by JWK Set URL or inline `jwks`), granting only the `system/` scopes the client is
  allowed (`system_scopes`); no refresh token, no launch context.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

import requests
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import (
    ClientMixin,
    InvalidClientError,
    InvalidRequestError,
    InvalidScopeError,
    grants,
)
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

CODE_LIFETIME_S = 60
LAUNCH_LIFETIME_S = 300
REFRESH_LIFETIME_S = 24 * 3600
ASSERTION_ALGORITHMS = ["RS384", "ES384"]
MAX_ASSERTION_LIFETIME_S = 300


@dataclass(frozen=True)
class LaunchContext:
    patient: str | None
    encounter: str | None
    user: str  # fhirUser, e.g. "Practitioner/123"
    # An app launched from the chart sits beside the EHR's own patient header; a standalone app
    # has none, so it is asked to show the patient banner itself.
    need_patient_banner: bool = False
    # SMART 2.2 fhirContext: further resources the launch is about ("DocumentReference/5").
    fhir_context: tuple[str, ...] = ()
    aud: str = ""  # the FHIR base the app asked for (set at authorization)


@dataclass
class Client(ClientMixin):
    """A registered app. `auth_method` is "none" (public) or "private_key_jwt"."""

    client_id: str
    redirect_uris: tuple[str, ...]
    launch_url: str = ""
    auth_method: str = "none"
    jwks_url: str | None = None
    # Policy knobs for tests.
    token_lifetime_s: int = 3600
    refused_scopes: frozenset[str] = frozenset()
    # True: a request asking for a refused scope is refused (invalid_scope, with a description)
    # instead of granted without it.
    refuse_with_error: bool = False
    # Backend services: the grants the client may use, its public keys inline (instead of
    # jwks_url), and the system/ scopes a client_credentials request may be granted.
    grant_types: tuple[str, ...] = ("authorization_code", "refresh_token")
    jwks: dict[str, Any] | None = None
    system_scopes: frozenset[str] = frozenset()

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        return None  # redirect_uri is always required, never defaulted

    def get_allowed_scope(self, scope: str | None) -> str:
        if not scope:
            return ""
        allowed = [s for s in scope.split() if s not in self.refused_scopes]
        if "client_credentials" in self.grant_types:  # a backend client: its system/ scopes only
            allowed = [s for s in allowed if s in self.system_scopes]
        return " ".join(allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


@dataclass
class AuthorizationCode:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    code_challenge: str
    code_challenge_method: str
    context: LaunchContext
    nonce: str | None
    expires_at: float

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


@dataclass
class Token:
    access_token: str
    refresh_token: str | None
    client_id: str
    scope: str
    context: LaunchContext
    expires_at: float
    refresh_expires_at: float
    revoked: bool = False
    refresh_revoked: bool = False

    def check_client(self, client: Client) -> bool:
        return client.client_id == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_user(self) -> LaunchContext:
        return self.context

    def is_expired(self) -> bool:
        return time.time() >= self.expires_at


@dataclass
class EhrState:
    """Everything the sandbox EHR remembers, in memory, behind one lock."""

    fhir_base: str  # what apps see as iss/aud: the proxy's base
    token_endpoint: str
    user: str  # fhirUser of the signed-in user, e.g. "Practitioner/123"
    standalone_patient: str | None = None
    smart_style_url: str | None = None
    fhir_bases: tuple[str, ...] = ()  # every FHIR base this EHR serves (fhir_base first)
    clients: dict[str, Client] = field(default_factory=dict)
    launches: dict[str, tuple[str, LaunchContext, float]] = field(default_factory=dict)
    codes: dict[str, AuthorizationCode] = field(default_factory=dict)
    used_codes: dict[str, list[str]] = field(default_factory=dict)  # code -> access tokens
    tokens: dict[str, Token] = field(default_factory=dict)  # by access token
    by_refresh: dict[str, Token] = field(default_factory=dict)
    used_jti: dict[str, float] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def new_launch(self, client_id: str, context: LaunchContext) -> str:
        launch = secrets.token_urlsafe(24)
        with self.lock:
            self.launches[launch] = (client_id, context, time.time() + LAUNCH_LIFETIME_S)
        return launch

    def take_launch(self, launch: str, client_id: str) -> LaunchContext | None:
        with self.lock:
            found = self.launches.pop(launch, None)
        if found is None or found[0] != client_id or found[2] < time.time():
            return None
        return found[1]

    def token(self, access_token: str) -> Token | None:
        with self.lock:
            token = self.tokens.get(access_token)
        if token is None or token.revoked or token.is_expired():
            return None
        return token


class SmartCodeChallenge(CodeChallenge):
    """PKCE as SMART 2.x requires it: always present, S256 only."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]  # noqa: RUF012 -- Authlib's class attribute
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("Missing 'code_challenge' (PKCE is required)")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256")
        super().validate_code_challenge(grant, redirect_uri)


def _check_smart_request(state: EhrState) -> Any:
    """Hook run after Authlib validated an authorization request: `aud` and launch context."""
    def check(grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        aud = (data.get("aud") or "").rstrip("/")
        if aud not in {b.rstrip("/") for b in state.fhir_bases or (state.fhir_base,)}:
            raise InvalidRequestError("aud must be one of this EHR's FHIR base URLs")
        scopes = set((grant.request.payload.scope or "").split())
        client = grant.request.client
        client_id = client.client_id
        refused = sorted(scopes & client.refused_scopes)
        if refused and client.refuse_with_error:
            raise InvalidScopeError(description=f"this EHR does not grant {' '.join(refused)} to {client_id}")
        if "launch" in scopes:
            context = state.take_launch(data.get("launch") or "", client_id)
            if context is None:
                raise InvalidRequestError("unknown, used or expired launch")
        elif data.get("launch"):
            raise InvalidRequestError("a launch parameter needs the 'launch' scope")
        elif "launch/patient" in scopes and state.standalone_patient:
            context = LaunchContext(state.standalone_patient, None, state.user, need_patient_banner=True)
        else:
            context = LaunchContext(None, None, state.user)
        if context.aud and context.aud != aud:
            raise InvalidRequestError("this launch was issued for another FHIR base than aud")
        grant.request.smart_context = replace(context, aud=aud)
    return check


class SmartAuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["none", "private_key_jwt"]  # noqa: RUF012

    def __init__(self, request: Any, server: SandboxAuthorizationServer) -> None:
        super().__init__(request, server)
        self.register_hook("after_validate_authorization_request_payload",
                           _check_smart_request(server.ehr))

    def save_authorization_code(self, code: str, request: Any) -> None:
        data = request.payload.data
        ehr: EhrState = self.server.ehr
        with ehr.lock:
            ehr.codes[code] = AuthorizationCode(
                code=code, client_id=request.client.client_id, redirect_uri=request.payload.redirect_uri,
                scope=request.scope, code_challenge=data["code_challenge"],
                code_challenge_method=data["code_challenge_method"], context=request.smart_context,
                nonce=data.get("nonce"), expires_at=time.time() + CODE_LIFETIME_S)

    def query_authorization_code(self, code: str, client: Client) -> AuthorizationCode | None:
        ehr: EhrState = self.server.ehr
        with ehr.lock:
            if code in ehr.used_codes:
                # A replayed code: revoke everything issued for it (RFC 6749 4.1.2).
                for access_token in ehr.used_codes[code]:
                    token = ehr.tokens.get(access_token)
                    if token is not None:
                        token.revoked = token.refresh_revoked = True
                return None
            found = ehr.codes.get(code)
        if found is None or found.client_id != client.client_id or found.expires_at < time.time():
            return None
        return found

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        ehr: EhrState = self.server.ehr
        with ehr.lock:
            ehr.codes.pop(authorization_code.code, None)
            ehr.used_codes.setdefault(authorization_code.code, [])

    def authenticate_user(self, authorization_code: AuthorizationCode) -> LaunchContext:
        return authorization_code.context


class RotatingRefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["none", "private_key_jwt"]  # noqa: RUF012
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
        ehr: EhrState = self.server.ehr
        with ehr.lock:
            token = ehr.by_refresh.get(refresh_token)
        if token is None or token.refresh_revoked or token.refresh_expires_at < time.time():
            return None
        return token

    def authenticate_user(self, refresh_token: Token) -> LaunchContext:
        return refresh_token.context

    def revoke_old_credential(self, refresh_token: Token) -> None:
        with self.server.ehr.lock:
            refresh_token.refresh_revoked = True


class BackendServicesGrant(grants.ClientCredentialsGrant):
    """client_credentials as SMART Backend Services uses it: private_key_jwt only, `system/`
    scopes only; a scope outside the client's allowance is dropped from the grant, or the whole
    request refused (`invalid_scope`) when the client's policy says so."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["private_key_jwt"]  # noqa: RUF012

    def validate_token_request(self) -> None:
        super().validate_token_request()
        client: Client = self.request.client
        asked = (self.request.payload.scope or "").split()
        if not asked:
            raise InvalidScopeError(description="ask for the system/ scopes the service needs")
        not_system = [s for s in asked if not s.startswith("system/")]
        if not_system:
            raise InvalidScopeError(description=f"backend services grant system/ scopes only, not "
                                                f"{' '.join(not_system)}")
        refused = [s for s in asked if s in client.refused_scopes or s not in client.system_scopes]
        if refused and client.refuse_with_error:
            raise InvalidScopeError(description=f"this EHR does not grant {' '.join(refused)} to "
                                                f"{client.client_id}")


class PrivateKeyJwt(JWTBearerClientAssertion):
    """private_key_jwt per SMART App Launch 2.2 (asymmetric client authentication)."""

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, ehr: EhrState) -> None:
        super().__init__(validate_jti=True, leeway=30)
        self.ehr = ehr

    def get_audiences(self) -> list[str]:
        return [self.ehr.token_endpoint]

    def validate_jti(self, claims: Any, jti: str) -> bool:
        key = f"{claims['iss']}\x00{jti}"
        with self.ehr.lock:
            if key in self.ehr.used_jti:
                return False
            self.ehr.used_jti[key] = float(claims["exp"])
        return True

    def resolve_client_public_key(self, client: Client) -> KeySet:
        if client.jwks is not None:
            try:
                return KeySet.import_key_set(client.jwks)  # type: ignore[arg-type]  # checked here
            except (ValueError, JoseError) as exc:
                raise InvalidClientError(
                    description=f"client JWK Set unusable: {type(exc).__name__}") from None
        if not client.jwks_url:
            raise InvalidClientError(description="client has no JWK Set URL")
        try:
            response = requests.get(client.jwks_url, timeout=10)
            response.raise_for_status()
            return KeySet.import_key_set(response.json())
        except (requests.RequestException, ValueError, JoseError) as exc:
            raise InvalidClientError(description=f"client JWK Set unusable: {type(exc).__name__}") from None

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> Any:
        headers, _ = self.extract_assertion(assertion)
        if headers.get("alg") not in ASSERTION_ALGORITHMS or not headers.get("kid"):
            raise InvalidClientError(description="assertion must be RS384 or ES384 with a kid")
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=ASSERTION_ALGORITHMS)
        except (JoseError, ValueError) as exc:
            raise InvalidClientError(description=f"bad client assertion: {type(exc).__name__}") from None
        self.verify_claims(token.claims)
        if float(token.claims["exp"]) > time.time() + MAX_ASSERTION_LIFETIME_S + self.leeway:
            raise InvalidClientError(description="client assertion exp more than 5 minutes ahead")
        return token.claims


class SandboxAuthorizationServer(AuthorizationServer):
    def __init__(self, ehr: EhrState, id_token_issuer: Any) -> None:
        super().__init__()
        self.ehr = ehr
        self._id_token_issuer = id_token_issuer
        self.register_token_generator("default", BearerTokenGenerator(
            _random_token, _random_token, lambda client, grant_type: client.token_lifetime_s))
        self.register_grant(SmartAuthorizationCodeGrant, [SmartCodeChallenge(required=True)])
        self.register_grant(RotatingRefreshTokenGrant)
        self.register_grant(BackendServicesGrant)
        self.register_client_auth_method(PrivateKeyJwt.CLIENT_AUTH_METHOD, PrivateKeyJwt(ehr))

    def query_client(self, client_id: str) -> Client | None:
        with self.ehr.lock:
            return self.ehr.clients.get(client_id)

    def generate_token(self, grant_type: str, client: Client, user: Any = None, scope: str | None = None,
                       expires_in: int | None = None, include_refresh_token: bool = True) -> dict[str, Any]:
        # Refresh tokens only for the scopes that ask for one.
        wants_refresh = bool({"offline_access", "online_access"} & set((scope or "").split()))
        token: dict[str, Any] = super().generate_token(grant_type, client, user, scope, expires_in,
                                                       include_refresh_token and wants_refresh)
        return token

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        """Keep the token and add the launch context to the response (SMART token response)."""
        # A backend services token acts for no user and no patient.
        context: LaunchContext = request.user or LaunchContext(None, None, "")
        now = time.time()
        record = Token(access_token=token["access_token"], refresh_token=token.get("refresh_token"),
                       client_id=request.client.client_id, scope=token.get("scope", ""), context=context,
                       expires_at=now + int(token["expires_in"]), refresh_expires_at=now + REFRESH_LIFETIME_S)
        code = getattr(request, "authorization_code", None)
        with self.ehr.lock:
            self.ehr.tokens[record.access_token] = record
            if record.refresh_token:
                self.ehr.by_refresh[record.refresh_token] = record
            if code is not None:
                self.ehr.used_codes.setdefault(code.code, []).append(record.access_token)
        if context.patient:
            token["patient"] = context.patient
        if context.encounter:
            token["encounter"] = context.encounter
        if context.fhir_context:
            token["fhirContext"] = [{"reference": reference} for reference in context.fhir_context]
        token["need_patient_banner"] = context.need_patient_banner
        if self.ehr.smart_style_url:
            token["smart_style_url"] = self.ehr.smart_style_url
        scopes = set(record.scope.split())
        if "openid" in scopes and {"fhirUser", "profile"} & scopes:
            nonce = code.nonce if code is not None else None
            token["id_token"] = self._id_token_issuer(request.client.client_id, context.user, nonce,
                                                      context.aud)


def _random_token(**_: Any) -> str:
    return secrets.token_urlsafe(32)
