"""Preparing a 40k x 30k whole-slide image for the model: ours (WADO-RS series metadata, the
thumbnail, then only the frames the patches need) against a naive baseline that downloads the
whole base level and decodes it, measured in the same run against the real Orthanc PACS sandbox.

Variants (the same slide in the same Orthanc; no model step):
  naive   WADO-RS retrieve of the base-level instance (every tile, as stored), every frame
          decoded. This is only the first step of a naive reader (it still has to find tissue
          and cut patches), so the baseline is a lower bound of the naive cost.
  ours    prepare_slide with the default settings: series metadata, the THUMBNAIL for the tissue
          mask, and the 4 tiles of each of 16 tile-aligned 896 px patches at 0.5 µm/px
Each repeat runs both, interleaved; medians are reported (the machine is shared, so wall time
is noisy; "client CPU s" is this process's CPU time, Orthanc's own work is not in it).

Run: .venv/bin/python bench/pathology.py [--repeats 3] [--port 8057] [--scale 1]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import requests
from PIL import Image
from pydicom import dcmread
from pydicom.encaps import generate_frames
from pydicom.filebase import DicomBytesIO

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support, run from anywhere

from plugin.fhir import FhirClient  # noqa: E402
from plugin.pipelines.imaging.dicomweb import INSTANCE_ACCEPT, multipart_parts, store_instances  # noqa: E402
from plugin.pipelines.pathology.prepare import PathologyOptions, prepare_slide  # noqa: E402
from plugin.sandbox.orthanc import OrthancSandbox  # noqa: E402
from tests.support.wsi_slides import Blob, SlideSpec, SyntheticSlide, make_slide  # noqa: E402

Row = dict[str, float]


def naive(base: str, slide: SyntheticSlide) -> Row:
    """The whole base level, downloaded in one request and every frame decoded."""
    spec, level = slide.spec, slide.level(1)
    start, cpu = time.perf_counter(), time.process_time()
    response = requests.get(f"{base}/studies/{spec.study_uid}/series/{spec.series_uid}/instances/"
                            f"{level.instance_uid}", headers={"Accept": INSTANCE_ACCEPT}, timeout=600)
    response.raise_for_status()
    (data,) = multipart_parts(response.content, response.headers["Content-Type"], where="naive")
    ds = dcmread(DicomBytesIO(data))
    decode_start = time.perf_counter()
    frames = 0
    for frame in generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames)):
        np.asarray(Image.open(io.BytesIO(frame)).convert("RGB"))
        frames += 1
    decode_s = time.perf_counter() - decode_start
    return {"bytes": len(response.content), "frames": frames, "decode_s": decode_s, "patches": 0,
            "wall_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu}


def ours(base: str, slide: SyntheticSlide) -> Row:
    spec = slide.spec
    study = {
        "resourceType": "ImagingStudy", "id": "bench", "meta": {"versionId": "1"},
        "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{spec.study_uid}"}],
        "contained": [{"resourceType": "Endpoint", "id": "pacs", "status": "active",
                       "connectionType": {"code": "dicom-wado-rs"}, "address": base}],
        "endpoint": [{"reference": "#pacs"}],
        "series": [{"uid": spec.series_uid, "modality": {"code": "SM"}}],
    }
    start, cpu = time.perf_counter(), time.process_time()
    # The FHIR server is never contacted: the Endpoint is contained in the study.
    prepared = prepare_slide(FhirClient("http://127.0.0.1:9/fhir"), study,
                             PathologyOptions(allowed_endpoints=(base,)))
    choices = prepared.choices
    return {"bytes": choices["bytes_read"], "frames": choices["frames_fetched"],
            "decode_s": choices["decode_s"], "patches": len(prepared.patches),
            "wall_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--port", type=int, default=8057, help="port of the bench's own Orthanc")
    parser.add_argument("--scale", type=int, default=1,
                        help="slide side x this (2: an 80k x 60k base level, the blobs scaled with it)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="chartlight-bench-wsi-") as state:
        pacs = OrthancSandbox(state_dir=Path(state), port=args.port)
        if pacs.is_running():
            raise SystemExit(f"port {args.port} is taken; pick another with --port")
        base = pacs.start()
        try:
            start = time.perf_counter()
            spec = SlideSpec(name="bench")
            spec = replace(spec, columns=spec.columns * args.scale, rows=spec.rows * args.scale,
                           blobs=tuple(Blob(b.cx * args.scale, b.cy * args.scale, b.rx * args.scale,
                                            b.ry * args.scale) for b in spec.blobs))
            slide = make_slide(spec)
            generated = time.perf_counter() - start
            store_instances(base, list(slide.files), batch=1)
            levels = ", ".join(f"{lv.columns}x{lv.rows} ({lv.frames} frames)" for lv in slide.levels)
            print(f"slide: {levels}; {sum(map(len, slide.files)) / 1e6:.1f} MB stored in Orthanc (generated "
                  f"in {generated:.0f} s); {os.cpu_count()} CPUs; medians of {args.repeats} repeats\n")
            run(base, slide, args.repeats)
        finally:
            pacs.stop()


def run(base: str, slide: SyntheticSlide, repeats: int) -> None:
    rows: dict[str, list[Row]] = {"naive": [], "ours": []}
    for _ in range(repeats):
        rows["naive"].append(naive(base, slide))
        rows["ours"].append(ours(base, slide))

    def median(name: str, key: str) -> float:
        return statistics.median(row[key] for row in rows[name])

    print(f"{'variant':<7} {'MB read':>8} {'frames':>7} {'decode s':>9} {'median s':>9} {'client CPU s':>12} "
          f"{'patches/s':>9}")
    for name in rows:
        wall = median(name, "wall_s")
        rate = median(name, "patches") / wall if median(name, "patches") else 0.0
        print(f"{name:<7} {median(name, 'bytes') / 1e6:>8.2f} {median(name, 'frames'):>7.0f} "
              f"{median(name, 'decode_s'):>9.2f} {wall:>9.2f} {median(name, 'cpu_s'):>12.2f} "
              f"{rate:>9.1f}")
    print(f"\nours vs naive: {median('naive', 'bytes') / median('ours', 'bytes'):.0f}x fewer bytes, "
          f"{median('naive', 'frames') / median('ours', 'frames'):.0f}x fewer frames decoded, "
          f"{median('naive', 'wall_s') / median('ours', 'wall_s'):.1f}x faster, "
          f"{median('naive', 'cpu_s') / median('ours', 'cpu_s'):.1f}x less client CPU")


if __name__ == "__main__":
    main()
