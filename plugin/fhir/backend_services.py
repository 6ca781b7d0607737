"""SMART Backend Services: the service's own credentials for each EHR's FHIR server.

Background jobs that no clinician's session started (CDS hooks, the CLI) authenticate to a FHIR
server as the client configured for it in `backend_services`: an access token from the server's
token endpoint by the `client_credentials` grant, the client authenticated by a `private_key_jwt`
assertion (RS384/ES384; iss = sub = client_id, aud = the token endpoint, a fresh jti, exp five
minutes ahead at most). One token per (FHIR server, client) is cached in the process until
`refresh_ahead_s` before it expires; a 401 from the FHIR server fetches a new one once, and a
second 401 is an error naming the EHR. A grant with fewer scopes than asked is refused the same
way: the operator fixes the registration or the configured scopes, nothing runs with a grant no
one chose. The token goes only to URLs under that FHIR server (plugin.fhir.urls.is_under), and
neither it nor the assertion is ever logged.
"""

from __future__ import annotations

import base64
import hashlib
import http.cookiejar
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from plugin.config import BackendService, Settings, plain_fhir_base
from plugin.errors import ChartlightError, ConfigError, FhirTransportError
from plugin.fhir.client import FhirClient
from plugin.fhir.urls import UnsafeUrl, is_under
from plugin.scopes import ResourceScope, parse_scope, parse_scopes

log = logging.getLogger(__name__)

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME_S = 300  # SMART Backend Services: exp no more than five minutes ahead
DEFAULT_EXPIRES_IN_S = 300  # a token response without expires_in is taken as short-lived
MAX_ANSWER_BYTES = 256 * 1024
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


class ServiceCredentialError(ChartlightError):
    """The EHR refused the service's credentials (client, assertion, scopes, or a fresh token);
    the message names the EHR and what to fix, never a token."""


@dataclass(frozen=True)
class ServiceToken:
    access_token: str = field(repr=False)
    expires_at: float
    scope: str

    def __repr__(self) -> str:  # never show the token
        return f"ServiceToken(scope={self.scope!r}, expires_at={self.expires_at})"


@dataclass(frozen=True)
class BackendKey:
    alg: str  # RS384 or ES384
    kid: str
    private: Any = field(repr=False)  # RSAPrivateKey | EllipticCurvePrivateKey

    def assertion(self, client_id: str, token_endpoint: str, now: float) -> str:
        claims = {"iss": client_id, "sub": client_id, "aud": token_endpoint, "iat": int(now),
                  "exp": int(now) + ASSERTION_LIFETIME_S, "jti": secrets.token_urlsafe(24)}
        return jwt.encode(claims, self.private, algorithm=self.alg, headers={"kid": self.kid, "typ": "JWT"})

    def public_jwk(self) -> dict[str, Any]:
        """The public half as the EHR registers it (JWK with kid, alg, use)."""
        jwk = json.loads(jwt.get_algorithm_by_name(self.alg).to_jwk(self.private.public_key()))
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig", "key_ops": ["verify"]}


def load_key(service: BackendService) -> BackendKey:
    """The service's signing key from its PEM file: RSA (RS384) or EC P-384 (ES384); a ConfigError
    naming the setting and the file when it cannot be used."""
    where = f"backend_services ({service.label}) private_key_path {service.private_key_path}"
    try:
        data = Path(service.private_key_path).expanduser().read_bytes()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: not an unencrypted PEM private key ({type(exc).__name__})") from None
    if isinstance(private, rsa.RSAPrivateKey):
        alg = "RS384"
    elif isinstance(private, ec.EllipticCurvePrivateKey) and isinstance(private.curve, ec.SECP384R1):
        alg = "ES384"
    else:
        raise ConfigError(f"{where}: only RSA (RS384) and EC P-384 (ES384) keys are used")
    if service.alg and service.alg != alg:
        raise ConfigError(f"{where}: alg is {service.alg} but the key is for {alg}")
    return BackendKey(alg, service.kid or thumbprint(alg, private), private)


def thumbprint(alg: str, private: Any) -> str:
    """The RFC 7638 JWK thumbprint of the public key (SHA-256, base64url)."""
    jwk = json.loads(jwt.get_algorithm_by_name(alg).to_jwk(private.public_key()))
    members = ("e", "kty", "n") if jwk["kty"] == "RSA" else ("crv", "kty", "x", "y")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


def refused_scopes(asked: str, granted: str) -> tuple[str, ...]:
    """The asked resource scopes that the granted ones do not cover (type and every letter)."""
    grant = parse_scopes(granted)
    refused = []
    for item in asked.split():
        scope = parse_scope(item)
        if scope is not None and not any(_covers(g, scope) for g in grant.resources):
            refused.append(item)
    return tuple(refused)


def _covers(granted: ResourceScope, wanted: ResourceScope) -> bool:
    return (granted.context == wanted.context and granted.resource_type in (wanted.resource_type, "*")
            and wanted.permissions <= granted.permissions and not granted.query)


class BackendTokens:
    """The service tokens of one process, one per (FHIR server, client id), each fetched by one
    thread at a time; the other threads wait and reuse it."""

    def __init__(self, services: tuple[BackendService, ...], *, refresh_ahead_s: float, timeout_s: float,
                 session: requests.Session | None = None, clock: Callable[[], float] = time.time) -> None:
        self.services = services
        self.refresh_ahead_s = refresh_ahead_s
        self.timeout_s = timeout_s
        self._session = session or requests.Session()
        # Nothing one token exchange received (cookies) goes with the next.
        self._session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        self._clock = clock
        self._tokens: dict[tuple[str, str], ServiceToken] = {}
        self._keys: dict[tuple[str, str], BackendKey] = {}
        self._endpoints: dict[tuple[str, str], str] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()

    def service_for(self, base_url: str) -> BackendService | None:
        """The backend client configured for this FHIR server, if any (bases compared in their
        plain form: scheme and host lower-cased, no trailing slash)."""
        wanted = plain_fhir_base(base_url)
        if wanted is None:
            return None
        return next((s for s in self.services if plain_fhir_base(s.fhir_server) == wanted), None)

    def token(self, service: BackendService, *, refused: str | None = None) -> ServiceToken:
        """A token good for at least `refresh_ahead_s` more; `refused`: the token the FHIR server
        just answered 401 to, which is not handed out again."""
        key = _key(service)
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            cached = self._tokens.get(key)
            if cached is not None and cached.access_token != refused \
                    and cached.expires_at - self.refresh_ahead_s > self._clock():
                return cached
            fresh = self._fetch(service)
            self._tokens[key] = fresh
            return fresh

    def _fetch(self, service: BackendService) -> ServiceToken:
        key = _key(service)
        if key not in self._keys:
            self._keys[key] = load_key(service)
        endpoint = self._token_endpoint(service)
        now = self._clock()
        # The assertion's iat/exp are read by the EHR against its wall clock, whatever ours is.
        form = {"grant_type": "client_credentials", "scope": service.scopes,
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": self._keys[key].assertion(service.client_id, endpoint, time.time())}
        status, body = self._json("POST", endpoint, service, data=form)
        if status != 200 or not isinstance(body, dict) or "error" in body:
            error = str(body.get("error", ""))[:100] if isinstance(body, dict) else ""
            description = str(body.get("error_description", ""))[:300] if isinstance(body, dict) else ""
            raise ServiceCredentialError(
                f"EHR {service.label}: the token endpoint refused client {service.client_id} "
                f"({error or f'HTTP {status}'}{': ' + description if description else ''}); check its "
                "backend_services registration (client id, public key, allowed system/ scopes)")
        bearer = str(body.get("token_type", "")).lower() == "bearer"
        if not isinstance(body.get("access_token"), str) or not bearer:
            raise ServiceCredentialError(f"EHR {service.label}: the token response has no bearer "
                                         "access_token")
        scope = body.get("scope")
        # RFC 6749 5.1: a response without `scope` granted what was asked.
        granted: str = scope if isinstance(scope, str) else service.scopes
        refused = refused_scopes(service.scopes, granted)
        if refused:
            raise ServiceCredentialError(
                f"EHR {service.label}: client {service.client_id} was granted fewer scopes than asked; "
                f"refused: {' '.join(refused)}. Ask the EHR to allow them, or remove them from "
                "backend_services scopes")
        try:
            expires_in = float(body.get("expires_in", DEFAULT_EXPIRES_IN_S))
        except (TypeError, ValueError):
            expires_in = DEFAULT_EXPIRES_IN_S
        log.info("got a service token for EHR %s (client %s, expires in %.0f s)", service.label,
                 service.client_id, expires_in)
        return ServiceToken(body["access_token"], now + expires_in, granted)

    def _token_endpoint(self, service: BackendService) -> str:
        if service.token_endpoint:
            return service.token_endpoint
        key = _key(service)
        if key not in self._endpoints:
            url = f"{service.fhir_server.rstrip('/')}/.well-known/smart-configuration"
            status, body = self._json("GET", url, service)
            endpoint = body.get("token_endpoint") if isinstance(body, dict) else None
            if status != 200 or not isinstance(endpoint, str) or not _secure(endpoint):
                raise ServiceCredentialError(
                    f"EHR {service.label}: {url} gives no usable token_endpoint (HTTP {status}); set "
                    "backend_services token_endpoint")
            self._endpoints[key] = endpoint
        return self._endpoints[key]

    def _json(self, method: str, url: str, service: BackendService,
              data: dict[str, str] | None = None) -> tuple[int, Any]:
        """Status and parsed body, streamed with a size limit; no answer is transient."""
        try:
            response = self._session.request(method, url, data=data, headers={"Accept": "application/json"},
                                             timeout=self.timeout_s, allow_redirects=False, stream=True)
        except requests.RequestException as exc:
            raise FhirTransportError(f"EHR {service.label}: no answer from {url} ({type(exc).__name__})",
                                     method=method, url=url) from None
        with response:
            body = bytearray()
            for chunk in response.iter_content(8192):
                body.extend(chunk)
                if len(body) > MAX_ANSWER_BYTES:
                    raise ServiceCredentialError(f"EHR {service.label}: {url} answered more than "
                                                 f"{MAX_ANSWER_BYTES} bytes")
        if response.status_code in (502, 503, 504):
            raise FhirTransportError(f"EHR {service.label}: {url} answered HTTP {response.status_code}",
                                     method=method, url=url)
        try:
            return response.status_code, json.loads(bytes(body)) if body else None
        except ValueError:
            return response.status_code, None


class BackendTokenSession(requests.Session):
    """requests.Session that adds the service token of one FHIR server to requests under that
    server's base, and to nothing else; a 401 gets one fresh token, a second is an error."""

    def __init__(self, tokens: BackendTokens, service: BackendService) -> None:
        super().__init__()
        self._tokens = tokens
        self._service = service
        self._base = service.fhir_server.rstrip("/")

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        target = url.decode() if isinstance(url, bytes) else url
        if not self._under_base(target):
            return super().request(method, url, *args, **kwargs)
        token = self._tokens.token(self._service)
        response = super().request(method, url, *args, **_with_token(kwargs, token))
        if response.status_code != 401:
            return response
        response.close()
        token = self._tokens.token(self._service, refused=token.access_token)
        response = super().request(method, url, *args, **_with_token(kwargs, token))
        if response.status_code == 401:
            response.close()
            verb = method.decode() if isinstance(method, bytes) else method
            raise ServiceCredentialError(
                f"EHR {self._service.label}: the FHIR server refused a newly issued service token of "
                f"client {self._service.client_id} (HTTP 401 to {verb} {urlsplit(target).path})")
        return response

    def current_access_token(self) -> str:
        """For a DICOMweb endpoint configured as trusted (FhirClient.access_token)."""
        return self._tokens.token(self._service).access_token

    def _under_base(self, url: str) -> bool:
        try:
            return is_under(url, self._base)
        except UnsafeUrl:
            return False


def backend_client(settings: Settings, tokens: BackendTokens, service: BackendService) -> FhirClient:
    """A FHIR client for `service`'s server, authenticated with its service tokens; what it may
    write is what the configured scopes say (a grant with fewer is refused, above)."""
    return FhirClient(service.fhir_server, session=BackendTokenSession(tokens, service),
                      timeout_s=settings.fhir_timeout_s, max_retries=settings.fhir_max_retries,
                      retry_backoff_s=settings.fhir_retry_backoff_s,
                      max_response_bytes=settings.max_response_bytes, max_pages=settings.fhir_max_pages,
                      granted_scopes=parse_scopes(service.scopes))


def tokens_for(settings: Settings, *, clock: Callable[[], float] = time.time) -> BackendTokens:
    """The service-token cache for `settings.backend_services` (token requests time out after
    smart_http_timeout_s, like every other call to an EHR's authorization server)."""
    return BackendTokens(settings.backend_services, refresh_ahead_s=settings.backend_token_refresh_ahead_s,
                         timeout_s=settings.smart_http_timeout_s, clock=clock)


def _key(service: BackendService) -> tuple[str, str]:
    return (plain_fhir_base(service.fhir_server) or service.fhir_server, service.client_id)


def _with_token(kwargs: dict[str, Any], token: ServiceToken) -> dict[str, Any]:
    headers = dict(kwargs.get("headers") or {})
    headers["Authorization"] = f"Bearer {token.access_token}"
    return {**kwargs, "headers": headers}


def _secure(url: str) -> bool:
    parts = urlsplit(url)
    return bool(parts.netloc) and (parts.scheme == "https"
                                   or (parts.scheme == "http" and parts.hostname in _LOOPBACK))

