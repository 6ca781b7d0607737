"""SMART App Launch 2.2, app side: EHR launch (`iss` + `launch`), standalone launch, the callback
that exchanges the code, the app's JWK Set, and logout.

The launch → callback link is the `state` (256 random bits) kept server-side with the PKCE verifier,
single-use and expiring, and bound to the browser by a cookie. Inside an EHR iframe that drops
cookies the callback may come back without it: only an EHR launch whose callback the browser loads
in a frame (`Sec-Fetch-Dest: iframe`) is let through on the state alone; a top-level navigation
(`Sec-Fetch-Dest: document`, or no such header) and every standalone launch need the cookie, so a
callback URL planted in a victim's browser cannot sign it in to the attacker's EHR account (login
CSRF). Tokens stay on the server; the browser gets a random session id in an HttpOnly cookie.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from urllib.parse import urlencode

from flask import Response, current_app, jsonify, redirect, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from plugin.config import SmartEhr, plain_fhir_base
from smart_launch import security
from smart_launch.advice import missing_scopes, next_step
from smart_launch.discovery import SmartConfiguration
from smart_launch.errors import LAUNCH_AGAIN, EhrRefused, LaunchError, TokenError
from smart_launch.id_tokens import fhir_user, verify_id_token
from smart_launch.runtime import SmartRuntime, runtime_of
from smart_launch.scopes import launch_scopes
from smart_launch.session import COOKIE, current_session
from smart_launch.store import PendingLaunch, SessionRecord, new_secret, secret_hash

log = logging.getLogger(__name__)


def pkce_challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()


def ehr_launch() -> BaseResponse:
    """GET /smart/launch?iss=...&launch=...: the EHR opens the app."""
    iss, launch = request.args.get("iss", ""), request.args.get("launch", "")
    if not iss or not launch:
        raise LaunchError("iss and launch are required: launch the app from your EHR", next_step=LAUNCH_AGAIN)
    runtime = runtime_of(current_app)
    ehr = runtime.ehr_for_iss(iss)
    return _authorize(runtime, ehr, plain_fhir_base(iss) or iss, launch)


def standalone_launch() -> BaseResponse:
    """GET /smart/start?ehr=<name> (or ?iss=...): the user opens the app and signs in at the EHR."""
    runtime = runtime_of(current_app)
    iss = request.args.get("iss", "")
    if iss:
        ehr = runtime.ehr_for_iss(iss)
    elif request.args.get("ehr"):
        ehr = runtime.ehr_named(request.args["ehr"])
    elif len(runtime.settings.smart_ehrs) == 1:
        ehr = runtime.settings.smart_ehrs[0]
    else:
        raise LaunchError("say which EHR to sign in at: /smart/start?ehr=<name>")
    return _authorize(runtime, ehr, plain_fhir_base(iss or ehr.iss) or ehr.iss, None)


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
        browser_binding=secret_hash(binding), standalone=launch is None))
    log.info("SMART %s launch from %s", "EHR" if launch else "standalone", ehr.name)
    return response


def callback() -> BaseResponse:
    """GET /smart/callback?code=...&state=... (or ?error=...&state=...): the EHR sends the user back."""
    state = request.args.get("state", "")
    runtime = runtime_of(current_app)
    pending = runtime.store.take_launch(state) if state else None
    if pending is None:
        raise LaunchError("this sign-in link is unknown, used or expired", next_step=LAUNCH_AGAIN)
    _check_browser(pending)
    ehr = runtime.ehr_named(pending.ehr)
    scopes = launch_scopes(ehr.scopes, ehr_launch=not pending.standalone)
    if request.args.get("error"):
        # Shown only now that `state` proved the EHR sent it for a launch of ours: a crafted
        # callback URL cannot put words of its own on our page.
        error = request.args["error"][:100]
        description = request.args.get("error_description", "")[:500]
        log.info("SMART authorization refused by EHR %s: error=%r error_description=%r", ehr.name, error,
                 description)
        raise EhrRefused(f"the EHR did not authorize chartlight ({error})", ehr_error=error,
                         ehr_description=description,
                         next_step=next_step(error, description, client_id=ehr.client_id,
                                             redirect_uri=pending.redirect_uri, requested_scopes=scopes,
                                             client_auth=ehr.client_auth))
    code = request.args.get("code", "")
    if not code:
        raise LaunchError("the EHR sent no authorization code", next_step=LAUNCH_AGAIN)
    config = runtime.discovery.get(pending.iss)
    try:
        answer = runtime.tokens.exchange_code(
            ehr, config.token_endpoint, code=code, redirect_uri=pending.redirect_uri,
            code_verifier=pending.code_verifier)
        user = None
        if answer.id_token:
            claims = verify_id_token(answer.id_token, config=config, client_id=ehr.client_id,
                                     nonce=pending.nonce, keys=runtime.id_token_keys)
            user = fhir_user(claims, pending.iss)
    except TokenError as exc:
        log.info("SMART token exchange with EHR %s failed: %s (error=%r error_description=%r)", ehr.name,
                 exc, exc.error, exc.ehr_description)
        if not exc.next_step:
            exc.next_step = next_step(exc.error, exc.ehr_description, client_id=ehr.client_id,
                                      redirect_uri=pending.redirect_uri, requested_scopes=scopes,
                                      client_auth=ehr.client_auth)
        raise
    not_granted = missing_scopes(scopes, answer.scope)
    if not_granted:
        log.info("SMART launch from %s: the EHR did not grant %s", ehr.name, " ".join(not_granted))
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
        version=1, fhir_context=answer.fhir_context, requested_scopes=scopes))
    log.info("SMART session %s started (EHR %s)", secret_hash(cookie)[:12], ehr.name)
    response = redirect(url_for("smart.app_home"), code=303)
    security.set_session_cookie(response, cookie, runtime.settings.smart_session_ttl_s)
    return response


EMBEDDED_DESTINATIONS = frozenset({"iframe", "frame"})


def _check_browser(pending: PendingLaunch) -> None:
    """The callback must come from the browser that started the launch (login CSRF)."""
    binding = request.cookies.get(security.BINDING_COOKIE)
    if binding is not None:
        if secret_hash(binding) != pending.browser_binding:
            raise LaunchError("this sign-in was started in another browser", next_step=LAUNCH_AGAIN)
        return
    # No cookie. An EHR iframe that drops third-party cookies is the one case that needs this
    # path; anything else without the cookie is refused.
    if pending.standalone:
        raise LaunchError("this sign-in came back without the browser cookie it was started with "
                          "(a standalone launch needs cookies)",
                          next_step="Allow cookies for chartlight in your browser, then start again.")
    if request.headers.get("Sec-Fetch-Dest", "") not in EMBEDDED_DESTINATIONS:
        raise LaunchError("this sign-in came back without the browser cookie it was started with",
                          next_step=LAUNCH_AGAIN + " If it opens in a new window, allow cookies for "
                          "chartlight in your browser.")


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
