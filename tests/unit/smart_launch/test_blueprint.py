"""The smart blueprint without an EHR: refusals before any network call, CSRF on state-changing
requests, security headers, and the session cookie's attributes."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from plugin.app import create_app
from plugin.config import Settings, SmartEhr
from smart_launch.runtime import runtime_of
from smart_launch.security import set_session_cookie
from smart_launch.session import COOKIE, current_session
from smart_launch.store import SessionRecord, secret_hash

EHR = SmartEhr(name="example", iss="https://ehr.example.org/fhir", client_id="chartlight")


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    return create_app(Settings(database_url=f"sqlite:///{tmp_path}/jobs.db", smart_ehrs=(EHR,),
                               smart_signing_key_path=str(tmp_path / "keys.pem")))


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def _signed_in(app: Flask, client: FlaskClient) -> SessionRecord:
    record = SessionRecord(
        id=secret_hash("the-cookie"), ehr="example", fhir_base=EHR.iss, token_endpoint="https://ehr.example.org/t",
        patient_id="p1", encounter_id=None, user=None, scopes="launch patient/Patient.r",
        need_patient_banner=True, smart_style_url=None, csrf_token="the-csrf-token", access_token="a",
        refresh_token=None, access_expires_at=9e9, expires_at=9e9, version=1)
    runtime_of(app).store.create_session(record)
    client.set_cookie(COOKIE, "the-cookie", path="/smart")
    return record


def test_unknown_iss_is_refused_before_any_request(client: FlaskClient) -> None:
    answer = client.get("/smart/launch", query_string={"iss": "https://evil.example.org/fhir", "launch": "x"})
    assert answer.status_code == 400 and b"unknown iss" in answer.data


def test_launch_without_iss_or_launch_is_refused(client: FlaskClient) -> None:
    assert client.get("/smart/launch").status_code == 400
    assert client.get("/smart/launch", query_string={"iss": EHR.iss}).status_code == 400


def test_callback_with_unknown_state_is_refused(client: FlaskClient) -> None:
    answer = client.get("/smart/callback", query_string={"code": "c", "state": "nope"})
    assert answer.status_code == 400 and COOKIE not in answer.headers.get("Set-Cookie", "")


def test_csrf_is_checked_on_state_changing_requests(app: Flask, client: FlaskClient) -> None:
    _signed_in(app, client)
    assert client.post("/smart/logout").status_code == 403
    assert client.post("/smart/logout", headers={"X-CSRF-Token": "wrong"}).status_code == 403
    assert client.post("/smart/logout", data={"csrf_token": "the-csrf-token"}).status_code == 200
    assert runtime_of(app).store.get_session(secret_hash("the-cookie")) is None


def test_state_changing_request_without_session_is_401(client: FlaskClient) -> None:
    answer = client.post("/smart/logout", headers={"Accept": "application/json"})
    assert answer.status_code == 401 and "launch" in answer.get_json()["error"]


def test_current_session_reads_the_cookie(app: Flask, client: FlaskClient) -> None:
    _signed_in(app, client)
    with app.test_request_context(headers={"Cookie": f"{COOKIE}=the-cookie"}):
        session = current_session()
    assert session is not None and session.patient_id == "p1" and session.can_read("Patient")
    assert not session.can_write("Observation")


def test_security_headers(client: FlaskClient) -> None:
    answer = client.get("/smart/jwks.json")
    csp = answer.headers["Content-Security-Policy"]
    assert "frame-ancestors 'self' https://ehr.example.org" in csp and "default-src 'self'" in csp
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert client.get("/smart/launch").headers["Cache-Control"] == "no-store"


def test_frame_ancestors_from_settings(tmp_path: Path) -> None:
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path}/jobs.db", smart_ehrs=(EHR,),
                              smart_signing_key_path=str(tmp_path / "keys.pem"),
                              smart_frame_ancestors=("https://portal.example.org",)))
    csp = app.test_client().get("/smart/jwks.json").headers["Content-Security-Policy"]
    assert "frame-ancestors https://portal.example.org;" in csp + ";"


def test_session_cookie_attributes(app: Flask) -> None:
    with app.test_request_context():
        response = app.make_response("")
        set_session_cookie(response, "v", 60)
    cookie = response.headers["Set-Cookie"]
    for attribute in ("chartlight_smart=v", "Secure", "HttpOnly", "SameSite=None", "Partitioned",
                      "Path=/smart"):
        assert attribute in cookie
