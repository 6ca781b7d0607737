"""The SMART app's review actions and pages against the real HAPI FHIR sandbox: an edit keeps the
AI original (history + extension) with a verifier Provenance; over HTTP, through the sandbox EHR's
launch and FHIR proxy, the pages analyse with the user's token, show results with their evidence
and refuse what the session may not do."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from fhir_mappers.systems import CS_REVIEW_DECISION, SID_RESULT
from plugin.errors import FhirResponseError, InputError
from plugin.fhir import FhirClient
from plugin.results import SourceRef
from plugin.review import EXT_AI_ORIGINAL, approve, edit, reject
from plugin.sandbox import synthetic
from plugin.writeback import write_result
from tests.support.pipelines import fixed_result
from tests.support.smart_stack import SmartStack, smart_stack
from tests.support.sources import create_patient_with_document

pytestmark = pytest.mark.sandbox

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.fixture
def written(fhir: FhirClient, run_id: str) -> dict[str, str]:
    """The fixed test result written for a new patient: references by item key."""
    subject, doc = create_patient_with_document(fhir, run_id, "Pages")
    source = SourceRef("DocumentReference", doc["id"], doc["meta"]["versionId"])
    write_result(fhir, fixed_result(source), subject=subject, now=NOW)
    refs = {}
    for resource_type in ("Observation", "DocumentReference", "DiagnosticReport"):
        for resource in fhir.search(resource_type, {"subject": subject}):
            if any(i.get("system") == SID_RESULT for i in resource.get("identifier", [])):
                name = _code_name(resource) if resource_type == "Observation" else ""
                refs[f"{resource_type}:{name}"] = f"{resource_type}/{resource['id']}"
    return refs


def _code_name(observation: dict) -> str:  # type: ignore[type-arg]
    return str(observation["code"].get("text") or observation["code"]["coding"][0]["display"])


@pytest.fixture
def clinician(fhir: FhirClient) -> str:
    practitioner = fhir.create({"resourceType": "Practitioner", "name": [{"family": "Editor"}]})
    return f"Practitioner/{practitioner['id']}"


def _glucose(written: dict[str, str]) -> str:
    return next(ref for key, ref in written.items() if "lucose" in key)


def _review_provenances(fhir: FhirClient, reference: str) -> list[dict]:  # type: ignore[type-arg]
    return [p for p in fhir.search("Provenance", {"target": reference})
            if p.get("activity", {}).get("coding", [{}])[0].get("system") == CS_REVIEW_DECISION]


def test_edit_makes_the_value_final_and_keeps_the_ai_original(fhir: FhirClient, written, clinician) -> None:  # type: ignore[no-untyped-def]
    glucose = _glucose(written)
    before = fhir.read(*glucose.split("/"))
    assert before["status"] == "preliminary" and before["valueQuantity"]["value"] == 112

    location = edit(fhir, glucose, "121", clinician=clinician, now=NOW, comment="misread digit")

    after = fhir.read(*glucose.split("/"))
    assert location == f"{glucose}/_history/{after['meta']['versionId']}"
    assert after["status"] == "final"
    assert after["valueQuantity"]["value"] == 121 and after["valueQuantity"]["unit"] == "mg/dL"
    originals = [e for e in after["extension"] if e["url"] == EXT_AI_ORIGINAL]
    assert originals == [{"url": EXT_AI_ORIGINAL, "valueQuantity": before["valueQuantity"]}]
    assert "interpretation" not in after  # the model's flag described its own value
    assert any("AI read: 112 mg/dL" in n["text"] and n["authorReference"]["reference"] == clinician
               for n in after["note"])
    # The AI original is still in the history, and the Provenance names it as the revision.
    old = fhir.vread("Observation", glucose.split("/")[1], before["meta"]["versionId"])
    assert old["valueQuantity"]["value"] == 112 and old["status"] == "preliminary"
    [provenance] = _review_provenances(fhir, glucose)
    assert provenance["activity"]["coding"][0]["code"] == "edit"
    assert provenance["agent"][0]["type"]["coding"][0]["code"] == "verifier"
    assert provenance["agent"][0]["who"]["reference"] == clinician
    assert provenance["entity"] == [{"role": "revision", "what": {
        "reference": f"{glucose}/_history/{before['meta']['versionId']}"}}]
    assert provenance["reason"][0]["text"] == "misread digit"


def test_edit_after_approval_is_an_amendment_that_keeps_the_first_original(  # type: ignore[no-untyped-def]
        fhir: FhirClient, written, clinician) -> None:
    glucose = _glucose(written)
    approve(fhir, glucose, clinician=clinician, now=NOW)
    edit(fhir, glucose, "118", clinician=clinician, now=NOW)
    edit(fhir, glucose, "119", clinician=clinician, now=NOW)
    after = fhir.read(*glucose.split("/"))
    assert after["status"] == "amended" and after["valueQuantity"]["value"] == 119
    originals = [e for e in after["extension"] if e["url"] == EXT_AI_ORIGINAL]
    assert len(originals) == 1 and originals[0]["valueQuantity"]["value"] == 112
    decisions = sorted(p["activity"]["coding"][0]["code"] for p in _review_provenances(fhir, glucose))
    assert decisions == ["approve", "edit", "edit"]


def test_edit_of_a_document_replaces_its_text(fhir: FhirClient, written, clinician) -> None:  # type: ignore[no-untyped-def]
    document = next(ref for key, ref in written.items() if key.startswith("DocumentReference"))
    edit(fhir, document, "Glucose and HbA1c high; potassium normal.", clinician=clinician, now=NOW)
    after = fhir.read(*document.split("/"))
    assert after["docStatus"] == "final" and after["authenticator"]["reference"] == clinician
    text = base64.b64decode(after["content"][0]["attachment"]["data"]).decode()
    assert text == "Glucose and HbA1c high; potassium normal."
    [original] = [e for e in after["extension"] if e["url"] == EXT_AI_ORIGINAL]
    assert original["valueString"].startswith("3 values read from the report")


def test_bad_edits_write_nothing(fhir: FhirClient, written, clinician) -> None:  # type: ignore[no-untyped-def]
    glucose = _glucose(written)
    version = fhir.read(*glucose.split("/"))["meta"]["versionId"]
    with pytest.raises(InputError, match="not a number"):
        edit(fhir, glucose, "one hundred", clinician=clinician, now=NOW)
    with pytest.raises(InputError, match="needs the new value"):
        edit(fhir, glucose, "  ", clinician=clinician, now=NOW)
    patient = fhir.search("Patient", {"_count": 1}).__next__()
    with pytest.raises(InputError, match="only Observation"):
        edit(fhir, f"Patient/{patient['id']}", "x", clinician=clinician, now=NOW)
    reject(fhir, glucose, clinician=clinician, reason="wrong patient", now=NOW)
    with pytest.raises(InputError, match="rejected"):
        edit(fhir, glucose, "120", clinician=clinician, now=NOW)
    assert fhir.read(*glucose.split("/"))["meta"]["versionId"] == str(int(version) + 1)
    assert [p["activity"]["coding"][0]["code"] for p in _review_provenances(fhir, glucose)] == ["reject"]


def test_an_edit_racing_another_change_fails_whole(fhir: FhirClient, written, clinician) -> None:  # type: ignore[no-untyped-def]
    glucose = _glucose(written)

    class Interfering(FhirClient):
        def transaction(self, bundle):  # type: ignore[no-untyped-def]
            approve(fhir, glucose, clinician=clinician, now=NOW)  # someone else signs meanwhile
            return super().transaction(bundle)

    racing = Interfering(fhir.base_url, retry_backoff_s=0.05, max_retries=0)
    with pytest.raises(FhirResponseError):
        edit(racing, glucose, "130", clinician=clinician, now=NOW)
    after = fhir.read(*glucose.split("/"))
    assert after["valueQuantity"]["value"] == 112 and after["status"] == "final"
    assert [p["activity"]["coding"][0]["code"] for p in _review_provenances(fhir, glucose)] == ["approve"]


# ---- the pages over HTTP, launched through the sandbox EHR -----------------------------------------


def _launched(stack: SmartStack, patient_id: str) -> tuple[requests.Session, str]:
    """A client that went through the EHR launch, and its CSRF token."""
    browser = stack.launched(patient_id)
    session = stack.session_of(browser)
    assert session is not None
    return browser, session.csrf_token


def _wait_done(browser: requests.Session, stack: SmartStack, key: str) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = browser.get(f"{stack.app_base}/smart/app/status.json", timeout=60).json()["inputs"][key]
        if status["state"] in ("done", "failed"):
            return status  # type: ignore[no-any-return]
        time.sleep(0.3)
    raise AssertionError(f"{key} did not finish")


@pytest.fixture
def lab_patient(fhir: FhirClient, run_id: str) -> tuple[str, str]:
    """A patient with the synthetic lab report as a text PDF: (patient id, DocumentReference id)."""
    patient = fhir.create({"resourceType": "Patient", "name": [{"family": f"Pages-{run_id[:8]}"}]})
    doc = fhir.create({
        "resourceType": "DocumentReference", "status": "current",
        "subject": {"reference": f"Patient/{patient['id']}"}, "description": "Lab report (pages test)",
        "content": [{"attachment": {"contentType": "application/pdf", "data": base64.b64encode(
            synthetic.text_pdf(synthetic.DEMO_LAB_REPORT)).decode()}}]})
    return patient["id"], doc["id"]


def test_pages_analyse_write_and_edit_with_the_users_token(sandbox_url: str, tmp_path: Path,
                                                           fhir: FhirClient, lab_patient) -> None:  # type: ignore[no-untyped-def]
    patient_id, doc_id = lab_patient
    with smart_stack(sandbox_url, tmp_path) as stack:  # with write scope the analysis is a job
        browser, csrf = _launched(stack, patient_id)
        base = f"{stack.app_base}/smart/app"
        started = browser.post(f"{base}/analyze", json={"source": f"DocumentReference/{doc_id}"},
                               headers={"X-CSRF-Token": csrf}, timeout=60)
        assert started.json() == {"ok": True, "started": [f"documents:DocumentReference/{doc_id}"],
                                  "written": True}
        status = _wait_done(browser, stack, f"documents:DocumentReference/{doc_id}")
        assert status["state"] == "done" and "result(s) written" in status["text"]
        values = [o for o in fhir.search("Observation", {"subject": f"Patient/{patient_id}"})
                  if any(i.get("system") == SID_RESULT for i in o.get("identifier", []))]
        assert len(values) == 32 and {o["status"] for o in values} == {"preliminary"}
        # Written with the user's token: the write Provenance names the user.
        write = next(p for p in fhir.search("Provenance", {"target": f"Observation/{values[0]['id']}"}))
        assert write["agent"][0]["onBehalfOf"]["reference"] == stack.user

        page = browser.get(f"{base}/source/DocumentReference/{doc_id}", timeout=60).text
        assert page.count('data-testid="value-row"') == 32
        glucose = next(o for o in values if "lucose" in _code_name(o))
        evidence = browser.get(f"{base}/evidence/Observation/{glucose['id']}/page.png", timeout=60)
        assert evidence.status_code == 200 and evidence.content.startswith(b"\x89PNG")
        assert evidence.headers["Cache-Control"] == "no-store"

        no_token = browser.post(f"{base}/review/Observation/{glucose['id']}/edit", json={"value": "130"},
                                timeout=60)
        assert no_token.status_code == 403
        bad = browser.post(f"{base}/review/Observation/{glucose['id']}/edit", json={"value": "lots"},
                           headers={"X-CSRF-Token": csrf}, timeout=60)
        assert bad.status_code == 400 and "not a number" in bad.json()["error"]
        edited = browser.post(f"{base}/review/Observation/{glucose['id']}/edit",
                              json={"value": "130", "comment": "typo"}, headers={"X-CSRF-Token": csrf},
                              timeout=60).json()
        assert edited["ok"] and edited["state"] == "edited" and edited["value"].startswith("130")
        assert edited["ai_original"] == f"{glucose['valueQuantity']['value']} mg/dL"
        after = fhir.read("Observation", glucose["id"])
        assert after["status"] == "final" and after["valueQuantity"]["value"] == 130
        assert after["meta"]["versionId"] == str(int(glucose["meta"]["versionId"]) + 1)

        # Another patient's result is not this session's to review: refused, nothing written.
        other, other_doc = create_patient_with_document(fhir, "other-patient", "Other")
        source = SourceRef("DocumentReference", other_doc["id"], other_doc["meta"]["versionId"])
        write_result(fhir, fixed_result(source), subject=other, now=NOW)
        foreign = next(o for o in fhir.search("Observation", {"subject": other}))
        refused = browser.post(f"{base}/review/Observation/{foreign['id']}/approve", json={},
                               headers={"X-CSRF-Token": csrf}, timeout=60)
        assert refused.status_code == 404
        assert fhir.read("Observation", foreign["id"])["status"] == "preliminary"


def test_oversized_bodies_are_refused_before_they_are_read(
        sandbox_url: str, tmp_path: Path, lab_patient: tuple[str, str]) -> None:
    patient_id, _ = lab_patient
    with smart_stack(sandbox_url, tmp_path, run_jobs=False) as stack:
        browser, csrf = _launched(stack, patient_id)
        review = f"{stack.app_base}/smart/app/review/Observation/none/approve"
        answer = browser.post(review, data={"csrf_token": csrf, "note": "x" * (300 * 1024)}, timeout=60)
        assert answer.status_code == 413  # a form beyond 256 KiB is not parsed, CSRF token or not
