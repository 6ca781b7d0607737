"""The app's signing keys for private_key_jwt (SMART confidential asymmetric clients): an RSA key for
RS384 and a P-384 key for ES384, kept as PEM in one file (created on first start, mode 0600), their
public halves served as a JWK Set, and the client assertions signed with them."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from plugin.errors import ConfigError

ASSERTION_LIFETIME_S = 300  # SMART: exp no more than five minutes in the future
_PEM_BEGIN = b"-----BEGIN"


@dataclass(frozen=True)
class SigningKey:
    alg: str  # RS384 or ES384
    private: Any  # RSAPrivateKey | EllipticCurvePrivateKey

    @property
    def public_jwk(self) -> dict[str, Any]:
        jwk = json.loads(jwt.get_algorithm_by_name(self.alg).to_jwk(self.private.public_key()))
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig", "key_ops": ["verify"]}

    @property
    def kid(self) -> str:
        """The RFC 7638 thumbprint: stable for the key, nothing to configure."""
        jwk = json.loads(jwt.get_algorithm_by_name(self.alg).to_jwk(self.private.public_key()))
        members = ("e", "kty", "n") if jwk["kty"] == "RSA" else ("crv", "kty", "x", "y")
        canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
        return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


@dataclass(frozen=True)
class KeyRing:
    keys: tuple[SigningKey, ...]
    # Secret bytes the token store derives its encryption key from when no secret_key is set.
    material: bytes

    def for_alg(self, alg: str) -> SigningKey:
        for key in self.keys:
            if key.alg == alg:
                return key
        raise ConfigError(f"smart_signing_key_path holds no key for {alg}")

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.public_jwk for key in self.keys]}

    def client_assertion(self, alg: str, client_id: str, token_endpoint: str, now: float) -> str:
        """The signed JWT a confidential client authenticates with (SMART App Launch 2.2, 5.2)."""
        key = self.for_alg(alg)
        claims = {"iss": client_id, "sub": client_id, "aud": token_endpoint,
                  "exp": int(now) + ASSERTION_LIFETIME_S, "iat": int(now), "jti": secrets.token_urlsafe(24)}
        return jwt.encode(claims, key.private, algorithm=alg, headers={"kid": key.kid, "typ": "JWT"})


def load_or_create(path: Path) -> KeyRing:
    """Read the key file, writing a new one (RSA 3072 + P-384) first when there is none. Several
    worker processes may start at once: the file appears atomically and the first one wins."""
    if not path.exists():
        _create(path)
    data = path.read_bytes()
    keys = []
    for block in data.split(_PEM_BEGIN)[1:]:
        try:
            private = serialization.load_pem_private_key(_PEM_BEGIN + block, password=None)
        except ValueError as exc:
            raise ConfigError(f"smart_signing_key_path {path}: not a PEM private key ({exc})") from None
        if isinstance(private, rsa.RSAPrivateKey):
            keys.append(SigningKey("RS384", private))
        elif isinstance(private, ec.EllipticCurvePrivateKey) and isinstance(private.curve, ec.SECP384R1):
            keys.append(SigningKey("ES384", private))
        else:
            raise ConfigError(f"smart_signing_key_path {path}: only RSA and P-384 EC keys are used")
    if not keys:
        raise ConfigError(f"smart_signing_key_path {path}: no private key in the file")
    return KeyRing(tuple(keys), material=data)


def _create(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = b"".join(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption())
        for key in (rsa.generate_private_key(public_exponent=65537, key_size=3072),
                    ec.generate_private_key(ec.SECP384R1())))
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".smart-keys-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        os.chmod(temp, 0o600)
        with contextlib.suppress(FileExistsError):  # another process created it meanwhile: keep theirs
            os.link(temp, path)
    finally:
        os.unlink(temp)
