"""Who is calling: the EHR's signed JWT (CDS Hooks 2.0.1, Trusting CDS Clients).

A call is accepted only when every check passes, in this order:
1. `Authorization: Bearer <JWT>`; header `alg` is one of the configured asymmetric algorithms
   (never `none`, never HMAC), `kid` is present, `typ` is absent or JWT;
2. `iss` is an allow-listed EHR; a `jku` header, if present, is one of that EHR's JWK Set URLs
   (else its configured `jwks_url` is used);
3. the key `kid` from that JWK Set has the algorithm's key type (and curve) and verifies the
   signature;
4. `aud` is the exact URL called, `exp` is in the future and `iat` not, within the clock skew,
   and the token lives no longer than the configured maximum;
5. `jti` was not used before (replay cache) while the token is valid.
Any failure raises NotAuthenticated with the reason for the log; the caller sees a bare 401.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

from cds_hooks.errors import NotAuthenticated
from cds_hooks.jwks import Jwk, JwksCache
from cds_hooks.replay import ReplayCache, replay_key
from plugin.config import TrustedEhr

log = logging.getLogger(__name__)

MAX_TOKEN_CHARS = 16 * 1024
# Key type (and curve) each algorithm needs.
_KEY_TYPES: dict[str, tuple[str, str | None]] = {
    "RS256": ("RSA", None), "RS384": ("RSA", None), "RS512": ("RSA", None),
    "PS256": ("RSA", None), "PS384": ("RSA", None), "PS512": ("RSA", None),
    "ES256": ("EC", "P-256"), "ES384": ("EC", "P-384"), "ES512": ("EC", "P-521"),
}
REQUIRED_CLAIMS = ["iss", "aud", "exp", "iat", "jti"]


@dataclass(frozen=True)
class Caller:
    """A verified EHR call."""

    ehr: TrustedEhr
    jti: str
    kid: str
    tenant: str | None = None


class JwtVerifier:
    def __init__(
        self,
        trusted: tuple[TrustedEhr, ...],
        jwks: JwksCache,
        replay: ReplayCache,
        *,
        algorithms: tuple[str, ...] = ("ES384", "RS384", "RS256"),
        clock_skew_s: float = 60.0,
        max_lifetime_s: float = 900.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._by_issuer = {ehr.iss: ehr for ehr in trusted}
        self._jwks = jwks
        self._replay = replay
        self.algorithms = frozenset(algorithms) & frozenset(_KEY_TYPES)
        self.clock_skew_s = clock_skew_s
        self.max_lifetime_s = max_lifetime_s
        self._clock = clock
        # Parsed verification keys by (JWK Set URL, kid, alg) and the JWK they came from: building
        # a key from its JWK costs more than checking a signature with it.
        self._keys: dict[tuple[str, str, str], tuple[Jwk, jwt.PyJWK]] = {}
        self._keys_lock = threading.Lock()

    def verify(self, authorization: str | None, audience: str) -> Caller:
        """The verified caller of a request to `audience` (the exact URL called)."""
        token = _bearer_token(authorization)
        header, unverified = _unverified_parts(token)
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in self.algorithms:
            raise NotAuthenticated(f"algorithm {str(alg)[:20]!r} not accepted")
        if not isinstance(kid, str) or not kid:
            raise NotAuthenticated("no kid in the JWT header")
        if str(header.get("typ", "JWT")).upper() != "JWT":
            raise NotAuthenticated("typ is not JWT")
        issuer = unverified.get("iss")
        ehr = self._by_issuer.get(issuer) if isinstance(issuer, str) else None
        if ehr is None:
            raise NotAuthenticated(f"issuer {str(issuer)[:200]!r} is not trusted")
        jku = header.get("jku")
        if jku is not None and jku not in ehr.jwks_urls:
            raise NotAuthenticated(f"jku {str(jku)[:200]!r} is not allow-listed for {ehr.label}")
        jwks_url = jku or ehr.jwks_url
        jwk = self._jwks.key(jwks_url, kid)
        if jwk is None:
            raise NotAuthenticated(f"no key {kid[:100]!r} in the JWK Set of {ehr.label}")
        claims = self._verified_claims(token, self._key(jwks_url, jwk, alg), alg, audience, ehr)
        if not self._replay.first_use(replay_key(ehr.iss, claims["jti"]),
                                      float(claims["exp"]) + self.clock_skew_s):
            raise NotAuthenticated(f"jti replayed (issuer {ehr.label})")
        tenant = claims.get("tenant")
        return Caller(ehr=ehr, jti=claims["jti"], kid=kid,
                      tenant=tenant if isinstance(tenant, str) else None)

    def _key(self, jwks_url: str, jwk: Jwk, alg: str) -> jwt.PyJWK:
        """The verification key of `jwk` for `alg`, parsed once per key (a rotated key with the
        same kid is a different JWK and is parsed again)."""
        key_type, curve = _KEY_TYPES[alg]
        if jwk.get("kty") != key_type or (curve is not None and jwk.get("crv") != curve):
            raise NotAuthenticated(f"key {jwk.get('kid')!r} does not fit {alg}")
        if jwk.get("alg") not in (None, alg):
            raise NotAuthenticated(f"key {jwk.get('kid')!r} is for {jwk.get('alg')}, not {alg}")
        cache_key = (jwks_url, str(jwk.get("kid")), alg)
        cached = self._keys.get(cache_key)
        if cached is not None and cached[0] == jwk:
            return cached[1]
        try:
            key = jwt.PyJWK(jwk, algorithm=alg)
        except jwt.PyJWTError as exc:
            raise NotAuthenticated(f"key {jwk.get('kid')!r} is unusable: {type(exc).__name__}") from None
        with self._keys_lock:
            if len(self._keys) > 1000:
                self._keys.clear()
            self._keys[cache_key] = (jwk, key)
        return key

    def _verified_claims(self, token: str, key: jwt.PyJWK, alg: str, audience: str,
                         ehr: TrustedEhr) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key, algorithms=[alg], audience=audience, issuer=ehr.iss,
                leeway=self.clock_skew_s, options={"require": REQUIRED_CLAIMS})
        except jwt.PyJWTError as exc:
            raise NotAuthenticated(f"JWT from {ehr.label} refused: {type(exc).__name__}: "
                                   f"{str(exc)[:200]}") from None
        now = self._clock()
        if not isinstance(claims["jti"], str) or not claims["jti"]:
            raise NotAuthenticated("jti is not a string")
        if float(claims["iat"]) > now + self.clock_skew_s:
            raise NotAuthenticated("iat is in the future")
        if float(claims["exp"]) > now + self.max_lifetime_s + self.clock_skew_s:
            raise NotAuthenticated("exp is further away than the longest token lifetime accepted")
        return claims


def _unverified_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The JOSE header and the claims of a compact JWS, not yet verified: only to choose the
    issuer and key (the signature and every claim are checked afterwards by PyJWT)."""
    parts = token.split(".")
    if len(parts) != 3:
        raise NotAuthenticated("malformed JWT (not three parts)")
    try:
        header, claims = (json.loads(_b64url(part)) for part in parts[:2])
    except (ValueError, binascii.Error):
        raise NotAuthenticated("malformed JWT (header or claims are not base64url JSON)") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise NotAuthenticated("malformed JWT (header or claims are not JSON objects)")
    return header, claims


def _b64url(segment: str) -> bytes:
    if not segment or not segment.isascii() or "=" in segment or "+" in segment or "/" in segment:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _bearer_token(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise NotAuthenticated("no bearer token")
    if len(token) > MAX_TOKEN_CHARS:
        raise NotAuthenticated("token too long")
    return token
