"""The CDS Hooks settings: trusted EHRs as a TOML array of tables or JSON in the environment, and
what each documented CDS setting changes in the service."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from cds_hooks.replay import MemoryReplayCache
from cds_hooks.runtime import build_runtime
from plugin.app import create_app
from plugin.config import TrustedEhr, load_settings
from plugin.errors import ConfigError
from tests.support.cds_ehr import PATIENT_VIEW, PUBLIC_BASE, Ehr, bearer, cds_settings, patient_view_body

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


# ---- each CDS setting changes what the service does ----------------------------------------------

DISCOVERY = PUBLIC_BASE + "/cds-services"


def _discover(client: FlaskClient, token: str) -> int:
    return client.get("/cds-services", headers=bearer(token)).status_code


def _client(ehr: Ehr, tmp_path: Path, **settings: Any) -> FlaskClient:
    return create_app(cds_settings(ehr, tmp_path, **settings)).test_client()


def test_cds_jwt_algorithms(ehr: Ehr, tmp_path: Path) -> None:
    rs384, es384 = ehr.keys[0], ehr.keys[1]
    only_es = _client(ehr, tmp_path, cds_jwt_algorithms=("ES384",))
    assert _discover(only_es, ehr.token(DISCOVERY, key=rs384)) == 401
    assert _discover(only_es, ehr.token(DISCOVERY, key=es384)) == 200
    assert _discover(_client(ehr, tmp_path), ehr.token(DISCOVERY, key=rs384)) == 200


def test_cds_clock_skew_s(ehr: Ehr, tmp_path: Path) -> None:
    issued_ahead = time.time() + 30  # the EHR's clock runs 30 s fast
    lenient, strict = (_client(ehr, tmp_path, cds_clock_skew_s=skew) for skew in (60.0, 0.0))
    assert _discover(lenient, ehr.token(DISCOVERY, iat=issued_ahead)) == 200
    assert _discover(strict, ehr.token(DISCOVERY, iat=issued_ahead)) == 401


def test_cds_max_token_lifetime_s(ehr: Ehr, tmp_path: Path) -> None:
    assert _discover(_client(ehr, tmp_path), ehr.token(DISCOVERY, exp_in=600)) == 200
    short = _client(ehr, tmp_path, cds_max_token_lifetime_s=300.0)
    assert _discover(short, ehr.token(DISCOVERY, exp_in=600)) == 401
    assert _discover(short, ehr.token(DISCOVERY, exp_in=200)) == 200


def test_cds_jwks_max_bytes(ehr: Ehr, tmp_path: Path) -> None:
    assert _discover(_client(ehr, tmp_path, cds_jwks_max_bytes=100), ehr.token(DISCOVERY)) == 401
    assert _discover(_client(ehr, tmp_path), ehr.token(DISCOVERY)) == 200


def test_cds_jwks_cache_s(ehr: Ehr, tmp_path: Path) -> None:
    def fetches(**settings: Any) -> int:
        client = _client(ehr, tmp_path, **settings)
        before = ehr.jwks_fetches()
        for _ in range(2):
            assert _discover(client, ehr.token(DISCOVERY)) == 200
            time.sleep(0.05)
        return ehr.jwks_fetches() - before
    assert fetches() == 1
    assert fetches(cds_jwks_cache_s=0.01) == 2


def test_cds_app_launch_url(ehr: Ehr, tmp_path: Path) -> None:
    def links(client: FlaskClient) -> set[str]:
        response = client.post(PATIENT_VIEW, json=patient_view_body(),
                               headers=bearer(ehr.token(PUBLIC_BASE + PATIENT_VIEW)))
        return {link["url"] for card in response.get_json()["cards"] for link in card.get("links", [])}
    assert links(_client(ehr, tmp_path)) == {PUBLIC_BASE + "/smart/launch"}
    launch = "https://apps.example.org/chartlight/launch"
    assert links(_client(ehr, tmp_path, cds_app_launch_url=launch)) == {launch}


def test_settings_that_reach_the_runtime(ehr: Ehr, tmp_path: Path) -> None:
    """Timeouts and intervals, which no test should wait out: they reach the objects that use
    them (each object's own tests show what the value does)."""
    runtime = build_runtime(cds_settings(
        ehr, tmp_path, cds_jwks_timeout_s=1.5, cds_source_check_interval_s=42.0, cds_source_check_wait_s=0.5,
        cds_jwks_refetch_interval_s=7.0, cds_replay_cache="memory"))
    jwks = runtime.verifier._jwks  # the verifier's cache
    assert (jwks.timeout_s, jwks.refetch_interval_s) == (1.5, 7.0)
    assert (runtime.scanner.interval_s, runtime.scanner.wait_s) == (42.0, 0.5)
    assert isinstance(runtime.verifier._replay, MemoryReplayCache)
