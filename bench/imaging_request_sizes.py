"""How many bytes one MedGemma request carries (the remote engine's chat completions body; the
local engine is handed the same images): images at full resolution (the baseline: no resize
before encoding) against images resized to the model's 896 px first (the default), in the same run.

Cases, each prepared by prepare_study from DICOM files (the Binary route, served in-process):
  CR 1955x1955   one synthetic chest radiograph, findings task
  CT 85 slices   the synthetic CT generator at 512x512, 85 slices, findings task
  CT comparison  two such CTs (prior and current), compare task: 170 images
Sizes are deterministic (PNG of the same pixels), so one run is enough; the encoding time is the
median of --repeats encodings.

Run: .venv/bin/python bench/imaging_request_sizes.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from datetime import UTC, datetime
from typing import Any

import requests
from requests.adapters import BaseAdapter

from plugin.engines.openai_chat import chat_request
from plugin.fhir import FhirClient
from plugin.pipelines.imaging.prepare import ImagingOptions, prepare_study
from plugin.pipelines.imaging.prepared import PreparedStudy
from plugin.pipelines.imaging.prompts import task_parts
from plugin.pipelines.imaging.tasks import ImagingTask
from plugin.sandbox.synthetic import DEMO_PATIENT, chest_xray, ct_series

BASE = "http://bench.invalid/fhir"
NO_RESIZE = 10**6  # a model side no image reaches: the images are encoded at full resolution


class _Files(BaseAdapter):
    """A FHIR server in-process: one DocumentReference per file, each file a Binary."""

    def __init__(self, files: list[bytes]) -> None:
        super().__init__()
        self.files = files

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        response = requests.Response()
        response.status_code, response.url = 200, request.url or ""
        if "/DocumentReference" in response.url:
            entries = [{"resource": {"resourceType": "DocumentReference", "id": str(i), "status": "current",
                                     "content": [{"attachment": {"contentType": "application/dicom",
                                                                 "url": f"Binary/{i}"}}]}}
                       for i in range(len(self.files))]
            body = json.dumps({"resourceType": "Bundle", "type": "searchset", "entry": entries}).encode()
            response.headers["Content-Type"] = "application/fhir+json"
        else:
            body = self.files[int(response.url.rsplit("/", 1)[1])]
            response.headers["Content-Type"] = "application/dicom"
        response.raw = io.BytesIO(body)
        response.headers["Content-Length"] = str(len(body))
        return response

    def close(self) -> None:
        pass


def prepare(files: list[bytes], study_id: str, model_side: int) -> PreparedStudy:
    session = requests.Session()
    session.mount("http://", _Files(files))
    study = {"resourceType": "ImagingStudy", "id": study_id, "meta": {"versionId": "1"},
             "status": "available", "subject": {"reference": "Patient/1"}}
    options = ImagingOptions(model_image_side=model_side, memory_bytes=4 * 1024**3)
    return prepare_study(FhirClient(BASE, session=session), study, options)


def request_bytes(task: ImagingTask, study: PreparedStudy, prior: PreparedStudy | None) -> tuple[int, float]:
    start = time.perf_counter()
    body = json.dumps(chat_request("google/medgemma-1.5-4b-it", task_parts(task, study, prior),
                                   max_new_tokens=1024))
    return len(body.encode()), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    when = datetime(2026, 1, 5, 9, tzinfo=UTC)
    cr = [chest_xray(DEMO_PATIENT, study_uid="2.25.61", series_uid="2.25.611", acquired=when,
                     finding_size_mm=12.0, rows=1955, cols=1955)]
    ct_now = ct_series(DEMO_PATIENT, study_uid="2.25.62", series_uid="2.25.621", study_datetime=when,
                       n_slices=85, rows=512, cols=512)
    ct_prior = ct_series(DEMO_PATIENT, study_uid="2.25.63", series_uid="2.25.631", study_datetime=when,
                         n_slices=85, rows=512, cols=512, seed=1)
    findings, compare = ImagingTask(), ImagingTask(kind="compare")
    cases = [("CR 1955x1955", findings, cr, None), ("CT 85 slices", findings, ct_now, None),
             ("CT comparison", compare, ct_now, ct_prior)]
    print("| case | images | image size sent (before -> after) | request bytes before | request bytes "
          "after | ratio | encode s before | encode s after |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, task, files, prior_files in cases:
        row: dict[int, tuple[int, float, str, int]] = {}
        for side in (NO_RESIZE, ImagingOptions().model_image_side):
            study = prepare(files, "now", side)
            prior = prepare(prior_files, "prior", side) if prior_files else None
            sizes, times = [], []
            for _ in range(args.repeats):
                size, seconds = request_bytes(task, study, prior)
                sizes.append(size)
                times.append(seconds)
            width, height = study.images[0].image.size
            images = len(study.images) + (len(prior.images) if prior else 0)
            row[side] = (sizes[0], statistics.median(times), f"{width}x{height}", images)
        before, after = row[NO_RESIZE], row[ImagingOptions().model_image_side]
        print(f"| {name} | {after[3]} | {before[2]} -> {after[2]} | {before[0]:,} | {after[0]:,} | "
              f"{before[0] / after[0]:.2f}x | {before[1]:.2f} | {after[1]:.2f} |")


if __name__ == "__main__":
    main()
