"""The app's whole-slide patch view against the real servers: a synthetic DICOM WSI series
(plugin/sandbox/synthetic/slide.py) stored in the Orthanc PACS by STOW-RS, its ImagingStudy + Endpoint on
the HAPI FHIR sandbox, the slide prepared by the real reader (prepare_slide), a pathology result
written for it by the pipeline through the job runner with a scripted engine answer, and the app
opened through the sandbox EHR's SMART launch.

Checked: the study is listed against the pathology pipeline; the review page shows each finding's
patches and the slide overview; each patch PNG holds the pixels the generator drew at that region
of that level (within JPEG tolerance); the overview is the thumbnail the generator drew, and its
marks lie where the patches' base regions fall on it; another patient's study is refused (403)."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from fhir_mappers.systems import SID_RESULT
from plugin.fhir import FhirClient
from tests.support.slide_results import PATCH_LEVEL_DOWNSAMPLE, THUMB, slide_with_result
from tests.support.smart_stack import smart_stack

pytestmark = pytest.mark.sandbox

Resource = dict[str, Any]


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
    case = slide_with_result(fhir, pacs_url, tmp_path)
    made, slide, patient, study, others_study = (case.made, case.slide, case.patient, case.study,
                                                 case.others_study)
    assert len(slide.patches) == 3 and {p.level.total_columns for p in slide.patches} == {4096}

    with smart_stack(sandbox_url, tmp_path, run_jobs=False,
                     settings_extra={"imaging_allowed_endpoints": (pacs_url,)}) as stack:
        browser = stack.launched(patient)
        base = f"{stack.app_base}/smart/app"
        home = browser.get(f"{base}", timeout=120).text
        assert f'data-input="pathology:ImagingStudy/{study["id"]}"' in home  # listed for pathology

        page = browser.get(f"{base}/source/ImagingStudy/{study['id']}", timeout=120)
        assert page.status_code == 200 and 'data-testid="slide-overview"' in page.text
        assert page.text.count('data-testid="finding"') >= 2
        # Finding 1 cites patches 1 and 2, finding 2 patches 3 and 2: four figures, three patches.
        assert page.text.count('data-testid="patch"') == 4

        findings = [o for o in fhir.search("Observation", {"subject": f"Patient/{patient}"})
                    if any(i.get("system") == SID_RESULT for i in o.get("identifier", []))]
        by_text = {o["valueString"]: o for o in findings}
        carcinoma = by_text["Adenocarcinoma, moderately differentiated"]
        boxes = _evidence_boxes(carcinoma)
        assert sorted(boxes) == sorted(_box(p.region) for p in slide.patches[:2])
        for index, (x0, y0, x1, y1) in enumerate(boxes, start=1):
            answer = browser.get(f"{base}/pathology/Observation/{carcinoma['id']}/patch/{index}.png",
                                 timeout=120)
            assert answer.status_code == 200 and answer.headers["Content-Type"] == "image/png"
            got = _pixels(answer.content)
            drawn = made.render(PATCH_LEVEL_DOWNSAMPLE, x0, y0, x1, y1)
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

    # Without the PACS among the allowed endpoints the slide is not read: a clear 422, no crash.
    (tmp_path / "no-pacs").mkdir()
    with smart_stack(sandbox_url, tmp_path / "no-pacs", run_jobs=False) as stack:
        browser = stack.launched(patient)
        url = f"{stack.app_base}/smart/app/pathology/ImagingStudy/{study['id']}/overview.json"
        refused = browser.get(url, timeout=120)
        assert refused.status_code == 422 and not refused.json()["ok"]
        assert "imaging_allowed_endpoints" in refused.json()["error"]
