"""EHR stand-ins for SMART Backend Services tests: the sandbox EHR (plugin.sandbox.ehr_server: its
Authlib token endpoint and FHIR proxy) as a real HTTP server on 127.0.0.1, with one backend client
registered under a key that `openssl` made (not chartlight's own code).

    key = openssl_key(tmp_path / "a.pem", "RSA")          # or "EC" (P-384)
    with backend_ehr(upstream, "svc-a", key, {"system/Patient.rs"}) as ehr:
        ehr.fhir_base, ehr.token_endpoint, ehr.sandbox (SandboxEhr), ehr.bearers (tokens received)
        ehr.assertions (client assertions received), ehr.on_request (a hook run before each request)
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc.jwk import ECKey, RSAKey

from plugin.sandbox.ehr_server import EhrConfig, SandboxEhr, backend_client, create_ehr_app, ehr_of
from tests.support.smart_stack import _server


def openssl_key(path: Path, kind: str) -> Path:
    """A private key in PEM made by the openssl command, as docs/security.md tells operators to."""
    option = "rsa_keygen_bits:3072" if kind == "RSA" else "ec_paramgen_curve:P-384"
    options = ["-pkeyopt", option]
    subprocess.run(["openssl", "genpkey", "-algorithm", kind, *options, "-out", str(path)], check=True,
                   capture_output=True)
    return path


def public_jwks(pem: Path, kid: str | None = None) -> dict[str, Any]:
    """The JWK Set an EHR registers for the key (joserfc, not chartlight): kid = `kid`, or the
    RFC 7638 thumbprint."""
    private = serialization.load_pem_private_key(pem.read_bytes(), password=None)
    public_pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    is_rsa = isinstance(private, rsa.RSAPrivateKey)
    key: RSAKey | ECKey = (RSAKey if is_rsa else ECKey).import_key(public_pem)
    alg = "RS384" if is_rsa else "ES384"
    return {"keys": [{**key.as_dict(private=False), "kid": kid or key.thumbprint(), "alg": alg}]}


@dataclass
class BackendEhr:
    sandbox: SandboxEhr
    base: str
    client_id: str
    bearers: list[str] = field(default_factory=list)
    assertions: list[str] = field(default_factory=list)
    on_request: list[Callable[[str], None]] = field(default_factory=list)

    @property
    def fhir_base(self) -> str:
        return self.sandbox.config.fhir_base

    @property
    def token_endpoint(self) -> str:
        return f"{self.base}/auth/token"

    def tokens_issued(self) -> int:
        with self.sandbox.state.lock:
            return sum(1 for t in self.sandbox.state.tokens.values() if t.client_id == self.client_id)


@contextmanager
def backend_ehr(upstream: str, client_id: str, key: Path, system_scopes: set[str], *, kid: str | None = None,
                cds_base: str | None = None, **policy: Any) -> Iterator[BackendEhr]:
    """`cds_base`: the EHR calls that CDS service's patient-view hooks (`ehr.sandbox.cds`)."""
    with _server() as server:
        base = f"http://127.0.0.1:{server.server_port}"
        app = create_ehr_app(EhrConfig(base_url=base, fhir_upstream=upstream, cds_base=cds_base))
        sandbox = ehr_of(app)
        sandbox.register_client(backend_client(client_id, public_jwks(key, kid), system_scopes, **policy))
        ehr = BackendEhr(sandbox, base, client_id)
        server.app = _recording(app, ehr)
        yield ehr


def _recording(app: Any, ehr: BackendEhr) -> Any:
    """`app` as a WSGI callable that first notes the bearer token and client assertion received."""
    def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        for hook in ehr.on_request:
            hook(environ.get("PATH_INFO", ""))
        scheme, _, token = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            ehr.bearers.append(token.strip())
        if environ.get("PATH_INFO") == "/auth/token":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length)
            ehr.assertions.extend(parse_qs(body.decode()).get("client_assertion", []))
            environ["wsgi.input"] = io.BytesIO(body)
        return app(environ, start_response)
    return wsgi


def jwt_claims(token: str) -> dict[str, Any]:
    """The unverified claims of a JWT (what a test inspects of an assertion)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))  # type: ignore[no-any-return]
