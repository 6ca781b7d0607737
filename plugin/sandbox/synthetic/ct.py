"""A synthetic axial chest CT series of a patient, as DICOM Part-10 files a PACS would hold."""

from __future__ import annotations

from datetime import datetime

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless, generate_uid

from plugin.sandbox.synthetic.chest_phantom import axial_slice, pulmonary_vessels
from plugin.sandbox.synthetic.dicom_file import (
    default_accession,
    dicom_date,
    dicom_time,
    part10_bytes,
    set_patient_and_study,
)
from plugin.sandbox.synthetic.patient import SyntheticPatient

FIELD_OF_VIEW_MM = 380.0
RESCALE_INTERCEPT = -1024.0
_TOP_OF_SCAN_Z = -40.0  # table position of the first slice, just above the lung apices
_NOISE_HU = 12.0
_MAX_STORED = 4095  # 12 bits stored


def _scanner_blur(hu: np.ndarray) -> np.ndarray:
    """The reconstruction kernel's softness: a separable [1, 2, 1] filter (partial volume at edges)."""
    padded = np.pad(hu, 1, mode="edge")
    rows = (padded[:-2, :] + 2 * padded[1:-1, :] + padded[2:, :]) / 4
    return np.asarray((rows[:, :-2] + 2 * rows[:, 1:-1] + rows[:, 2:]) / 4, dtype=np.float32)


def _stored_pixels(hu: np.ndarray) -> np.ndarray:
    return np.clip(np.round(hu - RESCALE_INTERCEPT), 0, _MAX_STORED).astype(np.uint16)


def ct_series(
    patient: SyntheticPatient,
    *,
    study_uid: str,
    series_uid: str,
    study_datetime: datetime,
    n_slices: int = 120,
    rows: int = 256,
    cols: int = 256,
    slice_thickness_mm: float = 2.5,
    compressed_every: int = 10,
    accession_number: str | None = None,
    seed: int = 0,
) -> list[bytes]:
    """An axial non-contrast chest CT from the lung apices to the upper abdomen, one file per slice.

    InstanceNumber runs from the top slice down; the list comes back shuffled (seeded), as files
    arrive from a PACS, so consumers must sort. Every `compressed_every`-th instance is encoded
    losslessly compressed, alternating JPEG 2000 Lossless and RLE Lossless; the rest are native.
    """
    spacing = FIELD_OF_VIEW_MM / cols
    x_mm = (np.arange(cols) - (cols - 1) / 2) * spacing
    y_mm = (np.arange(rows) - (rows - 1) / 2) * spacing
    x, y = np.meshgrid(x_mm, y_mm)
    vessels = pulmonary_vessels(seed)
    accession = accession_number or default_accession(study_uid)
    frame_of_reference = generate_uid(entropy_srcs=[study_uid, series_uid, "frame-of-reference"])
    files = []
    for index in range(n_slices):
        depth = index * slice_thickness_mm
        hu = _scanner_blur(axial_slice(x, y, depth, thickness=slice_thickness_mm, vessels=vessels))
        rng = np.random.default_rng([seed, index])
        hu += rng.normal(0.0, _NOISE_HU, hu.shape).astype(np.float32) * (hu > -990)
        instance = index + 1
        position = (float(x_mm[0]), float(y_mm[0]), _TOP_OF_SCAN_Z - depth)
        ds = _slice_dataset(patient, study_uid=study_uid, series_uid=series_uid, when=study_datetime,
                            accession_number=accession, frame_of_reference=frame_of_reference,
                            instance=instance, position=position, spacing=spacing,
                            thickness=slice_thickness_mm)
        pixels = _stored_pixels(hu)
        ds.Rows, ds.Columns = pixels.shape
        ds.PixelData = pixels.tobytes()
        transfer_syntax = ExplicitVRLittleEndian
        if compressed_every > 0 and instance % compressed_every == 0:
            first_of_pair = (instance // compressed_every) % 2 == 1
            transfer_syntax = JPEG2000Lossless if first_of_pair else RLELossless
            # Lossless, so the instance keeps its identity (pydicom would otherwise mint a random UID).
            ds.compress(transfer_syntax, pixels, encoding_plugin="pylibjpeg", generate_instance_uid=False)
        files.append(part10_bytes(ds, transfer_syntax))
    order = np.random.default_rng([seed, 1]).permutation(len(files))
    return [files[i] for i in order]


def _slice_dataset(patient: SyntheticPatient, *, study_uid: str, series_uid: str, when: datetime,
                   accession_number: str, frame_of_reference: str, instance: int,
                   position: tuple[float, float, float], spacing: float, thickness: float) -> Dataset:
    """Every CT Image IOD attribute of one slice except the pixel data."""
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[series_uid, str(instance)])
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    set_patient_and_study(ds, patient, study_uid=study_uid, when=when, accession_number=accession_number,
                          description="CT CHEST WITHOUT CONTRAST")
    ds.Modality = "CT"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = 2
    ds.SeriesDescription = "AXIAL 2.5mm"
    ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = dicom_date(when)
    ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = dicom_time(when)
    ds.BodyPartExamined = "CHEST"
    ds.PatientPosition = "HFS"
    ds.ManufacturerModelName = "Phantom CT"
    ds.KVP = 120
    ds.XRayTubeCurrent = 180
    ds.ConvolutionKernel = "STANDARD"
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = instance
    ds.FrameOfReferenceUID = frame_of_reference
    ds.PositionReferenceIndicator = ""
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.ImagePositionPatient = [round(value, 4) for value in position]
    ds.SliceLocation = round(position[2], 4)
    ds.PixelSpacing = [round(spacing, 6), round(spacing, 6)]
    ds.SliceThickness = thickness
    ds.SpacingBetweenSlices = thickness
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = RESCALE_INTERCEPT
    ds.RescaleSlope = 1.0
    ds.RescaleType = "HU"
    ds.WindowCenter = [40.0, -600.0]
    ds.WindowWidth = [400.0, 1500.0]
    ds.WindowCenterWidthExplanation = ["MEDIASTINUM", "LUNG"]
    return ds
