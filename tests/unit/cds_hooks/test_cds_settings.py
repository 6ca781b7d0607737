"""The CDS Hooks settings: trusted EHRs as a TOML array of tables or JSON in the environment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plugin.config import TrustedEhr, load_settings
from plugin.errors import ConfigError

TOML = """
cds_public_base_url = "https://chartlight.example.org"
cds_allowed_origins = ["https://ehr.example.org"]

[[cds_trusted_ehrs]]
name = "Example EHR"
iss = "https://ehr.example.org"
jwks_url = "https://ehr.example.org/.well-known/jwks.json"
jku = ["https://keys.ehr.example.org/jwks.json"]
fhir_servers = ["https://ehr.example.org/fhir/r4"]
"""


def test_trusted_ehrs_from_toml(tmp_path: Path) -> None:
    config = tmp_path / "chartlight.toml"
    config.write_text(TOML)
    settings = load_settings(config, environ={})
    [ehr] = settings.cds_trusted_ehrs
    assert ehr == TrustedEhr(
        iss="https://ehr.example.org",
        jwks_url="https://ehr.example.org/.well-known/jwks.json",
        jku=("https://keys.ehr.example.org/jwks.json",),
        fhir_servers=("https://ehr.example.org/fhir/r4",),
        name="Example EHR",
    )
    assert ehr.allows_fhir_server("https://ehr.example.org/fhir/r4/")
    assert not ehr.allows_fhir_server("https://ehr.example.org/fhir")
    assert ehr.jwks_urls == (
        "https://ehr.example.org/.well-known/jwks.json",
        "https://keys.ehr.example.org/jwks.json",
    )


def test_trusted_ehrs_from_the_environment_as_json() -> None:
    value = json.dumps(
        [
            {
                "iss": "https://a.example.org",
                "jwks_url": "https://a.example.org/jwks",
                "fhir_servers": ["https://a.example.org/fhir"],
            }
        ]
    )
    settings = load_settings(
        environ={"CHARTLIGHT_CDS_TRUSTED_EHRS": value, "CHARTLIGHT_CDS_REPLAY_CACHE": "memory"}
    )
    assert settings.cds_trusted_ehrs[0].iss == "https://a.example.org"
    assert settings.cds_replay_cache == "memory"


@pytest.mark.parametrize(
    "environ, message",
    [
        ({"CHARTLIGHT_CDS_TRUSTED_EHRS": "[{"}, "not JSON"),
        ({"CHARTLIGHT_CDS_TRUSTED_EHRS": '[{"iss": "x"}]'}, "needs iss and jwks_url"),
        (
            {"CHARTLIGHT_CDS_TRUSTED_EHRS": '[{"iss": "x", "jwks_url": "https://x/j", "colour": 1}]'},
            "unknown key",
        ),
        (
            {"CHARTLIGHT_CDS_TRUSTED_EHRS": '[{"iss": "x", "jwks_url": "http://x.example.org/j"}]'},
            "https URL",
        ),  # keys over plain http only on loopback
        (
            {
                "CHARTLIGHT_CDS_TRUSTED_EHRS": '[{"iss": "x", "jwks_url": "https://x/j"}, '
                '{"iss": "x", "jwks_url": "https://y/j"}]'
            },
            "each iss may appear once",
        ),
        ({"CHARTLIGHT_CDS_JWT_ALGORITHMS": "RS384,HS256"}, "HS256"),
        ({"CHARTLIGHT_CDS_JWT_ALGORITHMS": "none"}, "none"),
        ({"CHARTLIGHT_CDS_REPLAY_CACHE": "redis"}, "cds_replay_cache"),
    ],
)
def test_bad_cds_settings_name_the_problem(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(environ=environ)


def test_loopback_jwks_over_http_is_allowed_for_tests() -> None:
    value = json.dumps([{"iss": "x", "jwks_url": "http://127.0.0.1:9999/jwks"}])
    assert load_settings(environ={"CHARTLIGHT_CDS_TRUSTED_EHRS": value}).cds_trusted_ehrs
