"""The CDS service's per-app objects (JWT verifier, JWK Set cache, replay cache, feedback store,
input scanner, HTTP sessions), built on first use and kept in app.extensions."""

from __future__ import annotations

import http.cookiejar
import threading
from dataclasses import dataclass, field

import requests
from flask import Flask

from cds_hooks.analysis_status import SourceScanner
from cds_hooks.auth import JwtVerifier
from cds_hooks.feedback import FeedbackStore
from cds_hooks.jwks import JwksCache
from cds_hooks.replay import MemoryReplayCache, ReplayCache, SqlReplayCache
from cds_hooks.storage import cds_engine
from plugin.app import settings_of
from plugin.config import Settings

EXTENSION = "chartlight.cds_hooks"
_build_lock = threading.Lock()


@dataclass
class CdsRuntime:
    settings: Settings
    verifier: JwtVerifier
    feedback: FeedbackStore
    scanner: SourceScanner
    _local: threading.local = field(default_factory=threading.local)

    def fhir_session(self) -> requests.Session:
        """A session per thread (connections are reused across hook calls) that keeps no
        cookies, so nothing one EHR user's call received reaches another's."""
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
            self._local.session = session
        return session


def runtime_of(app: Flask) -> CdsRuntime:
    if EXTENSION not in app.extensions:
        with _build_lock:
            if EXTENSION not in app.extensions:
                app.extensions[EXTENSION] = build_runtime(settings_of(app))
    runtime: CdsRuntime = app.extensions[EXTENSION]
    return runtime


def build_runtime(settings: Settings) -> CdsRuntime:
    engine = cds_engine(settings.database_url)
    replay: ReplayCache = (SqlReplayCache(engine) if settings.cds_replay_cache == "database"
                           else MemoryReplayCache())
    jwks = JwksCache(ttl_s=settings.cds_jwks_cache_s,
                     refetch_interval_s=settings.cds_jwks_refetch_interval_s,
                     timeout_s=settings.cds_jwks_timeout_s, max_bytes=settings.cds_jwks_max_bytes)
    verifier = JwtVerifier(settings.cds_trusted_ehrs, jwks, replay,
                           algorithms=settings.cds_jwt_algorithms, clock_skew_s=settings.cds_clock_skew_s,
                           max_lifetime_s=settings.cds_max_token_lifetime_s)
    scanner = SourceScanner(interval_s=settings.cds_source_check_interval_s,
                            wait_s=settings.cds_source_check_wait_s)
    return CdsRuntime(settings=settings, verifier=verifier, feedback=FeedbackStore(engine), scanner=scanner)
