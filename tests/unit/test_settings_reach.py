"""Documented settings that no other test set (docs/configuration.md, checked setting by setting):
each reaches the object that uses it. Values no test should wait out (timeouts, backoffs, ports of
servers that take a minute to start) are checked on the objects built from the settings; what
the objects do with them is tested with the objects."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from click.testing import CliRunner

from plugin import cli
from plugin.analysis import AnalysisRun, service_client_for
from plugin.app import create_app, service_fhir_client
from plugin.config import Settings, SmartEhr
from plugin.jobs import Job, JobState
from plugin.pipelines.registry import medgemma_engine
from smart_launch.runtime import runtime_of
from tests.support.loopback import ServerState, loopback_server

NOW = datetime(2026, 11, 28, tzinfo=UTC)
CONFIGURED = "https://ehr.example.org/fhir"


def _job(base: str) -> Job:
    return Job(id=1, pipeline="documents", source_type="DocumentReference", source_id="1", source_version="1",
               subject="Patient/1", fhir_base_url=base, state=JobState.RUNNING, progress=0.0,
               progress_text="", attempts=1, next_attempt_at=NOW, error="", summary={}, created_at=NOW,
               updated_at=NOW)


def test_fhir_client_settings_reach_every_service_client() -> None:
    settings = Settings(fhir_base_url=CONFIGURED, fhir_timeout_s=7.0, fhir_max_retries=0,
                        fhir_retry_backoff_s=0.25, max_response_bytes=1234,
                        fhir_token_scopes=("system/DocumentReference.c",))
    client_for = service_client_for(settings)
    own, foreign = client_for(_job(CONFIGURED)), client_for(_job("https://other.example.net/fhir"))
    for client in (service_fhir_client(settings), own, foreign):
        assert (client.timeout_s, client.max_retries, client.retry_backoff_s, client.max_response_bytes) == (
            7.0, 0, 0.25, 1234)
    # The service's token, and so its grant, belong to the configured server only.
    assert own.granted_scopes is not None and own.granted_scopes.can_create("DocumentReference")
    assert foreign.granted_scopes is None and foreign.access_token is None


def test_sandbox_settings_reach_the_sandbox_commands(tmp_path: Path) -> None:
    settings = Settings(sandbox_port=18999, sandbox_heap_mb=777, sandbox_ehr_port=19999, pacs_port=18998,
                        database_url=f"sqlite:///{tmp_path}/jobs.db",
                        smart_signing_key_path=str(tmp_path / "keys.pem"))
    with create_app(settings).app_context():
        hapi, ehr, pacs = cli._sandbox(), cli._ehr(), cli._pacs()
    assert (hapi.port, hapi.heap_mb, ehr.port) == (18999, 777, 19999)
    assert pacs.base_url.startswith("http://127.0.0.1:18998")


def test_medgemma_settings_choose_the_engine() -> None:
    local = medgemma_engine(Settings(medgemma_model="/models/medgemma-1.5-4b-it"))
    assert getattr(local, "model", None) == "/models/medgemma-1.5-4b-it"
    remote = medgemma_engine(Settings(
        medgemma_engine="remote", medgemma_remote_url="http://gpu:8000/v1",
        medgemma_remote_model="served-medgemma", medgemma_remote_timeout_s=12.0))
    assert (getattr(remote, "model", None), getattr(remote, "timeout_s", None)) == ("served-medgemma", 12.0)


def test_smart_http_settings_reach_the_smart_runtime(tmp_path: Path) -> None:
    settings = Settings(smart_discovery_cache_s=11.0, smart_http_timeout_s=3.0,
                        database_url=f"sqlite:///{tmp_path}/jobs.db",
                        smart_signing_key_path=str(tmp_path / "keys.pem"))
    runtime = runtime_of(create_app(settings))
    timeouts = (runtime.discovery.timeout_s, runtime.tokens.timeout_s)
    assert (runtime.discovery.ttl_s, *timeouts) == (11.0, 3.0, 3.0)


def test_smart_state_and_session_lifetimes_reach_the_launch(tmp_path: Path) -> None:
    state = ServerState()
    with loopback_server(state) as ehr_base:  # answers every path with the SMART configuration
        state.body = json.dumps({
            "authorization_endpoint": f"{ehr_base}/authorize", "token_endpoint": f"{ehr_base}/token",
            "code_challenge_methods_supported": ["S256"], "capabilities": ["launch-ehr"]}).encode()
        iss = f"{ehr_base}/fhir"
        app = create_app(Settings(smart_state_ttl_s=123.0, smart_session_ttl_s=4567.0,
                                  smart_ehrs=(SmartEhr(name="ehr", iss=iss, client_id="chartlight"),),
                                  database_url=f"sqlite:///{tmp_path}/jobs.db",
                                  smart_signing_key_path=str(tmp_path / "keys.pem")))
        started = time.time()
        response = app.test_client().get(f"/smart/launch?{urlencode({'iss': iss, 'launch': 'xyz'})}")
    assert response.status_code == 302, response.get_data(as_text=True)
    launch_state = parse_qs(urlsplit(response.headers["Location"]).query)["state"][0]
    binding = next(c for c in response.headers.getlist("Set-Cookie") if "Max-Age" in c)
    assert "Max-Age=4567" in binding  # the browser binding lasts as long as a session may
    pending = runtime_of(app).store.take_launch(launch_state)
    assert pending is not None and 123.0 <= pending.expires_at - started <= 123.0 + 60


def test_job_settings_reach_chartlight_analyze(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`job_workers` and `job_lease_s` (how long a running job may go without a heartbeat before
    another process takes it over) reach the CLI's job runner as they reach the service's."""
    import plugin.analysis

    seen: dict[str, object] = {}

    def analyze_patient(*args: object, **kwargs: object) -> AnalysisRun:
        seen.update(kwargs)
        return AnalysisRun("documents", ())

    monkeypatch.setattr(plugin.analysis, "analyze_patient", analyze_patient)
    env = {"CHARTLIGHT_JOB_LEASE_S": "17", "CHARTLIGHT_JOB_WORKERS": "3",
           "CHARTLIGHT_DATABASE_URL": f"sqlite:///{tmp_path}/jobs.db",
           "CHARTLIGHT_SMART_SIGNING_KEY_PATH": str(tmp_path / "keys.pem")}
    result = CliRunner(env=env).invoke(cli.cli, ["analyze", "documents", "--patient", "1"])
    assert result.exit_code == 0, result.output
    assert (seen["lease_s"], seen["workers"]) == (17.0, 3)


def test_serving_settings_reach_gunicorn() -> None:
    args = cli.gunicorn_command(Settings(host="10.1.2.3", port=8123, workers=5, threads=7))
    assert args[args.index("--bind") + 1] == "10.1.2.3:8123"
    assert (args[args.index("--workers") + 1], args[args.index("--threads") + 1]) == ("5", "7")


def test_log_level_sets_the_root_logger(tmp_path: Path) -> None:
    """In a fresh process, as `chartlight` and gunicorn's workers start (logging unconfigured)."""
    script = ("import logging; from plugin.app import create_app; from plugin.config import Settings; "
              "create_app(Settings(log_level='WARNING', database_url='sqlite://', "
              f"smart_signing_key_path={str(tmp_path / 'k.pem')!r})); "
              "print(logging.getLevelName(logging.getLogger().level))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2], check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "WARNING"
