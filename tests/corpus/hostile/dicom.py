"""Hostile and broken DICOM files for the imaging pipeline (Binary route: each file is the one
instance of its own ImagingStudy). Written with pydicom and zlib only, never with chartlight's
readers; every file is made in memory when a case asks for it.

Each case says what it imitates: a decompression bomb, a header that lies about its size, a
missing or malformed pixel description, a file cut short, an object that is not an image, and a
few valid but unusual encodings that must still work (big-endian, deflated, multi-frame DX).
"""

from __future__ import annotations

import io
import zlib

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    BasicTextSRStorage,
    DeflatedExplicitVRLittleEndian,
    DigitalXRayImageStorageForPresentation,
    EncapsulatedPDFStorage,
    EnhancedCTImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    generate_uid,
)

from tests.corpus.hostile import HostileInput

DICOM = "application/dicom"
MIB = 1024 * 1024


def _uid(name: str, part: str) -> str:
    return generate_uid(entropy_srcs=["chartlight hostile corpus", name, part])


def _image(name: str, *, modality: str = "DX", rows: int = 64, columns: int = 64,
           sop_class: str = DigitalXRayImageStorageForPresentation, bits: int = 16,
           pixels: np.ndarray | None = None) -> Dataset:
    """A plain monochrome image data set with native pixel data (a gradient)."""
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = _uid(name, "instance")
    ds.StudyInstanceUID = _uid(name, "study")
    ds.SeriesInstanceUID = _uid(name, "series")
    ds.Modality = modality
    ds.PatientID = "HOSTILE-1"
    ds.InstanceNumber = 1
    ds.ViewPosition = "PA"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    if modality in ("CT", "MR"):
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.ImagePositionPatient = [0.0, 0.0, 0.0]
        ds.PixelSpacing = [1.0, 1.0]
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    ds.PixelRepresentation = 0
    if pixels is None:
        ramp = np.add.outer(np.arange(rows), np.arange(columns)) % (2 ** min(bits, 12))
        pixels = ramp.astype(np.uint16 if bits == 16 else np.uint8)
    ds.PixelData = pixels.tobytes()
    return ds


def _file(ds: Dataset, syntax: str = ExplicitVRLittleEndian) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = UID(syntax)
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


# ---- decompression bombs and lying sizes -----------------------------------------------------

def deflate_bomb(inflated_gib: int = 3) -> bytes:
    """A Deflated Explicit VR Little Endian file (~1 MB per GiB) whose header describes a 64x64
    image and whose deflate stream then inflates to `inflated_gib` GiB of zeros.

    The stream is built from one compressed MiB of zeros repeated: after a full flush zlib starts
    afresh, so the same input compresses to the same bytes and the repeats form one valid stream.
    """
    ds = _image("deflate-bomb")
    del ds.PixelData
    dataset = _dataset_bytes(ds)
    # Pixel Data's header last, claiming a length of ~4 GB; zeros follow for ever.
    pixel_header = b"\xe0\x7f\x10\x00OW\x00\x00" + (0xFFFFFFF0).to_bytes(4, "little")
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    stream = deflater.compress(dataset + pixel_header) + deflater.flush(zlib.Z_FULL_FLUSH)
    zeros = bytes(MIB)
    deflater.compress(zeros)
    deflater.flush(zlib.Z_FULL_FLUSH)  # the first repeat may differ; the later ones do not
    block = deflater.compress(zeros) + deflater.flush(zlib.Z_FULL_FLUSH)
    stream += block * (inflated_gib * 1024) + deflater.flush()
    return _meta_bytes(ds, DeflatedExplicitVRLittleEndian) + stream


def deflated_valid() -> bytes:
    """A real, small Deflated Explicit VR Little Endian radiograph (must still work)."""
    return _file(_image("deflated-valid"), DeflatedExplicitVRLittleEndian)


def deflated_huge_claim() -> bytes:
    """Deflated, small stream, header claiming 65535 x 65535 x 1000 frames (~8 TB of pixels)."""
    ds = _image("deflated-huge-claim", rows=8, columns=8)
    ds.Rows, ds.Columns, ds.NumberOfFrames = 65535, 65535, 1000
    return _file(ds, DeflatedExplicitVRLittleEndian)


def frames_overflow() -> bytes:
    """Rows x Columns x NumberOfFrames x samples x bits far beyond 2**64 bits, 8 bytes of data."""
    ds = _image("frames-overflow", rows=2, columns=2)
    ds.Rows, ds.Columns = 65535, 65535
    ds.NumberOfFrames = "2147483647"
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    return _file(ds)


def jpeg_lying_header() -> bytes:
    """JPEG Baseline whose DICOM header says 64 x 64 but whose JPEG stream is 4000 x 4000."""
    ds = _image("jpeg-lying-header", bits=8)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    jpeg = io.BytesIO()
    Image.new("L", (4000, 4000), 90).save(jpeg, format="JPEG", quality=90)
    ds.PixelData = encapsulate([jpeg.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.LossyImageCompression = "01"
    return _file(ds, JPEGBaseline8Bit)


# ---- malformed pixel descriptions ----------------------------------------------------------

def missing_pixel_data() -> bytes:
    ds = _image("missing-pixel-data")
    del ds.PixelData
    return _file(ds)


def wrong_bits_allocated() -> bytes:
    ds = _image("wrong-bits-allocated")
    ds.BitsAllocated = 12  # only 1, 8, 16, 32 (64) exist
    return _file(ds)


def bits_stored_over_allocated() -> bytes:
    ds = _image("bits-stored-over", bits=8)
    ds.BitsStored, ds.HighBit = 16, 15
    return _file(ds)


def zero_rows() -> bytes:
    ds = _image("zero-rows")
    ds.Rows = 0
    return _file(ds)


def four_samples() -> bytes:
    ds = _image("four-samples")
    ds.SamplesPerPixel = 4
    return _file(ds)


def short_pixel_data() -> bytes:
    ds = _image("short-pixel-data")
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 3 * 2]
    return _file(ds)


def truncated() -> bytes:
    data = _file(_image("truncated", rows=256, columns=256))
    return data[: len(data) // 2]


def not_dicom() -> bytes:
    return b"%PDF-1.7\n" + b"% not a DICOM file at all\n" * 40


def unsupported_syntax() -> bytes:
    ds = _image("unsupported-syntax")
    return _meta_bytes(ds, "1.2.840.10008.1.2.4.100") + _dataset_bytes(ds)  # MPEG-2 video


# ---- objects that are not images, and unusual but valid images -------------------------------

def structured_report() -> bytes:
    ds = Dataset()
    ds.SOPClassUID = BasicTextSRStorage
    ds.SOPInstanceUID = _uid("sr", "instance")
    ds.StudyInstanceUID, ds.SeriesInstanceUID = _uid("sr", "study"), _uid("sr", "series")
    ds.Modality = "SR"
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    return _file(ds)


def encapsulated_pdf() -> bytes:
    ds = Dataset()
    ds.SOPClassUID = EncapsulatedPDFStorage
    ds.SOPInstanceUID = _uid("pdf", "instance")
    ds.StudyInstanceUID, ds.SeriesInstanceUID = _uid("pdf", "study"), _uid("pdf", "series")
    ds.Modality = "DOC"
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = b"%PDF-1.4\n%%EOF\n"
    return _file(ds)


def enhanced_multiframe_ct() -> bytes:
    """Enhanced CT: one instance of 40 frames (the pipeline reads single-frame slices only)."""
    frames = np.zeros((40, 32, 32), dtype=np.uint16)
    ds = _image("enhanced-ct", modality="CT", rows=32, columns=32, sop_class=EnhancedCTImageStorage,
                pixels=frames)
    ds.NumberOfFrames = 40
    return _file(ds)


def dx_strip() -> bytes:
    """A 1 x 30000 DX: padded to a square it would be 30000 x 30000 RGB (2.7 GB)."""
    return _file(_image("dx-strip", rows=1, columns=30000))


def palette_colour() -> bytes:
    ds = _image("palette", bits=8)
    ds.PhotometricInterpretation = "PALETTE COLOR"
    ds.BitsStored, ds.HighBit = 8, 7
    lut = np.arange(256, dtype=np.uint16) * 257
    for colour in ("Red", "Green", "Blue"):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 16])
        setattr(ds, f"{colour}PaletteColorLookupTableData", lut.tobytes())
    return _file(ds)


def big_endian() -> bytes:
    """Explicit VR Big Endian (retired, still met): a valid radiograph."""
    return _file(_image("big-endian"), ExplicitVRBigEndian)


def multiframe_dx() -> bytes:
    """A DX of 3 frames: only the first is used (and only it is decoded)."""
    frames = np.stack([np.full((48, 48), 100 * (i + 1), dtype=np.uint16) for i in range(3)])
    ds = _image("multiframe-dx", rows=48, columns=48, pixels=frames)
    ds.NumberOfFrames = 3
    return _file(ds)


def _meta_bytes(ds: Dataset, syntax: str) -> bytes:
    """Preamble, DICM and a file meta group naming `syntax` for the data set `ds`."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = UID(syntax)
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, False
    out.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(out, meta, enforce_standard=True)
    return bytes(out.getvalue())


def _dataset_bytes(ds: Dataset) -> bytes:
    """The data set alone, explicit VR little endian (what follows the meta group)."""
    explicit = _file(ds)
    return explicit[len(_meta_bytes(ds, ExplicitVRLittleEndian)):]


CASES: tuple[HostileInput, ...] = (
    HostileInput("dicom-deflate-bomb-3gib", "imaging", DICOM, deflate_bomb,
                 reason="decompression bomb"),
    HostileInput("dicom-deflated-huge-claim", "imaging", DICOM, deflated_huge_claim, reason="exceed"),
    HostileInput("dicom-deflated-valid", "imaging", DICOM, deflated_valid, expect="succeeds"),
    HostileInput("dicom-frames-overflow", "imaging", DICOM, frames_overflow, reason="exceed"),
    HostileInput("dicom-jpeg-lying-header", "imaging", DICOM, jpeg_lying_header,
                 reason="declares 4000x4000"),
    HostileInput("dicom-missing-pixel-data", "imaging", DICOM, missing_pixel_data, reason="no pixel data"),
    HostileInput("dicom-wrong-bits-allocated", "imaging", DICOM, wrong_bits_allocated,
                 reason="bits allocated"),
    HostileInput("dicom-bits-stored-over-allocated", "imaging", DICOM, bits_stored_over_allocated,
                 reason="bits stored"),
    HostileInput("dicom-zero-rows", "imaging", DICOM, zero_rows, reason="rows 0"),
    HostileInput("dicom-four-samples", "imaging", DICOM, four_samples, reason="samples per pixel"),
    HostileInput("dicom-short-pixel-data", "imaging", DICOM, short_pixel_data, reason="pixel data"),
    HostileInput("dicom-truncated", "imaging", DICOM, truncated, reason="header implies"),
    HostileInput("dicom-not-dicom", "imaging", DICOM, not_dicom, reason="not a dicom"),
    HostileInput("dicom-unsupported-syntax", "imaging", DICOM, unsupported_syntax,
                 reason="unsupported transfer syntax"),
    HostileInput("dicom-structured-report", "imaging", DICOM, structured_report, reason="modalities: sr"),
    HostileInput("dicom-encapsulated-pdf", "imaging", DICOM, encapsulated_pdf, reason="modalities: doc"),
    HostileInput("dicom-enhanced-multiframe-ct", "imaging", DICOM, enhanced_multiframe_ct,
                 reason="multi-frame"),
    HostileInput("dicom-dx-strip-1x30000", "imaging", DICOM, dx_strip, reason="longer than wide"),
    HostileInput("dicom-palette-colour", "imaging", DICOM, palette_colour, reason="monochrome"),
    HostileInput("dicom-big-endian", "imaging", DICOM, big_endian, expect="succeeds"),
    HostileInput("dicom-multiframe-dx", "imaging", DICOM, multiframe_dx, expect="succeeds"),
)
