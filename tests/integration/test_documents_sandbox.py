"""The documents pipeline against the real HAPI FHIR sandbox: the demo patient's three lab
reports (text PDF, scan, photo) run as jobs and land as validated, AI-labelled Observations with
evidence, DiagnosticReports per panel and a summary DocumentReference; an encrypted PDF fails its
own job with the reason and writes nothing, while the others succeed; a re-run writes nothing."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from fhir_mappers.systems import EXT_DERIVED_FROM, EXT_EVIDENCE_TEXT, SID_RESULT
from plugin.fhir import FhirClient
from plugin.jobs import Job, JobRunner, JobState, JobStore
from plugin.pipelines.documents import PIPELINE, DocumentsOptions, DocumentsPipeline, find_sources
from plugin.sandbox.seed import SEED_SYSTEM, seed_demo_patient
from plugin.sandbox.synthetic import DEMO_LAB_REPORT, text_pdf
from tests.support.lab_documents import encrypted_pdf

pytestmark = pytest.mark.sandbox

Resource = dict[str, Any]
AIAST = ("http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "AIAST")


def ours(fhir: FhirClient, resource_type: str, subject: str) -> list[Resource]:
    return [r for r in fhir.search(resource_type, {"subject": subject, "_count": 200})
            if any(i.get("system") == SID_RESULT for i in r.get("identifier", []))]


def derived_from(resource: Resource) -> str:
    refs = [d["reference"] for d in resource.get("derivedFrom", [])]
    refs += [e["valueReference"]["reference"] for e in resource.get("extension", [])
             if e["url"] == EXT_DERIVED_FROM]
    (ref,) = refs
    return str(ref)


def seed_key(resource: Resource) -> str:
    """Which seeded input a resource is ("lab-report-pdf"), from its seeding identifier."""
    (value,) = [i["value"] for i in resource["identifier"] if i["system"] == SEED_SYSTEM]
    return str(value).rsplit("/", 1)[1]


def submit(store: JobStore, fhir: FhirClient, resource: Resource, subject: str) -> Job:
    return store.submit(pipeline=PIPELINE, source_type=resource["resourceType"],
                        source_id=resource["id"], source_version=resource["meta"]["versionId"],
                        subject=subject, fhir_base_url=fhir.base_url)


def test_lab_reports_become_reviewable_resources_and_a_bad_one_fails_alone(
        fhir: FhirClient, run_id: str, tmp_path: Path) -> None:
    patient_id = seed_demo_patient(fhir).patient_id
    subject = f"Patient/{patient_id}"
    sources = {seed_key(r): r for r in find_sources(fhir, patient_id)}
    assert set(sources) == {"lab-report-pdf", "lab-report-scan", "lab-report-photo"}
    other = fhir.create({"resourceType": "Patient", "name": [{"family": f"Docs-{run_id[:8]}"}]})
    locked = fhir.create({
        "resourceType": "DocumentReference", "status": "current",
        "subject": {"reference": f"Patient/{other['id']}"},
        "content": [{"attachment": {"contentType": "application/pdf", "data": base64.b64encode(
            encrypted_pdf(text_pdf(DEMO_LAB_REPORT))).decode()}}]})

    store = JobStore(f"sqlite:///{tmp_path}/jobs.db")
    jobs = {name: submit(store, fhir, r, subject) for name, r in sources.items()}
    bad = submit(store, fhir, locked, f"Patient/{other['id']}")
    runner = JobRunner(store, {PIPELINE: DocumentsPipeline(DocumentsOptions(engine="layout"))},
                       lambda job: FhirClient(job.fhir_base_url, timeout_s=120))
    runner.run_until_idle(timeout_s=300)

    failed = store.get(bad.id)
    assert failed.state is JobState.FAILED
    assert failed.error == (f"DocumentReference/{locked['id']} content[0]: "
                            "the PDF is encrypted (password protected)")
    for resource_type in ("Observation", "DiagnosticReport", "DocumentReference"):
        assert ours(fhir, resource_type, f"Patient/{other['id']}") == []
    for job in jobs.values():
        done = store.get(job.id)
        assert done.state is JobState.SUCCEEDED, done.error
        assert done.summary["path"] == "observations"
        assert done.summary["model"]["name"] == "chartlight/lab-layout-extractor"

    observations = ours(fhir, "Observation", subject)
    by_source: dict[str, list[Resource]] = {}
    for observation in observations:
        by_source.setdefault(derived_from(observation), []).append(observation)
    ref = {name: f"{r['resourceType']}/{r['id']}" for name, r in sources.items()}
    assert len(by_source[ref["lab-report-pdf"]]) == 32
    assert len(by_source[ref["lab-report-scan"]]) >= 29  # 90% of 32, read by OCR
    assert len(by_source[ref["lab-report-photo"]]) >= 24  # of 26

    glucose = next(o for o in by_source[ref["lab-report-pdf"]]
                   if o["code"].get("text") == "Glucose")
    assert glucose["status"] == "preliminary"
    assert AIAST in {(s["system"], s["code"]) for s in glucose["meta"]["security"]}
    assert glucose["code"]["coding"][0]["code"] == "2345-7"
    assert glucose["valueQuantity"]["value"] == 128 and glucose["valueQuantity"]["code"] == "mg/dL"
    assert glucose["interpretation"][0]["coding"][0]["code"] == "H"
    assert glucose["effectiveDateTime"].startswith("2026-11-20T08:15:00")
    (evidence,) = [e for e in glucose["extension"] if e["url"] == EXT_EVIDENCE_TEXT]
    parts = {p["url"]: p for p in evidence["extension"]}
    assert parts["page"]["valueInteger"] == 1
    assert parts["quote"]["valueString"] == "Glucose 128 mg/dL 70-99 H"
    for observation in observations:
        assert any(e["url"] == EXT_EVIDENCE_TEXT for e in observation["extension"])

    reports = [r for r in ours(fhir, "DiagnosticReport", subject)
               if r["code"]["coding"][0]["code"] == "57021-8"]
    assert len(reports) == 3  # the CBC panel of each of the three documents
    assert all(len(r["result"]) == 11 for r in reports)
    summaries = [d for d in ours(fhir, "DocumentReference", subject)
                 if any(c.get("code") == "summary" for c in d["type"]["coding"])]
    assert len(summaries) == 3
    scan_summary = next(d for d in summaries
                        if d["context"]["related"][0]["reference"] == ref["lab-report-scan"])
    text = base64.b64decode(scan_summary["content"][0]["attachment"]["data"]).decode()
    assert "page 1: OCR at 200 dpi" in text and "values in 5 panels" in text

    # A re-run of the same document versions writes nothing new.
    text_job = jobs["lab-report-pdf"]
    store.retry(text_job.id)
    runner.run_until_idle(timeout_s=120)
    rerun = store.get(text_job.id)
    assert rerun.state is JobState.SUCCEEDED
    assert rerun.summary["created"] == [] and rerun.summary["updated"] == []
    assert len(ours(fhir, "Observation", subject)) == len(observations)
