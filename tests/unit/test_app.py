"""The app factory, its health endpoint and the CLI's handling of bad settings."""

from __future__ import annotations

from click.testing import CliRunner

from plugin.app import create_app, settings_of
from plugin.cli import cli
from plugin.config import Settings


def test_health_reports_an_unreachable_fhir_server() -> None:
    app = create_app(Settings(fhir_base_url="http://127.0.0.1:9/fhir"))  # port 9: nothing there
    response = app.test_client().get("/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    assert body["fhir"] == {"reachable": False, "error": "FhirTransportError"}


def test_settings_live_in_app_extensions() -> None:
    settings = Settings(port=9999)
    assert settings_of(create_app(settings)) is settings


def test_cli_turns_bad_settings_into_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["sandbox", "status"], env={"CHARTLIGHT_PORT": "eighty"})
    assert result.exit_code == 2
    assert "setting port: invalid value 'eighty'" in result.output


def test_cli_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and "chartlight, version" in result.output
