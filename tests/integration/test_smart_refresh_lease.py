"""Two worker processes refreshing one SMART user session at once, against the sandbox EHR's
authorization server (Authlib; refresh tokens rotate, the old one stops working), on SQLite and
on a real PostgreSQL: one process refreshes, the other waits and uses the new token; the user
stays signed in. A holder that crashed (killed -9 with the lease) delays the refresh only until
its lease ends."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from cds_hooks.storage import cds_engine
from plugin.sandbox.ehr_server import EhrConfig, create_ehr_app, ehr_of, public_client
from smart_launch.store import SessionRecord, SmartStore
from tests.support.postgres import new_database
from tests.support.smart_stack import _server

pytestmark = pytest.mark.sandbox
SECRET = "refresh-lease-test-secret"
REPO = Path(__file__).resolve().parents[2]
APP = "http://127.0.0.1:1"  # the registered app's base (its redirect URI is never opened)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/sessions.db"
    return new_database(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(database_url: str) -> Iterator[SmartStore]:
    """The session store on the test's database (the workers open their own)."""
    opened = SmartStore(cds_engine(database_url), SECRET.encode())
    try:
        yield opened
    finally:
        opened.engine.dispose()


@dataclass
class RotatingEhr:
    base: str
    fhir_base: str
    refresh_posts: list[float]
    hold_first_refresh_s: list[float]


@pytest.fixture
def ehr() -> Iterator[RotatingEhr]:
    """The sandbox EHR on loopback. The answer to the first refresh can be held back (the EHR has
    rotated the refresh token, the client has not stored the new one yet): the moment in which
    a second process with the old refresh token would be refused."""
    with _server() as server:
        base = f"http://127.0.0.1:{server.server_port}"
        app = create_ehr_app(EhrConfig(base_url=base, fhir_upstream="http://127.0.0.1:9/fhir"))
        ehr_of(app).register_client(public_client("app", APP))
        seen = RotatingEhr(base, f"{base}/fhir", [], [0.0])
        lock = threading.Lock()

        def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
            body = b""
            if environ.get("PATH_INFO") == "/auth/token":
                body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
                environ["wsgi.input"] = io.BytesIO(body)
            answer = list(app(environ, start_response))
            if b"grant_type=refresh_token" in body:
                with lock:
                    seen.refresh_posts.append(time.time())
                    first = len(seen.refresh_posts) == 1
                if first:
                    time.sleep(seen.hold_first_refresh_s[0])
            return answer

        server.app = wsgi
        yield seen


def _login(ehr: RotatingEhr) -> dict[str, Any]:
    """An authorization code grant with PKCE, as the app's launch does: the token response."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    redirect_uri = f"{APP}/smart/callback"
    answer = requests.get(f"{ehr.base}/auth/authorize", params={
        "response_type": "code", "client_id": "app", "redirect_uri": redirect_uri, "state": "s1",
        "scope": "openid fhirUser offline_access user/Patient.rs", "aud": ehr.fhir_base,
        "code_challenge": challenge, "code_challenge_method": "S256"}, allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    [code] = parse_qs(urlsplit(answer.headers["Location"]).query)["code"]
    tokens = requests.post(f"{ehr.base}/auth/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri, "client_id": "app",
        "code_verifier": verifier}, timeout=10).json()
    assert tokens.get("refresh_token"), tokens
    return tokens  # type: ignore[no-any-return]


def _session(ehr: RotatingEhr, store: SmartStore) -> str:
    """A signed-in session whose access token has just expired (so the next use refreshes)."""
    tokens = _login(ehr)
    session_id = secrets.token_hex(32)
    store.create_session(SessionRecord(
        id=session_id, ehr="sandbox", fhir_base=ehr.fhir_base, token_endpoint=f"{ehr.base}/auth/token",
        patient_id=None, encounter_id=None, user=None, scopes=tokens["scope"], need_patient_banner=False,
        smart_style_url=None, csrf_token="c", access_token=tokens["access_token"],
        refresh_token=tokens["refresh_token"], access_expires_at=time.time() - 5,
        expires_at=time.time() + 3600, version=1))
    return session_id


def _worker(config: dict[str, Any], mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tests.support.refresh_worker", json.dumps(config), mode],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _config(ehr: RotatingEhr, database_url: str, session_id: str, tmp_path: Path,
            **more: Any) -> dict[str, Any]:
    return {"database_url": database_url, "secret_key": SECRET,
            "signing_key_path": str(tmp_path / "keys.pem"), "ehr_iss": ehr.fhir_base, "client_id": "app",
            "session_id": session_id, "fhir_base": ehr.fhir_base, "lease_s": 20.0, "http_timeout_s": 10.0,
            "go_file": str(tmp_path / "go"), **more}


def _result(process: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = process.communicate(timeout=120)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    assert lines, f"worker said nothing (rc {process.returncode}): {err[-2000:]}"
    return json.loads(lines[-1])  # type: ignore[no-any-return]


def test_two_processes_refreshing_one_session_share_one_refresh(
        ehr: RotatingEhr, database_url: str, store: SmartStore, tmp_path: Path) -> None:
    session_id = _session(ehr, store)
    ehr.hold_first_refresh_s[0] = 1.5
    config = _config(ehr, database_url, session_id, tmp_path)
    workers = [_worker(config, "refresh") for _ in range(2)]
    for worker in workers:
        assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
    (tmp_path / "go").touch()  # both ask for the token at once
    first, second = (_result(w) for w in workers)
    assert "error" not in first and "error" not in second, (first, second)
    assert first["token_sha"] == second["token_sha"]  # the one new token, used by both
    assert len(ehr.refresh_posts) == 1  # the refresh token was used once
    record = store.get_session(session_id)
    assert record is not None and record.version == 2  # still signed in, with the rotated tokens
    assert hashlib.sha256(record.access_token.encode()).hexdigest()[:16] == first["token_sha"]


def test_a_crashed_lease_holder_delays_the_refresh_only_until_its_lease_ends(
        ehr: RotatingEhr, database_url: str, store: SmartStore, tmp_path: Path) -> None:
    session_id = _session(ehr, store)
    config = _config(ehr, database_url, session_id, tmp_path, lease_s=4.0, http_timeout_s=2.0)
    holder = _worker(config, "hold")
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    taken_at = time.time()
    holder.send_signal(signal.SIGKILL)  # dies holding the lease
    holder.communicate(timeout=30)
    (tmp_path / "go").touch()
    worker = _worker(config, "refresh")
    result = _result(worker)
    assert "error" not in result, result
    assert len(ehr.refresh_posts) == 1 and ehr.refresh_posts[0] >= taken_at + 4.0  # waited for the lease
    record = store.get_session(session_id)
    assert record is not None and record.version == 2
