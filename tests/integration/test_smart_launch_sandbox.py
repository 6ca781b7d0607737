"""SMART App Launch against the real servers: the sandbox EHR (Authlib authorization server and FHIR
proxy in front of the HAPI sandbox) and the chartlight app, over HTTP on loopback. The app's side
(launch, state, PKCE, token exchange, refresh, CSRF) and the EHR's strictness are both checked."""

from __future__ import annotations

import base64
import hashlib
import html
import logging
import secrets
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from plugin.errors import FhirResponseError
from plugin.fhir import FhirClient
from plugin.sandbox.ehr import EhrSandbox
from smart_launch.errors import NotLaunched
from smart_launch.runtime import runtime_of
from smart_launch.session import COOKIE, fhir_client_for
from tests.support.smart_stack import SmartStack, smart_stack

pytestmark = pytest.mark.sandbox


@pytest.fixture
def patient_id(fhir: FhirClient, run_id: str) -> str:
    patient = fhir.create({"resourceType": "Patient", "identifier": [{"system": "urn:test", "value": run_id}],
                           "name": [{"family": "Launch", "given": ["Smart"]}]})
    return str(patient["id"])


@pytest.fixture
def stack(sandbox_url: str, tmp_path: Path) -> Iterator[SmartStack]:
    with smart_stack(sandbox_url, tmp_path, run_jobs=False) as running:
        yield running


def _follow(browser: requests.Session, url: str, hops: int) -> requests.Response:
    answer = browser.get(url, timeout=60, allow_redirects=False)
    for _ in range(hops):
        assert answer.status_code in (302, 303), answer.text[:500]
        answer = browser.get(answer.headers["Location"], timeout=60, allow_redirects=False)
    return answer


def _authorize_redirect(stack: SmartStack, browser: requests.Session, patient_id: str) -> str:
    """Launch the app from the EHR; the authorize URL the app sends the browser to."""
    answer = browser.get(stack.launch_url(patient_id), timeout=60, allow_redirects=False)
    assert answer.status_code == 302, answer.text[:500]
    return answer.headers["Location"]


def _callback_url(browser: requests.Session, authorize_url: str) -> str:
    answer = browser.get(authorize_url, timeout=60, allow_redirects=False)
    assert answer.status_code == 302, answer.text[:500]
    return answer.headers["Location"]


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


# ---- the happy path --------------------------------------------------------------------------------


def test_ehr_launch_gives_a_session_with_context_and_no_token_in_the_browser(
        stack: SmartStack, patient_id: str) -> None:
    browser = stack.browser()
    authorize = _authorize_redirect(stack, browser, patient_id)
    params = _query(authorize)
    assert authorize.startswith(f"{stack.ehr_base}/auth/authorize?")
    assert params["aud"] == stack.fhir_base and params["code_challenge_method"] == "S256"
    assert len(base64.urlsafe_b64decode(params["state"] + "==")) * 8 >= 128
    assert "launch" in params["scope"].split() and params["launch"]
    callback = _callback_url(browser, authorize)
    home = browser.get(callback, timeout=60, allow_redirects=False)
    assert home.status_code == 303 and home.headers["Location"].endswith("/smart/app")
    cookie = home.headers["Set-Cookie"]
    for attribute in ("Secure", "HttpOnly", "SameSite=None", "Partitioned", "Path=/smart"):
        assert attribute in cookie
    session = stack.session_of(browser)
    assert session is not None
    assert session.patient_id == patient_id and session.fhir_base == stack.fhir_base
    assert session.user == stack.user  # fhirUser from the verified id_token
    assert session.can_read("DocumentReference") and session.can_write("Observation")
    # Nothing the browser holds or was sent to carries a token.
    tokens = [t.access_token for t in stack.ehr.state.tokens.values()]
    assert len(tokens) == 1
    assert tokens[0] not in home.text + str(home.headers) + callback + str(browser.cookies.get_dict())
    with stack.app.test_request_context():
        patient = fhir_client_for(session).read("Patient", patient_id)
    assert patient["id"] == patient_id


def test_a_session_client_offers_its_current_token_for_a_trusted_imaging_endpoint(
        stack: SmartStack, patient_id: str) -> None:
    session = stack.session_of(stack.launched(patient_id))
    assert session is not None
    with stack.app.test_request_context():
        client = fhir_client_for(session)
    issued = [t.access_token for t in stack.ehr.state.tokens.values()]
    # The token lives in the session (not in the client); imaging asks for it only after its trust check.
    assert client.access_token in issued


def test_security_headers_on_app_responses(stack: SmartStack, patient_id: str) -> None:
    browser = stack.launched(patient_id)
    answer = browser.get(f"{stack.app_base}/smart/jwks.json", timeout=30)
    csp = answer.headers["Content-Security-Policy"]
    assert f"frame-ancestors 'self' {stack.ehr_base}" in csp
    answer = browser.get(f"{stack.app_base}/smart/launch", timeout=30)  # no iss: an error page
    assert answer.status_code == 400 and answer.headers["Cache-Control"] == "no-store"
    assert answer.headers["Referrer-Policy"] == "no-referrer"


def test_jwks_publishes_rs384_and_es384_keys(stack: SmartStack) -> None:
    keys = requests.get(f"{stack.app_base}/smart/jwks.json", timeout=30).json()["keys"]
    assert {k["alg"] for k in keys} == {"RS384", "ES384"}
    assert all("d" not in k and k["kid"] for k in keys)  # public halves only


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_private_key_jwt_client_is_accepted(sandbox_url: str, tmp_path: Path, patient_id: str,
                                            alg: str) -> None:
    with smart_stack(sandbox_url, tmp_path, client_auth="private_key_jwt", alg=alg, run_jobs=False) as stack:
        session = stack.session_of(stack.launched(patient_id))
        assert session is not None and session.patient_id == patient_id
        assert stack.ehr.state.used_jti  # the EHR checked a client assertion


def test_standalone_launch_gets_the_ehr_chosen_patient(sandbox_url: str, tmp_path: Path,
                                                       patient_id: str) -> None:
    with smart_stack(sandbox_url, tmp_path, standalone_patient=patient_id, run_jobs=False) as stack:
        browser = stack.browser()
        authorize = browser.get(stack.standalone_url(), timeout=60, allow_redirects=False).headers["Location"]
        assert "launch/patient" in _query(authorize)["scope"].split() and "launch" not in _query(authorize)
        browser.get(_callback_url(browser, authorize), timeout=60, allow_redirects=False)
        session = stack.session_of(browser)
        assert session is not None and session.patient_id == patient_id


# ---- the app refuses ------------------------------------------------------------------------------


def test_unknown_iss_is_refused(stack: SmartStack) -> None:
    answer = requests.get(f"{stack.app_base}/smart/launch",
                          params={"iss": "https://evil.example.org/fhir", "launch": "x"}, timeout=30,
                          allow_redirects=False)
    assert answer.status_code == 400 and "unknown iss" in answer.text


def test_state_mismatch_is_refused(stack: SmartStack, patient_id: str) -> None:
    browser = stack.browser()
    callback = _callback_url(browser, _authorize_redirect(stack, browser, patient_id))
    params = _query(callback)
    forged = f"{stack.app_base}/smart/callback?{urlencode({**params, 'state': secrets.token_urlsafe(32)})}"
    answer = browser.get(forged, timeout=30, allow_redirects=False)
    assert answer.status_code == 400 and browser.cookies.get(COOKIE) is None
    assert not stack.ehr.state.tokens  # no code was exchanged


def test_a_callback_from_another_browser_is_refused(stack: SmartStack, patient_id: str) -> None:
    victim_started, attacker = stack.browser(), stack.browser()
    callback = _callback_url(attacker, _authorize_redirect(stack, attacker, patient_id))
    _authorize_redirect(stack, victim_started, patient_id)  # the victim has a launch cookie of its own
    answer = victim_started.get(callback, timeout=30, allow_redirects=False)
    assert answer.status_code == 400 and "another browser" in answer.text
    assert victim_started.cookies.get(COOKIE) is None


def test_a_callback_without_cookies_works_as_in_an_iframe_that_drops_them(
        stack: SmartStack, patient_id: str) -> None:
    browser = stack.browser()
    callback = _callback_url(browser, _authorize_redirect(stack, browser, patient_id))
    answer = requests.get(callback, timeout=30, allow_redirects=False,  # no cookie sent back
                          headers={"Sec-Fetch-Dest": "iframe"})
    assert answer.status_code == 303 and COOKIE in answer.headers["Set-Cookie"]


@pytest.mark.parametrize("destination", ["document", None])
def test_a_top_level_callback_without_the_binding_cookie_is_refused(
        stack: SmartStack, patient_id: str, destination: str | None) -> None:
    """Login CSRF: an attacker starts a launch in their own browser and gets the victim's browser
    to open the callback URL at top level; the victim's browser has no binding cookie."""
    attacker = stack.browser()
    callback = _callback_url(attacker, _authorize_redirect(stack, attacker, patient_id))
    victim = stack.browser()
    headers = {"Sec-Fetch-Dest": destination} if destination else {}
    answer = victim.get(callback, timeout=30, allow_redirects=False, headers=headers)
    assert answer.status_code == 400 and "without the browser cookie" in html.unescape(answer.text)
    assert victim.cookies.get(COOKIE) is None
    assert not stack.ehr.state.tokens  # the attacker's code was never exchanged


def test_a_standalone_callback_without_the_binding_cookie_is_refused_even_in_a_frame(
        sandbox_url: str, tmp_path: Path, patient_id: str) -> None:
    with smart_stack(sandbox_url, tmp_path, standalone_patient=patient_id, run_jobs=False) as stack:
        attacker = stack.browser()
        start = attacker.get(stack.standalone_url(), timeout=60, allow_redirects=False)
        callback = _callback_url(attacker, start.headers["Location"])
        answer = requests.get(callback, timeout=30, allow_redirects=False,
                              headers={"Sec-Fetch-Dest": "iframe"})
        assert answer.status_code == 400 and "standalone launch needs cookies" in html.unescape(answer.text)
        assert not stack.ehr.state.tokens


def test_replayed_callback_is_refused_and_the_code_is_single_use(stack: SmartStack, patient_id: str) -> None:
    browser = stack.browser()
    callback = _callback_url(browser, _authorize_redirect(stack, browser, patient_id))
    assert browser.get(callback, timeout=30, allow_redirects=False).status_code == 303
    replay = stack.browser().get(callback, timeout=30, allow_redirects=False)
    assert replay.status_code == 400 and "used" in replay.text  # the state was used up
    # The code itself, replayed at the EHR, is refused, and the tokens it gave are revoked.
    code = _query(callback)["code"]
    answer = requests.post(f"{stack.ehr_base}/auth/token", timeout=30, data={
        "grant_type": "authorization_code", "code": code, "client_id": stack.client_id,
        "redirect_uri": f"{stack.app_base}/smart/callback", "code_verifier": "x" * 43})
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"
    assert all(t.revoked for t in stack.ehr.state.tokens.values())


def test_csrf_token_missing_or_wrong_is_refused(stack: SmartStack, patient_id: str) -> None:
    browser = stack.launched(patient_id)
    session = stack.session_of(browser)
    assert session is not None
    logout = f"{stack.app_base}/smart/logout"
    assert browser.post(logout, timeout=30).status_code == 403
    assert browser.post(logout, headers={"X-CSRF-Token": "wrong"}, timeout=30).status_code == 403
    assert stack.session_of(browser) is not None  # nothing changed
    assert browser.post(logout, headers={"X-CSRF-Token": session.csrf_token}, timeout=30).status_code == 200
    assert stack.session_of(browser) is None


def test_expired_access_token_is_refreshed_transparently_with_rotation(
        sandbox_url: str, tmp_path: Path, patient_id: str) -> None:
    with smart_stack(sandbox_url, tmp_path, token_lifetime_s=1, run_jobs=False) as stack:
        browser = stack.launched(patient_id)
        session = stack.session_of(browser)
        assert session is not None
        first = next(iter(stack.ehr.state.tokens.values()))
        time.sleep(1.2)
        assert stack.ehr.state.token(first.access_token) is None  # the EHR would now answer 401
        with stack.app.test_request_context():
            assert fhir_client_for(session).read("Patient", patient_id)["id"] == patient_id
        live = [t for t in stack.ehr.state.tokens.values() if t is not first]
        assert len(live) == 1 and live[0].refresh_token != first.refresh_token
        assert first.refresh_revoked  # rotated: the old refresh token no longer works
        old = requests.post(f"{stack.ehr_base}/auth/token", timeout=30, data={
            "grant_type": "refresh_token", "refresh_token": first.refresh_token,
            "client_id": stack.client_id})
        assert old.status_code == 400


def test_a_401_from_the_server_triggers_one_refresh(stack: SmartStack, patient_id: str) -> None:
    session = stack.session_of(stack.launched(patient_id))
    assert session is not None
    stack.ehr.expire_access_tokens(stack.client_id)  # the app still believes its token is valid
    with stack.app.test_request_context():
        assert fhir_client_for(session).read("Patient", patient_id)["id"] == patient_id
    assert len(stack.ehr.state.tokens) == 2


def test_refused_write_scope_means_no_write_ability(sandbox_url: str, tmp_path: Path,
                                                    patient_id: str) -> None:
    refused = frozenset({"patient/Observation.crus", "patient/DocumentReference.crus",
                         "patient/DiagnosticReport.crus", "patient/Provenance.crs"})
    with smart_stack(sandbox_url, tmp_path, refused_scopes=refused, run_jobs=False) as stack:
        session = stack.session_of(stack.launched(patient_id))
        assert session is not None
        assert not session.can_write("Observation") and not session.can_write("DocumentReference")
        assert session.can_read("Patient") and session.can_read("Media")
        # Were a write tried anyway, the EHR would refuse it: the scopes are enforced server-side.
        with stack.app.test_request_context(), pytest.raises(FhirResponseError) as refused_write:
            fhir_client_for(session).create({"resourceType": "Observation", "status": "preliminary",
                                             "code": {"text": "x"},
                                             "subject": {"reference": f"Patient/{patient_id}"}})
        assert refused_write.value.status == 403


# ---- the sandbox EHR is strict ----------------------------------------------------------------------


def _authorize_params(stack: SmartStack, patient_id: str, verifier: str, **overrides: str) -> dict[str, str]:
    launch = _query(stack.launch_url(patient_id))["launch"]
    params = {"response_type": "code", "client_id": stack.client_id,
              "redirect_uri": f"{stack.app_base}/smart/callback", "scope": "launch patient/Patient.r",
              "state": secrets.token_urlsafe(32), "aud": stack.fhir_base, "launch": launch,
              "code_challenge": _s256(verifier), "code_challenge_method": "S256"}
    return {**params, **overrides}


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _code(stack: SmartStack, params: dict[str, str]) -> requests.Response:
    return requests.get(f"{stack.ehr_base}/auth/authorize", params=params, timeout=30, allow_redirects=False)


def _new_code(stack: SmartStack, patient_id: str, verifier: str) -> str:
    return _query(_code(stack, _authorize_params(stack, patient_id, verifier)).headers["Location"])["code"]


def _token(stack: SmartStack, code: str, verifier: str, redirect_uri: str | None = None) -> requests.Response:
    return requests.post(f"{stack.ehr_base}/auth/token", timeout=30, data={
        "grant_type": "authorization_code", "code": code, "client_id": stack.client_id,
        "redirect_uri": redirect_uri or f"{stack.app_base}/smart/callback", "code_verifier": verifier})


def test_ehr_refuses_pkce_plain_and_missing(stack: SmartStack, patient_id: str) -> None:
    verifier = secrets.token_urlsafe(32)
    plain = _code(stack, _authorize_params(stack, patient_id, verifier, code_challenge=verifier,
                                           code_challenge_method="plain"))
    assert plain.status_code == 302 and _query(plain.headers["Location"])["error"] == "invalid_request"
    params = _authorize_params(stack, patient_id, verifier)
    del params["code_challenge"], params["code_challenge_method"]
    missing = _code(stack, params)
    assert _query(missing.headers["Location"])["error"] == "invalid_request"


def test_ehr_refuses_a_wrong_verifier(stack: SmartStack, patient_id: str) -> None:
    verifier = secrets.token_urlsafe(32)
    answer = _code(stack, _authorize_params(stack, patient_id, verifier))
    code = _query(answer.headers["Location"])["code"]
    wrong = _token(stack, code, secrets.token_urlsafe(32))
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"


def test_ehr_refuses_a_different_redirect_uri(stack: SmartStack, patient_id: str) -> None:
    verifier = secrets.token_urlsafe(32)
    unregistered = _code(stack, _authorize_params(stack, patient_id, verifier,
                                                  redirect_uri=f"{stack.app_base}/smart/callback/"))
    assert unregistered.status_code == 400 and "Location" not in unregistered.headers
    code = _new_code(stack, patient_id, verifier)
    changed = _token(stack, code, verifier, redirect_uri=f"{stack.app_base}/other")
    assert changed.status_code == 400 and changed.json()["error"] == "invalid_grant"


def test_ehr_refuses_an_aud_that_is_not_its_fhir_base(stack: SmartStack, patient_id: str) -> None:
    verifier = secrets.token_urlsafe(32)
    answer = _code(stack, _authorize_params(stack, patient_id, verifier, aud="https://other.example.org/fhir"))
    assert _query(answer.headers["Location"])["error"] == "invalid_request"
    assert "code" not in _query(answer.headers["Location"])


def test_ehr_refuses_a_bad_client_assertion(sandbox_url: str, tmp_path: Path, patient_id: str) -> None:
    with smart_stack(sandbox_url, tmp_path, client_auth="private_key_jwt", run_jobs=False) as stack:
        verifier = secrets.token_urlsafe(32)
        code = _new_code(stack, patient_id, verifier)
        now = int(time.time())
        claims = {"iss": stack.client_id, "sub": stack.client_id, "aud": f"{stack.ehr_base}/auth/token",
                  "exp": now + 60, "jti": secrets.token_urlsafe(16)}
        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # never published
        kid = requests.get(f"{stack.app_base}/smart/jwks.json", timeout=30).json()["keys"][0]["kid"]
        for assertion in (jwt.encode(claims, stranger, algorithm="RS384", headers={"kid": kid}),
                          jwt.encode(claims, "shared-secret-" * 3, algorithm="HS256", headers={"kid": kid})):
            answer = requests.post(f"{stack.ehr_base}/auth/token", timeout=30, data={
                "grant_type": "authorization_code", "code": code, "code_verifier": verifier,
                "redirect_uri": f"{stack.app_base}/smart/callback",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion})
            assert answer.status_code in (400, 401) and answer.json()["error"] == "invalid_client"


def test_ehr_fhir_proxy_checks_token_and_scopes(stack: SmartStack, patient_id: str) -> None:
    answer = requests.get(f"{stack.fhir_base}/Patient/{patient_id}", timeout=30)
    assert answer.status_code == 401 and "invalid_token" in answer.headers["WWW-Authenticate"]
    verifier = secrets.token_urlsafe(32)
    code = _new_code(stack, patient_id, verifier)
    token = _token(stack, code, verifier).json()
    assert token["patient"] == patient_id and token["scope"] == "launch patient/Patient.r"
    headers = {"Authorization": f"Bearer {token['access_token']}", "Accept": "application/fhir+json"}
    own = requests.get(f"{stack.fhir_base}/Patient/{patient_id}", headers=headers, timeout=30)
    assert own.status_code == 200 and own.json()["id"] == patient_id
    other = requests.get(f"{stack.fhir_base}/Observation", params={"patient": patient_id}, headers=headers,
                         timeout=30)
    assert other.status_code == 403 and other.json()["resourceType"] == "OperationOutcome"


# ---- the sandbox EHR as its own process (chartlight sandbox up, make demo) -------------------------------


def test_sandbox_ehr_process_serves_discovery_and_the_launch_page(sandbox_url: str, tmp_path: Path) -> None:
    port = _free_port()
    ehr = EhrSandbox(state_dir=tmp_path, fhir_upstream=sandbox_url,
                     app_base="http://127.0.0.1:8000", port=port)
    try:
        assert ehr.start() == f"http://127.0.0.1:{port}"
        config = requests.get(f"{ehr.fhir_base}/.well-known/smart-configuration", timeout=10).json()
        assert "S256" in config["code_challenge_methods_supported"] and "launch-ehr" in config["capabilities"]
        page = requests.get(ehr.launch_page("p-1"), timeout=10).text
        src = html.unescape(page.split('<iframe id="app" title="chartlight" src="', 1)[1].split('"', 1)[0])
        assert src.startswith("http://127.0.0.1:8000/smart/launch?")
        assert _query(src)["iss"] == ehr.fhir_base and _query(src)["launch"]
    finally:
        ehr.stop()
    assert not ehr.is_running()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_concurrent_requests_refresh_once(sandbox_url: str, tmp_path: Path, patient_id: str) -> None:
    with smart_stack(sandbox_url, tmp_path, run_jobs=False) as stack:
        session = stack.session_of(stack.launched(patient_id))
        assert session is not None
        stack.ehr.expire_access_tokens(stack.client_id)

        def read(_: int) -> str:
            with stack.app.test_request_context():
                return str(fhir_client_for(session).read("Patient", patient_id)["id"])

        with ThreadPoolExecutor(6) as pool:
            assert list(pool.map(read, range(6))) == [patient_id] * 6
        # One refresh for all six: a second one would have used the rotated-out refresh token.
        assert len(stack.ehr.state.tokens) == 2


def test_a_refused_refresh_ends_the_session(sandbox_url: str, tmp_path: Path, patient_id: str) -> None:
    with smart_stack(sandbox_url, tmp_path, run_jobs=False) as stack:
        browser = stack.launched(patient_id)
        session = stack.session_of(browser)
        assert session is not None
        for token in stack.ehr.state.tokens.values():  # the EHR revokes the grant
            token.revoked = token.refresh_revoked = True
        with stack.app.test_request_context(), pytest.raises(NotLaunched):
            fhir_client_for(session).read("Patient", patient_id)
        assert stack.session_of(browser) is None


def test_encounter_context_reaches_the_session(stack: SmartStack, patient_id: str, fhir: FhirClient) -> None:
    ambulatory = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}
    encounter = fhir.create({"resourceType": "Encounter", "status": "in-progress", "class": ambulatory,
                             "subject": {"reference": f"Patient/{patient_id}"}})
    session = stack.session_of(stack.launched(patient_id, encounter["id"]))
    assert session is not None and session.encounter_id == encounter["id"]


def test_no_token_code_or_state_in_the_logs(sandbox_url: str, tmp_path: Path, patient_id: str,
                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with smart_stack(sandbox_url, tmp_path, run_jobs=False) as stack:
        browser = stack.browser()
        callback = _callback_url(browser, _authorize_redirect(stack, browser, patient_id))
        browser.get(callback, timeout=30, allow_redirects=False)
        session = stack.session_of(browser)
        assert session is not None
        stack.ehr.expire_access_tokens(stack.client_id)
        with stack.app.test_request_context():
            fhir_client_for(session).read("Patient", patient_id)
        secrets_seen = [_query(callback)["code"], _query(callback)["state"], browser.cookies[COOKIE],
                        session.csrf_token]
        for token in stack.ehr.state.tokens.values():
            secrets_seen += [token.access_token, token.refresh_token or "unused"]
    ours = [r for r in caplog.records if r.name.startswith(("smart_launch", "plugin"))]
    assert any("session" in r.getMessage() for r in ours)
    for record in ours:
        assert not any(secret in record.getMessage() for secret in secrets_seen), record.getMessage()


def test_ehr_refuses_a_replayed_client_assertion(sandbox_url: str, tmp_path: Path, patient_id: str) -> None:
    with smart_stack(sandbox_url, tmp_path, client_auth="private_key_jwt", alg="ES384",
                     run_jobs=False) as stack:
        assertion = runtime_of(stack.app).keys.client_assertion("ES384", stack.client_id,
                                                                f"{stack.ehr_base}/auth/token", time.time())
        answers = []
        for _ in range(2):
            verifier = secrets.token_urlsafe(32)
            answers.append(requests.post(f"{stack.ehr_base}/auth/token", timeout=30, data={
                "grant_type": "authorization_code", "code": _new_code(stack, patient_id, verifier),
                "code_verifier": verifier, "redirect_uri": f"{stack.app_base}/smart/callback",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion}))
        assert answers[0].status_code == 200 and "access_token" in answers[0].json()
        assert answers[1].status_code in (400, 401) and answers[1].json()["error"] == "invalid_client"


def test_a_new_launch_replaces_the_browsers_session(stack: SmartStack, patient_id: str,
                                                     fhir: FhirClient) -> None:
    other = fhir.create({"resourceType": "Patient", "name": [{"family": "Other"}]})["id"]
    browser = stack.launched(patient_id)
    first = stack.session_of(browser)
    callback = _callback_url(browser, _authorize_redirect(stack, browser, other))
    assert browser.get(callback, timeout=30, allow_redirects=False).status_code == 303
    second = stack.session_of(browser)
    assert first is not None and second is not None and second.patient_id == other and second.id != first.id
    with stack.app.test_request_context():
        assert runtime_of(stack.app).store.get_session(first.id) is None
