"""Pathology results against the real servers: a whole-slide ImagingStudy (SM series) behind a
DICOMweb Endpoint on the HAPI FHIR sandbox, its level-1 instance — a tiled VL Whole Slide
Microscopy instance made here (tests/support/prepared_slides.py) — stored in the Orthanc PACS by
STOW-RS, and the pathology pipeline run through the job runner on the slide as prepared by hand,
with canned answers from an engine that says it is a random-weight test model (so everything
written is labelled TEST OUTPUT).

FHIR: the Observations (laboratory, evidence with level, frames, region), the PAT DiagnosticReport
and the Provenance naming the instance and its frames are accepted by the sandbox; a re-run writes
nothing; a new model version updates the same resources; a signed report is left untouched.
PACS: the SR is accepted, retrieved by WADO-RS, re-read with highdicom, and its regions reference
the level-1 instance and the patches' frames with the FHIR boxes; a re-run stores no second SR."""

from __future__ import annotations

import base64
import io
import json
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import highdicom as hd
import pytest
import requests

from fhir_mappers.systems import DICOM_UID, EXT_DICOM_FRAMES, EXT_EVIDENCE_IMAGE, SID_RESULT
from plugin.engines.test_models.tiny_gemma import save_tiny_medgemma, tiny_engine
from plugin.fhir import FhirClient
from plugin.pipelines.imaging.dicomweb import DicomWebClient, store_instances
from plugin.pipelines.imaging.stow import DicomWriteOptions
from plugin.pipelines.pathology.pipeline import PathologyPipeline
from plugin.pipelines.pathology.slide import PreparedSlide
from plugin.results import ModelInfo
from tests.support.prepared_slides import PATCHES, level1_instance, prepared_slide, slide_uids
from tests.support.slide_results import run_pathology_job
from tests.support.sr_regions import sr_regions

pytestmark = pytest.mark.sandbox

Resource = dict[str, Any]
MODEL = "google/medgemma-1.5-4b-it"
ROOT = "1.2.826.0.1.3680043.99.8"
ANSWER = json.dumps({"findings": [
    {"finding": "Invasive ductal carcinoma, grade 2", "abnormal": True, "patches": [2, 3]},
    {"finding": "Benign fibrofatty breast stroma", "abnormal": False, "patches": [1, 7]},
], "impression": "Invasive ductal carcinoma."})
RUN = uuid.uuid4().hex[:8]


class CannedEngine:
    def __init__(self, version: str) -> None:
        self.version = version

    def available(self) -> bool:
        return True

    def model_info(self) -> ModelInfo:
        return ModelInfo(MODEL, self.version, ("Vision-Language-Models",), test_weights=True)

    def generate(self, parts: Sequence[Any], *, max_new_tokens: int = 1024) -> str:
        return ANSWER


def _slide_study(fhir: FhirClient, patient: str, endpoint: str, tag: str) -> Resource:
    study_uid, series_uid, (_, level1, _) = slide_uids(tag)
    return fhir.create({
        "resourceType": "ImagingStudy", "status": "available",
        "identifier": [{"system": DICOM_UID, "value": f"urn:oid:{study_uid}"}],
        "subject": {"reference": f"Patient/{patient}"}, "started": "2026-10-02T09:30:00Z",
        "endpoint": [{"reference": f"Endpoint/{endpoint}"}],
        "modality": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "SM"}],
        "numberOfSeries": 1, "numberOfInstances": 1,
        "series": [{"uid": series_uid, "number": 1,
                    "modality": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "SM"},
                    "instance": [{"uid": level1, "number": 2,
                                   "sopClass": {"system": DICOM_UID,
                                                "code": "1.2.840.10008.5.1.4.1.1.77.1.6"}}]}]})


@pytest.fixture(scope="module")
def setting(sandbox_url: str, pacs_url: str) -> tuple[str, str]:
    """(patient id, Endpoint id) of a patient of this module's own."""
    fhir = FhirClient(sandbox_url, timeout_s=120)
    patient = fhir.create({"resourceType": "Patient", "name": [{"family": "Slide", "given": ["Test"]}],
                           "identifier": [{"system": "urn:chartlight:test", "value": f"PATH-{RUN}"}]})
    endpoint = fhir.create({
        "resourceType": "Endpoint", "status": "active", "address": pacs_url,
        "connectionType": {"system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
                           "code": "dicom-wado-rs"},
        "payloadType": [{"text": "DICOM"}], "payloadMimeType": ["application/dicom"]})
    return patient["id"], endpoint["id"]


def run(fhir: FhirClient, tmp_path: Path, study: Resource, slide: PreparedSlide, *, version: str,
        write: DicomWriteOptions | None = None, engine: Any = None) -> dict[str, Any]:
    """One job in a fresh job store (so the same study version runs again); its summary."""
    pipeline = PathologyPipeline(engine or CannedEngine(version), dicom_write=write, max_new_tokens=24,
                                 prepare=lambda client, resource, options, progress=None: slide)
    return run_pathology_job(fhir, tmp_path / f"jobs-{uuid.uuid4().hex}.db", study, pipeline)


def ours(fhir: FhirClient, resource_type: str, study: Resource) -> list[Resource]:
    """What chartlight wrote from this study."""
    name = f"ImagingStudy/{study['id']}"
    return [r for r in fhir.search(resource_type, {"subject": study["subject"]["reference"], "_count": 200})
            if any(i.get("system") == SID_RESULT for i in r.get("identifier", []))
            and name in json.dumps([r.get("derivedFrom"), r.get("extension"), r.get("context")])]


def parts_of(extension: Resource) -> dict[str, Any]:
    return {p["url"]: next(v for k, v in p.items() if k.startswith("value")) for p in extension["extension"]}


def test_fhir_results_written_once_updated_by_a_new_model_and_signed_ones_kept(
        fhir: FhirClient, setting: tuple[str, str], tmp_path: Path) -> None:
    patient, endpoint = setting
    tag = f"fhir-{RUN}"
    study = _slide_study(fhir, patient, endpoint, tag)
    slide = prepared_slide(tag, study_id=study["id"], version=study["meta"]["versionId"])
    summary = run(fhir, tmp_path, study, slide, version="v1")
    reasons = "\n".join(p["reason"] for p in summary["problems"])
    assert "finding #2 (Benign fibrofatty breast stroma) cites PATCH 7" in reasons
    assert len(summary["created"]) == 4  # 2 Observations, the narrative, the report

    (report,) = ours(fhir, "DiagnosticReport", study)
    assert report["category"][0]["coding"][0]["code"] == "PAT" and report["status"] == "preliminary"
    assert report["code"]["coding"][0]["code"] == "60567-5"
    observations = [fhir.read("Observation", r["reference"].split("/")[1]) for r in report["result"]]
    assert [o["valueString"] for o in observations] == ["Invasive ductal carcinoma, grade 2",
                                                        "Benign fibrofatty breast stroma"]
    assert all(o["category"][0]["coding"][0]["code"] == "laboratory" for o in observations)
    evidence = [parts_of(e) for e in observations[0]["extension"] if e["url"] == EXT_EVIDENCE_IMAGE]
    assert [(e["instance"], e["level"], e["frames"], e["box"]) for e in evidence] == [
        (slide.levels[1].instance_uid, 1, "7,8,11,12", "256,128,512,384"),
        (slide.levels[1].instance_uid, 1, "2,3,6,7", "128,0,384,256")]
    provenance = fhir.read("Provenance", summary["provenance"].split("/")[1])
    (entity,) = [e for e in provenance["entity"] if "identifier" in e["what"]]
    assert entity["what"]["identifier"]["value"] == f"urn:oid:{slide.levels[1].instance_uid}"
    assert entity["extension"] == [{"url": EXT_DICOM_FRAMES, "valueString": "1,2,3,5,6,7,8,11,12"}]
    assert entity["what"]["display"] == "DICOM SOP Instance, frames 1,2,3,5,6,7,8,11,12"

    # A re-run: nothing new, nothing changed.
    again = run(fhir, tmp_path, study, slide, version="v1")
    assert again["created"] == again["updated"] == [] and len(again["unchanged"]) == 4
    assert len(ours(fhir, "Observation", study)) == 2

    # A new model version: the same resources, a new version each; still no duplicates.
    newer = run(fhir, tmp_path, study, slide, version="v2")
    assert newer["created"] == [] and len(newer["updated"]) == 4
    assert len(ours(fhir, "Observation", study)) == 2 and len(ours(fhir, "DiagnosticReport", study)) == 1

    # Signed by a pathologist: a later model leaves the report as signed.
    (report,) = ours(fhir, "DiagnosticReport", study)
    signed = fhir.update({**report, "status": "final"})
    later = run(fhir, tmp_path, study, slide, version="v3")
    assert f"DiagnosticReport/{signed['id']}/_history/{signed['meta']['versionId']}" in later["kept_signed"]
    assert fhir.read("DiagnosticReport", signed["id"])["meta"]["versionId"] == signed["meta"]["versionId"]


def test_the_tiny_random_weight_model_reads_the_patches_and_nothing_clinical_is_written(
        fhir: FhirClient, setting: tuple[str, str], tmp_path: Path) -> None:
    """The real loading path (processor, chat template with the patches and their labels, generate,
    decoding) on a random-weight Gemma 3: its answer is noise, so no finding is written, and the
    draft that says so is labelled test output."""
    patient, endpoint = setting
    tag = f"tiny-{RUN}"
    study = _slide_study(fhir, patient, endpoint, tag)
    slide = prepared_slide(tag, study_id=study["id"], version=study["meta"]["versionId"])
    engine = tiny_engine(save_tiny_medgemma(tmp_path / "tiny-medgemma"))
    summary = run(fhir, tmp_path, study, slide, version="", engine=engine)
    assert any("could not be read" in p["reason"] for p in summary["problems"]), summary["problems"]
    assert ours(fhir, "Observation", study) == [] and ours(fhir, "DiagnosticReport", study) == []
    (draft,) = ours(fhir, "DocumentReference", study)
    assert {"system": "https://chartlight.dev/fhir/CodeSystem/run-kind", "code": "test-weights"} in [
        {k: t[k] for k in ("system", "code")} for t in draft["meta"]["tag"]]
    text = base64.b64decode(draft["content"][0]["attachment"]["data"]).decode()
    assert "TEST OUTPUT, not clinical" in text and "| 1 | 1 | 0.5 µm/px |" in text


def stored_srs(pacs_url: str, study_uid: str) -> list[tuple[str, str]]:
    response = requests.get(f"{pacs_url}/studies/{study_uid}/instances", params={"Modality": "SR"},
                            headers={"Accept": "application/dicom+json"}, timeout=30)
    assert response.status_code in (200, 204), response.text
    items = response.json() if response.content.strip() else []
    return sorted((i["0020000E"]["Value"][0], i["00080018"]["Value"][0]) for i in items)


def test_the_sr_lands_in_the_pacs_on_the_slide_s_level_and_frames(
        fhir: FhirClient, setting: tuple[str, str], pacs_url: str, tmp_path: Path) -> None:
    patient, endpoint = setting
    tag = f"sr-{RUN}"
    assert store_instances(pacs_url, [level1_instance(tag, patient_id=f"PATH-{RUN}")]) == 1
    study = _slide_study(fhir, patient, endpoint, tag)
    slide = prepared_slide(tag, study_id=study["id"], version=study["meta"]["versionId"], endpoint=pacs_url)
    write = DicomWriteOptions(enabled=True, write_endpoints=(pacs_url,), uid_root=ROOT)
    summary = run(fhir, tmp_path, study, slide, version="v1", write=write)
    assert not [p for p in summary["problems"] if "DICOM SR" in p["reason"]], summary["problems"]

    (report,) = ours(fhir, "DiagnosticReport", study)
    (sr_uid,) = [i["value"].removeprefix("urn:oid:") for i in report["identifier"]
                 if i["system"] == DICOM_UID]
    ((series_uid, instance_uid),) = stored_srs(pacs_url, slide.study_uid)
    assert instance_uid == sr_uid and sr_uid.startswith(ROOT + ".")
    client = DicomWebClient(pacs_url)
    try:
        sr = hd.sr.srread(io.BytesIO(client.instance(slide.study_uid, series_uid, sr_uid)))
    finally:
        client.close()
    assert isinstance(sr, hd.sr.Comprehensive3DSR)
    regions = sr_regions(sr)
    level1 = slide.levels[1].instance_uid
    assert [(r.instance_uid, r.frames, r.origin) for r in regions] == [
        (level1, PATCHES[1][1], "VOLUME"), (level1, PATCHES[2][1], "VOLUME"),
        (level1, PATCHES[0][1], "VOLUME")]
    observations = [fhir.read("Observation", r["reference"].split("/")[1]) for r in report["result"]]
    fhir_boxes = [tuple(float(v) for v in parts_of(e)["box"].split(",")) for o in observations
                  for e in o["extension"] if e["url"] == EXT_EVIDENCE_IMAGE]
    assert [r.box for r in regions] == fhir_boxes

    # A re-run: the SR is already there; none is added.
    run(fhir, tmp_path, study, slide, version="v1", write=write)
    assert stored_srs(pacs_url, slide.study_uid) == [(series_uid, sr_uid)]

    # A new model version: a second SR in the same series, naming the first as its predecessor.
    run(fhir, tmp_path, study, slide, version="v2", write=write)
    (report,) = ours(fhir, "DiagnosticReport", study)
    (new_uid,) = [i["value"].removeprefix("urn:oid:") for i in report["identifier"]
                  if i["system"] == DICOM_UID]
    assert new_uid != sr_uid and stored_srs(pacs_url, slide.study_uid) == sorted(
        [(series_uid, sr_uid), (series_uid, new_uid)])
    client = DicomWebClient(pacs_url)
    try:
        newer = hd.sr.srread(io.BytesIO(client.instance(slide.study_uid, series_uid, new_uid)))
    finally:
        client.close()
    (previous,) = newer.PredecessorDocumentsSequence
    assert previous.ReferencedSeriesSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == sr_uid
