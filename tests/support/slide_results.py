"""A whole-slide study with a pathology result on the real servers, for the app's patch-view tests:
a synthetic slide (plugin/sandbox/synthetic/slide.py) stored in Orthanc by STOW-RS, an ImagingStudy +
Endpoint on HAPI for a patient (and the same slide as another patient's study), the slide
prepared by the real reader, and the pathology pipeline run through the job runner with a scripted
engine answer (a random-weight test model by its own account: everything is TEST OUTPUT).

    case = slide_with_result(fhir, pacs_url, tmp_path)
    case.made (SyntheticSlide: what was drawn), case.slide (PreparedSlide), case.patient,
    case.study, case.others_study
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plugin.fhir import FhirClient
from plugin.jobs import JobRunner, JobState, JobStore
from plugin.pipelines.imaging.dicomweb import store_instances
from plugin.pipelines.pathology.pipeline import PIPELINE, PathologyPipeline
from plugin.pipelines.pathology.prepare import PathologyOptions, prepare_slide
from plugin.pipelines.pathology.slide import PreparedSlide
from plugin.results import ModelInfo
from plugin.sandbox.synthetic.slide import Blob, SlideSpec, SyntheticSlide, make_slide

Resource = dict[str, Any]
DCM = "http://dicom.nema.org/resources/ontology/DCM"
# 8192 x 6144 at 0.25 µm/px; levels at downsample 1, 2, 8 and a THUMBNAIL at 32 (256 x 192).
THUMB = 32
PATCH_LEVEL_DOWNSAMPLE = 2  # the level closest to 0.5 µm/px
ANSWER = json.dumps({"findings": [
    {"finding": "Adenocarcinoma, moderately differentiated", "abnormal": True, "patches": [1, 2]},
    {"finding": "Normal colonic mucosa", "abnormal": False, "patches": [3, 2]},
], "impression": "Adenocarcinoma."})


def spec(name: str) -> SlideSpec:
    return SlideSpec(columns=8192, rows=6144, tile=256, downsamples=(1, 2, 8), thumbnail_downsample=THUMB,
                     blobs=(Blob(2400, 2000, 1500, 1200), Blob(6000, 4200, 1400, 1200)), name=name)


class ScriptedEngine:
    """The model's answer, fixed; a random-weight test model by its own account (TEST OUTPUT)."""

    def available(self) -> bool:
        return True

    def model_info(self) -> ModelInfo:
        return ModelInfo("google/medgemma-1.5-4b-it", "app-test", ("Vision-Language-Models",),
                         test_weights=True)

    def generate(self, parts: Sequence[Any], *, max_new_tokens: int = 1024) -> str:
        return ANSWER


@dataclass(frozen=True)
class SlideCase:
    made: SyntheticSlide
    slide: PreparedSlide
    patient: str
    study: Resource
    others_study: Resource


def slide_with_result(fhir: FhirClient, pacs_url: str, tmp_path: Path) -> SlideCase:
    run = uuid.uuid4().hex[:8]
    made = make_slide(spec(f"app-{run}"))
    store_instances(pacs_url, list(made.files), batch=1)
    patient = fhir.create({"resourceType": "Patient", "name": [{"family": f"SlideApp-{run}"}]})["id"]
    other = fhir.create({"resourceType": "Patient", "name": [{"family": f"SlideOther-{run}"}]})["id"]
    endpoint = fhir.create({
        "resourceType": "Endpoint", "status": "active", "address": pacs_url,
        "connectionType": {"system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
                           "code": "dicom-wado-rs"},
        "payloadType": [{"text": "DICOM"}]})["id"]
    study, others_study = (_study(fhir, made.spec, p, endpoint) for p in (patient, other))
    options = PathologyOptions(allowed_endpoints=(pacs_url,), patches=3, patch_px=256, target_um_per_px=0.5)
    slide = prepare_slide(fhir, study, options)
    _write_result(fhir, tmp_path, study, slide)
    return SlideCase(made, slide, patient, study, others_study)


def _study(fhir: FhirClient, made: SlideSpec, patient: str, endpoint: str) -> Resource:
    return fhir.create({
        "resourceType": "ImagingStudy", "status": "available", "subject": {"reference": f"Patient/{patient}"},
        "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{made.study_uid}"}],
        "endpoint": [{"reference": f"Endpoint/{endpoint}"}], "started": "2026-10-02T09:30:00Z",
        "description": "Colon biopsy slide (H&E)", "modality": [{"system": DCM, "code": "SM"}],
        "series": [{"uid": made.series_uid, "modality": {"system": DCM, "code": "SM"}}]})


def run_pathology_job(fhir: FhirClient, database: Path, study: Resource,
                      pipeline: PathologyPipeline) -> dict[str, Any]:
    """One pathology job for `study` in a fresh job store at `database` (so the same study version
    runs again), run to its end by a JobRunner; the job's summary. A failed job fails the test."""
    store = JobStore(f"sqlite:///{database}")
    job = store.submit(pipeline=PIPELINE, source_type="ImagingStudy", source_id=study["id"],
                       source_version=study["meta"]["versionId"], subject=study["subject"]["reference"],
                       fhir_base_url=fhir.base_url)
    JobRunner(store, {PIPELINE: pipeline}, lambda j: FhirClient(j.fhir_base_url, timeout_s=120)
              ).run_until_idle(timeout_s=300)
    done = store.get(job.id)
    if done.state is not JobState.SUCCEEDED:
        raise AssertionError(f"the pathology job failed: {done.error}")
    return dict(done.summary)


def _write_result(fhir: FhirClient, tmp_path: Path, study: Resource, slide: PreparedSlide) -> None:
    pipeline = PathologyPipeline(ScriptedEngine(), max_new_tokens=64,
                                 prepare=lambda client, resource, options, progress=None: slide)
    run_pathology_job(fhir, tmp_path / "pathology-jobs.db", study, pipeline)
