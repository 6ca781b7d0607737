"""The sandbox EHR as a CDS Hooks client, in a real browser: opening the demo patient, the EHR
calls chartlight's patient-view service (discovery, a JWT signed with the EHR's own key that
chartlight trusts through the EHR's JWK Set, prefetch, fhirServer, fhirAuthorization) and shows the
returned cards beside the app; a card's smart link opens the app in the EHR's app frame. The lab
report's results are written first by the documents pipeline, so a results card is there to show."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests

from plugin.analysis import analyze_patient, service_client_for
from plugin.fhir import FhirClient
from plugin.jobs import JobState, JobStore
from plugin.pipelines import documents
from plugin.pipelines.registry import installed_pipelines
from plugin.sandbox.ehr_server.cds import fill_template
from plugin.sandbox.seed import seed_demo_patient
from plugin.sandbox.synthetic import DEMO_PATIENT
from tests.browser.conftest import Screenshot
from tests.support.smart_stack import smart_stack

pytestmark = pytest.mark.sandbox


@pytest.fixture(scope="module")
def cds_patient(sandbox_url: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The demo patient under an MRN of this module's own, with the lab report analysed (other
    browser tests expect their demo patient unanalysed)."""
    client = FhirClient(sandbox_url, timeout_s=120)
    patient_id = seed_demo_patient(client, replace(DEMO_PATIENT, mrn="CL-004419")).patient_id
    folder = tmp_path_factory.mktemp("cds-jobs")
    from plugin.config import Settings
    settings = Settings(fhir_base_url=sandbox_url, database_url=f"sqlite:///{folder}/jobs.db")
    pipeline = installed_pipelines(settings)[documents.PIPELINE]
    run = analyze_patient(client, JobStore(f"sqlite:///{folder}/jobs.db"), pipeline, patient_id,
                          client_for=service_client_for(settings))
    assert run.jobs and all(job.state is JobState.SUCCEEDED for job in run.jobs), run.jobs
    return patient_id


def test_the_ehr_shows_chartlights_cards_for_the_demo_patient_and_a_smart_link_opens_the_app(
        page: Any, screenshot: Screenshot, sandbox_url: str, tmp_path: Path, cds_patient: str) -> None:
    with smart_stack(sandbox_url, tmp_path, cds=True, run_jobs=False) as stack:
        page.goto(stack.ehr_page_url(cds_patient))
        cards = page.locator('[data-testid="cds-card"]')
        cards.first.wait_for()
        assert page.locator('[data-testid="cds-problem"]').count() == 0
        summaries = cards.locator(".cds-summary").all_inner_texts()
        assert any(s.startswith("AI read ") and "Hemoglobin" in s for s in summaries), summaries
        first = cards.first
        assert first.locator(".cds-source").inner_text().startswith("Source: ")
        assert "Review in chartlight" in first.locator('[data-testid="cds-smart-link"]').inner_text()
        first.locator("details summary").click()
        assert "Hemoglobin | 11.2 g/dL | L" in first.locator(".cds-detail").inner_text()
        first.locator("details summary").click()
        app = page.frame_locator("iframe#app")
        app.locator('tr[data-testid="input-row"]').first.wait_for()
        screenshot(page, "quickstart-cds-card-in-ehr")
        # The smart link relaunches the app in the EHR's app frame (a fresh launch, same patient).
        with page.expect_response(lambda r: "/smart/callback" in r.url):
            first.locator('[data-testid="cds-smart-link"]').click()
        app.locator('tr[data-testid="input-row"]').first.wait_for()


def test_cards_are_escaped_and_a_refused_call_is_shown(sandbox_url: str, tmp_path: Path,
                                                       cds_patient: str) -> None:
    """The page shows what a service sent as text, never as markup; and without the EHR in the
    app's trusted list, chartlight refuses the call (401) and the page says so, with no cards."""
    from plugin.sandbox.ehr_server.cds import RenderedCall, render_cards

    card = {"summary": "<script>alert(1)</script>", "indicator": "warning", "detail": "**a** <b>x</b>",
            "source": {"label": "<i>lab</i>", "url": "javascript:alert(1)"},
            "links": [{"label": "x", "url": "javascript:alert(2)", "type": "absolute"}]}
    page = render_cards([RenderedCall("svc", (card,))], "p1")
    assert "<script>" not in page and "&lt;script&gt;" in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert "javascript:" not in page and "<i>" not in page
    with smart_stack(sandbox_url, tmp_path, cds=True, run_jobs=False) as stack:
        untrusted = replace(stack.settings, cds_trusted_ehrs=())
        from plugin.app import create_app
        from tests.support.smart_stack import _server
        with _server() as other:
            other.app = create_app(untrusted)
            assert stack.ehr.cds is not None
            stack.ehr.cds.cds_base = f"http://127.0.0.1:{other.server_port}"
            answer = requests.get(stack.ehr_page_url(cds_patient), timeout=60)
    assert answer.status_code == 200
    assert 'data-testid="cds-problem"' in answer.text and "discovery: answered HTTP 401" in answer.text
    assert 'data-testid="cds-card"' not in answer.text


def test_prefetch_templates_are_filled_from_the_hook_context() -> None:
    context = {"userId": "Practitioner/7", "patientId": "42"}
    assert fill_template("Observation?patient={{context.patientId}}&x={{ userPractitionerId }}",
                         context) == "Observation?patient=42&x=7"
    assert fill_template("Encounter/{{context.encounterId}}", context) is None


def test_the_card_view_is_off_unless_configured_and_says_when_the_service_is_unreachable() -> None:
    from plugin.sandbox.ehr_server import EhrConfig, create_ehr_app, ehr_of, public_client

    def page_of(**config: Any) -> tuple[str, Any]:
        app = create_ehr_app(EhrConfig(base_url="http://127.0.0.1:9", fhir_upstream="http://127.0.0.1:9/fhir",
                                       **config))
        ehr_of(app).register_client(public_client("app", "http://127.0.0.1:9"))
        client = app.test_client()
        return client.get("/ehr?patient=p1&app=app").get_data(as_text=True), client

    plain, client = page_of()
    assert 'id="cds"' not in plain and 'iframe id="app"' in plain
    assert client.get("/ehr/cds-jwks.json").status_code == 404
    with_cds, client = page_of(cds_base="http://127.0.0.1:9")
    assert 'id="cds"' in with_cds and "discovery: not reachable (ConnectionError)" in with_cds
    [key] = client.get("/ehr/cds-jwks.json").get_json()["keys"]
    assert (key["kid"], key["alg"], key["crv"]) == ("sandbox-ehr-cds-1", "ES384", "P-384") and "d" not in key
    # A smart link names the app by its launch URL: a known one gets a fresh launch, others 404.
    known = client.get("/ehr/smart-link?patient=p1&url=http://127.0.0.1:9/smart/launch")
    assert known.status_code == 302 and known.headers["Location"].startswith("http://127.0.0.1:9/smart/launch?iss=")
    assert client.get("/ehr/smart-link?patient=p1&url=https://evil.example/launch").status_code == 404
