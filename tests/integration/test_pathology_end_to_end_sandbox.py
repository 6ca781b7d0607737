"""The whole pathology path on the real servers, nothing prepared by hand: a synthetic slide from
plugin/sandbox/synthetic/slide.py stored in Orthanc by STOW-RS behind an ImagingStudy on HAPI, the job
runner running the pathology pipeline with the real slide reader (pyramid, mask, frames), an engine
with canned answers (labelled a random-weight test model), the SR written back to the PACS.

The findings' evidence names exactly the level, frames and regions of the patches the reader cut; the
Provenance names those frames; the SR references that level instance; and a re-run of the same slide
writes nothing and stores no second SR (the reader's choices that vary between runs, such as decode
times, must not reach what is written)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests

from fhir_mappers.systems import EXT_DICOM_FRAMES, EXT_EVIDENCE_IMAGE, SID_RESULT
from plugin.fhir import FhirClient
from plugin.pipelines.imaging.dicomweb import store_instances
from plugin.pipelines.imaging.stow import DicomWriteOptions
from plugin.pipelines.pathology.pipeline import PathologyPipeline
from plugin.pipelines.pathology.prepare import PathologyOptions, prepare_slide
from plugin.results import ModelInfo
from plugin.sandbox.synthetic.slide import Blob, SlideSpec, make_slide
from tests.support.slide_results import run_pathology_job

pytestmark = pytest.mark.sandbox

Resource = dict[str, Any]
DCM = "http://dicom.nema.org/resources/ontology/DCM"
RUN = uuid.uuid4().hex[:8]
ROOT = "1.2.826.0.1.3680043.99.9"
SPEC = SlideSpec(columns=8192, rows=6144, tile=256, downsamples=(1, 2, 8), thumbnail_downsample=32,
                 blobs=(Blob(2400, 2000, 1500, 1200), Blob(6000, 4200, 1400, 1200)), name=f"e2e-{RUN}")
ANSWER = json.dumps({"findings": [
    {"finding": "Invasive ductal carcinoma, grade 2", "abnormal": True, "patches": [1, 2]},
    {"finding": "Benign fibrofatty breast stroma", "abnormal": False, "patches": [3]},
], "impression": "Invasive ductal carcinoma."})


class CannedEngine:
    def available(self) -> bool:
        return True

    def model_info(self) -> ModelInfo:
        return ModelInfo("google/medgemma-1.5-4b-it", "v1", ("Vision-Language-Models",), test_weights=True)

    def generate(self, parts: Sequence[Any], *, max_new_tokens: int = 1024) -> str:
        return ANSWER


def run(fhir: FhirClient, tmp_path: Path, study: Resource, pipeline: PathologyPipeline) -> dict[str, Any]:
    return run_pathology_job(fhir, tmp_path / f"jobs-{uuid.uuid4().hex}.db", study, pipeline)


def srs(pacs_url: str, study_uid: str) -> list[str]:
    response = requests.get(f"{pacs_url}/studies/{study_uid}/instances", params={"Modality": "SR"},
                            headers={"Accept": "application/dicom+json"}, timeout=30)
    assert response.status_code in (200, 204), response.text
    return [i["00080018"]["Value"][0] for i in (response.json() if response.content.strip() else [])]


def test_a_stored_slide_read_by_the_real_reader_is_reported_once_with_its_frames(
        sandbox_url: str, pacs_url: str, tmp_path: Path) -> None:
    fhir = FhirClient(sandbox_url, timeout_s=120)
    slide = make_slide(SPEC)
    store_instances(pacs_url, list(slide.files), batch=1)
    patient = fhir.create({"resourceType": "Patient", "name": [{"family": "Slide", "given": ["E2E"]}]})
    endpoint = fhir.create({
        "resourceType": "Endpoint", "status": "active", "address": pacs_url,
        "connectionType": {"system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
                           "code": "dicom-wado-rs"}, "payloadType": [{"text": "DICOM"}]})
    study = fhir.create({
        "resourceType": "ImagingStudy", "status": "available",
        "subject": {"reference": f"Patient/{patient['id']}"},
        "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{SPEC.study_uid}"}],
        "endpoint": [{"reference": f"Endpoint/{endpoint['id']}"}], "started": "2026-11-02T09:30:00Z",
        "series": [{"uid": SPEC.series_uid, "modality": {"system": DCM, "code": "SM"}}]})
    options = replace(PathologyOptions(), allowed_endpoints=(pacs_url,), patches=4, patch_px=512)
    write = DicomWriteOptions(enabled=True, write_endpoints=(pacs_url,), uid_root=ROOT)
    pipeline = PathologyPipeline(CannedEngine(), preparation=options, dicom_write=write)

    summary = run(fhir, tmp_path, study, pipeline)
    assert not [p for p in summary["problems"] if "SR" in p["reason"]], summary["problems"]
    assert len(summary["created"]) == 4, summary["problems"]  # two Observations, the draft, the report

    # What the reader cuts, read again on its own: the written evidence must name exactly these.
    prepared = prepare_slide(fhir, study, options)
    patches = {p.number: p for p in prepared.patches}
    written = [fhir.read("Observation", ref.split("/")[1]) for ref in summary["created"]
               if ref.startswith("Observation/")]
    cited = {o["valueString"]: [{p["url"]: next(v for k, v in p.items() if k.startswith("value"))
                                 for p in e["extension"]}
                                for e in o["extension"] if e["url"] == EXT_EVIDENCE_IMAGE] for o in written}

    def expected(number: int) -> tuple[str, str, str]:
        patch = patches[number]
        box = patch.region
        return (patch.level.instance_uid, ",".join(map(str, sorted(set(patch.frames)))),
                ",".join(f"{v:g}" for v in (box.x0, box.y0, box.x1, box.y1)))

    def found(parts: dict[str, Any]) -> tuple[str, str, str]:
        return (parts["instance"], parts["frames"], parts["box"])

    assert [found(p) for p in cited["Invasive ductal carcinoma, grade 2"]] == [expected(1), expected(2)]
    assert [found(p) for p in cited["Benign fibrofatty breast stroma"]] == [expected(3)]
    provenance = fhir.read("Provenance", summary["provenance"].split("/")[1])
    (entity,) = [e for e in provenance["entity"] if "identifier" in e["what"]]
    used = sorted({f for p in prepared.patches for f in p.frames})
    assert entity["extension"] == [{"url": EXT_DICOM_FRAMES, "valueString": ",".join(map(str, used))}]
    assert len(srs(pacs_url, SPEC.study_uid)) == 1

    again = run(fhir, tmp_path, study, pipeline)
    assert again["created"] == again["updated"] == [], again
    assert len(srs(pacs_url, SPEC.study_uid)) == 1
    results = [r for r in fhir.search("Observation", {"subject": f"Patient/{patient['id']}"})
               if any(i.get("system") == SID_RESULT for i in r.get("identifier", []))]
    assert len(results) == 2
