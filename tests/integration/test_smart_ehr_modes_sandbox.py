"""The EHR behaviours chartlight handles (docs/smart-app.md), each as a mode of the sandbox EHR in
front of the real HAPI sandbox, launched over HTTP on loopback: id_tokens without `kid` and with
other algorithms or a rotated key, scopes granted in part or refused with an `error_description`,
`need_patient_banner` and `smart_style_url`, SMART 2.2 `fhirContext` with an encounter, and two
FHIR bases under one authorization server. (A reused client-assertion `jti` is refused by the EHR:
test_smart_launch_sandbox.test_ehr_refuses_a_replayed_client_assertion.)"""

from __future__ import annotations

import html
import logging
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from plugin.fhir import FhirClient
from smart_launch.runtime import runtime_of
from smart_launch.session import COOKIE, fhir_client_for
from tests.support.loopback import ServerState, loopback_server
from tests.support.smart_stack import SmartStack, smart_stack

pytestmark = pytest.mark.sandbox


@pytest.fixture
def patient_id(fhir: FhirClient, run_id: str) -> str:
    patient = fhir.create({"resourceType": "Patient", "identifier": [{"system": "urn:test", "value": run_id}],
                           "name": [{"family": "Modes", "given": ["Ehr"]}], "birthDate": "1961-04-02"})
    return str(patient["id"])


def _home(stack: SmartStack, browser: requests.Session) -> str:
    answer = browser.get(f"{stack.app_base}/smart/app", timeout=120)
    assert answer.status_code == 200, answer.text[:500]
    return html.unescape(answer.text)


def _follow_to_callback(stack: SmartStack, browser: requests.Session, url: str) -> requests.Response:
    """launch -> authorize -> the app's callback (fetched); its answer."""
    answer = browser.get(url, timeout=60, allow_redirects=False)
    while answer.status_code in (302, 303) and "/smart/callback" not in answer.url:
        answer = browser.get(answer.headers["Location"], timeout=60, allow_redirects=False)
    return answer


# ---- id_tokens ---------------------------------------------------------------------------------


def test_an_id_token_without_kid_from_a_one_key_set_identifies_the_user(
        sandbox_url: str, tmp_path: Path, patient_id: str) -> None:
    """smart-launcher-v2's way: RS256, no kid, one key in the set (OpenID Connect Core 10.1)."""
    with smart_stack(sandbox_url, tmp_path, ehr={"id_token_kid": False}, run_jobs=False) as stack:
        assert "kid" not in stack.ehr.jwks()["keys"][0]
        session = stack.session_of(stack.launched(patient_id))
        assert session is not None and session.user == stack.user


@pytest.mark.parametrize("alg", ["ES384", "RS384"])
def test_an_id_token_signed_with_the_algorithm_the_ehr_declares_is_accepted(
        sandbox_url: str, tmp_path: Path, patient_id: str, alg: str) -> None:
    with smart_stack(sandbox_url, tmp_path, ehr={"id_token_alg": alg}, run_jobs=False) as stack:
        session = stack.session_of(stack.launched(patient_id))
        assert session is not None and session.user == stack.user


def test_a_rotated_id_token_key_is_fetched_again(sandbox_url: str, tmp_path: Path, patient_id: str) -> None:
    with smart_stack(sandbox_url, tmp_path, run_jobs=False) as stack:
        assert stack.session_of(stack.launched(patient_id)) is not None
        stack.ehr.rotate_id_token_key()
        session = stack.session_of(stack.launched(patient_id))
        assert session is not None and session.user == stack.user
        assert runtime_of(stack.app).id_token_keys.fetches == 2  # once at first use, once for the new kid


# ---- scopes --------------------------------------------------------------------------------------


def test_fewer_scopes_granted_the_app_says_what_it_cannot_do_and_why(
        sandbox_url: str, tmp_path: Path, patient_id: str) -> None:
    refused = frozenset({"patient/ImagingStudy.rs", "patient/Observation.crus"})
    with smart_stack(sandbox_url, tmp_path, refused_scopes=refused, run_jobs=False) as stack:
        browser = stack.launched(patient_id)
        session = stack.session_of(browser)
        assert session is not None and not refused & session.scopes
        page = _home(stack, browser)
    assert ("cannot list and analyse imaging studies: no read access to ImagingStudy (ask the EHR "
            "administrator to grant patient/ImagingStudy.rs)") in page
    assert ("cannot write results to the record: no create access to Observation (ask the EHR "
            "administrator to grant patient/Observation.crus)") in page
    assert "list and analyse documents" not in page  # what was granted is not listed as missing


def test_a_refused_scope_shows_the_ehrs_error_description_and_what_to_do(
        sandbox_url: str, tmp_path: Path, patient_id: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with smart_stack(sandbox_url, tmp_path, refused_scopes=frozenset({"patient/Observation.crus"}),
                     refuse_with_error=True, run_jobs=False) as stack:
        browser = stack.browser()
        answer = _follow_to_callback(stack, browser, stack.launch_url(patient_id))
        assert answer.status_code == 400 and browser.cookies.get(COOKIE) is None
        page = html.unescape(answer.text)
        assert 'data-testid="ehr-error">invalid_scope<' in page
        assert f"this EHR does not grant patient/Observation.crus to {stack.client_id}" in page
        assert f"Ask the EHR administrator to grant client {stack.client_id} the scopes" in page
        assert 'href="/smart/static/app.css' in answer.text  # in the app's layout
        state = parse_qs(urlsplit(answer.url).query)["state"][0]
    said = [r.getMessage() for r in caplog.records if "refused by EHR" in r.getMessage()]
    assert said and "invalid_scope" in said[0] and "does not grant patient/Observation.crus" in said[0]
    ours = [r.getMessage() for r in caplog.records if r.name.startswith(("smart_launch", "plugin"))]
    assert not any(state in message for message in ours)


def test_the_ehrs_error_description_is_escaped(stack_plain: SmartStack, patient_id: str) -> None:
    browser = stack_plain.browser()
    authorize = browser.get(stack_plain.launch_url(patient_id), timeout=60, allow_redirects=False)
    state = parse_qs(urlsplit(authorize.headers["Location"]).query)["state"][0]
    query = urlencode({"state": state, "error": "access_denied",
                       "error_description": "<script>alert(1)</script><b>denied</b>"})
    answer = browser.get(f"{stack_plain.app_base}/smart/callback?{query}", timeout=30)
    assert answer.status_code == 400
    assert "<script>alert(1)" not in answer.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in answer.text
    assert "Launch again and allow chartlight access" in answer.text


def test_an_ehr_error_without_a_known_state_does_not_show_its_words(stack_plain: SmartStack) -> None:
    query = urlencode({"state": "forged", "error": "access_denied", "error_description": "Call 555-0100"})
    answer = requests.get(f"{stack_plain.app_base}/smart/callback?{query}", timeout=30)
    assert answer.status_code == 400 and "unknown, used or expired" in answer.text
    assert "555-0100" not in answer.text


@pytest.fixture
def stack_plain(sandbox_url: str, tmp_path: Path) -> Iterator[SmartStack]:
    with smart_stack(sandbox_url, tmp_path, run_jobs=False) as running:
        yield running


# ---- banner, style, context -------------------------------------------------------------------------


def test_need_patient_banner_and_the_ehrs_style_are_applied(
        sandbox_url: str, tmp_path: Path, patient_id: str) -> None:
    with smart_stack(sandbox_url, tmp_path, ehr={"banner_on_ehr_launch": True, "serve_style": True},
                     run_jobs=False) as stack:
        browser = stack.launched(patient_id)
        session = stack.session_of(browser)
        assert session is not None and session.need_patient_banner
        assert session.smart_style_url == f"{stack.ehr_base}/ehr/smart-style.json"
        page = _home(stack, browser)
        assert 'data-testid="patient-banner"' in page and "born 1961-04-02" in page
        assert 'href="/smart/app/style.css"' in page
        css = browser.get(f"{stack.app_base}/smart/app/style.css", timeout=30)
    assert css.headers["Content-Type"].startswith("text/css")
    assert "--page-bg: #edeae3;" in css.text and "--ink: #303030;" in css.text
    assert '--font-body: Georgia, Times, "Times New Roman", serif;' in css.text
    assert "color_modal_backdrop" not in css.text and "{" in css.text and css.text.count("{") == 1


def test_a_style_url_on_another_host_is_not_fetched(sandbox_url: str, tmp_path: Path,
                                                   patient_id: str) -> None:
    elsewhere = ServerState(body=b'{"color_text": "#ff0000"}')
    with loopback_server(elsewhere) as other, \
            smart_stack(sandbox_url, tmp_path, ehr={"smart_style_url": f"{other}/style.json"},
                        run_jobs=False) as stack:
        browser = stack.launched(patient_id)
        css = browser.get(f"{stack.app_base}/smart/app/style.css", timeout=30)
    assert css.status_code == 200 and "--ink" not in css.text
    assert elsewhere.seen == []


def test_fhir_context_and_encounter_reach_the_session_and_page(
        stack_plain: SmartStack, patient_id: str, fhir: FhirClient) -> None:
    ambulatory = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}
    subject = {"reference": f"Patient/{patient_id}"}
    encounter = fhir.create({"resourceType": "Encounter", "status": "in-progress", "class": ambulatory,
                             "subject": subject})
    pdf = {"contentType": "application/pdf", "data": "JVBERi0="}
    document = fhir.create({"resourceType": "DocumentReference", "status": "current", "subject": subject,
                            "description": "Lab report", "content": [{"attachment": pdf}]})
    reference = f"DocumentReference/{document['id']}"
    browser = stack_plain.launched(patient_id, encounter["id"], fhir_context=(reference,))
    session = stack_plain.session_of(browser)
    assert session is not None
    assert session.encounter_id == encounter["id"] and session.fhir_context == (reference,)
    page = _home(stack_plain, browser)
    row = page[page.index(f'data-input="documents:{reference}"'):]
    assert 'data-testid="in-context"' in row[:row.index("</tr>")]


# ---- several FHIR bases ----------------------------------------------------------------------------


def test_one_registration_serves_every_fhir_base_its_pattern_covers(
        sandbox_url: str, tmp_path: Path, patient_id: str) -> None:
    with smart_stack(sandbox_url, tmp_path, ehr={"tenants": ("b",)}, fhir_bases=("{ehr}/t/*",),
                     run_jobs=False) as stack:
        tenant_base = f"{stack.ehr_base}/t/b/fhir"
        session = stack.session_of(stack.launched(patient_id, tenant="b"))
        assert session is not None and session.fhir_base == tenant_base
        assert session.user == stack.user  # fhirUser under the tenant's base, made relative
        with stack.app.test_request_context():
            assert fhir_client_for(session).read("Patient", patient_id)["id"] == patient_id
        token = next(t.access_token for t in stack.ehr.state.tokens.values())
        other = requests.get(f"{stack.fhir_base}/Patient/{patient_id}", timeout=30,
                             headers={"Authorization": f"Bearer {token}"})
        assert other.status_code == 401  # the EHR's token is for the tenant's base only
        for iss in (f"{stack.ehr_base}/tevil/fhir", f"{stack.ehr_base}/t/%2e%2e/fhir",
                    f"{stack.ehr_base}/t/b/../../fhir"):
            answer = requests.get(f"{stack.app_base}/smart/launch", params={"iss": iss, "launch": "x"},
                                  timeout=30, allow_redirects=False)
            assert answer.status_code == 400 and "unknown iss" in answer.text, iss


def test_a_base_not_registered_is_refused(sandbox_url: str, tmp_path: Path, patient_id: str) -> None:
    with smart_stack(sandbox_url, tmp_path, ehr={"tenants": ("b",)}, run_jobs=False) as stack:
        answer = stack.browser().get(stack.launch_url(patient_id, tenant="b"), timeout=30,
                                     allow_redirects=False)
        assert answer.status_code == 400 and "unknown iss" in answer.text
