"""id_tokens verified as OpenID Connect Core specifies, against a JWK Set served over HTTP on
loopback: kid-less tokens with a one-key set, key rotation, the EHR's declared algorithms, and
errors that say the cause in words."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from smart_launch.discovery import SmartConfiguration
from smart_launch.errors import TokenError
from smart_launch.id_tokens import IdTokenKeys, fhir_user, verify_id_token
from tests.support.loopback import ServerState, loopback_server

ISSUER = "https://ehr.example.org"
CLIENT = "chartlight"
NONCE = "n-0S6_WzA2Mj"
Key = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _key(alg: str) -> Key:
    if alg.startswith("RS"):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1() if alg == "ES256" else ec.SECP384R1())


def _jwk(key: Key, kid: str | None = None, **extra: str) -> dict[str, Any]:
    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        text = jwt.algorithms.RSAAlgorithm.to_jwk(public)
    else:
        text = jwt.algorithms.ECAlgorithm.to_jwk(public)
    jwk: dict[str, Any] = {**json.loads(text), "use": "sig", **extra}
    if kid:
        jwk["kid"] = kid
    return jwk


def _token(key: Key, alg: str, kid: str | None = None, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": CLIENT, "sub": "123", "iat": now, "exp": now + 300, "nonce": NONCE,
            "fhirUser": "https://ehr.example.org/fhir/Practitioner/123", **claims}
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid} if kid else None)


@pytest.fixture
def jwks() -> Iterator[tuple[ServerState, str]]:
    state = ServerState(body=b'{"keys": []}')
    with loopback_server(state) as base:
        yield state, f"{base}/jwks"


def _serve(state: ServerState, *keys: dict[str, Any]) -> None:
    state.body = json.dumps({"keys": list(keys)}).encode()


def _config(url: str, algorithms: frozenset[str] = frozenset()) -> SmartConfiguration:
    return SmartConfiguration(authorization_endpoint=f"{ISSUER}/authorize", token_endpoint=f"{ISSUER}/token",
                              capabilities=frozenset(), token_endpoint_auth_methods=frozenset(),
                              issuer=ISSUER, jwks_uri=url, id_token_algorithms=algorithms)


def _keys(**kwargs: Any) -> IdTokenKeys:
    return IdTokenKeys(requests.Session(), timeout_s=5, **kwargs)


def _verify(token: str, url: str, keys: IdTokenKeys | None = None, **config: Any) -> dict[str, Any]:
    return verify_id_token(token, config=_config(url, **config), client_id=CLIENT, nonce=NONCE,
                           keys=keys or _keys())


def test_a_kid_less_token_is_verified_with_the_only_key_of_the_set(jwks: tuple[ServerState, str]) -> None:
    state, url = jwks
    key = _key("RS256")
    _serve(state, _jwk(key))  # smart-launcher-v2: one key, no kid anywhere
    claims = _verify(_token(key, "RS256"), url)
    assert fhir_user(claims, "https://ehr.example.org/fhir") == "Practitioner/123"


def test_a_kid_less_token_with_several_keys_in_the_set_is_refused_in_words(
        jwks: tuple[ServerState, str]) -> None:
    state, url = jwks
    key = _key("RS256")
    _serve(state, _jwk(key, "a"), _jwk(_key("RS256"), "b"))
    with pytest.raises(TokenError, match=r"names no key \(no kid\) and its JWK Set holds 2 signing keys"):
        _verify(_token(key, "RS256"), url)


@pytest.mark.parametrize("alg", ["RS256", "RS384", "ES256", "ES384"])
def test_each_algorithm_the_ehr_declares_is_verified(jwks: tuple[ServerState, str], alg: str) -> None:
    state, url = jwks
    key = _key(alg)
    _serve(state, _jwk(_key("RS256"), "other"), _jwk(key, "k1", alg=alg))
    assert _verify(_token(key, alg, "k1"), url, algorithms=frozenset({alg}))["sub"] == "123"


def test_an_algorithm_the_ehr_does_not_declare_is_refused(jwks: tuple[ServerState, str]) -> None:
    state, url = jwks
    key = _key("ES256")
    _serve(state, _jwk(key, "k1"))
    with pytest.raises(TokenError, match=r"signed with 'ES256'; chartlight accepts RS256 of what the EHR "
                                         r"declares \(RS256\)"):
        _verify(_token(key, "ES256", "k1"), url, algorithms=frozenset({"RS256"}))


@pytest.mark.parametrize("alg", ["HS256", "none"])
def test_symmetric_and_unsigned_tokens_are_refused(jwks: tuple[ServerState, str], alg: str) -> None:
    state, url = jwks
    _serve(state, _jwk(_key("RS256")))
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": CLIENT, "sub": "1", "iat": now, "exp": now + 60, "nonce": NONCE}
    token = jwt.encode(claims, "x" * 32 if alg == "HS256" else None, algorithm=alg)  # type: ignore[arg-type]
    with pytest.raises(TokenError, match=f"signed with '{alg}'"):
        _verify(token, url)


def test_a_key_of_the_wrong_type_for_the_algorithm_is_not_used(jwks: tuple[ServerState, str]) -> None:
    state, url = jwks
    _serve(state, _jwk(_key("ES256")))  # the only key is EC; the token says RS256
    with pytest.raises(TokenError, match="signed with RS256, which its only key is not for"):
        _verify(_token(_key("RS256"), "RS256"), url)


def test_an_unknown_kid_fetches_the_set_again_once_then_waits(jwks: tuple[ServerState, str]) -> None:
    state, url = jwks
    old, new = _key("RS256"), _key("RS256")
    _serve(state, _jwk(old, "2026-01"))
    clock = [0.0]
    keys = _keys(refetch_interval_s=60, clock=lambda: clock[0])
    _verify(_token(old, "RS256", "2026-01"), url, keys)
    _serve(state, _jwk(new, "2026-02"))  # the EHR rotates its key
    clock[0] = 1.0
    assert _verify(_token(new, "RS256", "2026-02"), url, keys)["sub"] == "123"
    assert keys.fetches == 2
    # A flood of unknown kids does not make us fetch again within the interval...
    for n in range(5):
        with pytest.raises(TokenError, match=f"names a key \\('forged-{n}'\\) that its JWK Set"):
            _verify(_token(_key("RS256"), "RS256", f"forged-{n}"), url, keys)
    assert keys.fetches == 2 and len([s for s in state.seen if s.path == "/jwks"]) == 2
    # ...and after it, one unknown kid fetches once more.
    clock[0] = 62.0
    with pytest.raises(TokenError):
        _verify(_token(_key("RS256"), "RS256", "forged-later"), url, keys)
    assert keys.fetches == 3


@pytest.mark.parametrize(("claims", "cause"), [
    ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 4000}, "has expired"),
    ({"iat": int(time.time()) + 3600}, "was issued in the future"),
    ({"aud": "someone-else"}, "is not for this app"),
    ({"iss": "https://evil.example.org"}, "was not issued by the EHR's issuer"),
    ({"iat": None}, "lacks the required claim 'iat'"),
    ({"sub": None}, "lacks the required claim 'sub'"),
    ({"nonce": "another-launch"}, "nonce does not match this launch"),
])
def test_claims_are_checked_and_errors_say_why_in_words(jwks: tuple[ServerState, str], claims: dict[str, Any],
                                                       cause: str) -> None:
    state, url = jwks
    key = _key("RS256")
    _serve(state, _jwk(key))
    with pytest.raises(TokenError) as refused:
        _verify(_token(key, "RS256", **claims), url)
    assert cause in str(refused.value)
    assert not re.search(r"[A-Z][a-z]+(Error|Exception)\b", str(refused.value))  # no library class names


def test_a_bad_signature_is_named_as_such(jwks: tuple[ServerState, str]) -> None:
    state, url = jwks
    _serve(state, _jwk(_key("RS256")))
    with pytest.raises(TokenError, match="signature does not verify"):
        _verify(_token(_key("RS256"), "RS256"), url)


def test_no_jwks_uri_or_an_unreadable_set_is_said(jwks: tuple[ServerState, str]) -> None:
    state, url = jwks
    key = _key("RS256")
    with pytest.raises(TokenError, match="publishes no issuer/jwks_uri"):
        verify_id_token(_token(key, "RS256"), config=replace(_config(url), jwks_uri=None), client_id=CLIENT,
                        nonce=NONCE, keys=_keys())
    state.body = b"<html>not a key set</html>"
    with pytest.raises(TokenError, match="answered HTTP 200 without a JWK Set"):
        _verify(_token(key, "RS256"), url)
