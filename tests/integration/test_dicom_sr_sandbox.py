"""Imaging results back into the real Orthanc PACS as DICOM SR (plugin.pipelines.imaging.stow):
the demo chest X-rays seeded into Orthanc behind ImagingStudy Endpoints on the HAPI sandbox, the
imaging pipeline run through the job runner with canned localisation answers from a test engine
(labelled as random-weight test output), and the SR then read back from Orthanc by QIDO-RS and
WADO-RS and parsed with highdicom.

Checks: the SR is accepted and retrievable; its region references the very instance and frame
the FHIR Observation names and its polyline is the FHIR box; the DiagnosticReport names the SR's
SOP Instance UID; a re-run leaves one SR; a new model version adds a second SR naming the first
as its predecessor; a signed report gets no new SR; an endpoint missing from the write allow-list
(or the setting off) sends nothing and the job's problems say why."""

from __future__ import annotations

import io
import uuid
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pytest
import requests

from fhir_mappers.systems import EXT_EVIDENCE_IMAGE
from plugin.fhir import FhirClient
from plugin.jobs import JobRunner, JobState, JobStore
from plugin.pipelines.imaging import ImagingPipeline, ImagingTask
from plugin.pipelines.imaging.dicom_sr import TEST_MARKER
from plugin.pipelines.imaging.dicomweb import DicomWebClient
from plugin.pipelines.imaging.prepare import ImagingOptions, find_imaging_studies
from plugin.pipelines.imaging.sources import study_instance_uid
from plugin.pipelines.imaging.stow import DicomWriteOptions
from plugin.results import ModelInfo
from plugin.sandbox import synthetic
from plugin.sandbox.seed import seed_demo_patient

pytestmark = pytest.mark.sandbox

Resource = dict[str, Any]
MODEL = "google/medgemma-1.5-4b-it"
ROOT = "1.2.826.0.1.3680043.99.7"
TASK = ImagingTask(kind="localize", find=("right lung",))
BOXES = '[{"box_2d": [100, 200, 600, 700], "label": "right lung"}]'
PATIENT = replace(synthetic.DEMO_PATIENT, mrn=f"CL-IMGSR-{uuid.uuid4().hex[:8]}")


class CannedEngine:
    """Answers every call with the same text; reports itself as a random-weight test model, so
    everything written from it is labelled TEST OUTPUT."""

    def __init__(self, answer: str, version: str) -> None:
        self.answer, self.version = answer, version

    def available(self) -> bool:
        return True

    def model_info(self) -> ModelInfo:
        return ModelInfo(MODEL, self.version, ("Vision-Language-Models",), test_weights=True)

    def generate(self, parts: Sequence[Any], *, max_new_tokens: int = 1024) -> str:
        return self.answer


@pytest.fixture(scope="module")
def patient(sandbox_url: str, pacs_url: str) -> str:
    client = FhirClient(sandbox_url, timeout_s=120)
    return seed_demo_patient(client, PATIENT, pacs_url=pacs_url).patient_id


def radiographs(fhir: FhirClient, patient: str) -> tuple[Resource, Resource]:
    studies = find_imaging_studies(fhir, patient)
    current, prior = [s for s in studies if s["modality"][0]["code"] != "CT"]  # newest first
    return current, prior


def run(fhir: FhirClient, tmp_path: Path, study: Resource, patient: str, *, version: str,
        write: DicomWriteOptions, pacs_url: str) -> dict[str, Any]:
    """One job in a fresh job store (so the same study version runs again); its summary."""
    pipeline = ImagingPipeline(CannedEngine(BOXES, version), task=TASK, max_new_tokens=64,
                               preparation=ImagingOptions(allowed_endpoints=(pacs_url,)), dicom_write=write)
    store = JobStore(f"sqlite:///{tmp_path}/jobs-{uuid.uuid4().hex}.db")
    job = store.submit(pipeline=TASK.job_pipeline, source_type="ImagingStudy", source_id=study["id"],
                       source_version=study["meta"]["versionId"], subject=f"Patient/{patient}",
                       fhir_base_url=fhir.base_url)
    JobRunner(store, {TASK.job_pipeline: pipeline}, lambda j: FhirClient(j.fhir_base_url, timeout_s=120)
              ).run_until_idle(timeout_s=300)
    done = store.get(job.id)
    assert done.state is JobState.SUCCEEDED, done.error
    return dict(done.summary)


def report_of(fhir: FhirClient, study: Resource) -> Resource:
    name = f"ImagingStudy/{study['id']}"
    (report,) = [r for r in fhir.search("DiagnosticReport", {"subject": study["subject"]["reference"]})
                 if any(e.get("valueReference", {}).get("reference", "").split("/_history/")[0] == name
                        for e in r.get("extension", []))]
    return report


def linked_sr(report: Resource) -> list[str]:
    return [i["value"].removeprefix("urn:oid:") for i in report["identifier"]
            if i["system"] == "urn:dicom:uid"]


def stored_srs(pacs_url: str, study_uid: str) -> list[tuple[str, str]]:
    """(series, instance) of every SR instance of the study in the PACS (QIDO-RS)."""
    response = requests.get(f"{pacs_url}/studies/{study_uid}/instances", params={"Modality": "SR"},
                            headers={"Accept": "application/dicom+json"}, timeout=30)
    assert response.status_code in (200, 204), response.text
    items = response.json() if response.content.strip() else []
    return sorted((i["0020000E"]["Value"][0], i["00080018"]["Value"][0]) for i in items)


def retrieve(pacs_url: str, study_uid: str, series_uid: str, instance_uid: str) -> hd.sr.Comprehensive3DSR:
    client = DicomWebClient(pacs_url)
    try:
        data = client.instance(study_uid, series_uid, instance_uid)
    finally:
        client.close()
    sr = hd.sr.srread(io.BytesIO(data))
    assert isinstance(sr, hd.sr.Comprehensive3DSR)
    return sr


def texts(sr: Any) -> str:
    return "\n".join(str(e.value) for e in sr.iterall() if e.keyword in {"TextValue", "CodeMeaning"})


def test_the_sr_goes_to_the_pacs_once_per_model_version_and_matches_the_fhir_result(
        fhir: FhirClient, patient: str, pacs_url: str, tmp_path: Path) -> None:
    current, _ = radiographs(fhir, patient)
    study_uid = study_instance_uid(current)
    assert study_uid is not None
    write = DicomWriteOptions(enabled=True, write_endpoints=(pacs_url,), uid_root=ROOT)

    summary = run(fhir, tmp_path, current, patient, version="v1", write=write, pacs_url=pacs_url)
    assert not [p for p in summary["problems"] if "DICOM SR" in p["reason"]], summary["problems"]
    report = report_of(fhir, current)
    (sr_uid,) = linked_sr(report)
    assert sr_uid.startswith(ROOT + ".")
    ((series_uid, instance_uid),) = stored_srs(pacs_url, study_uid)
    assert instance_uid == sr_uid

    sr = retrieve(pacs_url, study_uid, series_uid, sr_uid)
    assert (sr.CompletionFlag, sr.VerificationFlag) == ("PARTIAL", "UNVERIFIED")
    assert sr.PatientID == PATIENT.mrn and TEST_MARKER in texts(sr)
    (observation,) = [fhir.read("Observation", r["reference"].split("/")[1]) for r in report["result"]]
    (evidence,) = [e for e in observation["extension"] if e["url"] == EXT_EVIDENCE_IMAGE]
    parts = {p["url"]: next(v for k, v in p.items() if k.startswith("value"))
             for p in evidence["extension"]}
    (group,) = sr.content.get_planar_roi_measurement_groups()
    region = group.roi
    assert region is not None
    source = region.ContentSequence[0].ReferencedSOPSequence[0]
    assert source.ReferencedSOPInstanceUID == parts["instance"]
    assert list(getattr(source, "ReferencedFrameNumber", [parts["frame"]])) == [parts["frame"]] == [1]
    x0, y0, x1, y1 = (float(v) for v in parts["box"].split(","))
    # SCOORD GraphicData is 32-bit float (FL): the FHIR box's numbers at that precision.
    corners = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    assert region.value.astype(np.float32).tolist() == np.array(corners, dtype=np.float32).tolist()
    assert "right lung" in texts(group[0])

    # A re-run: the same SR UID is already in the PACS, so nothing new is stored.
    run(fhir, tmp_path, current, patient, version="v1", write=write, pacs_url=pacs_url)
    assert stored_srs(pacs_url, study_uid) == [(series_uid, sr_uid)]
    assert linked_sr(report_of(fhir, current)) == [sr_uid]

    # A new model version: a second SR in the same series, naming the first as its predecessor.
    run(fhir, tmp_path, current, patient, version="v2", write=write, pacs_url=pacs_url)
    stored = stored_srs(pacs_url, study_uid)
    assert len(stored) == 2 and {s for s, _ in stored} == {series_uid}
    (new_uid,) = linked_sr(report_of(fhir, current))
    assert new_uid != sr_uid and (series_uid, new_uid) in stored
    newer = retrieve(pacs_url, study_uid, series_uid, new_uid)
    (previous,) = newer.PredecessorDocumentsSequence
    assert previous.ReferencedSeriesSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == sr_uid

    # Signed by a clinician: a newer model version sends no SR and the report keeps its link.
    signed = {**report_of(fhir, current), "status": "final"}
    fhir.update(signed)
    summary = run(fhir, tmp_path, current, patient, version="v3", write=write, pacs_url=pacs_url)
    assert any("DICOM SR not sent" in p["reason"] and "signed" in p["reason"] for p in summary["problems"])
    assert len(stored_srs(pacs_url, study_uid)) == 2
    assert linked_sr(report_of(fhir, current)) == [new_uid]


def test_off_or_not_allowed_for_writes_sends_nothing_and_says_why(
        fhir: FhirClient, patient: str, pacs_url: str, tmp_path: Path) -> None:
    _, prior = radiographs(fhir, patient)
    study_uid = study_instance_uid(prior)
    assert study_uid is not None
    off = DicomWriteOptions(enabled=False, write_endpoints=(pacs_url,), uid_root=ROOT)
    summary = run(fhir, tmp_path, prior, patient, version="v1", write=off, pacs_url=pacs_url)
    assert not [p for p in summary["problems"] if "DICOM SR" in p["reason"]]
    assert stored_srs(pacs_url, study_uid) == [] and linked_sr(report_of(fhir, prior)) == []

    elsewhere = DicomWriteOptions(enabled=True, write_endpoints=("http://127.0.0.1:9/dicom-web",),
                                  uid_root=ROOT)
    summary = run(fhir, tmp_path, prior, patient, version="v1", write=elsewhere, pacs_url=pacs_url)
    (problem,) = [p for p in summary["problems"] if "DICOM SR" in p["reason"]]
    assert ("is not a DICOMweb endpoint trusted for writes (imaging_dicom_write_endpoints)"
            in problem["reason"])
    assert stored_srs(pacs_url, study_uid) == [] and linked_sr(report_of(fhir, prior)) == []
