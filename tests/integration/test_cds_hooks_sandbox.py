"""The CDS Hooks service against the real HAPI FHIR sandbox: cards from AI results written by
plugin.writeback, prefetch sent / partly missing (fetched with fhirAuthorization) / unfetchable,
the specification's own example requests, imaging orders and analyses queued in the background."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from cds_hooks.prefetch import render
from cds_hooks.services import SERVICES_BY_ID
from plugin.analysis import service_client_for
from plugin.app import create_app, job_store_of
from plugin.config import TrustedEhr
from plugin.fhir import FhirClient
from plugin.jobs import JobRunner, JobState
from plugin.results import (
    Box,
    Coding,
    Finding,
    ImageEvidence,
    ModelInfo,
    PipelineResult,
    ReportGroup,
    SourceRef,
)
from plugin.review import approve
from plugin.writeback import write_result
from tests.support.cds_ehr import (
    EMPTY_BUNDLE,
    PUBLIC_BASE,
    Ehr,
    bearer,
    cds_settings,
    diagnostics,
    ec_key,
    ehr_with_jwks,
    rsa_key,
)
from tests.support.loopback import ServerState, loopback_server
from tests.support.pipelines import fixed_pipeline, fixed_result
from tests.support.sources import create_patient_with_document

pytestmark = pytest.mark.sandbox

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
EXAMPLES: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "unit" / "cds_hooks" / "spec_examples.json").read_text()
)
TOKEN = "opaque-fhir-token-" + uuid.uuid4().hex
CHEST_XR = {
    "resourceType": "ServiceRequest",
    "id": "repeat-cxr",
    "status": "draft",
    "intent": "order",
    "category": [
        {"coding": [{"system": "http://snomed.info/sct", "code": "363679005", "display": "Imaging"}]}
    ],
    "code": {
        "coding": [{"system": "http://loinc.org", "code": "36643-5", "display": "XR Chest 2 Views"}],
        "text": "Repeat chest X-ray, 2 views",
    },
}


@pytest.fixture(scope="module")
def ehr() -> Iterator[Ehr]:
    with ehr_with_jwks([rsa_key("rs384", "RS384"), ec_key("es384", "ES384")]) as served:
        yield served


@pytest.fixture(scope="module")
def proxy(sandbox_url: str) -> Iterator[tuple[str, ServerState]]:
    """A recording proxy in front of the sandbox: the EHR's fhirServer as the service sees it."""
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(sandbox_url))
    state = ServerState(upstream=origin)
    with loopback_server(state) as base:
        yield base + "/fhir", state


@pytest.fixture
def app(ehr: Ehr, tmp_path: Path, sandbox_url: str, proxy: tuple[str, ServerState]) -> Flask:
    trusted = TrustedEhr(iss=ehr.iss, jwks_url=ehr.jwks_url, fhir_servers=(sandbox_url, proxy[0]))
    return create_app(
        cds_settings(
            ehr,
            tmp_path,
            fhir_base_url=sandbox_url,
            cds_trusted_ehrs=(trusted,),
            cds_source_check_wait_s=10.0,
        )
    )


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def clinician(fhir: FhirClient) -> str:
    return (
        "Practitioner/" + fhir.create({"resourceType": "Practitioner", "name": [{"family": "Signer"}]})["id"]
    )


def ehr_prefetch(sandbox_url: str, service_id: str, context: dict[str, Any]) -> dict[str, Any]:
    """What an EHR sends as prefetch: each template run against its own FHIR server."""
    sent = {}
    for key, template in SERVICES_BY_ID[service_id].prefetch.items():
        url = render(template, context)
        assert url is not None
        response = requests.get(
            f"{sandbox_url}/{url}", headers={"Accept": "application/fhir+json"}, timeout=60
        )
        assert response.status_code == 200, response.text
        sent[key] = response.json()
    return sent


def call(client: FlaskClient, ehr: Ehr, service_id: str, body: dict[str, Any]) -> Any:
    path = f"/cds-services/{service_id}"
    return client.post(path, json=body, headers=bearer(ehr.token(PUBLIC_BASE + path)))


def view_body(patient_id: str, user: str, **extra: Any) -> dict[str, Any]:
    return {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": user, "patientId": patient_id},
        **extra,
    }


def written_patient(fhir: FhirClient, run_id: str) -> tuple[str, dict[str, Any]]:
    subject, doc = create_patient_with_document(fhir, run_id, "CdsHooks")
    write_result(
        fhir,
        fixed_result(SourceRef("DocumentReference", doc["id"], doc["meta"]["versionId"])),
        subject=subject,
        now=NOW,
    )
    return subject.removeprefix("Patient/"), doc


def test_patient_view_cards_from_results_on_the_server(
    client: FlaskClient, ehr: Ehr, fhir: FhirClient, sandbox_url: str, run_id: str, clinician: str
) -> None:
    patient_id, _ = written_patient(fhir, run_id)
    context = {"userId": clinician, "patientId": patient_id}
    body = view_body(
        patient_id, clinician, prefetch=ehr_prefetch(sandbox_url, "chartlight-patient-results", context)
    )
    response = call(client, ehr, "chartlight-patient-results", body)
    assert response.status_code == 200, response.get_json()
    cards = response.get_json()["cards"]
    card = cards[0]
    assert card["indicator"] == "warning"  # glucose and HbA1c flagged H; nothing critical
    assert card["summary"].startswith("TEST OUTPUT, not clinical:") and len(card["summary"]) < 140
    assert "TEST OUTPUT, not clinical" in card["detail"] and "TEST MODEL" in card["source"]["label"]
    assert "chartlight-test/fixed-results 1" in card["source"]["label"]  # named from the Device
    [suggestion] = card["suggestions"]
    actions = suggestion["actions"]
    assert len(actions) == 5 and all(a["type"] == "update" for a in actions)
    assert "No analysis pipelines are installed" in cards[-1]["detail"]

    # Accepting = the clinician's sign-off. The EHR applies one update as sent ...
    document = next(a["resource"] for a in actions if a["resource"]["resourceType"] == "DocumentReference")
    applied = fhir.update(document)
    assert applied["docStatus"] == "final" and applied["authenticator"] == {"reference": clinician}
    # ... and plugin.review.approve leaves a result exactly as the card's action would.
    observation = next(a["resource"] for a in actions if a["resource"]["resourceType"] == "Observation")
    approve(fhir, f"Observation/{observation['id']}", clinician=clinician, now=NOW)
    signed = fhir.read("Observation", observation["id"])
    assert signed["status"] == "final"
    assert {k: v for k, v in signed.items() if k != "meta"} == {
        k: v for k, v in observation.items() if k != "meta"
    }
    assert signed["meta"]["security"] == observation["meta"]["security"]

    # Signed results are no longer offered for sign-off.
    body = view_body(
        patient_id, clinician, prefetch=ehr_prefetch(sandbox_url, "chartlight-patient-results", context)
    )
    again = call(client, ehr, "chartlight-patient-results", body).get_json()["cards"]
    references = {a["resource"]["id"] for a in again[0]["suggestions"][0]["actions"]}
    assert observation["id"] not in references and document["id"] not in references
    assert len(references) == 3


def test_missing_prefetch_is_fetched_from_fhir_server_with_its_token_only(
    client: FlaskClient,
    ehr: Ehr,
    fhir: FhirClient,
    sandbox_url: str,
    run_id: str,
    proxy: tuple[str, ServerState],
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy_url, seen = proxy
    patient_id, _ = written_patient(fhir, run_id)
    context = {"userId": "Practitioner/example", "patientId": patient_id}
    full = ehr_prefetch(sandbox_url, "chartlight-patient-results", context)
    complete = call(
        client,
        ehr,
        "chartlight-patient-results",
        view_body(patient_id, "Practitioner/example", prefetch=full),
    ).get_json()
    seen.seen.clear()
    jwks_before = len(ehr.state.seen)
    partial = view_body(
        patient_id,
        "Practitioner/example",
        prefetch={
            "chartlightObservations": full["chartlightObservations"],
            "chartlightReports": {"resourceType": "OperationOutcome", "issue": []},
        },
        fhirServer=proxy_url,
        fhirAuthorization={
            "access_token": TOKEN,
            "token_type": "Bearer",
            "expires_in": 300,
            # 1.0 syntax, as CDS Hooks 2.0.1 clients send it: a read of each type fetched.
            "scope": "user/Observation.read user/DiagnosticReport.read user/DocumentReference.read "
                     "user/Device.read",
            "subject": "chartlight",
        },
    )
    response = call(client, ehr, "chartlight-patient-results", partial)
    assert response.status_code == 200, response.get_json()
    assert [c["summary"] for c in response.get_json()["cards"]] == [c["summary"] for c in complete["cards"]]
    fetched = sorted(urlsplit(s.path).path.rsplit("/", 1)[-1] for s in seen.seen)
    assert fetched == ["Device", "DiagnosticReport", "DocumentReference"]  # the Observations were sent
    assert all(s.headers.get("Authorization") == f"Bearer {TOKEN}" for s in seen.seen)
    assert all(TOKEN not in json.dumps(s.headers) for s in ehr.state.seen[jwks_before:])
    assert TOKEN not in caplog.text


def test_unfetchable_prefetch_is_412(
    client: FlaskClient, ehr: Ehr, proxy: tuple[str, ServerState], run_id: str
) -> None:
    proxy_url, seen = proxy
    auth = {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 300, "scope": "x", "subject": "y"}
    seen.seen.clear()
    no_server = view_body("nobody", "Practitioner/example")
    elsewhere = view_body(
        "nobody",
        "Practitioner/example",
        fhirServer=proxy_url.replace("127.0.0.1", "localhost"),
        fhirAuthorization=auth,
    )
    dead = view_body(
        "nobody", "Practitioner/example", fhirServer="http://127.0.0.1:9/fhir", fhirAuthorization=auth
    )
    for body in (no_server, elsewhere):
        response = call(client, ehr, "chartlight-patient-results", body)
        assert response.status_code == 412, response.get_json()
        assert "chartlightObservations" in diagnostics(response) and TOKEN not in response.get_data(
            True
        )
    assert seen.seen == []  # a server not allow-listed for this EHR is never contacted
    app_with_dead = client.application
    trusted = app_with_dead.extensions["chartlight.settings"].cds_trusted_ehrs[0]
    settings = cds_settings(
        ehr,
        Path(app_with_dead.extensions["chartlight.settings"].database_url.removeprefix("sqlite:///")).parent,
        cds_trusted_ehrs=(
            TrustedEhr(iss=trusted.iss, jwks_url=trusted.jwks_url, fhir_servers=("http://127.0.0.1:9/fhir",)),
        ),
        cds_fhir_timeout_s=2,
    )
    assert (
        call(create_app(settings).test_client(), ehr, "chartlight-patient-results", dead).status_code == 412
    )


def test_the_specifications_example_requests(client: FlaskClient, ehr: Ehr, sandbox_url: str) -> None:
    # patient-view, as published, with its fhirServer pointing at our sandbox (allow-listed). Its
    # token grants reads of Patient and Observation only: the service does not send the reads it
    # needs beyond those, and says which type the scopes do not reach.
    view = copy.deepcopy(EXAMPLES["patient-view"])
    view["fhirServer"] = sandbox_url
    assert view["fhirAuthorization"]["scope"] == "user/Patient.read user/Observation.read"
    refused = call(client, ehr, "chartlight-patient-results", view)
    assert refused.status_code == 412 and "grant no read of" in diagnostics(refused)
    # With reads of the types it fetches granted (v1 syntax, as 2.0.1 clients send): a card.
    view["fhirAuthorization"]["scope"] += (" user/DiagnosticReport.read user/DocumentReference.read"
                                           " user/Device.read")
    response = call(client, ehr, "chartlight-patient-results", view)
    assert response.status_code == 200, response.get_json()
    [card] = response.get_json()["cards"]
    assert (
        card["summary"] == "chartlight: no AI results for this patient; no analysis pipelines are installed"
    )
    # The order examples order a diet and a medication: nothing for an imaging service to say.
    for hook in ("order-select", "order-sign"):
        response = call(client, ehr, f"chartlight-imaging-{hook}", copy.deepcopy(EXAMPLES[hook]))
        assert response.status_code == 200 and response.get_json() == {"cards": []}
    # The same order-select with a chest X-ray added to the session and selected.
    select = copy.deepcopy(EXAMPLES["order-select"])
    select["context"]["draftOrders"]["entry"].append(
        {"resource": {**CHEST_XR, "subject": {"reference": "Patient/1288992"}}}
    )
    select["context"]["selections"].append("ServiceRequest/repeat-cxr")
    select["fhirServer"] = sandbox_url
    [card] = call(client, ehr, "chartlight-imaging-order-select", select).get_json()["cards"]
    assert card["summary"].startswith("No AI imaging results for this patient")
    assert "imaging pipeline is not installed" in card["detail"]


def test_a_hook_for_another_service_or_a_bad_context_is_400(client: FlaskClient, ehr: Ehr) -> None:
    response = call(client, ehr, "chartlight-imaging-order-sign", copy.deepcopy(EXAMPLES["patient-view"]))
    assert response.status_code == 400 and "answers order-sign" in diagnostics(response)
    broken = copy.deepcopy(EXAMPLES["order-select"])
    del broken["context"]["draftOrders"]
    response = call(client, ehr, "chartlight-imaging-order-select", broken)
    assert response.status_code == 400 and "context.draftOrders" in diagnostics(response)


def test_imaging_order_shows_the_ai_comparison(
    client: FlaskClient, ehr: Ehr, fhir: FhirClient, sandbox_url: str, run_id: str
) -> None:
    patient = fhir.create({"resourceType": "Patient", "name": [{"family": f"Imaging-{run_id[:8]}"}]})
    subject = f"Patient/{patient['id']}"
    studies = [
        fhir.create(
            {"resourceType": "ImagingStudy", "status": "available", "subject": {"reference": subject}}
        )
        for _ in range(2)
    ]
    current, prior = (SourceRef("ImagingStudy", s["id"], s["meta"]["versionId"]) for s in studies)
    finding = Finding(
        key="opacity",
        text="Round opacity in the right lower zone, larger than before",
        body_site="right lower lobe",
        change="worsened",
        abnormal=True,
        evidence=(
            ImageEvidence(
                "1.2.826.0.1.3680043.8.498.1",
                "1.2.826.0.1.3680043.8.498.1.1",
                "1.2.826.0.1.3680043.8.498.1.1.1",
                box=Box(301, 655, 372, 726),
            ),
        ),
    )
    report = ReportGroup(
        key="cxr",
        code=Coding("http://loinc.org", "36643-5", "XR Chest 2 Views"),
        category="RAD",
        item_keys=("opacity",),
        conclusion="Right lower zone opacity, enlarging.",
        effective=NOW,
    )
    model = ModelInfo(
        name="chartlight-test/imaging", version="1", kinds=("Vision-Language-Models",), test_weights=True
    )
    write_result(
        fhir,
        PipelineResult(
            pipeline="imaging",
            pipeline_version="1",
            source=current,
            model=model,
            items=(finding,),
            reports=(report,),
            other_sources=(prior,),
        ),
        subject=subject,
        now=NOW,
    )
    context = {
        "userId": "Practitioner/example",
        "patientId": patient["id"],
        "selections": ["ServiceRequest/repeat-cxr"],
        "draftOrders": {
            "resourceType": "Bundle",
            "entry": [{"resource": {**CHEST_XR, "subject": {"reference": subject}}}],
        },
    }
    body = {
        "hook": "order-select",
        "hookInstance": str(uuid.uuid4()),
        "context": context,
        "prefetch": ehr_prefetch(sandbox_url, "chartlight-imaging-order-select", context),
    }
    response = call(client, ehr, "chartlight-imaging-order-select", body)
    assert response.status_code == 200, response.get_json()
    [card] = response.get_json()["cards"]
    assert card["indicator"] == "warning"
    assert "AI comparison of the last two studies, XR Chest 2 Views (2026-11-28): worsened" in card["summary"]
    assert card["summary"].startswith("TEST OUTPUT") and len(card["summary"]) < 140
    assert "box 301,655,372,726 px" in card["detail"] and "Repeat chest X-ray" in card["detail"]


class OneDocumentPipeline:
    """A registered pipeline whose inputs are the patient's DocumentReferences."""

    unavailable_reason = ""

    def find_sources(self, client: FhirClient, patient_id: str) -> list[dict[str, Any]]:
        return list(client.search("DocumentReference", {"subject": f"Patient/{patient_id}"}))


def test_new_inputs_are_queued_in_the_background_and_the_card_says_so(
    app: Flask, client: FlaskClient, ehr: Ehr, fhir: FhirClient, sandbox_url: str, run_id: str
) -> None:
    app.extensions["chartlight.pipelines"] = {"documents": OneDocumentPipeline()}
    subject, doc = create_patient_with_document(fhir, run_id, "CdsQueue")
    patient_id = subject.removeprefix("Patient/")
    auth = {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 300, "scope": "x", "subject": "y"}
    body = view_body(patient_id, "Practitioner/example", fhirServer=sandbox_url, fhirAuthorization=auth)
    cards = call(client, ehr, "chartlight-patient-results", body).get_json()["cards"]
    assert cards[-1]["summary"] == (
        "chartlight: 1 input(s) being analysed by AI; results will appear when ready"
    )
    assert "AI analysis started in the background" in cards[-1]["detail"]
    jobs = job_store_of(app).list(subject=subject)
    assert [(j.source_id, j.state, j.fhir_base_url) for j in jobs] == [
        (doc["id"], JobState.QUEUED, sandbox_url)
    ]
    again = call(client, ehr, "chartlight-patient-results", {**body, "hookInstance": str(uuid.uuid4())})
    assert "1 input(s) awaiting AI analysis (0 running, 1 queued)" in again.get_json()["cards"][-1]["detail"]
    assert len(job_store_of(app).list(subject=subject)) == 1  # the hook never runs or duplicates a job


def test_a_hook_queued_job_writes_what_the_services_token_may(
    ehr: Ehr, tmp_path: Path, fhir: FhirClient, sandbox_url: str, run_id: str
) -> None:
    """CDS-queued jobs run later with the service's own credentials (the hook's token is
    transient): `fhir_token_scopes` without Observation writes gives a document-only write."""
    trusted = TrustedEhr(iss=ehr.iss, jwks_url=ehr.jwks_url, fhir_servers=(sandbox_url,))
    settings = cds_settings(ehr, tmp_path, fhir_base_url=sandbox_url, cds_trusted_ehrs=(trusted,),
                            cds_source_check_wait_s=10.0,
                            fhir_token_scopes=("user/DocumentReference.crus", "user/Provenance.c",
                                               "user/Device.crus", "user/Observation.rs"))
    app = create_app(settings)
    app.extensions["chartlight.pipelines"] = {"documents": OneDocumentPipeline()}
    subject, doc = create_patient_with_document(fhir, run_id, "CdsDegrade")
    auth = {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 300, "subject": "chartlight",
            "scope": "user/DocumentReference.rs user/Observation.rs"}
    nothing_yet = dict.fromkeys(SERVICES_BY_ID["chartlight-patient-results"].prefetch, EMPTY_BUNDLE)
    body = view_body(subject.removeprefix("Patient/"), "Practitioner/example", fhirServer=sandbox_url,
                     fhirAuthorization=auth, prefetch=nothing_yet)
    assert call(app.test_client(), ehr, "chartlight-patient-results", body).status_code == 200
    store = job_store_of(app)
    [queued] = store.list(subject=subject)
    assert (queued.source_id, queued.state) == (doc["id"], JobState.QUEUED)
    JobRunner(store, {"documents": fixed_pipeline()}, service_client_for(settings)).run_until_idle()
    job = store.get(queued.id)
    assert job.state is JobState.SUCCEEDED, job.error
    assert job.summary["path"] == "document-only"
    assert job.summary["reason"] == "the granted scopes do not allow Observation writes"
    assert list(fhir.search("Observation", {"subject": subject})) == []
    assert len(list(fhir.search("DocumentReference", {"subject": subject}))) == 3  # source + 2 written
