"""The EHR's OpenID Connect id_token, verified as OpenID Connect Core 1.0 specifies it:

- the signing key comes from the EHR's JWK Set (`jwks_uri` of its discovery document): the key the
  token's `kid` names, or, when the token names none, the set's only signing key (§10.1: `kid` is
  required only when the set holds several keys);
- key rotation: a `kid` the set does not hold makes the set be fetched again once, at most once
  per `refetch_interval_s` per URL, so a flood of unknown kids cannot make us hammer the EHR;
- the algorithm must be one the EHR declares (`id_token_signing_alg_values_supported`; any of
  SUPPORTED when it declares none) and fit the key (RSA for RS*, EC on the right curve for ES*);
- claims (§3.1.3.7): `iss` = the EHR's issuer, `aud` holds our client id, `exp` in the future,
  `iat` not in the future, `sub` present, `nonce` = the one this launch sent.

Failures are TokenErrors that say the cause in words.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
import requests

from smart_launch.discovery import SmartConfiguration
from smart_launch.errors import LAUNCH_AGAIN, TokenError
from smart_launch.http_json import BodyError, request_json

SUPPORTED = ("RS256", "RS384", "ES256", "ES384")
_KEY_TYPE = {"RS256": "RSA", "RS384": "RSA", "ES256": "EC", "ES384": "EC"}
_CURVE = {"ES256": "P-256", "ES384": "P-384"}
MAX_JWKS_BYTES = 64 * 1024
LEEWAY_S = 60  # clock skew between the EHR and us
Jwk = dict[str, Any]


@dataclass
class _KeySet:
    keys: list[Jwk] = field(default_factory=list)
    fetched_at: float | None = None
    refetched_at: float | None = None  # the last fetch an unknown kid asked for
    lock: threading.Lock = field(default_factory=threading.Lock)


class IdTokenKeys:
    """The EHRs' id_token signing keys, by JWK Set URL, cached for `ttl_s`."""

    def __init__(self, session: requests.Session, *, timeout_s: float, ttl_s: float = 300.0,
                 refetch_interval_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._session = session
        self.timeout_s = timeout_s
        self.ttl_s = ttl_s
        self.refetch_interval_s = refetch_interval_s
        self._clock = clock
        self._sets: dict[str, _KeySet] = {}
        self._lock = threading.Lock()
        self.fetches = 0  # how many times a set was requested (tests and logs)

    def key_for(self, url: str, kid: str | None, alg: str) -> Jwk:
        """The JWK that verifies a token with header `kid`/`alg`; a TokenError naming the cause
        when the set has none that fits."""
        with self._lock:
            entry = self._sets.setdefault(url, _KeySet())
        with entry.lock:
            now = self._clock()
            if entry.fetched_at is None or now - entry.fetched_at >= self.ttl_s:
                self._fetch(url, entry, now)
            found = _pick(entry.keys, kid, alg)
            if found is None and kid is not None and (
                    entry.refetched_at is None or now - entry.refetched_at >= self.refetch_interval_s):
                entry.refetched_at = now  # the EHR may have rotated its keys: look once
                if self._fetch(url, entry, now):
                    found = _pick(entry.keys, kid, alg)
            if found is not None:
                return found
            return _no_key(entry.keys, kid, alg)

    def _fetch(self, url: str, entry: _KeySet, now: float) -> bool:
        """Fetch the set; True when it was read. A failure keeps the keys held so far (and is an
        error only when there are none)."""
        self.fetches += 1
        try:
            answer = request_json(self._session, "GET", url, max_bytes=MAX_JWKS_BYTES,
                                  timeout_s=self.timeout_s)
        except BodyError as exc:
            if entry.keys:
                return False  # keep the keys held so far
            raise TokenError(f"the EHR's id_token keys could not be read: {exc.reason}",
                             next_step=LAUNCH_AGAIN) from None
        keys = answer.body.get("keys") if isinstance(answer.body, dict) else None
        if answer.status != 200 or not isinstance(keys, list):
            if entry.keys:
                return False
            raise TokenError(f"the EHR's id_token key set ({url}) answered HTTP {answer.status} without a "
                             "JWK Set", next_step=LAUNCH_AGAIN)
        entry.keys = [k for k in keys if isinstance(k, dict) and k.get("use", "sig") == "sig"
                      and "verify" in k.get("key_ops", ["verify"])]
        entry.fetched_at = now
        return True


def _fits(jwk: Jwk, alg: str) -> bool:
    return (jwk.get("kty") == _KEY_TYPE[alg] and jwk.get("alg", alg) == alg
            and (alg not in _CURVE or jwk.get("crv") == _CURVE[alg]))


def _pick(keys: list[Jwk], kid: str | None, alg: str) -> Jwk | None:
    if kid is not None:
        return next((k for k in keys if k.get("kid") == kid and _fits(k, alg)), None)
    return keys[0] if len(keys) == 1 and _fits(keys[0], alg) else None


def _no_key(keys: list[Jwk], kid: str | None, alg: str) -> Jwk:
    if kid is not None:
        if any(k.get("kid") == kid for k in keys):
            raise TokenError(f"the EHR's id_token is signed with {alg}, which its key {kid!r} is not for",
                             next_step=LAUNCH_AGAIN)
        raise TokenError(f"the EHR's id_token names a key ({kid!r}) that its JWK Set does not hold",
                         next_step=LAUNCH_AGAIN)
    if len(keys) != 1:
        raise TokenError(f"the EHR's id_token names no key (no kid) and its JWK Set holds {len(keys)} "
                         "signing keys, so the key cannot be chosen (OpenID Connect Core 10.1)",
                         next_step=LAUNCH_AGAIN)
    raise TokenError(f"the EHR's id_token is signed with {alg}, which its only key is not for",
                     next_step=LAUNCH_AGAIN)


def accepted_algorithms(config: SmartConfiguration) -> tuple[str, ...]:
    if not config.id_token_algorithms:
        return SUPPORTED
    return tuple(a for a in SUPPORTED if a in config.id_token_algorithms)


def verify_id_token(id_token: str, *, config: SmartConfiguration, client_id: str, nonce: str,
                    keys: IdTokenKeys) -> dict[str, Any]:
    """The claims of a valid id_token; a TokenError saying why otherwise."""
    if not config.jwks_uri or not config.issuer:
        raise TokenError("the EHR sent an id_token but publishes no issuer/jwks_uri to check it",
                         next_step="Ask the EHR administrator to publish issuer and jwks_uri in the "
                                   "EHR's SMART configuration.")
    try:
        header = jwt.get_unverified_header(id_token)
    except jwt.PyJWTError:
        raise TokenError("the EHR's id_token is not a well-formed signed JWT",
                         next_step=LAUNCH_AGAIN) from None
    alg, kid = header.get("alg"), header.get("kid")
    allowed = accepted_algorithms(config)
    if alg not in allowed:
        declared = ", ".join(sorted(config.id_token_algorithms)) or "nothing"
        raise TokenError(f"the EHR's id_token is signed with {alg!r}; chartlight accepts "
                         f"{', '.join(allowed) or 'none'} of what the EHR declares ({declared})",
                         next_step=LAUNCH_AGAIN)
    jwk = keys.key_for(config.jwks_uri, kid if isinstance(kid, str) else None, alg)
    try:
        key = jwt.PyJWK(jwk, algorithm=alg).key
    except jwt.PyJWTError:
        raise TokenError("the EHR's id_token key is not a usable public key",
                         next_step=LAUNCH_AGAIN) from None
    try:
        claims: dict[str, Any] = jwt.decode(
            id_token, key, algorithms=[alg], audience=client_id, issuer=config.issuer, leeway=LEEWAY_S,
            options={"require": ["exp", "iat", "iss", "aud", "sub"]})
    except jwt.PyJWTError as exc:
        raise TokenError(f"the EHR's id_token {_why(exc, config.issuer, client_id)}",
                         next_step=LAUNCH_AGAIN) from None
    if claims.get("nonce") != nonce:
        raise TokenError("the EHR's id_token nonce does not match this launch", next_step=LAUNCH_AGAIN)
    return claims


def _why(exc: jwt.PyJWTError, issuer: str, client_id: str) -> str:
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "has expired (exp is in the past)"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "was issued in the future (iat or nbf is ahead of this server's clock)"
    if isinstance(exc, jwt.InvalidAudienceError):
        return f"is not for this app (its aud does not name client id {client_id!r})"
    if isinstance(exc, jwt.InvalidIssuerError):
        return f"was not issued by the EHR's issuer {issuer!r}"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"lacks the required claim {exc.claim!r}"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "signature does not verify with the EHR's key"
    if isinstance(exc, jwt.DecodeError):
        return "is not a well-formed signed JWT"
    return "has claims that are not valid (iat, exp or nbf is not a number)"


def fhir_user(claims: dict[str, Any], fhir_base: str) -> str | None:
    """The `fhirUser` of verified claims as a reference relative to the FHIR base
    ("Practitioner/123"), or None when the EHR gave none."""
    user = claims.get("fhirUser")
    if not isinstance(user, str) or not user:
        return None
    base = fhir_base.rstrip("/") + "/"
    return user[len(base):] if user.startswith(base) else user
