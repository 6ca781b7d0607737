"""An EHR as a CDS Hooks client sees it: real signing keys (RS384, ES384, RS256), its JWK Set
served over HTTP on 127.0.0.1, and signed JWTs for each call, good and bad."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from plugin.config import Settings, TrustedEhr
from tests.support.loopback import ServerState, loopback_server

ISSUER = "https://ehr.example.org"
PUBLIC_BASE = "https://chartlight.example.org"
PATIENT_VIEW = "/cds-services/chartlight-patient-results"
EMPTY_BUNDLE = {"resourceType": "Bundle", "type": "searchset", "entry": []}


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    private: Any

    @property
    def public_jwk(self) -> dict[str, Any]:
        algorithm = jwt.get_algorithm_by_name(self.alg)
        jwk = json.loads(algorithm.to_jwk(self.private.public_key()))
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}

    @property
    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def rsa_key(kid: str, alg: str = "RS384") -> SigningKey:
    return SigningKey(kid, alg, rsa.generate_private_key(public_exponent=65537, key_size=2048))


def ec_key(kid: str, alg: str = "ES384") -> SigningKey:
    curve = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}[alg]
    return SigningKey(kid, alg, ec.generate_private_key(curve))


def jwks_body(keys: list[SigningKey]) -> bytes:
    return json.dumps({"keys": [k.public_jwk for k in keys]}).encode()


@dataclass
class Ehr:
    """Keys, the JWK Set server's state (swap `state.body` to rotate) and its URL."""

    keys: list[SigningKey]
    state: ServerState
    jwks_url: str
    iss: str = ISSUER
    issued: list[str] = field(default_factory=list)

    def token(
        self,
        aud: str,
        *,
        key: SigningKey | None = None,
        exp_in: float = 300,
        iat: float | None = None,
        jti: str | None = None,
        iss: str | None = None,
        headers: dict[str, Any] | None = None,
        drop: tuple[str, ...] = (),
    ) -> str:
        key = key or self.keys[0]
        now = time.time()
        claims: dict[str, Any] = {
            "iss": iss or self.iss,
            "aud": aud,
            "iat": int(iat if iat is not None else now),
            "exp": int(now + exp_in),
            "jti": jti or uuid.uuid4().hex,
            "tenant": "test-tenant",
        }
        for name in drop:
            claims.pop(name, None)
        header = {"kid": key.kid, "typ": "JWT", **(headers or {})}
        token = jwt.encode(claims, key.private, algorithm=key.alg, headers=header)
        self.issued.append(token)
        return token

    def jwks_fetches(self) -> int:
        return len(self.state.seen)


@contextmanager
def ehr_with_jwks(keys: list[SigningKey], iss: str = ISSUER) -> Iterator[Ehr]:
    state = ServerState(body=jwks_body(keys))
    with loopback_server(state) as base:
        yield Ehr(keys=keys, state=state, jwks_url=f"{base}/jwks.json", iss=iss)


def unsigned_token(claims: dict[str, Any], header: dict[str, Any]) -> str:
    """A JWT with `alg: none` (no signature), as an attacker would send it."""
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}."


def hmac_token(claims: dict[str, Any], header: dict[str, Any], secret: bytes) -> str:
    """An HS256 JWT keyed with `secret` (e.g. the EHR's public key: the classic confusion
    attack). Built by hand: JWT libraries refuse to do this."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def standard_claims(aud: str, iss: str = ISSUER) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": iss, "aud": aud, "iat": now, "exp": now + 300, "jti": uuid.uuid4().hex}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def cds_settings(ehr: Ehr, tmp_path: Path, **overrides: Any) -> Settings:
    trusted = TrustedEhr(iss=ehr.iss, jwks_url=ehr.jwks_url, fhir_servers=("https://ehr.example.org/fhir",))
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp_path}/chartlight.db",
        "cds_trusted_ehrs": (trusted,),
        "cds_public_base_url": PUBLIC_BASE,
        "cds_jwks_refetch_interval_s": 0.0,
        **overrides,
    }
    return Settings(**values)


def patient_view_body(patient_id: str = "1288992", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {"userId": "Practitioner/example", "patientId": patient_id},
        "prefetch": {
            "chartlightObservations": EMPTY_BUNDLE,
            "chartlightReports": EMPTY_BUNDLE,
            "chartlightDocuments": EMPTY_BUNDLE,
            "chartlightDevices": EMPTY_BUNDLE,
        },
    }
    body.update(extra)
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def diagnostics(response: Any) -> str:
    """The diagnostics of the one issue of an error answer's OperationOutcome body (CDS Hooks 3.0,
    Returning OperationOutcome); fails when the body is not one."""
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome", body
    [issue] = body["issue"]
    assert issue["severity"] == "error" and issue["code"] and issue["details"]["text"], issue
    return str(issue.get("diagnostics", ""))
