"""SMART discovery: `{iss}/.well-known/smart-configuration`, fetched once per EHR and cached."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

from smart_launch.errors import LaunchError

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
            response = self._session.get(url, headers={"Accept": "application/json"},
                                         timeout=self.timeout_s, allow_redirects=False)
            if response.status_code != 200:
                raise LaunchError(f"the EHR's SMART configuration answered HTTP {response.status_code}")
            if len(response.content) > MAX_BYTES:
                raise LaunchError("the EHR's SMART configuration is too large")
            body = response.json()
        except requests.RequestException as exc:
            raise LaunchError(f"the EHR's SMART configuration could not be read ({type(exc).__name__})") \
                from None
        except ValueError:
            raise LaunchError("the EHR's SMART configuration is not JSON") from None
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
    return SmartConfiguration(
        capabilities=frozenset(body.get("capabilities") or ()),
        token_endpoint_auth_methods=frozenset(body.get("token_endpoint_auth_methods_supported") or ()),
        issuer=body.get("issuer") if isinstance(body.get("issuer"), str) else None,
        jwks_uri=jwks_uri if isinstance(jwks_uri, str) and _secure_url(jwks_uri) else None,
        **endpoints)


def _secure_url(url: str) -> bool:
    parts = urlsplit(url)
    return bool(parts.netloc) and (parts.scheme == "https"
                                   or (parts.scheme == "http" and parts.hostname in _LOOPBACK))
