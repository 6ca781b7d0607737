"""The SMART app's per-app objects (store, keys, discovery cache, token client), built on first use
and kept in app.extensions."""

from __future__ import annotations

import http.cookiejar
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests
from flask import Flask

from cds_hooks.storage import cds_engine
from plugin.config import Settings, SmartEhr
from smart_launch.discovery import DiscoveryCache
from smart_launch.errors import LAUNCH_AGAIN, LaunchError
from smart_launch.id_tokens import IdTokenKeys
from smart_launch.keys import KeyRing, load_or_create
from smart_launch.store import SmartStore
from smart_launch.tokens import TokenClient

EXTENSION = "chartlight.smart"
_build_lock = threading.Lock()
MAX_REFRESH_LOCKS = 10_000


@dataclass
class SmartRuntime:
    settings: Settings
    store: SmartStore
    keys: KeyRing
    discovery: DiscoveryCache
    tokens: TokenClient
    id_token_keys: IdTokenKeys
    web: requests.Session  # for the EHRs' own endpoints (discovery, tokens, keys, style): no cookies kept
    clock: Callable[[], float] = time.time
    _refresh_locks: dict[str, threading.Lock] = field(default_factory=dict)

    def refresh_lock(self, session_id: str) -> threading.Lock:
        """One refresh at a time per session in this process (the store's version check covers
        other processes)."""
        with _build_lock:
            if len(self._refresh_locks) > MAX_REFRESH_LOCKS:
                self._refresh_locks = {k: v for k, v in self._refresh_locks.items() if v.locked()}
            return self._refresh_locks.setdefault(session_id, threading.Lock())

    def ehr_for_iss(self, iss: str) -> SmartEhr:
        for ehr in self.settings.smart_ehrs:
            if ehr.matches(iss):
                return ehr
        raise LaunchError(
            "this app is not registered with the EHR that launched it (unknown iss)",
            next_step="Ask the administrator of chartlight to add this EHR's FHIR base URL to smart_ehrs "
                      "(its iss or fhir_bases).")

    def ehr_named(self, name: str) -> SmartEhr:
        for ehr in self.settings.smart_ehrs:
            if ehr.name == name:
                return ehr
        raise LaunchError(f"no configured EHR named {name!r}", next_step=LAUNCH_AGAIN)


def runtime_of(app: Flask) -> SmartRuntime:
    if EXTENSION not in app.extensions:
        with _build_lock:
            if EXTENSION not in app.extensions:
                app.extensions[EXTENSION] = build_runtime(app.extensions["chartlight.settings"])
    runtime: SmartRuntime = app.extensions[EXTENSION]
    return runtime


def build_runtime(settings: Settings) -> SmartRuntime:
    keys = load_or_create(Path(settings.smart_signing_key_path))
    material = settings.secret_key.encode() if settings.secret_key else keys.material
    web = requests.Session()
    web.cookies.set_policy(http_cookie_policy())
    return SmartRuntime(
        settings=settings, store=SmartStore(cds_engine(settings.database_url), material), keys=keys,
        discovery=DiscoveryCache(web, ttl_s=settings.smart_discovery_cache_s,
                                 timeout_s=settings.smart_http_timeout_s),
        tokens=TokenClient(web, keys, timeout_s=settings.smart_http_timeout_s),
        id_token_keys=IdTokenKeys(web, timeout_s=settings.smart_http_timeout_s), web=web)


def http_cookie_policy() -> http.cookiejar.CookiePolicy:
    """No cookies kept from EHR endpoints: nothing of one user's exchange reaches another's."""
    return http.cookiejar.DefaultCookiePolicy(allowed_domains=[])
