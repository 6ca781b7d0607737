"""The imaging pipeline end to end against the real servers: the demo patient's CT and chest X-ray
pair seeded into the Orthanc PACS behind an ImagingStudy Endpoint on the HAPI FHIR sandbox, then
retrieval (DICOMweb), series selection, preprocessing, the model, mapping and write-back.

With a tiny random-weight Gemma 3 the answers are noise: each job must say so (a problem and a
narrative saying the answer could not be read), write no finding, and label what it writes as
test output. With canned answers from a loopback OpenAI-compatible endpoint (the remote engine),
through the CLI, the findings, the comparison with the prior X-ray and the boxes land as
Observations, a DiagnosticReport and a narrative, accepted by the sandbox's validation, with a
Provenance naming the ImagingStudy versions and the DICOM instances the model saw."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fhir_mappers.systems import EXT_DERIVED_FROM, EXT_EVIDENCE_IMAGE, SID_RESULT
from plugin.cli import cli
from plugin.engines.test_models.tiny_gemma import save_tiny_medgemma, tiny_engine
from plugin.fhir import FhirClient
from plugin.jobs import JobRunner, JobState, JobStore
from plugin.pipelines.imaging import PIPELINE, ImagingPipeline
from plugin.pipelines.imaging.prepare import ImagingOptions, find_imaging_studies
from plugin.sandbox import synthetic
from plugin.sandbox.seed import seed_demo_patient
from tests.support.chat_completions import ChatServer, chat_server

pytestmark = pytest.mark.sandbox

Resource = dict[str, Any]
MODEL = "google/medgemma-1.5-4b-it"
TEST_WEIGHTS = ("https://chartlight.dev/fhir/CodeSystem/run-kind", "test-weights")


# A patient of our own (same synthetic inputs, other MRN and so other DICOM UIDs): no other
# test's seeding of the demo patient, and nothing this module writes, meets another test's data.
PATIENT = replace(synthetic.DEMO_PATIENT, mrn=f"CL-IMGAI-{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def patient(sandbox_url: str, pacs_url: str) -> str:
    client = FhirClient(sandbox_url, timeout_s=120)
    return seed_demo_patient(client, PATIENT, pacs_url=pacs_url).patient_id


def ours(fhir: FhirClient, resource_type: str, subject: str) -> list[Resource]:
    """What chartlight wrote for the patient from imaging (other pipelines share the patient)."""
    return [r for r in fhir.search(resource_type, {"subject": subject, "_count": 200})
            if any(i.get("system") == SID_RESULT for i in r.get("identifier", []))
            and "ImagingStudy/" in json.dumps(_source_links(r))]


def _source_links(resource: Resource) -> list[Any]:
    return [resource.get("derivedFrom"), resource.get("context"),
            [e for e in resource.get("extension", []) if e["url"] == EXT_DERIVED_FROM]]


def provenance_of(fhir: FhirClient, target: str) -> Resource:
    (provenance,) = fhir.search("Provenance", {"target": target})
    return provenance


def named_instances(provenance: Resource) -> list[str]:
    return [e["what"]["identifier"]["value"].removeprefix("urn:oid:") for e in provenance["entity"]
            if "identifier" in e["what"]]


def studies_by_kind(fhir: FhirClient, patient: str) -> dict[str, Resource]:
    studies = find_imaging_studies(fhir, patient)
    by_kind = {"ct": next(s for s in studies if s["modality"][0]["code"] == "CT")}
    current, prior = [s for s in studies if s["modality"][0]["code"] != "CT"]  # newest first
    return {**by_kind, "cxr-current": current, "cxr-prior": prior}


def test_random_weights_give_unreadable_answers_reported_as_such_and_no_findings(
        fhir: FhirClient, patient: str, pacs_url: str, tmp_path: Path) -> None:
    engine = tiny_engine(save_tiny_medgemma(tmp_path / "tiny-medgemma"))
    preparation = ImagingOptions(allowed_endpoints=(pacs_url,))  # the PACS sandbox may be called
    pipeline = ImagingPipeline(engine, preparation=preparation, max_new_tokens=24)
    store = JobStore(f"sqlite:///{tmp_path}/jobs.db")
    studies = studies_by_kind(fhir, patient)
    jobs = {name: store.submit(pipeline=PIPELINE, source_type="ImagingStudy", source_id=s["id"],
                               source_version=s["meta"]["versionId"], subject=f"Patient/{patient}",
                               fhir_base_url=fhir.base_url) for name, s in studies.items()}
    JobRunner(store, {PIPELINE: pipeline}, lambda job: FhirClient(job.fhir_base_url, timeout_s=120)
              ).run_until_idle(timeout_s=500)

    for name, study in studies.items():
        job = store.get(jobs[name].id)
        assert job.state is JobState.SUCCEEDED, job.error
        assert job.summary["model"]["test_weights"] is True
        (problem,) = [p for p in job.summary["problems"] if "could not be read" in p["reason"]]
        assert problem["where"] == f"ImagingStudy/{study['id']}"
        (written,) = job.summary["created"]  # the narrative only: no finding, no report
        assert written.startswith("DocumentReference/")
        document = fhir.read("DocumentReference", written.split("/")[1])
        assert TEST_WEIGHTS in {(t["system"], t["code"]) for t in document["meta"]["tag"]}
        assert document["description"].startswith("[TEST OUTPUT, not clinical (random-weight test model)]")
        assert document["context"]["related"] == [{"reference": f"ImagingStudy/{study['id']}"}]
        text = base64.b64decode(document["content"][0]["attachment"]["data"]).decode()
        assert "could not be read, so nothing was taken from it" in text
        assert "TEST OUTPUT, not clinical: random test weights" in text
        provenance = provenance_of(fhir, written.split("/_history/")[0])
        assert provenance["entity"][0]["what"]["reference"] == (
            f"ImagingStudy/{study['id']}/_history/{study['meta']['versionId']}")
        assert len(named_instances(provenance)) == (85 if name == "ct" else 1)
    for resource_type in ("Observation", "DiagnosticReport"):
        assert ours(fhir, resource_type, f"Patient/{patient}") == []


def cli_env(sandbox_url: str, url: str, tmp_path: Path, pacs_url: str) -> dict[str, str]:
    return {"CHARTLIGHT_FHIR_BASE_URL": sandbox_url, "CHARTLIGHT_DATABASE_URL": f"sqlite:///{tmp_path}/cli.db",
            "CHARTLIGHT_MEDGEMMA_ENGINE": "remote", "CHARTLIGHT_MEDGEMMA_REMOTE_URL": url,
            "CHARTLIGHT_MEDGEMMA_REMOTE_API_KEY": "sk-sandbox",
            "CHARTLIGHT_IMAGING_ALLOWED_ENDPOINTS": pacs_url, "COLUMNS": "200"}


COMPARISON = ('```json\n{"findings": [{"finding": "Round opacity in the right lower zone", '
              '"body_site": "right lung", "change": "worsened"}, {"finding": "Heart size", '
              '"body_site": "heart", "change": "stable"}], "impression": "The right lower zone '
              'opacity is larger than on the prior film."}\n```')
BOXES = '[{"box_2d": [100, 200, 600, 700], "label": "right lung"}, {"box_2d": [5, 5], "label": "heart"}]'
CT_FINDINGS = ('{"findings": [{"finding": "Pulmonary nodule", "body_site": "right lung", '
               '"abnormal": true, "slices": [40]}], "impression": "One pulmonary nodule."}')


def test_canned_answers_from_a_remote_endpoint_become_reviewable_resources(
        fhir: FhirClient, sandbox_url: str, pacs_url: str, patient: str, tmp_path: Path) -> None:
    studies = studies_by_kind(fhir, patient)
    current, prior = studies["cxr-current"], studies["cxr-prior"]
    runner = CliRunner()

    server = ChatServer(MODEL, answers=[COMPARISON], api_key="sk-sandbox")
    with chat_server(server) as url:
        compared = runner.invoke(cli, ["analyze", "imaging", "--patient", patient, "--task", "compare"],
                                 env=cli_env(sandbox_url, url, tmp_path, pacs_url))
    assert compared.exit_code == 0, compared.output
    assert server.shape_errors == [] and len(server.requests) == 1  # only the current X-ray has a prior
    assert len(server.requests[0].images()) == 2
    assert f"ImagingStudy/{current['id']}" in compared.output and "2 Observation" in compared.output

    subject = f"Patient/{patient}"
    changed = [o for o in ours(fhir, "Observation", subject) if "component" in o]
    assert sorted(o["component"][0]["valueCodeableConcept"]["coding"][0]["code"] for o in changed) == [
        "stable", "worsened"]
    opacity = next(o for o in changed if o["valueString"].startswith("Round opacity"))
    assert opacity["status"] == "preliminary" and opacity["category"][0]["coding"][0]["code"] == "imaging"
    assert opacity["derivedFrom"] == [{"reference": f"ImagingStudy/{current['id']}"}]
    assert opacity["bodySite"]["coding"][0]["code"] == "3341006"
    (report,) = [r for r in ours(fhir, "DiagnosticReport", subject)
                 if r["conclusion"].startswith("The right lower zone opacity")]
    assert report["status"] == "preliminary" and len(report["result"]) == 2
    provenance = provenance_of(fhir, f"Observation/{opacity['id']}")
    sources = [e["what"].get("reference") for e in provenance["entity"]]
    assert sources[:2] == [f"ImagingStudy/{current['id']}/_history/{current['meta']['versionId']}",
                           f"ImagingStudy/{prior['id']}/_history/{prior['meta']['versionId']}"]
    assert len(named_instances(provenance)) == 2

    server = ChatServer(MODEL, answers=[BOXES], api_key="sk-sandbox")
    with chat_server(server) as url:
        located = runner.invoke(cli, ["analyze", "imaging", "--patient", patient, "--task", "localize",
                                      "--find", "right lung", "--find", "heart"],
                                env=cli_env(sandbox_url, url, tmp_path, pacs_url))
    assert located.exit_code == 0, located.output
    assert len(server.requests) == 2  # both radiographs
    assert "to check: box #2 (heart)" in located.output  # the table says what was not used
    boxed = [o for o in ours(fhir, "Observation", subject) if o.get("valueString") == "right lung"]
    assert len(boxed) == 2
    for observation in boxed:
        (evidence,) = [e for e in observation["extension"] if e["url"] == EXT_EVIDENCE_IMAGE]
        parts = {p["url"] for p in evidence["extension"]}
        assert {"study", "series", "instance", "frame", "box"} <= parts
    drafts = [d for d in ours(fhir, "DocumentReference", subject)
              if d["context"]["related"] == [{"reference": f"ImagingStudy/{current['id']}"}]]
    texts = [base64.b64decode(d["content"][0]["attachment"]["data"]).decode() for d in drafts]
    (localisation,) = [t for t in texts if ": localisation (AI draft)" in t]
    assert "box #2 (heart) not used: box_2d must be four numbers" in localisation
    assert "Not located: heart." in localisation

    server = ChatServer(MODEL, answers=[CT_FINDINGS], api_key="sk-sandbox")
    with chat_server(server) as url:
        read = runner.invoke(cli, ["analyze", "imaging", "--patient", patient],
                             env=cli_env(sandbox_url, url, tmp_path, pacs_url))
    assert read.exit_code == 0, read.output
    ct_request = next(r for r in server.requests if len(r.images()) > 1)
    labels = [p["text"] for p in ct_request.parts if p["type"] == "text"]
    assert labels[1:4] == ["SLICE 1", "SLICE 2", "SLICE 3"] and len(ct_request.images()) == 85
    nodule = next(o for o in ours(fhir, "Observation", subject)
                  if o.get("valueString") == "Pulmonary nodule"
                  and o["derivedFrom"] == [{"reference": f"ImagingStudy/{studies['ct']['id']}"}])
    (evidence,) = [e for e in nodule["extension"] if e["url"] == EXT_EVIDENCE_IMAGE]
    slice_part = next(p for p in evidence["extension"] if p["url"] == "slice")
    assert 0 < slice_part["valueInteger"] < 120  # the series position of the 40th slice shown
