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


# ---- one registration, several FHIR bases ----------------------------------------------------------

PATTERNED = SmartEhr(name="multi", iss="https://ehr.example/fhir", client_id="c",
                     fhir_bases=("https://ehr.example/r4/tenant-a", "https://ehr.example/tenants/*"))


@pytest.mark.parametrize("iss", [
    "https://ehr.example/fhir", "https://ehr.example/fhir/", "HTTPS://EHR.example/fhir",
    "https://ehr.example/r4/tenant-a", "https://ehr.example/tenants/a/fhir", "https://ehr.example/tenants/b",
])
def test_an_entry_matches_each_of_its_bases_and_what_a_prefix_covers(iss: str) -> None:
    assert PATTERNED.matches(iss)


@pytest.mark.parametrize("iss", [
    "https://ehr.example/fhirevil",  # not a whole path segment
    "https://ehr.example/fhir/extra",  # an exact base is not a prefix
    "https://ehr.example/r4/tenant-ab",
    "https://ehr.example/tenants",  # the prefix itself is not below it
    "https://ehr.example/tenantsevil/a",
    "https://ehr.example/tenants/../admin", "https://ehr.example/tenants/%2e%2e/admin",
    "https://ehr.example/tenants/a%2f..%2fadmin", "https://ehr.example/tenants/./a",
    "https://ehr.example/tenants//a", "https://ehr.example/tenants/a?x=1", "https://ehr.example/tenants/a#f",
    "https://user@ehr.example/tenants/a", "https://ehr.example.evil.org/tenants/a",
    "https://ehr.example:8443/tenants/a", "http://ehr.example/tenants/a", "https://ehr.example\\@evil/tenants/a",
    # encoded more than once (a server or proxy that decodes twice walks out of the prefix)
    "https://ehr.example/tenants/%252e%252e/admin", "https://ehr.example/tenants/a/%252E%252E/%252E%252E/admin",
    "https://ehr.example/tenants/%25252e%25252e/admin", "https://ehr.example/tenants/a%252f..%252fadmin",
    "https://ehr.example/tenants/a\tb", "https://ehr.example/tenants/a b",
])
def test_nothing_else_matches(iss: str) -> None:
    assert not PATTERNED.matches(iss)


def test_fhir_bases_come_from_toml_and_json(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[[smart_ehrs]]\nname = "m"\niss = "https://ehr.example/fhir"\nclient_id = "c"\n'
                    'fhir_bases = ["https://ehr.example/tenants/*"]\n')
    assert load_settings(path, environ={}).smart_ehrs[0].matches("https://ehr.example/tenants/x")
    value = json.dumps([{"name": "m", "iss": "https://ehr.example/fhir", "client_id": "c",
                         "fhir_bases": ["https://ehr.example/t/*"]}])
    [ehr] = load_settings(environ={"CHARTLIGHT_SMART_EHRS": value}).smart_ehrs
    assert ehr.fhir_bases == ("https://ehr.example/t/*",)


@pytest.mark.parametrize("base", ["http://ehr.example/t/*", "https://ehr.example/t/*/fhir",
                                  "https://ehr.example/t/../x", "https://ehr.example/t?x=1", "ehr.example/t"])
def test_fhir_bases_that_are_not_plain_https_bases_are_refused(tmp_path: Path, base: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[[smart_ehrs]]\nname = "m"\niss = "https://ehr.example/fhir"\nclient_id = "c"\n'
                    f'fhir_bases = ["{base}"]\n')
    with pytest.raises(ConfigError, match="fhir_bases"):
        load_settings(path, environ={})


def test_two_entries_may_not_cover_the_same_base(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[[smart_ehrs]]\nname = "a"\niss = "https://ehr.example/fhir"\nclient_id = "c"\n'
                    'fhir_bases = ["https://ehr.example/t/*"]\n'
                    '[[smart_ehrs]]\nname = "b"\niss = "https://ehr.example/t/north/fhir"\nclient_id = "d"\n')
    with pytest.raises(ConfigError, match="'a' and 'b' both cover a FHIR base"):
        load_settings(path, environ={})
