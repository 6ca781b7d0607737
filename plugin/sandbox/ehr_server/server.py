"""The sandbox EHR as a Flask app: SMART discovery, the authorization server, the FHIR proxy, an
EHR page that launches an app in an iframe (with, when `cds_base` is set, the CDS Hooks cards
of a patient-view call beside it; plugin.sandbox.ehr_server.cds), and a loopback-only admin
endpoint for test policy.

Routes (base = the server's root URL; every route under {base}/fhir exists for each tenant's FHIR
base {base}/t/<tenant>/fhir too, all under the one authorization server):
  GET  {base}/fhir/.well-known/smart-configuration   SMART discovery
  GET  {base}/fhir/metadata                          capability statement (public)
  *    {base}/fhir/<path>                            FHIR, behind bearer token + scope checks
  GET  {base}/ehr/smart-style.json                   the EHR's style (smart_style_url, when served)
  GET  {base}/auth/authorize                         authorization endpoint (no consent screen)
  POST {base}/auth/token                             token endpoint
  GET  {base}/auth/jwks.json                         keys of the id_tokens this EHR signs
  GET  {base}/ehr?patient=<id>&app=<client_id>       EHR page with the app launched in an iframe
  GET  {base}/ehr/launch.json?patient=..&app=..      the same launch, as JSON {"launch_url": ...}
  GET  {base}/ehr/cds-jwks.json                      keys of the JWTs it signs CDS Hooks calls with
  GET  {base}/ehr/smart-link?patient=..&url=..       a card's smart link: a fresh launch of that app
  POST {base}/admin/clients                          register or change a client (JSON)
"""

from __future__ import annotations

import html
import json
import secrets
import time
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

import jwt as pyjwt
from authlib.oauth2 import OAuth2Error
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from flask import Flask, Response, abort, jsonify, redirect, request
from werkzeug.wrappers import Response as WerkzeugResponse

from plugin.sandbox.ehr import USER_ID
from plugin.sandbox.ehr_server import proxy
from plugin.sandbox.ehr_server.cds import CARDS_CSS, CdsClient, render_cards
from plugin.sandbox.ehr_server.oauth import Client, EhrState, LaunchContext, SandboxAuthorizationServer

ID_TOKEN_KID = "sandbox-ehr-1"
ID_TOKEN_ALGORITHMS = ("RS256", "RS384", "ES256", "ES384")
# What the EHR's style document says (SMART App Launch 2.2, "Styling"), served at
# /ehr/smart-style.json when EhrConfig.serve_style is on.
STYLE = {"color_background": "#edeae3", "color_error": "#9e2d2d", "color_highlight": "#69b5ce",
         "color_modal_backdrop": "", "color_success": "#498e49", "color_text": "#303030",
         "dim_border_radius": "6px", "dim_font_size": "13px", "dim_spacing_size": "20px",
         "font_family_body": "Georgia, Times, 'Times New Roman', serif",
         "font_family_heading": "'HelveticaNeue-Light', Helvetica, Arial, 'Lucida Grande', sans-serif"}


@dataclass(frozen=True)
class EhrConfig:
    """The sandbox EHR's behaviour. The defaults are a strict, plain EHR; the other settings are
    the behaviours of EHRs met in the field (each has a protocol test)."""

    base_url: str  # this server's root as clients reach it, e.g. http://127.0.0.1:9001
    fhir_upstream: str  # the HAPI sandbox's FHIR base
    user: str = f"Practitioner/{USER_ID}"
    standalone_patient: str | None = None
    smart_style_url: str | None = None  # sent as is in token responses
    # Serve STYLE at /ehr/smart-style.json and send that as smart_style_url.
    serve_style: bool = False
    # id_tokens: the algorithm (and key type) they are signed with, and whether the header names the
    # key (`kid`); OpenID Connect lets a JWK Set of one key leave it out, as smart-launcher-v2 does.
    id_token_alg: str = "RS256"
    id_token_kid: bool = True
    # need_patient_banner for EHR launches (standalone launches always ask for the banner).
    banner_on_ehr_launch: bool = False
    # Further FHIR bases, {base}/t/<tenant>/fhir, under the same authorization server.
    tenants: tuple[str, ...] = ()
    # A CDS service base (discovery at <cds_base>/cds-services) whose patient-view services the EHR
    # page calls on opening a patient, showing the cards beside the app; unset: no CDS calls.
    cds_base: str | None = None

    @property
    def fhir_base(self) -> str:
        return f"{self.base_url.rstrip('/')}/fhir"

    def tenant_base(self, tenant: str) -> str:
        return f"{self.base_url.rstrip('/')}/t/{tenant}/fhir"

    @property
    def fhir_bases(self) -> tuple[str, ...]:
        return (self.fhir_base, *(self.tenant_base(t) for t in self.tenants))


class SandboxEhr:
    """The running EHR's state and the operations tests use directly (in-process) or through
    /admin/clients (another process)."""

    def __init__(self, config: EhrConfig) -> None:
        self.config = config
        base = config.base_url.rstrip("/")
        if config.id_token_alg not in ID_TOKEN_ALGORITHMS:
            raise ValueError(f"id_token_alg must be one of {ID_TOKEN_ALGORITHMS}")
        style = f"{base}/ehr/smart-style.json" if config.serve_style else config.smart_style_url
        self.state = EhrState(fhir_base=config.fhir_base, token_endpoint=f"{base}/auth/token",
                              standalone_patient=config.standalone_patient, user=config.user,
                              smart_style_url=style, fhir_bases=config.fhir_bases)
        self._id_kid = ID_TOKEN_KID
        self._id_key = _new_key(config.id_token_alg)
        self.server = SandboxAuthorizationServer(self.state, self._id_token)
        self.cds = (CdsClient(cds_base=config.cds_base, issuer=base, fhir_base=config.fhir_base,
                              fhir_upstream=config.fhir_upstream, state=self.state)
                    if config.cds_base else None)

    def rotate_id_token_key(self) -> str:
        """A new id_token signing key under a new kid (the old one is gone from the JWK Set)."""
        self._id_key = _new_key(self.config.id_token_alg)
        self._id_kid = f"sandbox-ehr-{secrets.token_hex(4)}"
        return self._id_kid

    def register_client(self, client: Client) -> None:
        with self.state.lock:
            self.state.clients[client.client_id] = client

    def set_policy(self, client_id: str, *, token_lifetime_s: int | None = None,
                   refused_scopes: frozenset[str] | None = None,
                   refuse_with_error: bool | None = None) -> None:
        with self.state.lock:
            client = self.state.clients[client_id]
            if token_lifetime_s is not None:
                client.token_lifetime_s = token_lifetime_s
            if refused_scopes is not None:
                client.refused_scopes = frozenset(refused_scopes)
            if refuse_with_error is not None:
                client.refuse_with_error = refuse_with_error

    def launch(self, client_id: str, patient: str, encounter: str | None = None, *,
               fhir_context: tuple[str, ...] = (), tenant: str | None = None) -> str:
        """A launch context for `patient` (with an encounter and SMART 2.2 fhirContext references)
        on the main FHIR base or a tenant's, and the URL the EHR opens the app at."""
        with self.state.lock:
            client = self.state.clients.get(client_id)
        if client is None or not client.launch_url:
            raise KeyError(client_id)
        if tenant is not None and tenant not in self.config.tenants:
            raise KeyError(tenant)
        iss = self.config.tenant_base(tenant) if tenant else self.config.fhir_base
        launch = self.state.new_launch(client_id, LaunchContext(
            patient, encounter, self.config.user, need_patient_banner=self.config.banner_on_ehr_launch,
            fhir_context=tuple(fhir_context), aud=iss))
        return f"{client.launch_url}?{urlencode({'iss': iss, 'launch': launch})}"

    def launch_by_url(self, launch_url: str, patient: str) -> str:
        """A fresh launch of the registered app whose launch URL is `launch_url` (a card's smart
        link names the app by that URL)."""
        with self.state.lock:
            client_id = next((c.client_id for c in self.state.clients.values()
                              if c.launch_url and c.launch_url == launch_url), None)
        if client_id is None:
            raise KeyError(launch_url)
        return self.launch(client_id, patient)

    def expire_access_tokens(self, client_id: str) -> None:
        """Make every live access token of a client expired now (refresh tokens stay valid)."""
        with self.state.lock:
            for token in self.state.tokens.values():
                if token.client_id == client_id:
                    token.expires_at = time.time() - 1

    def smart_configuration(self) -> dict[str, Any]:
        base = self.config.base_url.rstrip("/")
        return {
            "id_token_signing_alg_values_supported": [self.config.id_token_alg],
            "issuer": base,
            "jwks_uri": f"{base}/auth/jwks.json",
            "authorization_endpoint": f"{base}/auth/authorize",
            "token_endpoint": f"{base}/auth/token",
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
            "token_endpoint_auth_methods_supported": ["none", "private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
            "scopes_supported": ["openid", "fhirUser", "launch", "launch/patient", "offline_access",
                                 "online_access", "patient/*.cruds", "user/*.cruds", "system/*.cruds"],
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "capabilities": ["launch-ehr", "launch-standalone", "client-public",
                             "client-confidential-asymmetric", "context-ehr-patient",
                             "context-ehr-encounter", "context-standalone-patient", "context-banner",
                             "context-style", "permission-v2", "permission-patient", "permission-user",
                             "permission-offline", "permission-online", "sso-openid-connect"],
        }

    def jwks(self) -> dict[str, Any]:
        public = self._id_key.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            jwk = json.loads(pyjwt.algorithms.RSAAlgorithm.to_jwk(public))
        else:
            jwk = json.loads(pyjwt.algorithms.ECAlgorithm.to_jwk(public))
        key = {**jwk, "alg": self.config.id_token_alg, "use": "sig"}
        return {"keys": [{**key, "kid": self._id_kid} if self.config.id_token_kid else key]}

    def _id_token(self, client_id: str, user: str, nonce: str | None, fhir_base: str) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {"iss": self.config.base_url.rstrip("/"), "sub": user.rsplit("/", 1)[-1],
                                  "aud": client_id, "iat": now, "exp": now + 300,
                                  "fhirUser": f"{(fhir_base or self.config.fhir_base).rstrip('/')}/{user}"}
        if nonce:
            claims["nonce"] = nonce
        headers = {"kid": self._id_kid} if self.config.id_token_kid else None
        return pyjwt.encode(claims, self._id_key, algorithm=self.config.id_token_alg, headers=headers)


def _new_key(alg: str) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    if alg.startswith("RS"):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1() if alg == "ES256" else ec.SECP384R1())


def create_ehr_app(config: EhrConfig) -> Flask:
    ehr = SandboxEhr(config)
    app = Flask("sandbox_ehr")
    app.extensions["sandbox_ehr"] = ehr
    upstream = config.fhir_upstream.rstrip("/")

    @app.get("/fhir/.well-known/smart-configuration")
    @app.get("/t/<tenant>/fhir/.well-known/smart-configuration")
    def smart_configuration(tenant: str | None = None) -> Response:
        _known_tenant(config, tenant)
        return jsonify(ehr.smart_configuration())

    @app.get("/fhir/metadata")
    @app.get("/t/<tenant>/fhir/metadata")
    def metadata(tenant: str | None = None) -> Response:
        _known_tenant(config, tenant)
        return proxy.metadata(upstream, config.tenant_base(tenant) if tenant else config.fhir_base)

    @app.route("/fhir", defaults={"path": ""}, methods=["GET", "POST"])
    @app.route("/fhir/<path:path>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    @app.route("/t/<tenant>/fhir", defaults={"path": ""}, methods=["GET", "POST"])
    @app.route("/t/<tenant>/fhir/<path:path>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    def fhir(path: str, tenant: str | None = None) -> Response:
        _known_tenant(config, tenant)
        return proxy.proxy(ehr.state, upstream, path,
                           config.tenant_base(tenant) if tenant else config.fhir_base)

    @app.get("/ehr/smart-style.json")
    def smart_style() -> Response:
        if not config.serve_style:
            abort(404)
        return jsonify(STYLE)

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

    @app.get("/ehr/cds-jwks.json")
    def cds_jwks() -> Response:
        if ehr.cds is None:
            abort(404)
        return jsonify(ehr.cds.jwks())

    @app.get("/ehr/smart-link")
    def smart_link() -> WerkzeugResponse:
        patient, url = request.args.get("patient"), request.args.get("url")
        if not patient or not url:
            abort(400, "patient and url are required")
        try:
            launch_url = ehr.launch_by_url(url, patient)
        except KeyError:
            abort(404, "no registered app has that launch URL")
        return redirect(launch_url)

    @app.get("/ehr")
    def ehr_page() -> Response:
        launch_url = _launch_from_query(ehr)
        patient_id = request.args["patient"]
        patient = html.escape(patient_id)
        cards = render_cards(ehr.cds.patient_view(patient_id, config.user), patient_id) if ehr.cds else ""
        page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Sandbox EHR</title>
<style>body{{margin:0;font-family:sans-serif}} header{{background:#234;color:#fff;padding:8px 16px}}
main{{display:flex;height:calc(100vh - 44px)}} iframe{{border:0;flex:1;height:100%}}
{CARDS_CSS if cards else ""}
</style></head>
<body><header>Sandbox EHR &middot; patient {patient} &middot; {html.escape(config.user)}</header>
<main>{cards}<iframe id="app" title="chartlight" src="{html.escape(launch_url)}" name="app"
 allow="microphone"></iframe></main>
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


def _known_tenant(config: EhrConfig, tenant: str | None) -> None:
    if tenant is not None and tenant not in config.tenants:
        abort(404)


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
    extra: dict[str, Any] = {}
    if "grant_types" in body:
        extra["grant_types"] = tuple(body["grant_types"])
    return Client(client_id=body["client_id"], redirect_uris=tuple(body.get("redirect_uris", ())),
                  launch_url=body.get("launch_url", ""), auth_method=body.get("auth_method", "none"),
                  jwks_url=body.get("jwks_url"), token_lifetime_s=int(body.get("token_lifetime_s", 3600)),
                  refused_scopes=frozenset(body.get("refused_scopes", ())),
                  refuse_with_error=bool(body.get("refuse_with_error", False)), jwks=body.get("jwks"),
                  system_scopes=frozenset(body.get("system_scopes", ())), **extra)


def public_client(client_id: str, app_base: str, **policy: Any) -> Client:
    """A public client registration for a chartlight app at `app_base`."""
    base = app_base.rstrip("/")
    return Client(client_id=client_id, redirect_uris=(f"{base}/smart/callback",),
                  launch_url=f"{base}/smart/launch", **policy)


def backend_client(client_id: str, jwks: dict[str, Any], system_scopes: frozenset[str] | set[str],
                   **policy: Any) -> Client:
    """A SMART Backend Services client: client_credentials with private_key_jwt, its public keys
    registered inline, allowed `system_scopes`."""
    return Client(client_id=client_id, redirect_uris=(), auth_method="private_key_jwt", jwks=jwks,
                  grant_types=("client_credentials",), system_scopes=frozenset(system_scopes), **policy)


def confidential_client(client_id: str, app_base: str, **policy: Any) -> Client:
    """A private_key_jwt client whose keys are the app's /smart/jwks.json."""
    return replace(public_client(client_id, app_base, **policy), auth_method="private_key_jwt",
                   jwks_url=f"{app_base.rstrip('/')}/smart/jwks.json")
