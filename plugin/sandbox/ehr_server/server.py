"""The sandbox EHR as a Flask app: SMART discovery, the authorization server, the FHIR proxy, an
EHR page that launches an app in an iframe, and a loopback-only admin endpoint for test policy.

Routes (base = the server's root URL):
  GET  {base}/fhir/.well-known/smart-configuration   SMART discovery
  GET  {base}/fhir/metadata                          capability statement (public)
  *    {base}/fhir/<path>                            FHIR, behind bearer token + scope checks
  GET  {base}/auth/authorize                         authorization endpoint (no consent screen)
  POST {base}/auth/token                             token endpoint
  GET  {base}/auth/jwks.json                         keys of the id_tokens this EHR signs
  GET  {base}/ehr?patient=<id>&app=<client_id>       EHR page with the app launched in an iframe
  GET  {base}/ehr/launch.json?patient=..&app=..      the same launch, as JSON {"launch_url": ...}
  POST {base}/admin/clients                          register or change a client (JSON)
"""

from __future__ import annotations

import html
import json
import time
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

import jwt as pyjwt
from authlib.oauth2 import OAuth2Error
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask, Response, abort, jsonify, request

from plugin.sandbox.ehr import USER_ID
from plugin.sandbox.ehr_server import proxy
from plugin.sandbox.ehr_server.oauth import Client, EhrState, LaunchContext, SandboxAuthorizationServer

ID_TOKEN_KID = "sandbox-ehr-1"


@dataclass(frozen=True)
class EhrConfig:
    base_url: str  # this server's root as clients reach it, e.g. http://127.0.0.1:9001
    fhir_upstream: str  # the HAPI sandbox's FHIR base
    user: str = f"Practitioner/{USER_ID}"
    standalone_patient: str | None = None
    smart_style_url: str | None = None

    @property
    def fhir_base(self) -> str:
        return f"{self.base_url.rstrip('/')}/fhir"


class SandboxEhr:
    """The running EHR's state and the operations tests use directly (in-process) or through
    /admin/clients (another process)."""

    def __init__(self, config: EhrConfig) -> None:
        self.config = config
        base = config.base_url.rstrip("/")
        self.state = EhrState(fhir_base=config.fhir_base, token_endpoint=f"{base}/auth/token",
                              standalone_patient=config.standalone_patient, user=config.user,
                              smart_style_url=config.smart_style_url)
        self._id_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.server = SandboxAuthorizationServer(self.state, self._id_token)

    def register_client(self, client: Client) -> None:
        with self.state.lock:
            self.state.clients[client.client_id] = client

    def set_policy(self, client_id: str, *, token_lifetime_s: int | None = None,
                   refused_scopes: frozenset[str] | None = None) -> None:
        with self.state.lock:
            client = self.state.clients[client_id]
            if token_lifetime_s is not None:
                client.token_lifetime_s = token_lifetime_s
            if refused_scopes is not None:
                client.refused_scopes = frozenset(refused_scopes)

    def launch(self, client_id: str, patient: str, encounter: str | None = None) -> str:
        """A launch context for `patient` and the URL the EHR opens the app at."""
        with self.state.lock:
            client = self.state.clients.get(client_id)
        if client is None or not client.launch_url:
            raise KeyError(client_id)
        launch = self.state.new_launch(client_id, LaunchContext(patient, encounter, self.config.user))
        return f"{client.launch_url}?{urlencode({'iss': self.config.fhir_base, 'launch': launch})}"

    def expire_access_tokens(self, client_id: str) -> None:
        """Make every live access token of a client expired now (refresh tokens stay valid)."""
        with self.state.lock:
            for token in self.state.tokens.values():
                if token.client_id == client_id:
                    token.expires_at = time.time() - 1

    def smart_configuration(self) -> dict[str, Any]:
        base = self.config.base_url.rstrip("/")
        return {
            "issuer": base,
            "jwks_uri": f"{base}/auth/jwks.json",
            "authorization_endpoint": f"{base}/auth/authorize",
            "token_endpoint": f"{base}/auth/token",
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_methods_supported": ["none", "private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
            "scopes_supported": ["openid", "fhirUser", "launch", "launch/patient", "offline_access",
                                 "online_access", "patient/*.cruds", "user/*.cruds"],
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "capabilities": ["launch-ehr", "launch-standalone", "client-public",
                             "client-confidential-asymmetric", "context-ehr-patient",
                             "context-ehr-encounter", "context-standalone-patient", "context-banner",
                             "context-style", "permission-v2", "permission-patient", "permission-user",
                             "permission-offline", "permission-online", "sso-openid-connect"],
        }

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(pyjwt.algorithms.RSAAlgorithm.to_jwk(self._id_key.public_key()))
        return {"keys": [{**jwk, "kid": ID_TOKEN_KID, "alg": "RS256", "use": "sig"}]}

    def _id_token(self, client_id: str, user: str, nonce: str | None) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {"iss": self.config.base_url.rstrip("/"), "sub": user.rsplit("/", 1)[-1],
                                  "aud": client_id, "iat": now, "exp": now + 300,
                                  "fhirUser": f"{self.config.fhir_base}/{user}"}
        if nonce:
            claims["nonce"] = nonce
        return pyjwt.encode(claims, self._id_key, algorithm="RS256", headers={"kid": ID_TOKEN_KID})


def create_ehr_app(config: EhrConfig) -> Flask:
    ehr = SandboxEhr(config)
    app = Flask("sandbox_ehr")
    app.extensions["sandbox_ehr"] = ehr
    upstream = config.fhir_upstream.rstrip("/")

    @app.get("/fhir/.well-known/smart-configuration")
    def smart_configuration() -> Response:
        return jsonify(ehr.smart_configuration())

    @app.get("/fhir/metadata")
    def metadata() -> Response:
        return proxy.metadata(upstream)

    @app.route("/fhir", defaults={"path": ""}, methods=["GET", "POST"])
    @app.route("/fhir/<path:path>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    def fhir(path: str) -> Response:
        return proxy.proxy(ehr.state, upstream, path)

    @app.get("/auth/authorize")
    def authorize() -> Response:
        # No consent screen: the configured test user approves everything the policy allows.
        oauth_request = ehr.server.create_oauth2_request(None)
        try:
            grant = ehr.server.get_authorization_grant(oauth_request)
        except OAuth2Error as error:
            return ehr.server.handle_error_response(oauth_request, error)
        return ehr.server.create_authorization_response(
            request=oauth_request, grant=grant, grant_user=LaunchContext(None, None, config.user))

    @app.post("/auth/token")
    def token() -> Response:
        response: Response = ehr.server.create_token_response()
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/auth/jwks.json")
    def jwks() -> Response:
        return jsonify(ehr.jwks())

    @app.get("/ehr/launch.json")
    def launch_json() -> Response:
        return jsonify(launch_url=_launch_from_query(ehr))

    @app.get("/ehr")
    def ehr_page() -> Response:
        launch_url = _launch_from_query(ehr)
        patient = html.escape(request.args["patient"])
        page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Sandbox EHR</title>
<style>body{{margin:0;font-family:sans-serif}} header{{background:#234;color:#fff;padding:8px 16px}}
iframe{{border:0;width:100%;height:calc(100vh - 44px)}}</style></head>
<body><header>Sandbox EHR &middot; patient {patient} &middot; {html.escape(config.user)}</header>
<iframe id="app" title="chartlight" src="{html.escape(launch_url)}" allow="microphone"></iframe>
</body></html>"""
        return Response(page, content_type="text/html; charset=utf-8")

    @app.post("/admin/clients")
    def admin_clients() -> Response:
        if request.remote_addr not in {"127.0.0.1", "::1"}:
            abort(403)
        client = client_from_json(request.get_json(force=True))
        ehr.register_client(client)
        return jsonify(client_id=client.client_id)

    return app


def ehr_of(app: Flask) -> SandboxEhr:
    ehr: SandboxEhr = app.extensions["sandbox_ehr"]
    return ehr


def _launch_from_query(ehr: SandboxEhr) -> str:
    patient, app_id = request.args.get("patient"), request.args.get("app")
    if not patient or not app_id:
        abort(400, "patient and app are required")
    try:
        return ehr.launch(app_id, patient, request.args.get("encounter"))
    except KeyError:
        abort(404, f"no registered app {app_id!r} with a launch URL")


def client_from_json(body: dict[str, Any]) -> Client:
    return Client(client_id=body["client_id"], redirect_uris=tuple(body["redirect_uris"]),
                  launch_url=body.get("launch_url", ""), auth_method=body.get("auth_method", "none"),
                  jwks_url=body.get("jwks_url"), token_lifetime_s=int(body.get("token_lifetime_s", 3600)),
                  refused_scopes=frozenset(body.get("refused_scopes", ())))


def public_client(client_id: str, app_base: str, **policy: Any) -> Client:
    """A public client registration for a chartlight app at `app_base`."""
    base = app_base.rstrip("/")
    return Client(client_id=client_id, redirect_uris=(f"{base}/smart/callback",),
                  launch_url=f"{base}/smart/launch", **policy)


def confidential_client(client_id: str, app_base: str, **policy: Any) -> Client:
    """A private_key_jwt client whose keys are the app's /smart/jwks.json."""
    return replace(public_client(client_id, app_base, **policy), auth_method="private_key_jwt",
                   jwks_url=f"{app_base.rstrip('/')}/smart/jwks.json")
