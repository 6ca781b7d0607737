"""Decode the pixel data of one DICOM instance, refusing what cannot be decoded safely.

Native and compressed transfer syntaxes go through pydicom's decoders (pylibjpeg for JPEG,
JPEG-LS, JPEG 2000 and RLE; GDCM as fallback). Size is checked from the header before anything
is decompressed, so a decompression bomb fails before it allocates: the pixel count against
`max_pixels`, and the bytes the decoded array will take against the job's memory budget.
Deflated files are inflated within the budget before pydicom reads them (deflated.py).
A codestream no decoder can read fails in one sentence naming the instance and the transfer
syntax; what each decoder said (pydicom logs a traceback per decoder, and may warn) goes to this
module's logger at DEBUG, never to stderr.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels import pixel_array
from pydicom.uid import UID

from plugin.budget import MemoryBudget
from plugin.errors import InputError
from plugin.pipelines.imaging.codestreams import declared_size
from plugin.pipelines.imaging.deflated import native_pixel_bytes
from plugin.pipelines.imaging.instance_headers import read_part10

log = logging.getLogger(__name__)

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
    """An instance's data set (its Pixel Data element dropped once decoded) and its frames as
    stored values (frames, rows, cols) for monochrome, or (frames, rows, cols, 3) for colour.
    `frame_count` is the number of frames the instance holds (more than `frames` has when only
    the first was decoded)."""

    dataset: Dataset
    frames: np.ndarray
    frame_count: int = 1


def decode_instance(data: bytes, *, source: str, max_pixels: int, budget: MemoryBudget | None = None,
                    first_frame_only: bool = False) -> DecodedInstance:
    """Read and decode a Part-10 file. `max_pixels` bounds rows x columns x frames x samples;
    `budget` (a fresh default one when None) is charged for the data set and the decoded frames
    before they exist, and keeps the decoded frames' bytes charged for the caller to release."""
    budget = budget or MemoryBudget(source)
    held = budget.held_bytes
    ds = read_part10(data, source=source, budget=budget)
    read_bytes = budget.held_bytes - held
    try:
        return _decode(ds, source=source, max_pixels=max_pixels, budget=budget,
                       first_frame_only=first_frame_only)
    finally:
        # The Pixel Data element is dropped once decoded: the data set is its header again.
        budget.release(read_bytes)


def decode_dataset(ds: Dataset, *, source: str, max_pixels: int, budget: MemoryBudget) -> DecodedInstance:
    """Decode a data set already in memory (a frame fetched on its own: frames.frame_dataset),
    with the same checks as a file; the decoded frames stay charged to `budget`."""
    return _decode(ds, source=source, max_pixels=max_pixels, budget=budget, first_frame_only=False)


def _decode(ds: Dataset, *, source: str, max_pixels: int, budget: MemoryBudget,
            first_frame_only: bool) -> DecodedInstance:
    transfer_syntax = str(getattr(ds, "file_meta", {}).get("TransferSyntaxUID", ""))
    if transfer_syntax not in SUPPORTED_TRANSFER_SYNTAXES:
        name = UID(transfer_syntax).name if transfer_syntax else "none given"
        raise InputError(source, f"unsupported transfer syntax {transfer_syntax or '-'} ({name})")
    if "PixelData" not in ds:
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            raise InputError(source, "float pixel data (parametric maps) is not supported")
        raise InputError(source, "the instance has no pixel data")
    expected = native_pixel_bytes(ds, source=source)  # also validates the pixel description
    rows, columns = int(ds.Rows), int(ds.Columns)
    frames = int(ds.get("NumberOfFrames") or 1)
    samples = int(ds.get("SamplesPerPixel") or 1)
    bits = int(ds.BitsAllocated)
    if int(ds.get("BitsStored") or bits) > bits:
        raise InputError(source, f"bits stored ({ds.BitsStored}) exceed bits allocated ({bits})")
    if rows * columns * frames * samples > max_pixels:
        raise InputError(source, f"{rows}x{columns}x{frames} pixels exceed the {max_pixels}-pixel limit")
    compressed = UID(transfer_syntax).is_compressed
    if not compressed:
        actual = len(ds.PixelData)
        # Odd lengths are padded to even in the file.
        if actual not in (expected, expected + (expected % 2)):
            raise InputError(source, f"pixel data is {actual} bytes, the header implies {expected}")
    else:
        declared = declared_size(ds.PixelData)
        # Y = 0 in a JPEG-LS frame header means "given later" (a DNL marker): nothing to compare.
        if declared is not None and declared[0] != 0 and declared != (rows, columns):
            raise InputError(source, f"the compressed frame declares {declared[1]}x{declared[0]} "
                                     f"pixels, the DICOM header {columns}x{rows}")
    decoded_frames = 1 if first_frame_only else frames
    # What the array will take (1-bit data unpacks to a byte a pixel), charged before decoding;
    # decoders of compressed or colour data hold a second buffer while they work.
    array_bytes = rows * columns * decoded_frames * samples * max(bits // 8, 1)
    working = array_bytes if compressed or samples == 3 else 0
    budget.charge(array_bytes + working, f"decoding {rows}x{columns}x{decoded_frames} pixels")
    try:
        with _decoder_messages_at_debug(source):
            array = pixel_array(ds, index=0 if first_frame_only and frames > 1 else None)
    except (ValueError, RuntimeError, NotImplementedError, AttributeError, TypeError, KeyError,
            IndexError) as exc:
        budget.release(array_bytes + working)
        log.debug("%s: decoders' messages: %s: %s", source, type(exc).__name__, exc)
        raise InputError(source, f"the {UID(transfer_syntax).name} pixel data cannot be decoded "
                                 "(a damaged codestream, or not what the transfer syntax says)") from None
    budget.release(working)
    del ds.PixelData
    array = np.asarray(array)
    if decoded_frames == 1:
        array = array[np.newaxis, ...]
    if array.shape[1:3] != (rows, columns):
        raise InputError(source, f"decoded pixels are {array.shape}, the header says {rows}x{columns}")
    return DecodedInstance(dataset=ds, frames=array, frame_count=frames)


# pydicom logs each failing decoder with a traceback on its own logger and may also warn; while
# this thread decodes, both are redirected to our DEBUG log. The warnings machinery is
# process-global, so decoding holds a lock (fetches still overlap; decoding is CPU-bound).
_DECODING = threading.local()
_WARNINGS_LOCK = threading.Lock()


class _ToDebug(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        source = getattr(_DECODING, "source", None)
        if source is None:
            return True
        log.debug("%s: pydicom: %s", source, record.getMessage(), exc_info=record.exc_info)
        return False


# A logger's filters see only the records made on it, not its children's: each logger pydicom's
# decoding path writes to gets the filter.
for _name in ("pydicom", "pydicom.pixels.decoders.base", "pydicom.pixels.utils"):
    _logger = logging.getLogger(_name)
    if not any(isinstance(f, _ToDebug) for f in _logger.filters):
        _logger.addFilter(_ToDebug())


@contextmanager
def _decoder_messages_at_debug(source: str) -> Iterator[None]:
    with _WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _DECODING.source = source
        try:
            yield
        finally:
            _DECODING.source = None
            for warning in caught:
                log.debug("%s: pydicom warned: %s", source, warning.message)
