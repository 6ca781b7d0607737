"""JWK Sets of trusted EHRs, fetched over HTTP and cached per URL.

A set is fetched with a timeout and a size limit, never following redirects, and kept for
`ttl_s`. A key id not in the cached set triggers one refetch (the EHR may have rotated its keys),
at most once per `refetch_interval_s` per URL, so a stream of tokens with made-up key ids cannot
turn the service into a request amplifier against the EHR. When a refetch fails, the keys held
so far stay in use. Thread-safe; one cache per process.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

log = logging.getLogger(__name__)

Jwk = dict[str, Any]


class JwksFetchError(Exception):
    """The JWK Set could not be fetched or is not a JWK Set (a reason for the log)."""


@dataclass
class _Entry:
    keys: dict[str, Jwk] = field(default_factory=dict)
    fetched_at: float | None = None  # last successful fetch
    attempted_at: float | None = None  # last fetch, successful or not
    lock: threading.Lock = field(default_factory=threading.Lock)


class JwksCache:
    def __init__(
        self,
        *,
        ttl_s: float = 300.0,
        refetch_interval_s: float = 30.0,
        timeout_s: float = 5.0,
        max_bytes: int = 64 * 1024,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.refetch_interval_s = refetch_interval_s
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self._session = session or requests.Session()
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._entries_lock = threading.Lock()

    def key(self, url: str, kid: str) -> Jwk | None:
        """The key `kid` of the JWK Set at `url` (an allow-listed URL), or None."""
        with self._entries_lock:
            entry = self._entries.setdefault(url, _Entry())
        with entry.lock:  # one fetch per URL at a time; other callers wait for its result
            now = self._clock()
            fresh = entry.fetched_at is not None and now - entry.fetched_at < self.ttl_s
            if fresh and kid in entry.keys:
                return entry.keys[kid]
            # Stale, or the kid is unknown: fetch, unless a fetch was tried moments ago.
            if entry.attempted_at is None or now - entry.attempted_at >= self.refetch_interval_s:
                entry.attempted_at = now
                try:
                    entry.keys = self._fetch(url)
                    entry.fetched_at = now
                except JwksFetchError as exc:
                    log.warning("JWK Set %s not refreshed (%s); keeping %d key(s) held so far",
                                url, exc, len(entry.keys))
            return entry.keys.get(kid)

    def _fetch(self, url: str) -> dict[str, Jwk]:
        try:
            response = self._session.get(url, timeout=self.timeout_s, stream=True,
                                         allow_redirects=False,
                                         headers={"Accept": "application/jwk-set+json, application/json"})
        except requests.RequestException as exc:
            raise JwksFetchError(f"no answer: {type(exc).__name__}") from None
        with response:
            if response.status_code != 200:
                raise JwksFetchError(f"HTTP {response.status_code}")
            body = bytearray()
            for chunk in response.iter_content(8192):
                body.extend(chunk)
                if len(body) > self.max_bytes:
                    raise JwksFetchError(f"larger than {self.max_bytes} bytes")
        try:
            document = json.loads(body)
        except ValueError:
            raise JwksFetchError("not JSON") from None
        keys = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(keys, list):
            raise JwksFetchError("no `keys` array")
        usable = {}
        for jwk in keys:
            if isinstance(jwk, dict) and isinstance(jwk.get("kid"), str) and jwk.get("use", "sig") == "sig":
                usable[jwk["kid"]] = jwk
        log.info("JWK Set %s: %d signing key(s)", url, len(usable))
        return usable
