"""The chart pages' rules against the real stack (sandbox EHR, HAPI): CSRF on asking and saving,
the session's patient only for cited resources, bad questions refused, an answer saved only by
the session that asked it, nothing logged of the question."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from plugin.fhir import FhirClient
from plugin.pipelines.summary import EstimatedCounter, SummaryOptions, SummaryPipeline
from smart_launch.chart_pages import READER
from tests.browser.test_chart_summary import StreamingEngine, chart_patient  # noqa: F401 -- fixture
from tests.support.smart_stack import SmartStack, smart_stack

pytestmark = pytest.mark.sandbox
QUESTION = "Is the potassium of Ms Example rising?"


@pytest.fixture
def stack(sandbox_url: str, tmp_path: Path) -> Iterator[SmartStack]:
    with smart_stack(sandbox_url, tmp_path) as stack:
        engine = StreamingEngine([("Answer", "Potassium was 5.3 mmol/L, flagged high.", ["Potassium"])])
        stack.app.extensions[READER] = SummaryPipeline(SummaryOptions(), engine, EstimatedCounter())
        yield stack


def _launched(stack: SmartStack, patient_id: str) -> tuple[requests.Session, str]:
    browser = stack.launched(patient_id)
    session = stack.session_of(browser)
    assert session is not None
    return browser, session.csrf_token


def test_ask_and_save_keep_the_apps_rules(stack: SmartStack, chart_patient: str, fhir: FhirClient,  # noqa: F811
                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    browser, csrf = _launched(stack, chart_patient)
    base = f"{stack.app_base}/smart/app"
    # No CSRF header: refused before any model or FHIR call.
    assert browser.post(f"{base}/ask", json={"question": QUESTION}, timeout=60).status_code == 403
    empty = browser.post(f"{base}/ask", json={"question": "  "}, headers={"X-CSRF-Token": csrf}, timeout=60)
    assert empty.status_code == 400 and "the question is empty" in empty.json()["error"]

    answered = browser.post(f"{base}/ask", json={"question": QUESTION}, headers={"X-CSRF-Token": csrf},
                            timeout=120)
    assert answered.headers["Content-Type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in answered.text.splitlines() if line.strip()]
    assert len([x for x in lines if "chunk" in x]) > 1  # streamed in pieces
    answer = lines[-1]["answer"]
    assert [s["text"] for s in answer["sentences"]] == ["Potassium was 5.3 mmol/L, flagged high."]
    citation = answer["sentences"][0]["citations"][0]
    assert citation["reference"].startswith("Observation/")
    shown = browser.get(stack.app_base + citation["url"], timeout=60)
    assert shown.status_code == 200 and "5.3" in shown.text

    # Another patient's resource is not shown through this session.
    other = fhir.create({"resourceType": "Patient", "name": [{"family": "Elsewhere"}]})
    foreign = fhir.create({"resourceType": "Condition", "subject": {"reference": f"Patient/{other['id']}"},
                           "code": {"text": "Secret"}})
    refused = browser.get(f"{base}/chart/Condition/{foreign['id']}/1", timeout=60)
    assert refused.status_code == 403 and "Secret" not in refused.text

    # Saving: with CSRF, by this session only.
    assert browser.post(f"{base}/ask/save", json={"answer": answer["id"]}, timeout=60).status_code == 403
    stranger, stranger_csrf = _launched(stack, chart_patient)
    elsewhere = stranger.post(f"{base}/ask/save", json={"answer": answer["id"]},
                              headers={"X-CSRF-Token": stranger_csrf}, timeout=60)
    assert elsewhere.status_code == 404
    saved = browser.post(f"{base}/ask/save", json={"answer": answer["id"]}, headers={"X-CSRF-Token": csrf},
                         timeout=60).json()
    assert saved["ok"] and saved["document"].startswith("DocumentReference/")
    assert saved["provenance"].startswith("Provenance/")
    assert QUESTION not in caplog.text and "5.3 mmol/L" not in caplog.text
