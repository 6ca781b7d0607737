"""SMART Backend Services against the sandbox EHR's Authlib token endpoint (a real HTTP server on
loopback; keys made by openssl): the assertion the service signs, the token cache and its refresh
ahead of expiry, refused scopes and clients, the token kept to its own FHIR server, and the
sandbox's own strictness (replayed, mis-addressed and long-lived assertions; non-system scopes)."""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization

from plugin.analysis import service_client_for
from plugin.config import BackendService, Settings, load_settings
from plugin.errors import ConfigError
from plugin.fhir.backend_services import (
    ASSERTION_TYPE,
    BackendTokenSession,
    ServiceCredentialError,
    tokens_for,
)
from plugin.jobs import Job, JobState
from tests.support.backend_ehr import BackendEhr, backend_ehr, jwt_claims, openssl_key

UPSTREAM = "http://127.0.0.1:9/fhir"  # never reached: these tests use only the token endpoint
SCOPES = "system/Patient.rs system/Observation.crus"


@pytest.fixture(scope="module")
def rsa_pem(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return openssl_key(tmp_path_factory.mktemp("keys") / "rsa.pem", "RSA")


@pytest.fixture(scope="module")
def ec_pem(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return openssl_key(tmp_path_factory.mktemp("keys") / "ec.pem", "EC")


def _service(ehr: BackendEhr, key: Path, **changes: str) -> BackendService:
    values = {"fhir_server": ehr.fhir_base, "client_id": ehr.client_id, "private_key_path": str(key),
              "scopes": SCOPES, "name": "ehr-a", **changes}
    return BackendService(**values)


def _settings(*services: BackendService, **more: object) -> Settings:
    return Settings(backend_services=services, **more)  # type: ignore[arg-type]


def test_settings_read_backend_services_from_toml_and_environment(tmp_path: Path) -> None:
    config = tmp_path / "chartlight.toml"
    config.write_text('[[backend_services]]\nname = "ehr-b"\nfhir_server = "https://ehr-b.example.org/fhir"\n'
                      'client_id = "svc"\nprivate_key_path = "/etc/chartlight/ehr-b.pem"\n'
                      'scopes = ["system/Patient.rs", "system/Observation.cu"]\n')
    [service] = load_settings(config, environ={}).backend_services
    assert (service.label, service.scopes, service.token_endpoint) == (
        "ehr-b", "system/Patient.rs system/Observation.cu", "")
    environ = {"CHARTLIGHT_BACKEND_SERVICES": json.dumps([{
        "fhir_server": "https://ehr-c.example.org/r4", "client_id": "c", "private_key_path": "k.pem",
        "scopes": "system/*.rs", "token_endpoint": "https://ehr-c.example.org/token", "kid": "k1"}]),
        "CHARTLIGHT_BACKEND_TOKEN_REFRESH_AHEAD_S": "12"}
    settings = load_settings(environ=environ)
    assert settings.backend_services[0].kid == "k1" and settings.backend_token_refresh_ahead_s == 12.0
    bad = {"fhir_server": "https://x.example.org/fhir", "client_id": "c", "private_key_path": "k.pem"}
    for scopes, reason in (("patient/Observation.rs", "system/ scopes"),
                           ("system/Observation.zz", "system/")):
        with pytest.raises(ConfigError, match=reason):
            load_settings(environ={"CHARTLIGHT_BACKEND_SERVICES": json.dumps([{**bad, "scopes": scopes}])})
    with pytest.raises(ConfigError, match="each fhir_server may appear once"):
        load_settings(environ={"CHARTLIGHT_BACKEND_SERVICES": json.dumps(
            [{**bad, "scopes": "system/*.rs"}] * 2)})
    with pytest.raises(ConfigError, match="alg must be RS384 or ES384"):
        load_settings(environ={"CHARTLIGHT_BACKEND_SERVICES": json.dumps(
            [{**bad, "scopes": "system/*.rs", "alg": "HS256"}])})
    with pytest.raises(ConfigError, match="needs scopes"):
        load_settings(environ={"CHARTLIGHT_BACKEND_SERVICES": json.dumps([bad])})


@pytest.mark.parametrize("kind", ["RSA", "EC"])
def test_a_token_comes_by_a_signed_assertion_and_is_cached_until_shortly_before_it_expires(
        kind: str, rsa_pem: Path, ec_pem: Path) -> None:
    key = rsa_pem if kind == "RSA" else ec_pem
    with backend_ehr(UPSTREAM, "svc-a", key, set(SCOPES.split()), token_lifetime_s=600) as ehr:
        now = [time.time()]
        tokens = tokens_for(_settings(_service(ehr, key), backend_token_refresh_ahead_s=60),
                            clock=lambda: now[0])
        service = tokens.service_for(ehr.fhir_base + "/")
        assert service is not None
        first = tokens.token(service)  # the token endpoint found by SMART discovery
        assert tokens.token(service) is first and ehr.tokens_issued() == 1
        assert first.scope == SCOPES and first.access_token not in repr(first)
        [assertion] = ehr.assertions
        header, claims = jwt.get_unverified_header(assertion), jwt_claims(assertion)
        assert header["alg"] == ("RS384" if kind == "RSA" else "ES384")
        assert claims["iss"] == claims["sub"] == "svc-a" and claims["aud"] == ehr.token_endpoint
        assert 0 < claims["exp"] - time.time() <= 300 and claims["jti"]
        now[0] += 600 - 61  # still more than refresh_ahead_s (60 s) left: the same token
        assert tokens.token(service) is first
        now[0] += 2  # now less: a new one, by a new assertion
        second = tokens.token(service)
        assert second.access_token != first.access_token and ehr.tokens_issued() == 2
        assert jwt_claims(ehr.assertions[1])["jti"] != claims["jti"]


def test_refresh_ahead_setting_decides_when_a_cached_token_is_replaced(rsa_pem: Path) -> None:
    with backend_ehr(UPSTREAM, "svc-a", rsa_pem, set(SCOPES.split()), token_lifetime_s=600) as ehr:
        for ahead, expected in ((0.0, 1), (590.0, 2)):
            now = [time.time()]
            tokens = tokens_for(_settings(_service(ehr, rsa_pem), backend_token_refresh_ahead_s=ahead),
                                clock=lambda: now[0])  # noqa: B023 -- used within the iteration
            service = tokens.services[0]
            issued = ehr.tokens_issued()
            tokens.token(service)
            now[0] += 30
            tokens.token(service)
            assert ehr.tokens_issued() - issued == expected


def test_a_grant_with_fewer_scopes_than_asked_is_an_error_naming_the_ehr(rsa_pem: Path) -> None:
    with backend_ehr(UPSTREAM, "svc-a", rsa_pem, {"system/Patient.rs"}) as ehr:
        tokens = tokens_for(_settings(_service(ehr, rsa_pem, token_endpoint=f"{ehr.base}/auth/token")))
        with pytest.raises(ServiceCredentialError, match=r"EHR ehr-a: client svc-a was granted fewer scopes "
                           r"than asked; refused: system/Observation.crus\. Ask the EHR"):
            tokens.token(tokens.services[0])
        ehr.sandbox.set_policy("svc-a", refuse_with_error=True)
        with pytest.raises(ServiceCredentialError, match=r"EHR ehr-a: the token endpoint refused client "
                           r"svc-a \(invalid_scope: this EHR does not grant system/Observation.crus "
                           r"to svc-a\)"):
            tokens.token(tokens.services[0])


def test_a_key_the_ehr_did_not_register_is_refused_naming_the_ehr(rsa_pem: Path, ec_pem: Path) -> None:
    with backend_ehr(UPSTREAM, "svc-a", rsa_pem, set(SCOPES.split())) as ehr:
        tokens = tokens_for(_settings(_service(ehr, ec_pem)))
        with pytest.raises(ServiceCredentialError, match=r"EHR ehr-a: the token endpoint refused client "
                           r"svc-a \(invalid_client"):
            tokens.token(tokens.services[0])
        assert ehr.tokens_issued() == 0


def test_an_unusable_key_file_is_a_config_error_naming_the_setting(tmp_path: Path) -> None:
    not_a_key = tmp_path / "key.pem"
    not_a_key.write_text("hello")
    service = BackendService("http://127.0.0.1:9/fhir", "c", str(not_a_key), "system/*.rs", name="ehr-x")
    with pytest.raises(ConfigError, match=r"backend_services \(ehr-x\) private_key_path .*key.pem: not an "):
        tokens_for(_settings(service, )).token(service)
    missing = BackendService("http://127.0.0.1:9/fhir", "c", str(tmp_path / "none.pem"), "system/*.rs")
    with pytest.raises(ConfigError, match="none.pem: cannot be read"):
        tokens_for(_settings(missing)).token(missing)


def test_the_token_goes_only_under_its_fhir_server_and_is_never_logged(
        rsa_pem: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with backend_ehr(UPSTREAM, "svc-a", rsa_pem, set(SCOPES.split())) as ehr:
        tokens = tokens_for(_settings(_service(ehr, rsa_pem)))
        session = BackendTokenSession(tokens, tokens.services[0])
        for url in (f"{ehr.base}/auth/jwks.json", f"{ehr.base}/fhirx/.well-known/smart-configuration",
                    f"{ehr.base}/fhir/../auth/jwks.json",
                    f"http://localhost:{ehr.base.rsplit(':', 1)[1]}/fhir/x"):
            session.get(url, timeout=10)
        assert ehr.bearers == []  # no token off the base (another path, a lookalike, dot-segments)
        session.get(f"{ehr.fhir_base}/.well-known/smart-configuration", timeout=10)
        token = tokens.token(tokens.services[0]).access_token
        assert ehr.bearers == [token]
        # Everything this process logged but the stand-in EHR's own Authlib debug lines.
        ours = "\n".join(f"{r.getMessage()} {r.args}" for r in caplog.records
                         if not r.name.startswith("authlib"))
        assert token not in ours and ehr.assertions[0] not in ours
        assert "got a service token for EHR ehr-a" in ours


def _job(base: str) -> Job:
    now = datetime.now(UTC)
    return Job(id=1, pipeline="documents", source_type="DocumentReference", source_id="1", source_version="1",
               subject="Patient/1", fhir_base_url=base, state=JobState.RUNNING, progress=0.0,
               progress_text="", attempts=1, next_attempt_at=now, error="", summary={}, created_at=now,
               updated_at=now)


def test_a_job_gets_its_own_servers_backend_client_and_the_static_token_stays_with_fhir_base_url(
        rsa_pem: Path) -> None:
    service = BackendService("https://ehr-b.example.org/fhir", "svc-b", str(rsa_pem), "system/Observation.cu",
                             name="ehr-b")
    settings = Settings(fhir_base_url="https://dev.example.org/fhir", fhir_token="dev-token",
                        backend_services=(service,))
    client_for = service_client_for(settings)
    on_b = client_for(_job("https://EHR-B.example.org/fhir/"))
    assert on_b.base_url == "https://ehr-b.example.org/fhir"
    assert on_b.granted_scopes is not None and on_b.granted_scopes.can_create("Observation")
    assert isinstance(on_b._session, BackendTokenSession)
    assert client_for(_job("https://dev.example.org/fhir")).access_token == "dev-token"
    assert client_for(_job("https://other.example.org/fhir")).access_token is None


def test_a_trusted_ehr_server_without_service_credentials_is_warned_about(
        rsa_pem: Path, caplog: pytest.LogCaptureFixture) -> None:
    from plugin.config import TrustedEhr
    service = BackendService("https://ehr-b.example.org/fhir", "svc-b", str(rsa_pem), "system/Patient.rs")
    trusted = (TrustedEhr(iss="https://ehr-b.example.org", jwks_url="https://ehr-b.example.org/jwks",
                          fhir_servers=("https://ehr-b.example.org/fhir/", "https://ehr-b.example.org/t2/fhir"),
                          name="ehr-b"),)
    service_client_for(Settings(backend_services=(service,), cds_trusted_ehrs=trusted))
    assert [r.getMessage() for r in caplog.records if r.name == "plugin.analysis"] == [
        "CDS hooks of EHR ehr-b queue jobs for https://ehr-b.example.org/t2/fhir, which has no "
        "backend_services entry: those jobs will run without a token"]


# ---- the sandbox EHR's token endpoint: as strict as a real EHR -----------------------------------


def _assertion(key: Path, client_id: str, aud: str, *, lifetime_s: int = 240, jti: str | None = None,
               kid: str | None = None) -> str:
    from joserfc.jwk import RSAKey
    private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    public = private.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": aud, "exp": now + lifetime_s, "iat": now,
              "jti": jti or uuid.uuid4().hex}
    return jwt.encode(claims, private, algorithm="RS384",  # type: ignore[arg-type]
                      headers={"kid": kid or RSAKey.import_key(public).thumbprint()})


def _ask(ehr: BackendEhr, assertion: str, scope: str = "system/Patient.rs") -> requests.Response:
    return requests.post(ehr.token_endpoint, data={
        "grant_type": "client_credentials", "scope": scope, "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion}, timeout=10)


def test_the_sandbox_token_endpoint_checks_signature_audience_lifetime_replay_and_scopes(
        rsa_pem: Path, ec_pem: Path) -> None:
    with backend_ehr(UPSTREAM, "svc-a", rsa_pem, {"system/Patient.rs"}) as ehr:
        good = _assertion(rsa_pem, "svc-a", ehr.token_endpoint)
        answer = _ask(ehr, good, "system/Patient.rs system/Observation.rs")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["scope"] == "system/Patient.rs" and "refresh_token" not in body  # allowed scopes only
        assert _ask(ehr, good).json()["error"] == "invalid_client"  # the same jti again
        for bad in (_assertion(rsa_pem, "svc-a", ehr.base + "/other"),  # aud
                    _assertion(rsa_pem, "svc-a", ehr.token_endpoint, lifetime_s=900),  # exp > 5 min
                    _assertion(rsa_pem, "svc-a", ehr.token_endpoint, lifetime_s=-120),  # expired
                    _assertion(rsa_pem, "svc-a", ehr.token_endpoint, kid="unknown"),  # not a registered key
                    _assertion(rsa_pem, "svc-other", ehr.token_endpoint)):  # unknown client
            assert _ask(ehr, bad).json()["error"] == "invalid_client"
        answer = _ask(ehr, _assertion(rsa_pem, "svc-a", ehr.token_endpoint), "patient/Patient.rs")
        assert answer.json()["error"] == "invalid_scope" and "system/ scopes only" in answer.json()[
            "error_description"]
        token = body["access_token"]
        assert ehr.sandbox.state.token(token) is not None
