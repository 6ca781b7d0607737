"""The patient summary in the CDS patient-view hook against the real HAPI sandbox: the latest
summary is a card with a link into the app, answered without a model; once the chart changes,
the hook's background look queues the summary job again."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from cds_hooks.blueprint import PIPELINES_EXTENSION
from plugin.app import job_store_of
from plugin.fhir import FhirClient
from plugin.jobs import JobState
from plugin.pipelines.registry import InstalledPipeline
from plugin.pipelines.summary import SummaryPipeline, latest_summary, refresh_if_changed
from tests.integration.test_cds_hooks_sandbox import (  # noqa: F401 -- fixtures used by name
    app,
    call,
    client,
    ehr,
    ehr_prefetch,
    proxy,
    view_body,
)
from tests.integration.test_summary_sandbox import ANSWER, ScriptedEngine, patient, run  # noqa: F401
from tests.support.cds_ehr import Ehr

pytestmark = pytest.mark.sandbox
SERVICE = "chartlight-patient-results"


def test_the_latest_summary_is_a_card_and_a_changed_chart_queues_a_refresh(
        app: Flask, client: FlaskClient, ehr: Ehr, fhir: FhirClient, sandbox_url: str,  # noqa: F811
        patient: str, tmp_path: Path) -> None:  # noqa: F811
    store = job_store_of(app)
    job = run(store, fhir, ScriptedEngine(ANSWER), patient)
    assert job.state is JobState.SUCCEEDED, job.error
    context = {"userId": "Practitioner/example", "patientId": patient}
    body = view_body(patient, "Practitioner/example", prefetch=ehr_prefetch(sandbox_url, SERVICE, context))
    started = time.monotonic()
    cards = call(client, ehr, SERVICE, body).get_json()["cards"]
    assert time.monotonic() - started < 30  # no model call: the summary was made before
    card = cards[0]
    assert card["summary"].startswith("AI patient summary (preliminary, awaiting review): 4 cited statements")
    assert "HbA1c fell from 8.4 % to 7.1 %." in card["detail"]
    assert "2 statement(s) of the model were withheld" in card["detail"]
    [link] = card["links"]
    assert link["type"] == "smart" and '"view":"summary"' in link["appContext"]
    # The summary is not also offered as a result of one input.
    assert not any("Patient/" in c["summary"] for c in cards[1:])

    # The chart changes; the hook's look for new inputs queues the summary again.
    fhir.create({"resourceType": "AllergyIntolerance", "patient": {"reference": f"Patient/{patient}"},
                 "clinicalStatus": {"coding": [{
                     "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                     "code": "active"}]},
                 "code": {"text": "Latex"}})
    app.extensions[PIPELINES_EXTENSION] = {"summary": InstalledPipeline(
        "summary", "summary", lambda c, p: [], SummaryPipeline.__call__, refresh=refresh_if_changed)}  # type: ignore[arg-type]
    stale = latest_summary(fhir, patient)
    assert stale is not None and stale.changed_since == ("AllergyIntolerance",)
    body = view_body(patient, "Practitioner/example", prefetch=ehr_prefetch(sandbox_url, SERVICE, context),
                     fhirServer=sandbox_url,
                     fhirAuthorization={"access_token": "t", "token_type": "Bearer", "expires_in": 300,
                                        "scope": "user/*.read", "subject": "chartlight"})
    again = call(client, ehr, SERVICE, body).get_json()["cards"]
    assert again[0]["summary"] == card["summary"]  # the card still answers from what is written
    assert store.get(job.id).state is JobState.QUEUED
