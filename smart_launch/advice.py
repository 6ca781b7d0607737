"""What a person can do about an EHR's refusal: the OAuth 2.0 `error` codes of RFC 6749 (§4.1.2.1
at the authorization endpoint, §5.2 at the token endpoint), each turned into a next step that names
what to ask for — the scope to grant, the redirect URI to register, the client to check. Pure."""

from __future__ import annotations

from smart_launch.errors import LAUNCH_AGAIN

ADMIN = "the EHR administrator"


def next_step(error: str, description: str, *, client_id: str, redirect_uri: str,
              requested_scopes: str, client_auth: str) -> str:
    """The next step for the EHR's `error` (and its `error_description`, which may name the
    redirect URI or scopes it objects to)."""
    said = description.lower()
    if "redirect" in said or error == "invalid_redirect_uri":
        return (f"Ask {ADMIN} to register the redirect URI {redirect_uri} for client {client_id} exactly "
                "as written, then launch again.")
    if error == "invalid_scope":
        return (f"Ask {ADMIN} to grant client {client_id} the scopes chartlight asks for "
                f"({requested_scopes}), or set the scopes of this EHR in chartlight's smart_ehrs to what the "
                "EHR grants; then launch again.")
    if error == "access_denied":
        return ("Access was declined at the EHR. Launch again and allow chartlight access, or ask "
                f"{ADMIN} why it is refused.")
    if error in ("unauthorized_client", "unsupported_response_type", "unsupported_grant_type"):
        return (f"Ask {ADMIN} to allow client {client_id} the SMART launch with authorization codes "
                "(and refresh tokens), then launch again.")
    if error == "invalid_client":
        how = ("as a confidential asymmetric client (private_key_jwt) whose JWK Set URL is "
               "chartlight's /smart/jwks.json" if client_auth == "private_key_jwt" else "as a public client")
        return f"Ask {ADMIN} to check that client {client_id} is registered {how}, then launch again."
    if error in ("server_error", "temporarily_unavailable"):
        return "The EHR had a problem of its own. Wait a moment, then launch again."
    return LAUNCH_AGAIN


def missing_scopes(requested: str, granted: str) -> tuple[str, ...]:
    """The requested scopes the EHR did not grant, in the order asked (launch scopes aside: EHRs
    do not echo them back)."""
    given = set(granted.split())
    return tuple(s for s in requested.split()
                 if s not in given and s not in {"launch", "launch/patient", "launch/encounter"})
