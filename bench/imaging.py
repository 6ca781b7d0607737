"""Preparing a 400-slice CT for the model: ours (WADO-RS metadata, then only the 85 sampled
instances) against a naive baseline that downloads and decodes every slice first, measured in
the same run against the real Orthanc PACS sandbox.

Variants (the same study in the same Orthanc; the model step is not timed):
  naive     WADO-RS retrieve of the whole series in one request, decode every instance, order by
            position, sample 85, window to RGB
  ours-1    prepare_study: series metadata, choose and sample from headers, fetch and decode only
            the 85 sampled instances, one at a time
  ours      the same with 4 fetch/decode threads (the default)
Each repeat runs every variant once, interleaved, and medians are reported: the machine is
shared, so wall time is noisy; "client CPU s" is this process's CPU time (fetching, decoding,
windowing; Orthanc's own work is not in it). Both variants must give identical images (checked
every run).

Run: .venv/bin/python bench/imaging.py [--slices 400] [--size 512] [--repeats 3] [--port 8056]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import requests
from pydicom import dcmread
from pydicom.filebase import DicomBytesIO

from plugin.fhir import FhirClient
from plugin.pipelines.imaging import preprocessing
from plugin.pipelines.imaging.dicomweb import INSTANCE_ACCEPT, multipart_parts, store_instances
from plugin.pipelines.imaging.prepare import ImagingOptions, prepare_study
from plugin.pipelines.imaging.series_selection import sample_indices
from plugin.sandbox.orthanc import OrthancSandbox
from plugin.sandbox.synthetic import DEMO_PATIENT, ct_series

STUDY_UID = "2.25.4000000000000000000000000001"
SERIES_UID = "2.25.4000000000000000000000000002"
MAX_SLICES = 85


def naive(base: str) -> tuple[list[np.ndarray], int, int]:
    """Everything first: the whole series, every slice decoded; then order, sample, window."""
    response = requests.get(f"{base}/studies/{STUDY_UID}/series/{SERIES_UID}", timeout=600,
                            headers={"Accept": INSTANCE_ACCEPT})
    response.raise_for_status()
    parts = multipart_parts(response.content, response.headers["Content-Type"], where="naive")
    slices = []
    for data in parts:
        ds = dcmread(DicomBytesIO(data))
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        slices.append((float(ds.ImagePositionPatient[2]), hu))
    slices.sort(key=lambda item: -item[0])  # head first
    chosen = [slices[i][1] for i in sample_indices(len(slices), MAX_SLICES)]
    images = [np.asarray(preprocessing.fit_within(preprocessing.to_rgb_image(preprocessing.ct_rgb(hu))))
              for hu in chosen]
    return images, len(response.content), len(parts)


def ours(base: str, workers: int) -> tuple[list[np.ndarray], int, int]:
    study = {
        "resourceType": "ImagingStudy", "id": "bench", "meta": {"versionId": "1"},
        "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{STUDY_UID}"}],
        "contained": [{"resourceType": "Endpoint", "id": "pacs", "status": "active",
                       "connectionType": {"code": "dicom-wado-rs"}, "address": base}],
        "endpoint": [{"reference": "#pacs"}],
        "series": [{"uid": SERIES_UID}],
    }
    # The FHIR server is never contacted: the Endpoint is contained in the study.
    prepared = prepare_study(FhirClient("http://127.0.0.1:9/fhir"), study,
                             ImagingOptions(max_slices=MAX_SLICES, fetch_workers=workers,
                                            allowed_endpoints=(base,)))
    images = [np.asarray(image.image) for image in prepared.images]
    return images, int(prepared.choices["bytes_read"]), int(prepared.choices["instances_fetched"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=400)
    parser.add_argument("--size", type=int, default=512, help="rows and columns of each slice")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--port", type=int, default=8056, help="port of the bench's own Orthanc")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="chartlight-bench-pacs-") as state:
        pacs = OrthancSandbox(state_dir=Path(state), port=args.port)
        if pacs.is_running():
            raise SystemExit(f"port {args.port} is taken; pick another with --port")
        base = pacs.start()
        try:
            start = time.perf_counter()
            files = ct_series(DEMO_PATIENT, study_uid=STUDY_UID, series_uid=SERIES_UID,
                              study_datetime=datetime(2026, 11, 21, 9, 30, tzinfo=UTC),
                              n_slices=args.slices, rows=args.size, cols=args.size,
                              slice_thickness_mm=250.0 / args.slices)
            generated = time.perf_counter() - start
            store_instances(base, files)
            stored_bytes = sum(len(f) for f in files)
            print(f"{args.slices} slices of {args.size}x{args.size} (every 10th JPEG 2000 or RLE), "
                  f"{stored_bytes / 1e6:.1f} MB stored in Orthanc (generated in {generated:.0f} s); "
                  f"{os.cpu_count()} CPUs; medians of {args.repeats} repeats\n")
            run(base, args.repeats)
        finally:
            pacs.stop()


def run(base: str, repeats: int) -> None:
    variants: dict[str, Callable[[], tuple[list[np.ndarray], int, int]]] = {
        "naive": lambda: naive(base),
        "ours-1": lambda: ours(base, 1),
        "ours": lambda: ours(base, 4),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    read: dict[str, int] = {}
    decoded: dict[str, int] = {}
    for _ in range(repeats):
        reference: list[np.ndarray] | None = None
        for name, variant in variants.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            images, bytes_read, instances = variant()
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
            read[name], decoded[name] = bytes_read, instances
            if reference is None:
                reference = images
            elif len(images) != len(reference) or any((a != b).any() for a, b in zip(images, reference,
                                                                                      strict=True)):
                raise SystemExit(f"{name} gave different images from naive")

    print(f"{'variant':<8} {'decoded':>7} {'MB read':>8} {'median s':>9} {'client CPU s':>12}")
    for name in variants:
        print(f"{name:<8} {decoded[name]:>7} {read[name] / 1e6:>8.1f} {statistics.median(times[name]):>9.2f} "
              f"{statistics.median(cpu[name]):>12.2f}")
    wall = statistics.median(times["naive"]) / statistics.median(times["ours"])
    work = statistics.median(cpu["naive"]) / statistics.median(cpu["ours"])
    print(f"\nours vs naive: {wall:.1f}x faster, {work:.1f}x less client CPU, "
          f"{read['naive'] / read['ours']:.1f}x fewer bytes read, "
          f"{decoded['naive'] / decoded['ours']:.1f}x fewer slices decoded (images identical)")


if __name__ == "__main__":
    main()
