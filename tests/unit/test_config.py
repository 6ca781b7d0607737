"""Settings load defaults, then the TOML file, then CHARTLIGHT_* variables, and are validated."""

from __future__ import annotations

from pathlib import Path

import pytest

from plugin.config import Settings, load_settings
from plugin.errors import ConfigError


def test_defaults_without_file_or_environment() -> None:
    assert load_settings(environ={}) == Settings()


def test_environment_overrides_file(tmp_path: Path) -> None:
    config = tmp_path / "chartlight.toml"
    config.write_text('fhir_base_url = "https://ehr.example.org/fhir"\nport = 9000\n'
                      'attachment_allowed_hosts = ["cdn.example.org"]\n')
    settings = load_settings(environ={"CHARTLIGHT_CONFIG": str(config), "CHARTLIGHT_PORT": "9100",
                                      "CHARTLIGHT_SANDBOX_PERSISTENT": "yes"})
    assert settings.fhir_base_url == "https://ehr.example.org/fhir"
    assert settings.port == 9100
    assert settings.sandbox_persistent is True
    assert settings.attachment_allowed_hosts == ("cdn.example.org",)


def test_comma_separated_hosts_from_environment() -> None:
    settings = load_settings(environ={"CHARTLIGHT_ATTACHMENT_ALLOWED_HOSTS": "a.org, b.org:8443"})
    assert settings.attachment_allowed_hosts == ("a.org", "b.org:8443")


@pytest.mark.parametrize("environ, message", [
    ({"CHARTLIGHT_PORT": "eighty"}, "setting port: invalid value"),
    ({"CHARTLIGHT_PORT": "0"}, "port must be positive"),
    ({"CHARTLIGHT_FHIR_BASE_URL": "ftp://x/fhir"}, "fhir_base_url must be an http"),
    ({"CHARTLIGHT_NO_SUCH_THING": "1"}, "unknown environment setting CHARTLIGHT_NO_SUCH_THING"),
    ({"CHARTLIGHT_SANDBOX_PERSISTENT": "maybe"}, "expected true or false"),
    ({"CHARTLIGHT_LOG_LEVEL": "chatty"}, "log_level"),
    ({"CHARTLIGHT_FHIR_TOKEN_SCOPES": "system/Observation.rs,write-everything"},
     "fhir_token_scopes: 'write-everything' is not a SMART resource scope"),
])
def test_invalid_settings_name_the_setting(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(environ=environ)


def test_bad_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml", environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("port = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(bad, environ={})
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("prot = 1\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        load_settings(unknown, environ={})


def test_secrets_are_not_in_repr() -> None:
    settings = Settings(fhir_token="very-secret", secret_key="also-secret",
                        medgemma_remote_api_key="remote-secret", metrics_token="metrics-secret-0123456789")
    printed = repr(settings)
    assert not [s for s in ("very-secret", "also-secret", "remote-secret", "metrics-secret") if s in printed]


def test_every_setting_is_documented() -> None:
    import dataclasses

    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    missing = [f.name for f in dataclasses.fields(Settings) if f"`{f.name}`" not in doc]
    assert missing == []
