"""`chartlight serve` and the JWT `aud` check: reachable from other hosts, the service refuses to
start without `cds_public_base_url`; on loopback it starts and says the Host header decides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cds_hooks.audience import is_loopback
from plugin import cli as cli_module

ANY_ADDRESS = "0.0.0.0"  # noqa: S104 -- the bind address under test, never bound: gunicorn is not run
TRUSTED = json.dumps([{"iss": "https://ehr.example.org", "jwks_url": "https://ehr.example.org/jwks.json"}])


@pytest.fixture
def exec_calls(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """gunicorn's command line, recorded instead of replacing the test process."""
    calls: list[list[str]] = []
    monkeypatch.setattr(cli_module.os, "execv", lambda path, args: calls.append(list(args)))
    return calls


def serve(tmp_path: Path, **settings: str) -> tuple[int, str]:
    env = {"CHARTLIGHT_DATABASE_URL": f"sqlite:///{tmp_path}/jobs.db",
           "CHARTLIGHT_SMART_SIGNING_KEY_PATH": str(tmp_path / "keys.pem"),
           **{f"CHARTLIGHT_{name.upper()}": value for name, value in settings.items()}}
    result = CliRunner(env=env).invoke(cli_module.cli, ["serve"])
    return result.exit_code, result.output


def test_public_bind_without_public_base_url_refuses_to_start(
        tmp_path: Path, exec_calls: list[list[str]]) -> None:
    code, output = serve(tmp_path, host=ANY_ADDRESS, cds_trusted_ehrs=TRUSTED)
    assert code != 0 and exec_calls == []
    assert "cds_public_base_url must be set" in output and ANY_ADDRESS in output


def test_public_bind_with_public_base_url_starts_and_says_which_aud(
        tmp_path: Path, exec_calls: list[list[str]]) -> None:
    code, output = serve(tmp_path, host=ANY_ADDRESS, cds_trusted_ehrs=TRUSTED,
                         cds_public_base_url="https://chartlight.example.org/")
    assert code == 0, output
    assert "aud must be https://chartlight.example.org/cds-services/" in output
    assert len(exec_calls) == 1 and f"{ANY_ADDRESS}:8000" in exec_calls[0]


def test_loopback_bind_may_use_the_request_url_and_says_so(
        tmp_path: Path, exec_calls: list[list[str]]) -> None:
    code, output = serve(tmp_path, host="127.0.0.1", cds_trusted_ehrs=TRUSTED)
    assert code == 0, output
    assert "Host header" in output and len(exec_calls) == 1


def test_no_trusted_ehr_needs_no_public_base_url(tmp_path: Path, exec_calls: list[list[str]]) -> None:
    code, output = serve(tmp_path, host=ANY_ADDRESS)
    assert code == 0 and "no EHR is trusted" in output and len(exec_calls) == 1


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.0.1.1", True), ("::1", True), ("[::1]", True), ("localhost", True),
    (ANY_ADDRESS, False), ("::", False), ("10.0.0.5", False), ("chartlight.internal", False), ("", False)])
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
