"""FHIR clients for the service's job runner: a job started in the app runs with the token of
the clinician's SMART session (refreshed as the pages' requests are); any other job with the
service's own client. A session job never falls back to the service's credentials: when its
session has ended (logout, the EHR refused the refresh, expired) the job fails and says so."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests
from flask import Flask

from plugin.fhir import FhirClient
from plugin.jobs import Job
from smart_launch.errors import NotLaunched, SmartError
from smart_launch.runtime import runtime_of
from smart_launch.session import TokenSession, token_client

SESSION_ENDED = "the clinician's session ended before the analysis ran; start it again from the app"


class SessionEnded(SmartError):
    """The SMART session a job was to run with is gone."""

    def __init__(self) -> None:
        super().__init__(SESSION_ENDED)


def client_for_jobs(app: Flask, fallback: Callable[[Job], FhirClient]) -> Callable[[Job], FhirClient]:
    """`client_for` for a JobRunner: the job's session's client, or `fallback(job)` for jobs that
    have no session (CDS hooks, the CLI)."""
    def client_for(job: Job) -> FhirClient:
        if not job.session_id:
            return fallback(job)
        runtime = runtime_of(app)
        record = runtime.store.get_session(job.session_id)
        if record is None or record.fhir_base.rstrip("/") != job.fhir_base_url.rstrip("/"):
            raise SessionEnded()
        return token_client(runtime, JobTokenSession(runtime, record.id, record.fhir_base),
                            scopes=record.scopes.split())
    return client_for


class JobTokenSession(TokenSession):
    """The session's tokens for a background job: a session that ends mid-run (logout, refresh
    refused) fails the job with SESSION_ENDED rather than the pages' "launch again"."""

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        try:
            return super().request(method, url, *args, **kwargs)
        except NotLaunched:
            raise SessionEnded() from None
