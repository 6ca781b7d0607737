"""Decode the pixel data of one DICOM instance, refusing what cannot be decoded safely.

Native and compressed transfer syntaxes go through pydicom's decoders (pylibjpeg for JPEG,
JPEG-LS, JPEG 2000 and RLE; GDCM as fallback). Size is checked from the header before anything
is decompressed, so a decompression bomb fails before it allocates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import UID

from plugin.errors import InputError
from plugin.pipelines.imaging.instance_headers import read_part10

# Transfer syntaxes whose pixel data we decode (native + the compressed ones PACS actually store).
SUPPORTED_TRANSFER_SYNTAXES = frozenset({
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired, still met)
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline (8 bit)
    "1.2.840.10008.1.2.4.51",  # JPEG Extended (12 bit)
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.5",  # RLE Lossless
})


@dataclass(frozen=True)
class DecodedInstance:
    """An instance's data set (with pixel data) and its frames as stored values (frames, rows, cols)
    for monochrome, or (frames, rows, cols, 3) for colour."""

    dataset: Dataset
    frames: np.ndarray


def decode_instance(data: bytes, *, source: str, max_pixels: int) -> DecodedInstance:
    """Read and decode a Part-10 file. `max_pixels` bounds rows x columns x frames x samples."""
    ds = read_part10(data, source=source)
    transfer_syntax = str(getattr(ds, "file_meta", {}).get("TransferSyntaxUID", ""))
    if transfer_syntax not in SUPPORTED_TRANSFER_SYNTAXES:
        name = UID(transfer_syntax).name if transfer_syntax else "none given"
        raise InputError(source, f"unsupported transfer syntax {transfer_syntax or '-'} ({name})")
    if "PixelData" not in ds:
        raise InputError(source, "the instance has no pixel data")
    rows, columns = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
    frames = int(ds.get("NumberOfFrames") or 1)
    samples = int(ds.get("SamplesPerPixel") or 1)
    bits = int(ds.get("BitsAllocated") or 0)
    if rows <= 0 or columns <= 0 or frames <= 0 or bits not in (1, 8, 16, 32):
        raise InputError(source, f"pixel description is invalid (rows {rows}, columns {columns}, "
                                 f"frames {frames}, bits allocated {bits})")
    if rows * columns * frames * samples > max_pixels:
        raise InputError(source, f"{rows}x{columns}x{frames} pixels exceed the {max_pixels}-pixel limit")
    if not UID(transfer_syntax).is_compressed:
        expected = (rows * columns * frames * samples * bits + 7) // 8
        actual = len(ds.PixelData)
        # Odd lengths are padded to even in the file.
        if actual not in (expected, expected + (expected % 2)):
            raise InputError(source, f"pixel data is {actual} bytes, the header implies {expected}")
    try:
        array = ds.pixel_array
    except (ValueError, RuntimeError, NotImplementedError, AttributeError, TypeError) as exc:
        raise InputError(source, f"pixel data cannot be decoded ({type(exc).__name__}: {exc})") from None
    array = np.asarray(array)
    if frames == 1:
        array = array[np.newaxis, ...]
    if array.shape[1:3] != (rows, columns):
        raise InputError(source, f"decoded pixels are {array.shape}, the header says {rows}x{columns}")
    return DecodedInstance(dataset=ds, frames=array)
