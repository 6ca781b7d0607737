"""The session's FHIR client: the bearer token goes to the session's FHIR base and nowhere else."""

from __future__ import annotations

from pathlib import Path

from plugin.app import create_app
from plugin.config import Settings, SmartEhr
from smart_launch.runtime import runtime_of
from smart_launch.session import TokenSession, fhir_client_for, from_record
from smart_launch.store import SessionRecord
from tests.support.loopback import ServerState, loopback_server


def test_token_only_for_the_fhir_base(tmp_path: Path) -> None:
    fhir_state, other_state = ServerState(body=b'{"resourceType": "Patient", "id": "p1"}'), ServerState()
    with loopback_server(fhir_state) as fhir_url, loopback_server(other_state) as other_url:
        base = f"{fhir_url}/fhir"
        app = create_app(Settings(
            database_url=f"sqlite:///{tmp_path}/jobs.db", smart_signing_key_path=str(tmp_path / "k.pem"),
            smart_ehrs=(SmartEhr(name="e", iss=base, client_id="c"),)))
        record = SessionRecord(
            id="s" * 64, ehr="e", fhir_base=base, token_endpoint=f"{fhir_url}/token", patient_id="p1",
            encounter_id=None, user=None, scopes="patient/Patient.r", need_patient_banner=False,
            smart_style_url=None, csrf_token="x", access_token="ACCESS", refresh_token=None,
            access_expires_at=9e9, expires_at=9e9, version=1)
        runtime_of(app).store.create_session(record)
        with app.test_request_context():
            client = fhir_client_for(from_record(record))
            assert client.read("Patient", "p1")["id"] == "p1"
        session = TokenSession(runtime_of(app), record.id, base)
        session.get(f"{other_url}/fhir/Patient/p1", timeout=5)  # another host
        session.get(f"{fhir_url}/fhirx/Patient/p1", timeout=5)  # same host, outside the base path
    assert fhir_state.seen[0].headers["Authorization"] == "Bearer ACCESS"
    assert "Authorization" not in other_state.seen[0].headers
    assert "Authorization" not in fhir_state.seen[1].headers


def test_no_token_for_a_url_that_climbs_out_of_the_base(tmp_path: Path) -> None:
    """`…/fhir/../other/…` starts with the base's path as text, but urllib3 resolves the dot-segments
    and asks for `/other/…`: the base is judged after normalisation, so no token goes there."""
    state = ServerState(body=b"{}")
    with loopback_server(state) as url:
        base = f"{url}/fhir"
        app = create_app(Settings(
            database_url=f"sqlite:///{tmp_path}/jobs.db", smart_signing_key_path=str(tmp_path / "k.pem"),
            smart_ehrs=(SmartEhr(name="e", iss=base, client_id="c"),)))
        record = SessionRecord(
            id="s" * 64, ehr="e", fhir_base=base, token_endpoint=f"{url}/token", patient_id="p1",
            encounter_id=None, user=None, scopes="patient/Patient.r", need_patient_banner=False,
            smart_style_url=None, csrf_token="x", access_token="ACCESS", refresh_token=None,
            access_expires_at=9e9, expires_at=9e9, version=1)
        runtime_of(app).store.create_session(record)
        session = TokenSession(runtime_of(app), record.id, base)
        session.get(f"{url}/fhir/../other/fhir/Patient/p1", timeout=5)
        session.get(f"{url}/fhir/%2e%2e/other/fhir/Patient/p1", timeout=5)
        session.get(f"{url}/fhir/Patient/p1", timeout=5)
    assert [s.path for s in state.seen][0] == "/other/fhir/Patient/p1"  # what urllib3 made of it
    assert "Authorization" not in state.seen[0].headers
    assert "Authorization" not in state.seen[1].headers
    assert state.seen[2].headers["Authorization"] == "Bearer ACCESS"
