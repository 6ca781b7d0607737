"""The user's SMART session as pages see it, and a FHIR client that carries its access token.

The session cookie holds only a random id; the tokens stay in the server's store. A FHIR client from
`fhir_client_for` adds the bearer token to requests for the session's FHIR base (and nowhere else),
refreshes it shortly before it expires or when the server answers 401, and stores the rotated
refresh token; a request that still gets 401 after a refresh surfaces as FhirResponseError. One
refresh per session at a time across every process on the database (a refresh lease in the
store, `smart_refresh_lease_s`): the others wait for it and use the new token.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import requests
from flask import current_app, g, request

from plugin.fhir import FhirClient
from plugin.fhir.urls import UnsafeUrl, is_under
from plugin.scopes import parse_scopes
from smart_launch import scopes as scope_rules
from smart_launch.errors import NotLaunched, TokenError
from smart_launch.runtime import SmartRuntime, http_cookie_policy, runtime_of
from smart_launch.store import SessionRecord, secret_hash

log = logging.getLogger(__name__)
COOKIE = "chartlight_smart"
REFRESH_AHEAD_S = 30.0
LEASE_POLL_S = 0.1
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class SmartSession:
    id: str
    ehr: str  # name of the configured EHR the launch came from
    fhir_base: str  # the EHR's FHIR base (the token's aud)
    patient_id: str | None
    encounter_id: str | None
    user: str | None  # fhirUser reference ("Practitioner/123") when granted, else None
    scopes: frozenset[str]  # as granted in the token response
    need_patient_banner: bool
    smart_style_url: str | None
    csrf_token: str
    fhir_context: tuple[str, ...] = ()  # SMART 2.2 fhirContext: what the EHR opened the app for
    requested_scopes: frozenset[str] = frozenset()

    def can_read(self, resource_type: str) -> bool:
        return scope_rules.can_read(self.scopes, resource_type)

    def can_write(self, resource_type: str) -> bool:
        """v2 `c` scopes (and v1 write) for that type."""
        return scope_rules.can_write(self.scopes, resource_type)


def from_record(record: SessionRecord) -> SmartSession:
    return SmartSession(id=record.id, ehr=record.ehr, fhir_base=record.fhir_base,
                        patient_id=record.patient_id, encounter_id=record.encounter_id, user=record.user,
                        scopes=frozenset(record.scopes.split()),
                        need_patient_banner=record.need_patient_banner,
                        smart_style_url=record.smart_style_url, csrf_token=record.csrf_token,
                        fhir_context=record.fhir_context,
                        requested_scopes=frozenset(record.requested_scopes.split()))


def current_session() -> SmartSession | None:
    """The session of this request's cookie, or None (no cookie, unknown, expired)."""
    if "chartlight_smart_session" not in g:
        cookie = request.cookies.get(COOKIE)
        record = runtime_of(current_app).store.get_session(secret_hash(cookie)) if cookie else None
        g.chartlight_smart_session = from_record(record) if record else None
    found: SmartSession | None = g.chartlight_smart_session
    return found


def login_required(view: F) -> F:
    """No session: 401 with the page that says to launch the app from the EHR."""
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if current_session() is None:
            raise NotLaunched("no SMART session: launch the app from your EHR")
        return view(*args, **kwargs)
    return cast(F, wrapper)


def fhir_client_for(session: SmartSession) -> FhirClient:
    """A client for the session's FHIR server with its bearer token attached server-side."""
    runtime = runtime_of(current_app)
    return token_client(runtime, TokenSession(runtime, session.id, session.fhir_base), scopes=session.scopes)


def token_client(runtime: SmartRuntime, tokens: TokenSession, *, scopes: Iterable[str] = ()) -> FhirClient:
    """A FHIR client for the token session's FHIR base (no request context needed: jobs use it).
    `scopes`, as granted, decide what plugin.writeback writes with it (document-only without
    Observation write scopes)."""
    settings = runtime.settings
    return FhirClient(tokens.fhir_base, session=tokens, timeout_s=settings.fhir_timeout_s,
                      max_retries=settings.fhir_max_retries,
                      retry_backoff_s=settings.fhir_retry_backoff_s,
                      max_response_bytes=settings.max_response_bytes, max_pages=settings.fhir_max_pages,
                      granted_scopes=parse_scopes(scopes) if scopes else None)


class TokenSession(requests.Session):
    """requests.Session that authenticates requests under the FHIR base with the session's
    current access token, refreshing it (with rotation) when it is about to expire or is refused.
    Keeps no cookies, so nothing one user's requests received reaches another's."""

    def __init__(self, runtime: SmartRuntime, session_id: str, fhir_base: str) -> None:
        super().__init__()
        self.cookies.set_policy(http_cookie_policy())
        self._runtime = runtime
        self._session_id = session_id
        self._fhir_base = fhir_base.rstrip("/")

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        target = url.decode() if isinstance(url, bytes) else url
        if not self._under_base(target):
            return super().request(method, url, *args, **kwargs)
        record = self._record()
        if record.access_expires_at - REFRESH_AHEAD_S <= self._runtime.clock():
            record = self._refresh(record)
        response = super().request(method, url, *args, **self._with_token(kwargs, record))
        if response.status_code != 401 or not record.refresh_token:
            return response
        response.close()
        record = self._refresh(record)
        return super().request(method, url, *args, **self._with_token(kwargs, record))

    @property
    def fhir_base(self) -> str:
        return self._fhir_base

    def current_access_token(self) -> str:
        """The access token requests under the FHIR base carry now (refreshed when about to
        expire), for a DICOMweb endpoint configured as trusted (FhirClient.access_token)."""
        record = self._record()
        if record.access_expires_at - REFRESH_AHEAD_S <= self._runtime.clock():
            record = self._refresh(record)
        return record.access_token

    def _under_base(self, url: str) -> bool:
        # Judged after normalisation: `…/fhir/../other` starts with the base as text, but urllib3
        # resolves the dot-segments and would carry the token to `/other`. Unsafe: no token.
        try:
            return is_under(url, self._fhir_base)
        except UnsafeUrl:
            return False

    def _record(self) -> SessionRecord:
        record = self._runtime.store.get_session(self._session_id)
        if record is None:
            raise NotLaunched("the SMART session has ended: launch the app from your EHR again")
        return record

    def _refresh(self, seen: SessionRecord) -> SessionRecord:
        with self._runtime.refresh_lock(self._session_id):  # this process's threads
            record = self._record()
            if record.version != seen.version:
                return record  # another request refreshed it meanwhile
            if not record.refresh_token:
                return record  # nothing to refresh with: the server's 401 will surface
            holder = self._lease(record)  # every other process
            if holder is None:
                return self._record()  # another process refreshed it while we waited
            try:
                record = self._record()
                if record.version != seen.version:
                    return record
                return self._refresh_held(record)
            finally:
                self._runtime.store.release_refresh_lease(record.id, holder)

    def _lease(self, record: SessionRecord) -> str | None:
        """The session's refresh lease (its holder id), or None once another process has stored
        refreshed tokens. A lease its holder never released (a crash) ends after
        smart_refresh_lease_s, and is then taken over."""
        lease_s = self._runtime.settings.smart_refresh_lease_s
        deadline = time.monotonic() + 2 * lease_s
        while True:
            holder = self._runtime.store.try_refresh_lease(record.id, lease_s)
            if holder is not None:
                return holder
            if self._record().version != record.version:
                return None
            if time.monotonic() > deadline:
                raise TokenError("another process is refreshing this session's tokens and has not "
                                 "finished; try again")
            time.sleep(LEASE_POLL_S)

    def _refresh_held(self, record: SessionRecord) -> SessionRecord:
        """Refresh with the lease held: no other process is using this refresh token now."""
        if not record.refresh_token:
            return record
        ehr = self._runtime.ehr_named(record.ehr)
        try:
            answer = self._runtime.tokens.refresh(ehr, record.token_endpoint, record.refresh_token)
        except TokenError as exc:
            latest = self._record()
            if latest.version != record.version:
                return latest  # another worker process rotated it first
            if exc.error not in {"invalid_grant", "invalid_client", "unauthorized_client"}:
                raise  # the EHR could not be asked: the session may still be good
            # The EHR ended the grant (refresh token expired or revoked): so does the session.
            self._runtime.store.delete_session(record.id)
            log.info("SMART session %s ended: the EHR refused its refresh token", record.id[:12])
            raise NotLaunched("your EHR sign-in has expired: launch the app again") from None
        # Rotation: the new refresh token replaces the old one; an EHR that sends none keeps it.
        self._runtime.store.rotate_tokens(
            record, access_token=answer.access_token,
            refresh_token=answer.refresh_token or record.refresh_token,
            access_expires_at=answer.expires_at, scopes=answer.scope or record.scopes)
        log.info("refreshed the access token of SMART session %s", record.id[:12])
        return self._record()  # ours, or the one that won the race

    @staticmethod
    def _with_token(kwargs: dict[str, Any], record: SessionRecord) -> dict[str, Any]:
        headers = dict(kwargs.get("headers") or {})
        headers["Authorization"] = f"Bearer {record.access_token}"
        return {**kwargs, "headers": headers}
