"""SMART App Launch 2.2, app side: EHR launch (`iss` + `launch`), standalone launch, the callback
that exchanges the code, the app's JWK Set, and logout.

The launch → callback link is the `state` (256 random bits) kept server-side with the PKCE verifier,
single-use and expiring, so it works inside an EHR iframe whose cookies are dropped. Tokens stay
on the server; the browser gets a random session id in an HttpOnly cookie.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from urllib.parse import urlencode

from flask import Response, current_app, jsonify, redirect, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from plugin.config import SmartEhr
from smart_launch import security
from smart_launch.discovery import SmartConfiguration
from smart_launch.errors import LaunchError
from smart_launch.runtime import SmartRuntime, runtime_of
from smart_launch.scopes import launch_scopes
from smart_launch.session import COOKIE, current_session
from smart_launch.store import PendingLaunch, SessionRecord, new_secret, secret_hash
from smart_launch.tokens import fhir_user

log = logging.getLogger(__name__)


def pkce_challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()


def ehr_launch() -> BaseResponse:
    """GET /smart/launch?iss=...&launch=...: the EHR opens the app."""
    iss, launch = request.args.get("iss", ""), request.args.get("launch", "")
    if not iss or not launch:
        raise LaunchError("iss and launch are required: launch the app from your EHR")
    runtime = runtime_of(current_app)
    ehr = runtime.ehr_for_iss(iss)
    return _authorize(runtime, ehr, iss, launch)


def standalone_launch() -> BaseResponse:
    """GET /smart/start?ehr=<name> (or ?iss=...): the user opens the app and signs in at the EHR."""
    runtime = runtime_of(current_app)
    if request.args.get("iss"):
        ehr = runtime.ehr_for_iss(request.args["iss"])
    elif request.args.get("ehr"):
        ehr = runtime.ehr_named(request.args["ehr"])
    elif len(runtime.settings.smart_ehrs) == 1:
        ehr = runtime.settings.smart_ehrs[0]
    else:
        raise LaunchError("say which EHR to sign in at: /smart/start?ehr=<name>")
    return _authorize(runtime, ehr, ehr.iss, None)


def _authorize(runtime: SmartRuntime, ehr: SmartEhr, iss: str, launch: str | None) -> BaseResponse:
    config = runtime.discovery.get(iss)
    _check_client_auth(ehr, config)
    state, verifier, nonce = new_secret(), new_secret(), new_secret()
    redirect_uri = _public_base(runtime) + "/smart/callback"
    params = {"response_type": "code", "client_id": ehr.client_id, "redirect_uri": redirect_uri,
              "scope": launch_scopes(ehr.scopes, ehr_launch=launch is not None), "state": state,
              "aud": iss.rstrip("/"), "code_challenge": pkce_challenge(verifier),
              "code_challenge_method": "S256"}
    if launch is not None:
        params["launch"] = launch
    if "openid" in params["scope"].split():
        params["nonce"] = nonce
    response = redirect(f"{config.authorization_endpoint}?{urlencode(params)}", code=302)
    binding = security.browser_binding(response, runtime.settings.smart_session_ttl_s)
    runtime.store.put_launch(state, PendingLaunch(
        ehr=ehr.name, iss=iss.rstrip("/"), redirect_uri=redirect_uri, code_verifier=verifier, nonce=nonce,
        expires_at=runtime.clock() + runtime.settings.smart_state_ttl_s,
        browser_binding=secret_hash(binding)))
    log.info("SMART %s launch from %s", "EHR" if launch else "standalone", ehr.name)
    return response


def callback() -> BaseResponse:
    """GET /smart/callback?code=...&state=...: the EHR sends the user back."""
    state = request.args.get("state", "")
    pending = runtime_of(current_app).store.take_launch(state) if state else None
    if pending is None:
        raise LaunchError("this sign-in link is unknown, used or expired: launch the app from your EHR again")
    binding = request.cookies.get(security.BINDING_COOKIE)
    if binding is not None and secret_hash(binding) != pending.browser_binding:
        # Someone else's launch (login CSRF). Without the cookie (dropped in an iframe) the
        # single-use, short-lived state is all there is to go on.
        raise LaunchError("this sign-in was started in another browser: launch the app from your EHR again")
    if request.args.get("error"):
        raise LaunchError(f"the EHR did not authorize the app ({request.args['error'][:100]})")
    code = request.args.get("code", "")
    if not code:
        raise LaunchError("the EHR sent no authorization code")
    runtime = runtime_of(current_app)
    ehr = runtime.ehr_named(pending.ehr)
    config = runtime.discovery.get(pending.iss)
    answer = runtime.tokens.exchange_code(
        ehr, config.token_endpoint, code=code, redirect_uri=pending.redirect_uri,
        code_verifier=pending.code_verifier)
    user = None
    if answer.id_token:
        user = fhir_user(answer.id_token, config=config, ehr=ehr, nonce=pending.nonce,
                         jwks_client=runtime.jwks_client, fhir_base=pending.iss)
    previous = request.cookies.get(COOKIE)
    if previous:  # a new launch replaces this browser's session (its id changes too)
        runtime.store.delete_session(secret_hash(previous))
    cookie = new_secret()
    now = runtime.clock()
    runtime.store.create_session(SessionRecord(
        id=secret_hash(cookie), ehr=ehr.name, fhir_base=pending.iss, token_endpoint=config.token_endpoint,
        patient_id=answer.patient, encounter_id=answer.encounter, user=user, scopes=answer.scope,
        need_patient_banner=answer.need_patient_banner, smart_style_url=answer.smart_style_url,
        csrf_token=new_secret(), access_token=answer.access_token, refresh_token=answer.refresh_token,
        access_expires_at=answer.expires_at, expires_at=now + runtime.settings.smart_session_ttl_s,
        version=1))
    log.info("SMART session %s started (EHR %s)", secret_hash(cookie)[:12], ehr.name)
    response = redirect(url_for("smart.app_home"), code=303)
    security.set_session_cookie(response, cookie, runtime.settings.smart_session_ttl_s)
    return response


def jwks() -> Response:
    """GET /smart/jwks.json: the public keys of our private_key_jwt assertions."""
    response = jsonify(runtime_of(current_app).keys.jwks())
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


def logout() -> Response:
    """POST /smart/logout (CSRF-checked): forget the session and its tokens."""
    session = current_session()
    if session is not None:
        runtime_of(current_app).store.delete_session(session.id)
        log.info("SMART session %s ended", session.id[:12])
    response = Response("<!doctype html><title>chartlight</title><p>You have signed out of chartlight. "
                        "Launch it again from your EHR.</p>", content_type="text/html; charset=utf-8")
    if request.cookies.get(COOKIE):
        security.clear_session_cookie(response)
    return response


def _check_client_auth(ehr: SmartEhr, config: SmartConfiguration) -> None:
    methods = config.token_endpoint_auth_methods
    if ehr.client_auth == "private_key_jwt" and methods and "private_key_jwt" not in methods:
        raise LaunchError(f"the EHR {ehr.name} does not accept private_key_jwt client authentication")


def _public_base(runtime: SmartRuntime) -> str:
    return (runtime.settings.smart_public_base_url or request.host_url).rstrip("/")
