"""The SMART settings: EHRs as a TOML array of tables or JSON in the environment, validated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plugin.config import SMART_DEFAULT_SCOPES, SmartEhr, load_settings
from plugin.errors import ConfigError

TOML = """
smart_public_base_url = "https://chartlight.example.org"
smart_frame_ancestors = ["https://ehr.example.org"]

[[smart_ehrs]]
name = "Example EHR"
iss = "https://ehr.example.org/fhir/r4"
client_id = "chartlight"
client_auth = "private_key_jwt"
alg = "ES384"
scopes = ["launch", "patient/Observation.rs"]

[[smart_ehrs]]
name = "Other"
iss = "https://other.example.org/fhir"
client_id = "abc"
"""


def test_smart_ehrs_from_toml(tmp_path: Path) -> None:
    config = tmp_path / "chartlight.toml"
    config.write_text(TOML)
    settings = load_settings(config, environ={})
    assert settings.smart_ehrs == (
        SmartEhr(name="Example EHR", iss="https://ehr.example.org/fhir/r4", client_id="chartlight",
                 client_auth="private_key_jwt", alg="ES384", scopes="launch patient/Observation.rs"),
        SmartEhr(name="Other", iss="https://other.example.org/fhir", client_id="abc"),
    )
    assert settings.smart_ehrs[1].client_auth == "public"
    assert settings.smart_ehrs[1].scopes == SMART_DEFAULT_SCOPES
    assert settings.smart_frame_ancestors == ("https://ehr.example.org",)
    assert settings.smart_ehrs[0].matches("https://ehr.example.org/fhir/r4/")


def test_smart_ehrs_from_environment_json() -> None:
    value = json.dumps([{"name": "e", "iss": "http://127.0.0.1:9090/fhir", "client_id": "c"}])
    [ehr] = load_settings(environ={"CHARTLIGHT_SMART_EHRS": value}).smart_ehrs
    assert ehr.iss == "http://127.0.0.1:9090/fhir" and ehr.client_id == "c"


@pytest.mark.parametrize(("entry", "message"), [
    ({"name": "e", "iss": "https://e.org/fhir", "client_id": "c", "client_auth": "client_secret_basic"},
     "client_auth must be public or private_key_jwt"),
    ({"name": "e", "iss": "https://e.org/fhir", "client_id": "c", "alg": "RS256"},
     "alg must be RS384 or ES384"),
    ({"name": "e", "iss": "http://e.org/fhir", "client_id": "c"}, "https URL"),
    ({"name": "e", "iss": "https://e.org/fhir"}, "needs client_id"),
    ({"name": "e", "iss": "https://e.org/fhir", "client_id": "c", "secret": "x"}, "unknown key"),
])
def test_bad_smart_ehr_is_refused_with_its_reason(entry: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(environ={"CHARTLIGHT_SMART_EHRS": json.dumps([entry])})


def test_each_iss_once() -> None:
    entries = [{"name": "a", "iss": "https://e.org/fhir", "client_id": "c"},
               {"name": "b", "iss": "https://e.org/fhir/", "client_id": "d"}]
    with pytest.raises(ConfigError, match="each name and each iss"):
        load_settings(environ={"CHARTLIGHT_SMART_EHRS": json.dumps(entries)})
