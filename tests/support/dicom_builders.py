"""Small DICOM instances for imaging tests: CT/MR slices with chosen geometry, radiographs, and
the broken files bad-input tests need. Deterministic: UIDs derive from the arguments."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    MRImageStorage,
    generate_uid,
)

from plugin.sandbox.synthetic.dicom_file import part10_bytes

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)


@dataclass(frozen=True)
class SliceSpec:
    z: float  # position along the axis the orientation's normal points to
    instance_number: int
    orientation: tuple[float, ...] = AXIAL


def slice_dataset(*, study_uid: str, series_uid: str, spec: SliceSpec, modality: str = "CT",
                  pixels: np.ndarray | None = None, rows: int = 8, cols: int = 8,
                  slope: float = 1.0, intercept: float = -1024.0) -> Dataset:
    """One CT or MR slice; its position is `spec.z` along the orientation's normal."""
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage if modality == "CT" else MRImageStorage
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[series_uid, str(spec.instance_number), str(spec.z)])
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    ds.Modality = modality
    ds.PatientID = "TEST-1"
    ds.SeriesDescription = f"{modality} test series"
    ds.BodyPartExamined = "CHEST"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.InstanceNumber = spec.instance_number
    ds.ImageOrientationPatient = list(spec.orientation)
    row, col = np.array(spec.orientation[:3]), np.array(spec.orientation[3:])
    ds.ImagePositionPatient = [float(v) for v in np.cross(row, col) * spec.z]
    ds.PixelSpacing = [1.0, 1.0]
    ds.SliceThickness = 1.0
    if pixels is None:
        pixels = np.full((rows, cols), spec.instance_number * 10, dtype=np.uint16)
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 0
    if modality == "CT":
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    return ds


def series_files(specs: Sequence[SliceSpec], *, study_uid: str = "1.2.826.0.1.3680043.8.498.1",
                 series_uid: str = "1.2.826.0.1.3680043.8.498.2", modality: str = "CT",
                 rows: int = 8, cols: int = 8) -> list[bytes]:
    return [part10_bytes(slice_dataset(study_uid=study_uid, series_uid=series_uid, spec=spec,
                                       modality=modality, rows=rows, cols=cols), ExplicitVRLittleEndian)
            for spec in specs]


def axial_specs(count: int, *, spacing: float = 2.0, shuffle_seed: int | None = 0) -> list[SliceSpec]:
    """`count` axial slices, InstanceNumber shuffled against position (so only position orders them)."""
    numbers = list(range(1, count + 1))
    if shuffle_seed is not None:
        numbers = [int(n) for n in np.random.default_rng(shuffle_seed).permutation(numbers)]
    return [SliceSpec(z=-spacing * i, instance_number=numbers[i]) for i in range(count)]


def radiograph_dataset(pixels: np.ndarray, *, photometric: str = "MONOCHROME2",
                       window: tuple[float, float] | None = None, bits_stored: int = 12,
                       series_uid: str = "1.2.826.0.1.3680043.8.498.3",
                       view: str = "PA") -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = DigitalXRayImageStorageForPresentation
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[series_uid, view, photometric])
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.SeriesInstanceUID = series_uid
    ds.Modality = "DX"
    ds.ViewPosition = view
    ds.InstanceNumber = 1
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits_stored, bits_stored - 1
    ds.PixelRepresentation = 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, 0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    return ds


def jpeg_baseline_file(pixels: np.ndarray) -> bytes:
    """An 8-bit monochrome instance in JPEG Baseline (lossy), encoded by Pillow."""
    ds = slice_dataset(study_uid="1.2.826.0.1.3680043.8.498.1", series_uid="1.2.826.0.1.3680043.8.498.9",
                       spec=SliceSpec(z=0.0, instance_number=1), pixels=pixels.astype(np.uint16))
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="JPEG", quality=95)
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.LossyImageCompression = "01"
    return part10_bytes(ds, JPEGBaseline8Bit)



def gdcm_jpeg_lossless(data: bytes) -> bytes:
    """The same instance transcoded by GDCM to JPEG Lossless SV1 (no pydicom encoder exists)."""
    import tempfile
    from pathlib import Path

    import gdcm

    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "in.dcm", Path(folder) / "out.dcm"
        source.write_bytes(data)
        reader = gdcm.ImageReader()
        reader.SetFileName(str(source))
        if not reader.Read():
            raise ValueError("GDCM could not read the instance")
        change = gdcm.ImageChangeTransferSyntax()
        change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
        change.SetInput(reader.GetImage())
        if not change.Change():
            raise ValueError("GDCM could not transcode the instance")
        writer = gdcm.ImageWriter()
        writer.SetFileName(str(target))
        writer.SetFile(reader.GetFile())
        writer.SetImage(change.GetOutput())
        if not writer.Write():
            raise ValueError("GDCM could not write the instance")
        return target.read_bytes()
