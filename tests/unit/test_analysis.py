"""Background jobs' service clients: the service's token goes only to its own FHIR server, and a
job started in the SMART app never runs with the service's credentials."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from plugin.analysis import service_client_for
from plugin.config import Settings
from plugin.errors import ChartlightError
from plugin.jobs import Job, JobState

NOW = datetime(2026, 11, 28, tzinfo=UTC)
BASE = "http://127.0.0.1:8091/fhir"


def _job(session_id: str) -> Job:
    return Job(id=1, pipeline="documents", source_type="DocumentReference", source_id="d1",
               source_version="1", subject="Patient/p1", fhir_base_url=BASE, state=JobState.RUNNING,
               progress=0.0, progress_text="", attempts=1, next_attempt_at=NOW, error="", summary={},
               created_at=NOW, updated_at=NOW, session_id=session_id)


def test_a_session_job_is_refused_the_services_credentials() -> None:
    client_for = service_client_for(Settings(fhir_base_url=BASE))
    assert client_for(_job("")).base_url == BASE
    with pytest.raises(ChartlightError, match="clinician's app session"):
        client_for(_job("s1"))
