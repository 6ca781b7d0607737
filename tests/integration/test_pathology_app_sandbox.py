"""The app's whole-slide patch view against the real servers: a synthetic DICOM WSI series
(tests/support/wsi_slides.py) stored in the Orthanc PACS by STOW-RS, its ImagingStudy + Endpoint on
the HAPI FHIR sandbox, the slide prepared by the real reader (prepare_slide), a pathology result
written for it by the pipeline through the job runner with a scripted engine answer, and the app
opened through the sandbox EHR's SMART launch.

Checked: the study is listed against the pathology pipeline; the review page shows each finding's
patches and the slide overview; each patch PNG holds the pixels the generator drew at that region
of that level (within JPEG tolerance); the overview is the thumbnail the generator drew, and its
marks lie where the patches' base regions fall on it; another patient's study is refused (403)."""

from __future__ import annotations

import io
import json
import re
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from fhir_mappers.systems import SID_RESULT
from plugin.fhir import FhirClient
from plugin.jobs import JobRunner, JobState, JobStore
from plugin.pipelines.imaging.dicomweb import store_instances
from plugin.pipelines.pathology.pipeline import PIPELINE, PathologyPipeline
from plugin.pipelines.pathology.prepare import PathologyOptions, prepare_slide
from plugin.pipelines.pathology.slide import PreparedSlide
from plugin.results import ModelInfo
from tests.support.smart_stack import smart_stack
from tests.support.wsi_slides import Blob, SlideSpec, make_slide

pytestmark = pytest.mark.sandbox

Resource = dict[str, Any]
DCM = "http://dicom.nema.org/resources/ontology/DCM"
RUN = uuid.uuid4().hex[:8]
# 8192 x 6144 at 0.25 µm/px; levels at downsample 1, 2, 8 and a THUMBNAIL at 32 (256 x 192).
SPEC = SlideSpec(columns=8192, rows=6144, tile=256, downsamples=(1, 2, 8), thumbnail_downsample=32,
                 blobs=(Blob(2400, 2000, 1500, 1200), Blob(6000, 4200, 1400, 1200)), name=f"app-{RUN}")
THUMB = 32
ANSWER = json.dumps({"findings": [
    {"finding": "Invasive ductal carcinoma, grade 2", "abnormal": True, "patches": [1, 2]},
    {"finding": "Benign fibrofatty stroma", "abnormal": False, "patches": [3, 2]},
], "impression": "Invasive ductal carcinoma."})


class ScriptedEngine:
    """The model's answer, fixed; a random-weight test model by its own account (TEST OUTPUT)."""

    def available(self) -> bool:
        return True

    def model_info(self) -> ModelInfo:
        return ModelInfo("google/medgemma-1.5-4b-it", "app-test", ("Vision-Language-Models",),
                         test_weights=True)

    def generate(self, parts: Sequence[Any], *, max_new_tokens: int = 1024) -> str:
        return ANSWER


def _study(fhir: FhirClient, patient: str, endpoint: str) -> Resource:
    return fhir.create({
        "resourceType": "ImagingStudy", "status": "available", "subject": {"reference": f"Patient/{patient}"},
        "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{SPEC.study_uid}"}],
        "endpoint": [{"reference": f"Endpoint/{endpoint}"}], "started": "2026-10-02T09:30:00Z",
        "description": "Breast core biopsy slide", "modality": [{"system": DCM, "code": "SM"}],
        "series": [{"uid": SPEC.series_uid, "modality": {"system": DCM, "code": "SM"}}]})


def _write_result(fhir: FhirClient, tmp_path: Path, study: Resource, slide: PreparedSlide) -> None:
    pipeline = PathologyPipeline(ScriptedEngine(), preparation=object(), max_new_tokens=64,
                                 prepare=lambda client, resource, options, progress=None: slide)
    store = JobStore(f"sqlite:///{tmp_path}/jobs.db")
    job = store.submit(pipeline=PIPELINE, source_type="ImagingStudy", source_id=study["id"],
                       source_version=study["meta"]["versionId"], subject=study["subject"]["reference"],
                       fhir_base_url=fhir.base_url)
    JobRunner(store, {PIPELINE: pipeline}, lambda j: FhirClient(j.fhir_base_url, timeout_s=120)
              ).run_until_idle(timeout_s=300)
    done = store.get(job.id)
    assert done.state is JobState.SUCCEEDED, done.error


def _box(box: Any) -> tuple[int, int, int, int]:
    return int(box.x0), int(box.y0), int(box.x1), int(box.y1)


def _evidence_boxes(observation: Resource) -> list[tuple[int, int, int, int]]:
    """The box of each evidence-image extension, in order, read from the JSON as stored."""
    boxes = []
    for extension in observation.get("extension", []):
        if extension["url"].endswith("/evidence-image"):
            box = next(p["valueString"] for p in extension["extension"] if p["url"] == "box")
            x0, y0, x1, y1 = (int(v) for v in box.split(","))
            boxes.append((x0, y0, x1, y1))
    return boxes


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def test_the_app_shows_each_patch_beside_its_finding_and_its_place_on_the_slide(
        fhir: FhirClient, sandbox_url: str, pacs_url: str, tmp_path: Path) -> None:
    made = make_slide(SPEC)
    store_instances(pacs_url, list(made.files), batch=1)
    patient = fhir.create({"resourceType": "Patient", "name": [{"family": f"SlideApp-{RUN}"}]})["id"]
    other = fhir.create({"resourceType": "Patient", "name": [{"family": f"SlideOther-{RUN}"}]})["id"]
    endpoint = fhir.create({
        "resourceType": "Endpoint", "status": "active", "address": pacs_url,
        "connectionType": {"system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
                           "code": "dicom-wado-rs"},
        "payloadType": [{"text": "DICOM"}]})["id"]
    study, others_study = _study(fhir, patient, endpoint), _study(fhir, other, endpoint)
    options = PathologyOptions(allowed_endpoints=(pacs_url,), patches=3, patch_px=256, target_um_per_px=0.5)
    slide = prepare_slide(fhir, study, options)
    assert len(slide.patches) == 3 and {p.level.total_columns for p in slide.patches} == {4096}
    _write_result(fhir, tmp_path, study, slide)

    with smart_stack(sandbox_url, tmp_path, run_jobs=False,
                     settings_extra={"imaging_allowed_endpoints": (pacs_url,)}) as stack:
        browser = stack.launched(patient)
        base = f"{stack.app_base}/smart/app"
        home = browser.get(f"{base}", timeout=120).text
        assert f'data-analyze="ImagingStudy/{study["id"]}" data-pipeline="pathology"' in home \
            or f"pathology:ImagingStudy/{study['id']}" in home

        page = browser.get(f"{base}/source/ImagingStudy/{study['id']}", timeout=120)
        assert page.status_code == 200 and 'data-testid="slide-overview"' in page.text
        assert page.text.count('data-testid="finding"') >= 2
        # Finding 1 cites patches 1 and 2, finding 2 patches 3 and 2: four figures, three patches.
        assert page.text.count('data-testid="patch"') == 4

        findings = [o for o in fhir.search("Observation", {"subject": f"Patient/{patient}"})
                    if any(i.get("system") == SID_RESULT for i in o.get("identifier", []))]
        by_text = {o["valueString"]: o for o in findings}
        carcinoma = by_text["Invasive ductal carcinoma, grade 2"]
        boxes = _evidence_boxes(carcinoma)
        assert sorted(boxes) == sorted(_box(p.region) for p in slide.patches[:2])
        for index, (x0, y0, x1, y1) in enumerate(boxes, start=1):
            answer = browser.get(f"{base}/pathology/Observation/{carcinoma['id']}/patch/{index}.png",
                                 timeout=120)
            assert answer.status_code == 200 and answer.headers["Content-Type"] == "image/png"
            got = _pixels(answer.content)
            drawn = made.render(2, x0, y0, x1, y1)  # level 1 is the downsample-2 level
            assert got.shape == drawn.shape == (256, 256, 3)
            assert np.abs(got - drawn.astype(int)).mean() < 8  # JPEG quality 90
        assert browser.get(f"{base}/pathology/Observation/{carcinoma['id']}/patch/3.png",
                           timeout=120).status_code == 404  # the finding cites two patches

        overview = browser.get(f"{base}/pathology/ImagingStudy/{study['id']}/overview.png", timeout=120)
        assert overview.status_code == 200
        thumb = _pixels(overview.content)
        assert thumb.shape == (192, 256, 3)
        assert np.abs(thumb - made.render(THUMB, 0, 0, 256, 192).astype(int)).mean() < 8
        marks = browser.get(f"{base}/pathology/ImagingStudy/{study['id']}/overview.json", timeout=120).json()
        assert marks["ok"] and (marks["width"], marks["height"]) == (256, 192) and marks["unplaced"] == []
        placed = {m["number"]: m["box"] for m in marks["marks"]}
        assert sorted(placed) == [1, 2, 3]
        # Each mark lies where its patch's base-level region falls on the thumbnail (base / 32); the
        # page's captions say which region each number is.
        caption = re.compile(r"Patch (\d+) · level 1 · x (\d+)–(\d+),\s+y (\d+)–(\d+)")
        captions = {int(m[1]): tuple(int(v) for v in m.groups()[1:]) for m in caption.finditer(page.text)}
        assert len(captions) == 3
        by_region = {_box(p.region): p for p in slide.patches}
        for number, (x0, x1, y0, y1) in captions.items():
            patch = by_region[(x0, y0, x1, y1)]
            truth = [v / THUMB for v in _box(patch.base_region)]
            assert all(abs(a - b) < 0.6 for a, b in zip(placed[number], truth, strict=True)), (number, placed)

        # Another patient's slide study: refused, for the overview and its marks alike.
        for fmt in ("png", "json"):
            refused = browser.get(f"{base}/pathology/ImagingStudy/{others_study['id']}/overview.{fmt}",
                                  timeout=120)
            assert refused.status_code == 403
