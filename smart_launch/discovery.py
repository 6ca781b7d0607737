"""SMART discovery: `{iss}/.well-known/smart-configuration`, fetched once per EHR and cached."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

from smart_launch.errors import LaunchError
from smart_launch.http_json import BodyError, request_json

MAX_BYTES = 256 * 1024
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class SmartConfiguration:
    authorization_endpoint: str
    token_endpoint: str
    capabilities: frozenset[str]
    token_endpoint_auth_methods: frozenset[str]
    issuer: str | None
    jwks_uri: str | None
    # What the EHR declares it signs id_tokens with (OpenID Connect Discovery); empty when it says
    # nothing, in which case chartlight accepts any algorithm of smart_launch.id_tokens.SUPPORTED.
    id_token_algorithms: frozenset[str] = frozenset()


class DiscoveryCache:
    def __init__(self, session: requests.Session, *, ttl_s: float, timeout_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._session = session
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self._clock = clock
        self._cache: dict[str, tuple[float, SmartConfiguration]] = {}
        self._lock = threading.Lock()

    def get(self, iss: str) -> SmartConfiguration:
        key = iss.rstrip("/")
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and self._clock() - cached[0] < self.ttl_s:
            return cached[1]
        config = self._fetch(key)
        with self._lock:
            self._cache[key] = (self._clock(), config)
        return config

    def _fetch(self, iss: str) -> SmartConfiguration:
        url = f"{iss}/.well-known/smart-configuration"
        try:
            answer = request_json(self._session, "GET", url, max_bytes=MAX_BYTES, timeout_s=self.timeout_s)
        except BodyError as exc:
            raise LaunchError(f"the EHR's SMART configuration could not be read: {exc.reason}") from None
        if answer.status != 200:
            raise LaunchError(f"the EHR's SMART configuration answered HTTP {answer.status}")
        if answer.body is None:
            raise LaunchError("the EHR's SMART configuration is not JSON")
        body = answer.body
        return parse_configuration(body)


def parse_configuration(body: object) -> SmartConfiguration:
    """Check what this app relies on: both endpoints, and PKCE S256 (required by SMART 2.x)."""
    if not isinstance(body, dict):
        raise LaunchError("the EHR's SMART configuration is not a JSON object")
    endpoints = {}
    for name in ("authorization_endpoint", "token_endpoint"):
        value = body.get(name)
        if not isinstance(value, str) or not _secure_url(value):
            raise LaunchError(f"the EHR's SMART configuration has no usable {name}")
        endpoints[name] = value
    if "S256" not in (body.get("code_challenge_methods_supported") or []):
        raise LaunchError("the EHR does not support PKCE S256, which SMART App Launch 2 requires")
    jwks_uri = body.get("jwks_uri")
    algorithms = body.get("id_token_signing_alg_values_supported")
    return SmartConfiguration(
        id_token_algorithms=frozenset(a for a in algorithms if isinstance(a, str))
        if isinstance(algorithms, list) else frozenset(),
        capabilities=frozenset(body.get("capabilities") or ()),
        token_endpoint_auth_methods=frozenset(body.get("token_endpoint_auth_methods_supported") or ()),
        issuer=body.get("issuer") if isinstance(body.get("issuer"), str) else None,
        jwks_uri=jwks_uri if isinstance(jwks_uri, str) and _secure_url(jwks_uri) else None,
        **endpoints)


def _secure_url(url: str) -> bool:
    parts = urlsplit(url)
    return bool(parts.netloc) and (parts.scheme == "https"
                                   or (parts.scheme == "http" and parts.hostname in _LOOPBACK))
