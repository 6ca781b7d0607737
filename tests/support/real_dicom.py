"""Real-world DICOM shapes made from pydicom's bundled test files (never committed as binaries):
a CT series built from CT_small.dcm in any in-plane orientation (IOP and pixels rewritten together),
modality and VOI LUT variants, an enhanced multi-frame CT, ISO 2022 IR 87 studies, and broken
codestreams. Kept apart from the code under test: only pydicom and numpy make these files."""

from __future__ import annotations

import io

import numpy as np
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import generate_uid


def bundled(name: str) -> Dataset:
    """One of the test files shipped inside pydicom's wheel (no download)."""
    path = get_testdata_file(name, download=False)
    if path is None:
        raise FileNotFoundError(f"{name} is not bundled with pydicom")
    return dcmread(path)


def part10(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def damaged_codestream(name: str = "MR_small_jp2klossless.dcm") -> bytes:
    """A bundled compressed file whose codestream is cut after its first bytes and garbled."""
    ds = bundled(name)
    (frame,) = generate_frames(ds.PixelData, number_of_frames=1)
    ds.PixelData = encapsulate([frame[:120] + b"\xff\x90" + bytes(60)])
    return part10(ds)


def uid(*parts: object) -> str:
    return generate_uid(entropy_srcs=[str(p) for p in parts])


def as_stored(values: np.ndarray, ds: Dataset) -> np.ndarray:
    """`values` in the stored pixel type of `ds`."""
    return values.astype(ds.pixel_array.dtype)
