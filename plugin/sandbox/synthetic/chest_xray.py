"""A synthetic PA chest radiograph of a patient, as a DX "for presentation" DICOM file."""

from __future__ import annotations

from datetime import datetime

import numpy as np
from PIL import Image, ImageDraw
from pydicom.dataset import Dataset
from pydicom.uid import DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian, generate_uid

from plugin.sandbox.synthetic.dicom_file import (
    default_accession,
    dicom_date,
    dicom_time,
    part10_bytes,
    set_patient_and_study,
)
from plugin.sandbox.synthetic.patient import SyntheticPatient

PIXEL_SPACING_MM = 0.35
# Centre of the right lower zone opacity, in mm from the image centre: (right, down). The
# patient's right is on the viewer's left in a PA view.
NODULE_CENTRE_MM = (-78.0, 60.0)
# The anatomy below is drawn about the carina; the image centre lies this far below it, so the
# field runs from the lower neck to the upper abdomen.
_CENTRE_BELOW_CARINA_MM = 22.0
_MAX_STORED = 4095  # 12 bits stored


def nodule_centre_pixel(rows: int = 1024, cols: int = 1024) -> tuple[int, int]:
    """(row, column) of the opacity's centre in an image of that size."""
    return (round((rows - 1) / 2 + NODULE_CENTRE_MM[1] / PIXEL_SPACING_MM),
            round((cols - 1) / 2 + NODULE_CENTRE_MM[0] / PIXEL_SPACING_MM))


def _blur(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur by FFT, on a reflect-padded copy so nothing wraps round the edges."""
    pad = int(3 * sigma_px) + 1
    padded = np.pad(image, pad, mode="reflect")
    fy = np.fft.fftfreq(padded.shape[0])[:, None]
    fx = np.fft.rfftfreq(padded.shape[1])[None, :]
    response = np.exp(-2 * np.pi**2 * sigma_px**2 * (fx**2 + fy**2))
    smooth = np.fft.irfft2(np.fft.rfft2(padded) * response, s=padded.shape)
    return np.asarray(smooth[pad:-pad, pad:-pad], dtype=np.float32)


def _band(u: np.ndarray, v: np.ndarray, centre: np.ndarray, half_width: float) -> np.ndarray:
    """Profile of a bony band around the curve v = centre(u): bright cortex edges, fainter middle."""
    distance = np.abs(v - centre) / half_width
    inside = distance < 1
    return np.where(inside, 0.55 + 0.45 * distance**4, 0.0).astype(np.float32)


def _lungs(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Air-filled lung in front of each pixel, 0..1, rounded at the edges like a real lung."""
    right_dome = 68 + 0.010 * (u + 72) ** 2
    left_dome = 84 + 0.010 * (u - 72) ** 2
    right = (u < -22) & (u > -140 + 0.0009 * (v + 20) ** 2) & (v < right_dome)
    left = (u > 22) & (u < 140 - 0.0009 * (v + 20) ** 2) & (v < left_dome)
    apex = ((np.abs(u) - 78) / 58) ** 2 + ((v + 95) / 75) ** 2 <= 1
    lungs = (right | left) & ((v > -95) | apex)
    heart = ((u - 22) / 78) ** 2 + ((v - 55) / 68) ** 2 <= 1
    aortic_knob = ((u - 30) / 15) ** 2 + ((v + 60) / 15) ** 2 <= 1
    air = (lungs & ~heart & ~aortic_knob).astype(np.float32)
    # Crisp pleural borders, and more lung (so darker) in the middle of each field than at its rim.
    return _blur(air, 2.5 / PIXEL_SPACING_MM) * (0.55 + 0.45 * _blur(air, 25 / PIXEL_SPACING_MM))


def _skeleton(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Projected bone: ribs (posterior and anterior), clavicles and the thoracic spine."""
    bone = np.zeros(u.shape, dtype=np.float32)
    width = np.abs(u)
    for k in range(10):
        start = -118.0 + 25.0 * k
        t = np.clip((width - 18) / 125, 0, 1)
        posterior = start - 24 * np.sin(0.8 * np.pi * t) + 40 * t**2
        bone += _band(u, v, posterior, 4.5 + 0.25 * k) * ((width > 18) & (width < 145))
        if k < 7:  # anterior ribs: fainter, sloping down towards the sternum, lost in cartilage
            s = np.clip((145 - width) / 105, 0, 1)
            anterior = start - 20 + 60 * s
            bone += 0.5 * _band(u, v, anterior, 5.5) * ((width > 40) & (width < 142))
    t = np.clip((width - 20) / 125, 0, 1)
    clavicle = -112 - 38 * t + 6 * np.sin(2 * np.pi * t)
    bone += 1.3 * _band(u, v, clavicle, 7.0) * ((width > 20) & (width < 148))
    vertebrae = (np.abs(u) < 17) * (0.8 + 0.2 * np.cos(2 * np.pi * v / 27.0))
    bone += 0.6 * vertebrae.astype(np.float32)
    return bone


def _vessels(rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """Lung markings: tapering branches fanning out from each hilum."""
    image = Image.new("F", (cols, rows), 0.0)
    draw = ImageDraw.Draw(image)
    centre_r, centre_c = (rows - 1) / 2, (cols - 1) / 2
    for side in (-1.0, 1.0):
        for _ in range(26):
            angle = rng.uniform(-1.2, 1.3)
            length = rng.uniform(50, 120)
            x0, y0 = side * 40.0, -8.0
            points = [(x0, y0)]
            for step in range(1, 5):
                reach = length * step / 4
                wobble = rng.normal(0, 4)
                points.append((x0 + side * reach * np.cos(angle), y0 + reach * np.sin(angle) + wobble))
            for index, ((ax, ay), (bx, by)) in enumerate(zip(points, points[1:], strict=False)):
                draw.line(
                    [(centre_c + ax / PIXEL_SPACING_MM, centre_r + ay / PIXEL_SPACING_MM),
                     (centre_c + bx / PIXEL_SPACING_MM, centre_r + by / PIXEL_SPACING_MM)],
                    fill=1.0 - 0.2 * index, width=max(2, int(12 - 3 * index)),
                )
    return _blur(np.asarray(image, dtype=np.float32), 2.0)


def _radiograph(rows: int, cols: int, finding_size_mm: float, rng: np.random.Generator) -> np.ndarray:
    """Processed detector signal, 0..1 with bright = more attenuation (MONOCHROME2 sense)."""
    u = ((np.arange(cols) - (cols - 1) / 2) * PIXEL_SPACING_MM)[None, :].repeat(rows, 0)
    v_image = (np.arange(rows) - (rows - 1) / 2) * PIXEL_SPACING_MM
    v = (v_image - _CENTRE_BELOW_CARINA_MM)[:, None].repeat(cols, 1)
    # Soft tissue of the trunk: the neck widening smoothly over the shoulders; elliptical depth.
    shoulders = np.clip((v + 205) / 55, 0, 1)
    half_width = 75 + 100 * shoulders**2 * (3 - 2 * shoulders)
    depth = np.sqrt(np.clip(1 - (u / half_width) ** 2, 0, 1))
    density = 1.0 * depth
    hila = np.exp(-(((np.abs(u) - 42) / 16) ** 2 + ((v + 5) / 26) ** 2))
    density += 0.22 * hila
    density += 0.25 * np.exp(-(((np.abs(u) - 95) / 55) ** 2 + ((v - 105) / 45) ** 2))  # breast shadows
    density -= 0.62 * _lungs(u, v)
    density -= 0.08 * ((np.abs(u) < 9) & (v < -60))  # trachea
    gastric = ((u - 82) / 30) ** 2 + ((v - 128) / 18) ** 2 <= 1
    density -= 0.18 * _blur(gastric.astype(np.float32), 4 / PIXEL_SPACING_MM)
    density += 0.10 * _vessels(rows, cols, rng) * (density < 0.6)
    density += 0.09 * _blur(_skeleton(u, v), 1.5)
    # The opacity: a soft-tissue sphere, its projected thickness 2*sqrt(r^2 - d^2).
    radius = finding_size_mm / 2
    distance = np.hypot(u - NODULE_CENTRE_MM[0], v + _CENTRE_BELOW_CARINA_MM - NODULE_CENTRE_MM[1])
    density += 0.5 * np.sqrt(np.clip(radius**2 - distance**2, 0, None)) / 20.0
    # Detector processing: unsharp-mask the edges, an S-shaped tone curve, then quantum noise.
    density += 0.6 * (density - _blur(density, 6 / PIXEL_SPACING_MM))
    signal = 1 / (1 + np.exp(-5.5 * (density - 0.45)))
    signal += rng.normal(0, 0.008, signal.shape)
    return np.clip(signal, 0, 1).astype(np.float32)


def _code(value: str, meaning: str) -> Dataset:
    """A SNOMED CT code sequence item."""
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "SCT", meaning
    return item


def chest_xray(
    patient: SyntheticPatient,
    *,
    study_uid: str,
    series_uid: str,
    acquired: datetime,
    finding_size_mm: float,
    photometric: str = "MONOCHROME2",
    rows: int = 1024,
    cols: int = 1024,
    accession_number: str | None = None,
    seed: int = 0,
) -> bytes:
    """A PA chest radiograph with a round opacity of `finding_size_mm` in the right lower zone.

    MONOCHROME1 stores the inverted values (bone low), as some vendors' detectors do; the image a
    viewer shows is the same.
    """
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError(f"photometric must be MONOCHROME1 or MONOCHROME2, not {photometric!r}")
    signal = _radiograph(rows, cols, finding_size_mm, np.random.default_rng(seed))
    pixels = np.round(signal * _MAX_STORED).astype(np.uint16)
    inverted = photometric == "MONOCHROME1"
    if inverted:
        pixels = (_MAX_STORED - pixels).astype(np.uint16)
    ds = Dataset()
    ds.SOPClassUID = DigitalXRayImageStorageForPresentation
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[series_uid, acquired.isoformat(), "1"])
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    set_patient_and_study(ds, patient, study_uid=study_uid, when=acquired,
                          accession_number=accession_number or default_accession(study_uid),
                          description="XR CHEST PA")
    ds.Modality = "DX"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = 1
    ds.SeriesDescription = "CHEST PA"
    ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = dicom_date(acquired)
    ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = dicom_time(acquired)
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.AcquisitionContextSequence = []
    ds.ManufacturerModelName = "Phantom DR"
    ds.BodyPartExamined = "CHEST"
    ds.AnatomicRegionSequence = [_code("51185008", "Chest")]
    ds.ViewPosition = "PA"
    ds.ViewCodeSequence = [_code("399348003", "postero-anterior")]
    ds.PositionerType = "COLUMN"  # wall-mounted chest stand
    ds.ImageLaterality = "U"
    ds.PatientOrientation = ["L", "F"]  # rows run to the patient's left, columns to the feet
    ds.InstanceNumber = 1
    ds.KVP = 120
    ds.ExposureInuAs = 2500
    ds.DistanceSourceToDetector = 1800
    ds.DetectorType = "SCINTILLATOR"
    ds.ImagerPixelSpacing = [PIXEL_SPACING_MM, PIXEL_SPACING_MM]
    ds.PixelSpacing = [PIXEL_SPACING_MM, PIXEL_SPACING_MM]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelIntensityRelationship = "LOG"
    # +1: lower values mean less X-ray reached the detector (bone) - true when the values are inverted.
    ds.PixelIntensityRelationshipSign = 1 if inverted else -1
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "US"
    ds.PresentationLUTShape = "INVERSE" if inverted else "IDENTITY"
    ds.LossyImageCompression = "00"
    ds.BurnedInAnnotation = "NO"
    centre = float(np.percentile(pixels, 50))
    ds.WindowCenter = round(centre, 1)
    ds.WindowWidth = 3600.0
    ds.PixelData = pixels.tobytes()
    return part10_bytes(ds, ExplicitVRLittleEndian)
