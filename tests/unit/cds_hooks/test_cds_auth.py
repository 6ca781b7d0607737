"""JWT authentication of every CDS Hooks endpoint, with real keys and a real JWK Set server."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from flask.testing import FlaskClient

from cds_hooks.auth import JwtVerifier
from cds_hooks.errors import NotAuthenticated
from cds_hooks.jwks import JwksCache
from cds_hooks.replay import MemoryReplayCache, SqlReplayCache
from cds_hooks.storage import cds_engine
from plugin.app import create_app
from plugin.config import TrustedEhr
from tests.support.cds_ehr import (
    PATIENT_VIEW,
    PUBLIC_BASE,
    Ehr,
    bearer,
    cds_settings,
    ehr_with_jwks,
    hmac_token,
    jwks_body,
    patient_view_body,
    rsa_key,
    standard_claims,
    unsigned_token,
)

AUD = PUBLIC_BASE + PATIENT_VIEW
# No detail: a bare OperationOutcome with no diagnostics.
UNAUTHORIZED = {"resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "login", "details": {"text": "unauthorized"}}]}


def post(client: FlaskClient, token: str, path: str = PATIENT_VIEW) -> Any:
    return client.post(path, json=patient_view_body(), headers=bearer(token))


@pytest.mark.parametrize("kid", ["ehr-rs384", "ehr-es384", "ehr-rs256"])
def test_a_good_token_gets_cards(client: FlaskClient, ehr: Ehr, kid: str) -> None:
    key = next(k for k in ehr.keys if k.kid == kid)
    response = post(client, ehr.token(AUD, key=key))
    assert response.status_code == 200, response.get_json()
    cards = response.get_json()["cards"]
    assert cards and "no analysis pipelines are installed" in cards[0]["summary"]


def test_aud_may_be_an_array_holding_the_exact_url(client: FlaskClient, ehr: Ehr) -> None:
    token = jwt.encode(
        {**standard_claims(AUD), "aud": [AUD]},
        ehr.keys[0].private,
        algorithm="RS384",
        headers={"kid": ehr.keys[0].kid},
    )
    assert post(client, token).status_code == 200


def bad_tokens(ehr: Ehr) -> dict[str, str]:
    rs384 = ehr.keys[0]
    claims, header = standard_claims(AUD), {"alg": "RS384", "kid": rs384.kid, "typ": "JWT"}
    other_key = rsa_key(rs384.kid)  # same kid, a key the EHR never published
    tampered = ehr.token(AUD).split(".")
    tampered[1] = jwt.utils.base64url_encode(json.dumps({**claims, "iss": ehr.iss}).encode()).decode()
    return {
        "expired": ehr.token(AUD, exp_in=-600, iat=time.time() - 900),
        "wrong aud": ehr.token(PUBLIC_BASE + "/cds-services/chartlight-imaging-order-sign"),
        "aud of another host": ehr.token("https://evil.example.org/cds-services/chartlight-patient-results"),
        "unknown jku": ehr.token(AUD, headers={"jku": "https://evil.example.org/jwks.json"}),
        "alg none": unsigned_token(claims, {"alg": "none", "kid": rs384.kid, "typ": "JWT"}),
        "HS256 keyed with the public key": hmac_token(claims, {**header, "alg": "HS256"}, rs384.public_pem),
        "unknown kid": jwt.encode(claims, other_key.private, algorithm="RS384", headers={"kid": "nobody"}),
        "right kid, wrong key": jwt.encode(
            claims, other_key.private, algorithm="RS384", headers={"kid": rs384.kid}
        ),
        "wrong issuer": ehr.token(AUD, iss="https://other-ehr.example.org"),
        "issued in the future": ehr.token(AUD, iat=time.time() + 3600, exp_in=3900),
        "lives too long": ehr.token(AUD, exp_in=86_400),
        "no jti": ehr.token(AUD, drop=("jti",)),
        "no exp": ehr.token(AUD, drop=("exp",)),
        "ES384 claimed with an RSA key": _with_header(ehr.token(AUD), {**header, "alg": "ES384"}),
        "tampered payload": ".".join(tampered),
        "typ is not JWT": ehr.token(AUD, headers={"typ": "at+jwt"}),
        "not a JWT": "not-a-jwt",
        "header not base64url JSON": "e30=." + ".".join(ehr.token(AUD).split(".")[1:]),
        "four parts": ehr.token(AUD) + ".e30",
    }


def _with_header(token: str, header: dict[str, Any]) -> str:
    return ".".join([jwt.utils.base64url_encode(json.dumps(header).encode()).decode(), *token.split(".")[1:]])


# Why each is refused, as the service logs it: every check is exercised, not just the last line.
REASONS = {
    "expired": "ExpiredSignatureError",
    "wrong aud": "InvalidAudienceError",
    "aud of another host": "InvalidAudienceError",
    "unknown jku": "is not allow-listed",
    "alg none": "algorithm 'none' not accepted",
    "HS256 keyed with the public key": "'HS256' not accepted",
    "unknown kid": "no key 'nobody'",
    "right kid, wrong key": "InvalidSignatureError",
    "wrong issuer": "is not trusted",
    "issued in the future": "ImmatureSignatureError",
    "lives too long": "longest token lifetime",
    "no jti": 'missing the "jti" claim',
    "no exp": 'missing the "exp" claim',
    "ES384 claimed with an RSA key": "does not fit ES384",
    "tampered payload": "InvalidSignatureError",
    "typ is not JWT": "typ is not JWT",
    "not a JWT": "malformed JWT",
    "header not base64url JSON": "malformed JWT",
    "four parts": "malformed JWT",
}


def test_every_bad_token_gets_a_bare_401(
    client: FlaskClient, ehr: Ehr, caplog: pytest.LogCaptureFixture
) -> None:
    tokens = bad_tokens(ehr)
    assert tokens.keys() == REASONS.keys()
    for name, token in tokens.items():
        caplog.clear()
        response = post(client, token)
        assert response.status_code == 401, name
        assert response.get_json() == UNAUTHORIZED, name
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert REASONS[name] in caplog.text, (name, caplog.text)


def test_missing_or_non_bearer_authorization_is_401(client: FlaskClient, ehr: Ehr) -> None:
    assert client.post(PATIENT_VIEW, json=patient_view_body()).status_code == 401
    token = ehr.token(AUD)
    response = client.post(
        PATIENT_VIEW, json=patient_view_body(), headers={"Authorization": f"Basic {token}"}
    )
    assert response.status_code == 401 and response.get_json() == UNAUTHORIZED


def test_a_replayed_jti_is_refused(client: FlaskClient, ehr: Ehr) -> None:
    token = ehr.token(AUD)
    assert post(client, token).status_code == 200
    assert post(client, token).status_code == 401
    assert post(client, ehr.token(AUD)).status_code == 200  # a fresh jti is fine


def test_replay_is_refused_by_another_worker_sharing_the_database(ehr: Ehr, tmp_path: Path) -> None:
    """Two apps on one database stand for two gunicorn worker processes."""
    settings = cds_settings(ehr, tmp_path)
    first, second = create_app(settings).test_client(), create_app(settings).test_client()
    token = ehr.token(AUD)
    assert post(first, token).status_code == 200
    assert post(second, token).status_code == 401


def test_memory_replay_cache_is_per_process(ehr: Ehr, tmp_path: Path) -> None:
    """The documented limitation of cds_replay_cache = "memory"."""
    settings = cds_settings(ehr, tmp_path, cds_replay_cache="memory")
    first, second = create_app(settings).test_client(), create_app(settings).test_client()
    token = ehr.token(AUD)
    assert post(first, token).status_code == 200
    assert post(first, token).status_code == 401
    assert post(second, token).status_code == 200


def test_discovery_and_feedback_need_the_jwt_for_their_own_url(client: FlaskClient, ehr: Ehr) -> None:
    assert client.get("/cds-services").status_code == 401
    assert client.get("/cds-services", headers=bearer(ehr.token(AUD))).status_code == 401
    response = client.get("/cds-services", headers=bearer(ehr.token(PUBLIC_BASE + "/cds-services")))
    assert response.status_code == 200
    feedback = {
        "feedback": [{"card": "c1", "outcome": "overridden", "outcomeTimestamp": "2026-11-28T10:00:00Z"}]
    }
    feedback_url = PATIENT_VIEW + "/feedback"
    assert client.post(feedback_url, json=feedback, headers=bearer(ehr.token(AUD))).status_code == 401
    ok = client.post(feedback_url, json=feedback, headers=bearer(ehr.token(PUBLIC_BASE + feedback_url)))
    assert ok.status_code == 200


def test_unknown_service_is_authenticated_first(client: FlaskClient, ehr: Ehr) -> None:
    path = "/cds-services/no-such-service"
    assert client.post(path, json={}).status_code == 401
    assert client.post(path, json={}, headers=bearer(ehr.token(PUBLIC_BASE + path))).status_code == 404


def test_jku_allow_listed_for_the_issuer_is_used(ehr: Ehr, tmp_path: Path) -> None:
    second_key = rsa_key("second-set", "RS384")
    with ehr_with_jwks([second_key], iss=ehr.iss) as other:
        settings = cds_settings(ehr, tmp_path)
        trusted = settings.cds_trusted_ehrs[0]
        settings = cds_settings(
            ehr,
            tmp_path,
            cds_trusted_ehrs=(
                type(trusted)(iss=trusted.iss, jwks_url=trusted.jwks_url, jku=(other.jwks_url,)),
            ),
        )
        client = create_app(settings).test_client()
        token = other.token(AUD, key=second_key, headers={"jku": other.jwks_url})
        assert post(client, token).status_code == 200
        # The same key without jku is looked up in the issuer's main set, where it is not.
        assert post(client, other.token(AUD, key=second_key)).status_code == 401


# ---- the JWK Set cache ----------------------------------------------------------------------------


def test_jwks_is_cached_and_refetched_for_a_rotated_key() -> None:
    old, new = rsa_key("old"), rsa_key("new")
    with ehr_with_jwks([old]) as ehr:
        cache = JwksCache(ttl_s=300, refetch_interval_s=0)
        assert cache.key(ehr.jwks_url, "old") is not None
        assert cache.key(ehr.jwks_url, "old") is not None
        assert ehr.jwks_fetches() == 1
        ehr.state.body = jwks_body([old, new])  # the EHR rotates
        assert cache.key(ehr.jwks_url, "new") is not None
        assert ehr.jwks_fetches() == 2


def test_a_key_replaced_under_the_same_kid_is_used_at_once() -> None:
    first, second = rsa_key("k1"), rsa_key("k1")
    with ehr_with_jwks([first]) as ehr:
        verifier = JwtVerifier((TrustedEhr(iss=ehr.iss, jwks_url=ehr.jwks_url),),
                               JwksCache(ttl_s=0, refetch_interval_s=0), MemoryReplayCache())
        assert verifier.verify(bearer(ehr.token(AUD, key=first))["Authorization"], AUD).kid == "k1"
        ehr.state.body = jwks_body([second])  # same kid, new key: the parsed old key must not linger
        with pytest.raises(NotAuthenticated, match="InvalidSignatureError"):
            verifier.verify(bearer(ehr.token(AUD, key=first))["Authorization"], AUD)
        assert verifier.verify(bearer(ehr.token(AUD, key=second))["Authorization"], AUD).kid == "k1"


def test_unknown_kids_refetch_at_most_once_per_interval() -> None:
    clock = [1000.0]
    with ehr_with_jwks([rsa_key("only")]) as ehr:
        cache = JwksCache(ttl_s=300, refetch_interval_s=30, clock=lambda: clock[0])
        for i in range(20):
            assert cache.key(ehr.jwks_url, f"made-up-{i}") is None
        assert ehr.jwks_fetches() == 1
        clock[0] += 31
        assert cache.key(ehr.jwks_url, "made-up-again") is None
        assert ehr.jwks_fetches() == 2


def test_oversized_or_broken_jwks_yields_no_key() -> None:
    with ehr_with_jwks([rsa_key("k")]) as ehr:
        ehr.state.body = b'{"keys": [' + b" " * 100_000 + b"]}"
        assert JwksCache(max_bytes=64 * 1024).key(ehr.jwks_url, "k") is None
        ehr.state.body = b"<html>not json</html>"
        assert JwksCache().key(ehr.jwks_url, "k") is None
    assert JwksCache(timeout_s=1).key("http://127.0.0.1:9/jwks.json", "k") is None


def test_a_failed_refresh_keeps_the_keys_held() -> None:
    clock = [0.0]
    with ehr_with_jwks([rsa_key("k")]) as ehr:
        cache = JwksCache(ttl_s=10, refetch_interval_s=0, clock=lambda: clock[0])
        assert cache.key(ehr.jwks_url, "k") is not None
        ehr.state.body = b"broken"
        clock[0] = 20
        assert cache.key(ehr.jwks_url, "k") is not None


# ---- replay caches -------------------------------------------------------------------------------


def test_replay_caches_forget_expired_ids(tmp_path: Path) -> None:
    now = [1000.0]
    for cache in (
        MemoryReplayCache(clock=lambda: now[0]),
        SqlReplayCache(cds_engine(f"sqlite:///{tmp_path}/r.db"), clock=lambda: now[0]),
    ):
        assert cache.first_use("a", 1010.0)
        assert not cache.first_use("a", 1010.0)
        now[0] = 1011.0
        assert cache.first_use("a", 1100.0)
        now[0] = 1000.0


def test_a_full_memory_cache_refuses_rather_than_forgets() -> None:
    cache = MemoryReplayCache(max_entries=2, clock=lambda: 0.0)
    assert cache.first_use("a", 10) and cache.first_use("b", 10)
    assert not cache.first_use("c", 10)


def test_not_authenticated_message_never_holds_the_token(
    client: FlaskClient, ehr: Ehr, caplog: pytest.LogCaptureFixture
) -> None:
    token = ehr.token(PUBLIC_BASE + "/elsewhere")
    post(client, token)
    assert token not in caplog.text and token.split(".")[2] not in caplog.text
    assert "InvalidAudienceError" in caplog.text
