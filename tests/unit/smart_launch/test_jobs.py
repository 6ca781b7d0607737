"""The job runner's clients: a job started in the app runs with its session's token, other jobs
with the service's client, and a job whose session ended fails with a message that says so."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from plugin.app import create_app
from plugin.config import Settings, SmartEhr
from plugin.fhir import FhirClient
from plugin.jobs import Job, JobState
from smart_launch.jobs import SESSION_ENDED, SessionEnded, client_for_jobs
from smart_launch.runtime import runtime_of
from smart_launch.store import SessionRecord
from tests.support.loopback import ServerState, loopback_server

NOW = datetime(2026, 11, 28, tzinfo=UTC)


def _job(base: str, session_id: str) -> Job:
    return Job(id=1, pipeline="documents", source_type="DocumentReference", source_id="d1",
               source_version="1", subject="Patient/p1", fhir_base_url=base, state=JobState.RUNNING,
               progress=0.0, progress_text="", attempts=1, next_attempt_at=NOW, error="", summary={},
               created_at=NOW, updated_at=NOW, session_id=session_id, on_behalf_of="Practitioner/7")


def test_session_jobs_get_the_sessions_token_others_the_fallback(tmp_path: Path) -> None:
    state = ServerState(body=b'{"resourceType": "Patient", "id": "p1"}')
    with loopback_server(state) as url:
        base = f"{url}/fhir"
        app = create_app(Settings(
            database_url=f"sqlite:///{tmp_path}/jobs.db", smart_signing_key_path=str(tmp_path / "k.pem"),
            smart_ehrs=(SmartEhr(name="e", iss=base, client_id="c"),)))
        store = runtime_of(app).store
        store.create_session(SessionRecord(
            id="s" * 64, ehr="e", fhir_base=base, token_endpoint=f"{url}/token", patient_id="p1",
            encounter_id=None, user="Practitioner/7", scopes="patient/Patient.r",
            need_patient_banner=False, smart_style_url=None, csrf_token="x", access_token="ACCESS",
            refresh_token=None, access_expires_at=9e9, expires_at=9e9, version=1))
        service = FhirClient(base)
        client_for = client_for_jobs(app, lambda job: service)

        assert client_for(_job(base, "")) is service
        client = client_for(_job(base, "s" * 64))
        assert client.read("Patient", "p1")["id"] == "p1"
        assert state.seen[0].headers["Authorization"] == "Bearer ACCESS"

        with pytest.raises(SessionEnded, match=SESSION_ENDED):
            client_for(_job(base, "unknown"))
        with pytest.raises(SessionEnded):  # a session for another FHIR server is not this job's
            client_for(_job("https://elsewhere.example/fhir", "s" * 64))
        store.delete_session("s" * 64)  # logged out while the job runs
        with pytest.raises(SessionEnded, match=SESSION_ENDED):
            client.read("Patient", "p1")
    assert len(state.seen) == 1  # nothing more reached the server, with or without a token
