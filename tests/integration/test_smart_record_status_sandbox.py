"""Input status from the record, against the real HAPI sandbox: results chartlight wrote for an
input's current version count as its analysis whatever the local job store says (here a fresh job
database that never saw them), "Analyse everything not analysed yet" leaves such inputs alone, a
result signed on the record shows as signed, and a new version of the input is not analysed."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from fhir_mappers.systems import SID_RESULT
from plugin.app import job_store_of
from plugin.fhir import FhirClient
from plugin.results import SourceRef
from plugin.review import approve
from plugin.sandbox.ehr import ensure_user
from plugin.writeback import write_result
from smart_launch.views.context import pipelines_of
from tests.support.pipelines import fixed_result
from tests.support.smart_stack import SmartStack, smart_stack
from tests.support.sources import create_patient_with_document

pytestmark = pytest.mark.sandbox

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def _row(page: str, reference: str) -> str:
    start = page.index(f'data-input="documents:{reference}"')
    return page[start:page.index("</tr>", start)]


def _state(row: str) -> str:
    found = re.search(r'data-testid="input-state">([^<]*)<', row)
    assert found, row
    return found.group(1)


def _home(stack: SmartStack, browser: requests.Session) -> str:
    answer = browser.get(f"{stack.app_base}/smart/app", timeout=120)
    assert answer.status_code == 200, answer.text[:500]
    return html.unescape(answer.text)


def _analyse_all(stack: SmartStack, browser: requests.Session) -> list[str]:
    session = stack.session_of(browser)
    assert session is not None
    answer = browser.post(f"{stack.app_base}/smart/app/analyze", json={"source": "all"}, timeout=120,
                          headers={"X-CSRF-Token": session.csrf_token})
    assert answer.status_code == 200, answer.text[:500]
    started: list[str] = answer.json()["started"]
    return started


def test_status_comes_from_the_record_with_a_fresh_job_database(
        sandbox_url: str, tmp_path: Path, fhir: FhirClient, run_id: str) -> None:
    subject, doc = create_patient_with_document(fhir, run_id, "Record")
    patient_id = subject.split("/")[1]
    reference = f"DocumentReference/{doc['id']}"
    # Another chartlight instance analysed it: its results and Provenance are on the record.
    write_result(fhir, fixed_result(SourceRef("DocumentReference", doc["id"], doc["meta"]["versionId"])),
                 subject=subject, now=NOW)
    results = [r for t in ("Observation", "DiagnosticReport", "DocumentReference")
               for r in fhir.search(t, {"subject": subject, "identifier": f"{SID_RESULT}|"})]
    with smart_stack(sandbox_url, tmp_path, run_jobs=False) as stack:
        pipelines_of(stack.app)
        assert job_store_of(stack.app).list(limit=10) == []  # this instance's job store knows nothing
        browser = stack.launched(patient_id)

        row = _row(_home(stack, browser), reference)
        assert _state(row) == "done", row
        assert f"{len(results)} result(s) on the record, {len(results)} awaiting review" in row
        assert _analyse_all(stack, browser) == []  # nothing to analyse: it is on the record
        assert job_store_of(stack.app).list(limit=10) == []

        # A clinician signs every result (on the record, not through this app).
        clinician = ensure_user(fhir)
        for result in results:
            approve(fhir, f"{result['resourceType']}/{result['id']}", clinician=clinician, now=NOW)
        row = _row(_home(stack, browser), reference)
        assert _state(row) == "signed", row
        assert f"{len(results)} result(s) on the record, {len(results)} signed" in row
        assert f'data-testid="signed-count">{len(results)} signed<' in row

        # A new version of the input: the results on the record are about the old one.
        fhir.update({**doc, "description": "Lab report (corrected scan)"})
        row = _row(_home(stack, browser), reference)
        assert _state(row) == "not analysed", row
        assert _analyse_all(stack, browser) == [f"documents:{reference}"]
