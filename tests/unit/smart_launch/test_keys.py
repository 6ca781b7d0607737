"""The app's private_key_jwt keys: created once with safe permissions, published as a JWK Set,
and assertions that verify against that set with the claims SMART requires."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import jwt
import pytest

from plugin.errors import ConfigError
from smart_launch.keys import load_or_create

TOKEN_URL = "https://ehr.example.org/token"


def test_key_file_is_created_once_and_private(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "smart.pem"
    first = load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert {k.alg for k in first.keys} == {"RS384", "ES384"}
    again = load_or_create(path)
    assert [k.kid for k in again.keys] == [k.kid for k in first.keys]
    assert list(tmp_path.joinpath("keys").iterdir()) == [path]  # no temporary file left behind


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_assertion_verifies_against_the_published_jwks(tmp_path: Path, alg: str) -> None:
    ring = load_or_create(tmp_path / "smart.pem")
    assertion = ring.client_assertion(alg, "chartlight", TOKEN_URL, now=time.time())
    header = jwt.get_unverified_header(assertion)
    assert header["alg"] == alg and header["typ"] == "JWT"
    [jwk] = [k for k in ring.jwks()["keys"] if k["kid"] == header["kid"]]
    assert "d" not in jwk and jwk["alg"] == alg
    key = jwt.PyJWK(jwk).key
    claims = jwt.decode(assertion, key, algorithms=[alg], audience=TOKEN_URL)
    assert claims["iss"] == claims["sub"] == "chartlight"
    assert claims["exp"] - claims["iat"] == 300 and len(claims["jti"]) >= 32


def test_each_assertion_has_a_new_jti(tmp_path: Path) -> None:
    ring = load_or_create(tmp_path / "smart.pem")
    ids = {jwt.decode(ring.client_assertion("ES384", "c", TOKEN_URL, now=0),
                      options={"verify_signature": False})["jti"] for _ in range(5)}
    assert len(ids) == 5


def test_unusable_key_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "smart.pem"
    path.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ConfigError, match="smart_signing_key_path"):
        load_or_create(path)
    path.write_text("")
    with pytest.raises(ConfigError, match="no private key"):
        load_or_create(path)
