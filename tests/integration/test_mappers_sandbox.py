"""Every kind of resource fhir_mappers writes, posted to the real HAPI FHIR sandbox with request
validation on: the server accepts each one and stores it exactly as sent (what makes a re-run's
"is it unchanged?" comparison work)."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from fhir_mappers import (
    item_identifier,
    report_identifier,
    structured_results_identifier,
    to_device,
    to_diagnostic_report,
    to_document_reference,
    to_observation,
    to_provenance,
    to_review_provenance,
    to_structured_results_document,
)
from plugin.fhir import FhirClient
from plugin.results import (
    AudioEvidence,
    Box,
    Coding,
    Finding,
    ImageEvidence,
    MeasuredValue,
    ModelInfo,
    Narrative,
    PipelineResult,
    ReferenceRange,
    ReportGroup,
    SourceRef,
    TextEvidence,
)

pytestmark = pytest.mark.sandbox

Resource = dict[str, Any]
WHEN = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
MODEL = ModelInfo("chartlight/tiny-medgemma", "random-1",
                  ("Vision-Language-Models", "Non-Deterministic-AI"), "Tiny MedGemma",
                  test_weights=True)
SERVER_META = ("versionId", "lastUpdated", "source")


@dataclass(frozen=True)
class Chart:
    """What the mapped resources point at, created on the server first."""

    subject: str
    clinician: str
    document: SourceRef
    study: SourceRef
    labs: PipelineResult
    imaging: PipelineResult
    speech: PipelineResult


@pytest.fixture
def chart(fhir: FhirClient, run_id: str) -> Chart:
    patient = fhir.create({"resourceType": "Patient", "name": [{"family": f"Map-{run_id[:8]}"}]})
    subject = f"Patient/{patient['id']}"
    practitioner = fhir.create({"resourceType": "Practitioner", "name": [{"family": "Reviewer"}]})
    report = b"Glucose 105.5 mg/dL (70-99) H\nSodium 140 mmol/L (135-145)"
    doc = fhir.create({
        "resourceType": "DocumentReference", "status": "current", "subject": {"reference": subject},
        "content": [{"attachment": {"contentType": "text/plain",
                                    "data": base64.b64encode(report).decode()}}]})
    study = fhir.create({"resourceType": "ImagingStudy", "status": "available",
                         "subject": {"reference": subject}})
    document = SourceRef("DocumentReference", doc["id"], doc["meta"]["versionId"],
                         hashlib.sha256(report).hexdigest())
    imaging_source = SourceRef("ImagingStudy", study["id"], study["meta"]["versionId"], "c" * 64)
    glucose = MeasuredValue(
        "glucose", "Glucose", Decimal("105.5"), "mg/dl", ReferenceRange(text="70-99"),
        effective=WHEN, critical=True, panel="Basic metabolic panel",
        evidence=(TextEvidence(1, 0, 29, "Glucose 105.5 mg/dL (70-99) H", Box(10, 20, 300, 40)),),
        confidence=0.9)
    sodium = MeasuredValue("sodium", "Sodium", Decimal("140"), "mmol/L",
                           ReferenceRange(Decimal("135"), Decimal("145"), "135-145"), effective=WHEN)
    odd = MeasuredValue("tpo", "Anti-TPO Ab", "<0.5", "kIU/L furlongs", ReferenceRange(text="<35"))
    finding = Finding(
        "opacity", "Right lower lobe opacity, larger than before.", body_site="right lung",
        change="worsened", abnormal=True, confidence=0.6,
        evidence=(ImageEvidence("1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2",
                                "1.2.826.0.1.3680043.8.498.3", frame=1, slice_index=40,
                                box=Box(100, 120, 180.5, 210)),))
    dictation = Narrative(
        "transcript", "transcript", "Dictated note", "Chest CT reviewed. Opacity has grown.",
        dictated=True, details_json='{"words": [{"w": "Chest", "start": 0.0, "end": 0.3}]}',
        evidence=(AudioEvidence(0.0, 4.25, "Chest CT reviewed"),))
    bmp = ReportGroup("bmp", Coding("http://loinc.org", "51990-0", "Basic metabolic panel - Blood"),
                      "LAB", ("glucose", "sodium"), "Hyperglycaemia; sodium normal.", WHEN)
    return Chart(
        subject=subject, clinician=f"Practitioner/{practitioner['id']}", document=document,
        study=imaging_source,
        labs=PipelineResult("documents", "prompt-1", document, MODEL, (glucose, sodium, odd),
                            (bmp,)),
        imaging=PipelineResult("imaging", "prompt-1", imaging_source, MODEL, (finding,)),
        speech=PipelineResult("speech", "prompt-1", document, MODEL, (dictation,)),
    )


def stored_as_sent(fhir: FhirClient, sent: Resource, created: Resource) -> None:
    """The server answered 201 with an id, and reading it back gives what was sent, less the
    server's own bookkeeping (id, versionId, lastUpdated, source)."""
    assert created["id"] and created["meta"]["versionId"] == "1"
    stored = fhir.read(sent["resourceType"], created["id"])
    stored.pop("id")
    meta = {k: v for k, v in stored.pop("meta").items() if k not in SERVER_META}
    if meta:
        stored["meta"] = meta
    assert stored == sent


def _observations(chart: Chart) -> list[tuple[Resource, str]]:
    mapped = []
    for result in (chart.labs, chart.imaging):
        for item in result.items:
            assert isinstance(item, MeasuredValue | Finding)
            mapped.append((to_observation(
                item, subject=chart.subject, source=result.source, model=result.model,
                identifier=item_identifier(result, item.key), effective=WHEN), item.key))
    return mapped


def test_device_is_accepted_as_sent(fhir: FhirClient) -> None:
    device = to_device(MODEL)
    stored_as_sent(fhir, device, fhir.create(device))


def test_observations_lab_text_and_imaging_are_accepted_as_sent(
        fhir: FhirClient, chart: Chart) -> None:
    observations = _observations(chart)
    assert len(observations) == 4
    for observation, _ in observations:
        stored_as_sent(fhir, observation, fhir.create(observation))


def test_diagnostic_report_with_ai_conclusion_is_accepted_as_sent(
        fhir: FhirClient, chart: Chart) -> None:
    created = {key: fhir.create(obs) for obs, key in _observations(chart)}
    group = chart.labs.reports[0]
    report = to_diagnostic_report(
        group, subject=chart.subject, source=chart.document, model=MODEL,
        identifier=report_identifier(chart.labs, group),
        result_refs=[f"Observation/{created[key]['id']}" for key in group.item_keys])
    assert [s["code"] for s in report["meta"]["security"]] == ["PROCESSINLINELABEL", "AIAST"]
    stored_as_sent(fhir, report, fhir.create(report))


def test_dictated_narrative_and_structured_results_are_accepted_as_sent(
        fhir: FhirClient, chart: Chart) -> None:
    [narrative] = chart.speech.items
    assert isinstance(narrative, Narrative)
    note = to_document_reference(narrative, subject=chart.subject, source=chart.document,
                                 identifier=item_identifier(chart.speech, narrative.key),
                                 model=MODEL, date=WHEN)
    assert [s["code"] for s in note["meta"]["security"]] == ["AIAST", "DICTAST"]
    stored_as_sent(fhir, note, fhir.create(note))
    structured = to_structured_results_document(
        chart.labs, subject=chart.subject, identifier=structured_results_identifier(chart.labs),
        date=None)
    stored_as_sent(fhir, structured, fhir.create(structured))


def test_provenances_of_a_write_and_a_review_keep_exact_versions(
        fhir: FhirClient, chart: Chart) -> None:
    device = fhir.create(to_device(MODEL))
    observation = fhir.create(_observations(chart)[0][0])
    target = f"Observation/{observation['id']}"
    provenance = to_provenance(
        targets=[target], device=f"Device/{device['id']}", sources=[chart.document, chart.study],
        recorded=WHEN, on_behalf_of=chart.clinician, activity_text="chartlight documents prompt-1")
    stored_as_sent(fhir, provenance, fhir.create(provenance))
    for decision, reason in (("approve", None), ("reject", "Belongs to another patient")):
        review = to_review_provenance(
            target=f"{target}/_history/1", clinician=chart.clinician, recorded=WHEN,
            decision=decision, reason=reason)  # type: ignore[arg-type]
        stored_as_sent(fhir, review, fhir.create(review))


def test_everything_in_one_transaction_with_urn_uuid_references(
        fhir: FhirClient, chart: Chart) -> None:
    entries: list[Resource] = []

    def add(resource: Resource, n: int) -> str:
        url = f"urn:uuid:00000000-0000-4000-8000-{n:012d}"
        entries.append({"fullUrl": url, "resource": resource,
                        "request": {"method": "POST", "url": resource["resourceType"]}})
        return url

    device_url = add(to_device(MODEL), 0)
    refs = {key: add(obs, n) for n, (obs, key) in enumerate(_observations(chart), start=1)}
    group = chart.labs.reports[0]
    add(to_diagnostic_report(group, subject=chart.subject, source=chart.document, model=MODEL,
                             identifier=report_identifier(chart.labs, group),
                             result_refs=[refs[key] for key in group.item_keys]), 10)
    [narrative] = chart.speech.items
    assert isinstance(narrative, Narrative)
    add(to_document_reference(narrative, subject=chart.subject, source=chart.document,
                              identifier=item_identifier(chart.speech, narrative.key),
                              model=MODEL, date=None), 11)
    targets = [e["fullUrl"] for e in entries[1:]]
    add(to_provenance(targets=targets, device=device_url, sources=[chart.document, chart.study],
                      recorded=WHEN, on_behalf_of=None, activity_text="one write"), 12)

    response = fhir.transaction({"resourceType": "Bundle", "type": "transaction",
                                 "entry": entries})
    statuses = [e["response"]["status"] for e in response["entry"]]
    assert statuses == ["201 Created"] * len(entries)
    locations = [e["response"]["location"].split("/_history")[0] for e in response["entry"]]
    report = fhir.read("DiagnosticReport", locations[5].split("/")[-1])
    assert [r["reference"] for r in report["result"]] == locations[1:3]
    provenance = fhir.read("Provenance", locations[-1].split("/")[-1])
    assert [t["reference"] for t in provenance["target"]] == locations[1:-1]
    assert provenance["agent"][0]["who"]["reference"] == locations[0]
