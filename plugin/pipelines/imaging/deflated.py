"""Inflate a Deflated Explicit VR Little Endian file (transfer syntax 1.2.840.10008.1.2.1.99)
ourselves, in bounded steps charged to the job's memory budget, before pydicom sees it.

pydicom inflates such a file whole with one `zlib.decompress` call, so a 3 MB file of zeros
becomes 6 GB before any header is read. Here the data set is inflated a chunk at a time: as
soon as its header (everything before the Pixel Data element) is in hand, the pixel size it
claims bounds how much more may be inflated, and every chunk is charged to the budget before it
is produced. The result is the same file in Explicit VR Little Endian, which pydicom reads
without inflating anything.
"""

from __future__ import annotations

import io
import zlib

from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

from plugin.budget import MemoryBudget
from plugin.errors import InputError

_CHUNK = 256 * 1024
# (7FE0,0010) Pixel Data in explicit VR little endian, followed by its VR.
_PIXEL_TAGS = (b"\xe0\x7f\x10\x00OB", b"\xe0\x7f\x10\x00OW")
# A header (all elements before Pixel Data) larger than this is refused: real ones are kilobytes.
MAX_HEADER_BYTES = 16 * 1024 * 1024
# Elements after Pixel Data (trailing padding, digital signatures) are small.
TRAILER_BYTES = 1024 * 1024
# A data set without pixel data (SR, encapsulated PDF) may inflate to at most this much.
MAX_INFLATED_WITHOUT_PIXELS = 64 * 1024 * 1024


def is_deflated(meta: FileMetaDataset) -> bool:
    return str(meta.get("TransferSyntaxUID", "")) == DeflatedExplicitVRLittleEndian


def read_meta(data: bytes, *, source: str) -> tuple[FileMetaDataset, int]:
    """The file meta information of a Part-10 file and the offset where the data set begins."""
    fp = io.BytesIO(data)
    try:
        # pydicom's one reader of the meta group from a file object (the public
        # read_file_meta_info takes a path); pydicom is pinned in requirements.lock.
        read_preamble(fp, False)
        meta = _read_file_meta_info(fp)
    except (InvalidDicomError, EOFError, ValueError, KeyError, OSError) as exc:
        raise InputError(source, f"DICOM file meta information cannot be read ({exc})") from None
    return meta, fp.tell()


def inflate(data: bytes, meta: FileMetaDataset, offset: int, *, source: str, budget: MemoryBudget,
            header_only: bool = False) -> bytes:
    """The deflated data set after `offset`, inflated and re-wrapped as an Explicit VR Little
    Endian Part-10 file. With `header_only` inflation stops once everything before the Pixel
    Data element is inflated. The bytes returned stay charged to `budget` (the caller releases
    them); the working copy is released here.

    Raises BudgetExceeded (an InputError) when the budget would be passed, InputError when the
    stream inflates beyond what its own header claims or is not a deflate stream."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, PS3.5 A.5
    head = _explicit_meta(meta)
    out = bytearray(head)
    limit = MAX_HEADER_BYTES
    header_end: int | None = None
    searched = 0
    remaining = data[offset:]
    charged = 0
    try:
        while True:
            # Charged before the chunk exists: a bomb fails here, not after allocating.
            budget.charge(_CHUNK, "inflating the deflated DICOM data set")
            charged += _CHUNK
            try:
                piece = inflater.decompress(remaining, _CHUNK)
            except zlib.error as exc:
                raise InputError(source, "the deflated data set is not a valid deflate stream "
                                         f"({exc})") from None
            remaining = inflater.unconsumed_tail
            out += piece
            inflated = len(out) - len(head)
            if header_end is None:
                header_end, searched = _header_end(out, len(head), searched, source=source)
                if header_end is not None:
                    pixel_bytes = _claimed_pixel_bytes(out[len(head):header_end], source=source)
                    limit = header_end - len(head) + 12 + pixel_bytes + TRAILER_BYTES
                    if header_only:
                        del out[header_end:]
                        break
                elif inflated > MAX_HEADER_BYTES:
                    limit = MAX_INFLATED_WITHOUT_PIXELS
            if inflated > limit:
                raise InputError(source, f"the deflated data set inflates beyond the {limit} bytes "
                                         "its header accounts for (a decompression bomb)")
            if inflater.eof or not (piece or remaining):
                break
        budget.charge(len(out), "the inflated DICOM file")
        return bytes(out)
    finally:
        budget.release(charged)


def _header_end(out: bytearray, start: int, searched: int, *, source: str) -> tuple[int | None, int]:
    """Offset of the top-level Pixel Data element in `out` once its header (the elements
    before it) can be read and names Rows, else None; and how far `out` has been searched."""
    position = max(start, searched - 6)
    while True:
        found = [i for i in (out.find(tag, position) for tag in _PIXEL_TAGS) if i >= 0]
        if not found:
            return None, len(out)
        candidate = min(found)
        # The same bytes inside another element's value (a false match) leave a header without
        # Rows: look further.
        if _has_rows(out[start:candidate], source=source):
            return candidate, len(out)
        position = candidate + 1


def _read_header(header: bytearray, *, source: str) -> Dataset:
    prefix = DicomBytesIO(bytes(header))
    try:
        return dcmread(prefix, force=True, stop_before_pixels=True)
    except (InvalidDicomError, EOFError, ValueError, KeyError, OSError, TypeError) as exc:
        raise InputError(source, f"the inflated DICOM header cannot be read ({exc})") from None


def _has_rows(header: bytearray, *, source: str) -> bool:
    return "Rows" in _read_header(header, source=source)


def _claimed_pixel_bytes(header: bytearray, *, source: str) -> int:
    return native_pixel_bytes(_read_header(header, source=source), source=source)


def native_pixel_bytes(ds: Dataset, *, source: str) -> int:
    """rows x columns x frames x samples x bits allocated / 8, from the header; an InputError
    when a value is missing or impossible (so nothing is sized from a lie)."""
    try:
        rows, columns = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
        frames = int(ds.get("NumberOfFrames") or 1)
        samples = int(ds.get("SamplesPerPixel") or 1)
        bits = int(ds.get("BitsAllocated") or 0)
    except (TypeError, ValueError) as exc:
        raise InputError(source, f"the pixel description is unreadable ({exc})") from None
    if rows <= 0 or columns <= 0 or frames <= 0 or samples not in (1, 3) or bits not in (1, 8, 16, 32):
        raise InputError(source, f"pixel description is invalid (rows {rows}, columns {columns}, frames "
                                 f"{frames}, samples per pixel {samples}, bits allocated {bits})")
    return (rows * columns * frames * samples * bits + 7) // 8


def _explicit_meta(meta: FileMetaDataset) -> bytes:
    """Preamble, DICM and the file meta group, now naming Explicit VR Little Endian."""
    rewritten = FileMetaDataset(meta)
    rewritten.TransferSyntaxUID = ExplicitVRLittleEndian
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, False
    out.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(out, rewritten, enforce_standard=True)
    return bytes(out.getvalue())
