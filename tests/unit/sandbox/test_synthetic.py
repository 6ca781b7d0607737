"""The synthetic patient's inputs: lab report renderings, dictation audio, CT series and chest X-rays."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from datetime import UTC, datetime

import numpy as np
import pydicom
import pypdf
import pytest
import soundfile
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels import apply_rescale
from pydicom.uid import (
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
)

from plugin.errors import SandboxError
from plugin.sandbox.synthetic import (
    DEMO_LAB_REPORT,
    DEMO_PATIENT,
    DICTATION_TEXT,
    NODULE_CENTRE_MM,
    RIGHT_LOWER_LOBE_NODULE,
    LabLine,
    chest_xray,
    ct_series,
    espeak_wav,
    nodule_centre_pixel,
    page_images,
    photo_png,
    scanned_pdf,
    text_pdf,
    to_flac,
)
from plugin.sandbox.synthetic import dictation as dictation_module

STUDY_UID = "1.2.826.0.1.3680043.8.498.1001"
SERIES_UID = "1.2.826.0.1.3680043.8.498.1001.2"
ACQUIRED = datetime(2026, 11, 21, 9, 30, tzinfo=UTC)
THICKNESS = 2.5

needs_tesseract = pytest.mark.skipif(shutil.which("tesseract") is None,
                                     reason="tesseract is not installed (Debian package tesseract-ocr)")
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng is not installed (Debian package espeak-ng)")


def _pdf_lines(pdf: bytes) -> list[list[str]]:
    return [page.extract_text().splitlines() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages]


def _printed_row(line: LabLine) -> str:
    cells = [line.name, line.value, line.unit, line.reference_text, line.flag]
    return " ".join(cell for cell in cells if cell)


# --- lab report --------------------------------------------------------------------------------


def test_demo_report_is_a_realistic_panel_set_with_flags_that_follow_the_ranges() -> None:
    lines = DEMO_LAB_REPORT.lines
    assert len(DEMO_LAB_REPORT.panels) >= 4
    assert 25 <= len(lines) <= 35
    assert {"H", "L"} <= {line.flag for line in lines}
    for line in lines:
        value = float(line.value)
        above = line.reference_high is not None and (
            value >= float(line.reference_high) if line.reference_text.startswith("<")
            else value > float(line.reference_high))
        below = line.reference_low is not None and value < float(line.reference_low)
        assert line.flag == ("H" if above else "L" if below else ""), line


def test_text_pdf_prints_each_result_on_one_extractable_line() -> None:
    pages = _pdf_lines(text_pdf(DEMO_LAB_REPORT))
    assert len(pages) == 2
    printed = {text.strip() for page in pages for text in page}
    for line in DEMO_LAB_REPORT.lines:
        assert _printed_row(line) in printed
    header = "\n".join(pages[0])
    assert f"Patient: {DEMO_PATIENT.display_name} MRN: {DEMO_PATIENT.mrn}" in header
    assert f"Accession: {DEMO_LAB_REPORT.accession}" in header
    assert "Collected: 2026-11-20 08:15 +00:00" in header


def test_text_pdf_is_reproducible() -> None:
    assert text_pdf(DEMO_LAB_REPORT) == text_pdf(DEMO_LAB_REPORT)


def test_page_images_are_grayscale_pages_at_the_requested_dpi() -> None:
    images = page_images(DEMO_LAB_REPORT, dpi=100)
    assert [(image.mode, image.size) for image in images] == [("L", (850, 1100))] * 2
    assert np.asarray(images[0]).min() < 60  # there is ink on the page


@pytest.fixture(scope="module")
def scan() -> bytes:
    return scanned_pdf(DEMO_LAB_REPORT, seed=7)


@pytest.fixture(scope="module")
def photo() -> bytes:
    return photo_png(DEMO_LAB_REPORT, seed=11)


def test_scanned_pdf_has_no_text_layer_and_one_200_dpi_image_per_page(scan: bytes) -> None:
    reader = pypdf.PdfReader(io.BytesIO(scan))
    assert len(reader.pages) == 2
    for page in reader.pages:
        assert page.extract_text().strip() == ""
        assert (float(page.mediabox.width), float(page.mediabox.height)) == (612.0, 792.0)
        (image,) = page.images
        assert image.image is not None and image.image.size == (1700, 2200)


def _ocr(image: Image.Image) -> str:
    png = io.BytesIO()
    image.save(png, format="PNG")
    completed = subprocess.run(["tesseract", "stdin", "stdout", "--psm", "6"], input=png.getvalue(),
                               capture_output=True, check=True, env={**os.environ, "OMP_THREAD_LIMIT": "1"})
    return completed.stdout.decode("utf-8")


def _share_of_values_read(text: str, lines: tuple[LabLine, ...]) -> float:
    words = set(text.split())
    return sum(line.value in words for line in lines) / len(lines)


@needs_tesseract
def test_scan_stays_ocr_readable(scan: bytes) -> None:
    images = [page.images[0].image for page in pypdf.PdfReader(io.BytesIO(scan)).pages]
    text = "\n".join(_ocr(image) for image in images if image is not None)
    assert _share_of_values_read(text, DEMO_LAB_REPORT.lines) >= 0.85


@needs_tesseract
def test_photo_of_first_page_stays_ocr_readable(photo: bytes) -> None:
    image = Image.open(io.BytesIO(photo))
    assert image.format == "PNG" and image.mode == "RGB"
    assert image.width > 1700 and image.height > 2200  # the page sits on a desk, with margins
    first_page = tuple(line for line in DEMO_LAB_REPORT.lines if line.panel in DEMO_LAB_REPORT.panels[:2])
    assert _share_of_values_read(_ocr(image), first_page) >= 0.85


# --- dictation ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wav() -> bytes:
    return espeak_wav(DICTATION_TEXT)


@needs_espeak
def test_dictation_wav_is_16_bit_mono_speech_of_dictation_length(wav: bytes) -> None:
    info = soundfile.info(io.BytesIO(wav))
    assert (info.format, info.subtype, info.channels) == ("WAV", "PCM_16", 1)
    assert 30.0 <= info.duration <= 90.0
    assert "period" in DICTATION_TEXT and "new paragraph" in DICTATION_TEXT


@needs_espeak
def test_flac_is_44k1_stereo_of_the_same_duration(wav: bytes) -> None:
    flac = to_flac(wav)
    info = soundfile.info(io.BytesIO(flac))
    assert (info.format, info.samplerate, info.channels) == ("FLAC", 44100, 2)
    assert abs(info.duration - soundfile.info(io.BytesIO(wav)).duration) <= 0.1
    samples, _ = soundfile.read(io.BytesIO(flac))
    assert np.array_equal(samples[:, 0], samples[:, 1])
    assert float(np.sqrt(np.mean(samples**2))) > 0.01  # speech, not silence


def test_missing_espeak_is_a_clear_sandbox_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dictation_module.shutil, "which", lambda _: None)
    with pytest.raises(SandboxError, match="espeak-ng is not installed"):
        espeak_wav("test")


# --- CT ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ct_files() -> list[bytes]:
    return ct_series(DEMO_PATIENT, study_uid=STUDY_UID, series_uid=SERIES_UID, study_datetime=ACQUIRED)


@pytest.fixture(scope="module")
def ct(ct_files: list[bytes]) -> list[Dataset]:
    return sorted((pydicom.dcmread(io.BytesIO(f)) for f in ct_files), key=lambda ds: int(ds.InstanceNumber))


def test_ct_series_is_one_shuffled_ct_image_storage_series(ct_files: list[bytes], ct: list[Dataset]) -> None:
    assert len(ct_files) == 120
    arrival = [int(pydicom.dcmread(io.BytesIO(f), stop_before_pixels=True).InstanceNumber) for f in ct_files]
    assert arrival != sorted(arrival)
    assert [int(ds.InstanceNumber) for ds in ct] == list(range(1, 121))
    assert len({ds.SOPInstanceUID for ds in ct}) == 120
    for ds in ct:
        assert ds.SOPClassUID == CTImageStorage
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality) == (STUDY_UID, SERIES_UID, "CT")
        assert (ds.PatientID, ds.BodyPartExamined) == (DEMO_PATIENT.mrn, "CHEST")
        assert ds.SeriesDescription == "AXIAL 2.5mm"
        assert (ds.BitsAllocated, ds.PixelRepresentation, float(ds.RescaleIntercept)) == (16, 0, -1024.0)
    assert len({ds.FrameOfReferenceUID for ds in ct}) == 1


def test_ct_geometry_is_axial_with_positions_stepping_by_the_thickness(ct: list[Dataset]) -> None:
    positions = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in ct])
    for ds in ct:
        assert [float(v) for v in ds.ImageOrientationPatient] == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        assert float(ds.SliceThickness) == float(ds.SpacingBetweenSlices) == THICKNESS
        assert float(ds.SliceLocation) == float(ds.ImagePositionPatient[2])
    assert np.allclose(np.diff(positions[:, 2]), -THICKNESS)
    assert np.allclose(positions[:, :2], positions[0, :2])


def _hu(ct: list[Dataset], instance: int, x_mm: float, y_mm: float, half: int = 1) -> np.ndarray:
    """HU in a (2*half+1)^2 neighbourhood of patient point (x, y) on one slice."""
    ds = ct[instance - 1]
    spacing = float(ds.PixelSpacing[0])
    column = round((x_mm - float(ds.ImagePositionPatient[0])) / spacing)
    row = round((y_mm - float(ds.ImagePositionPatient[1])) / spacing)
    hu = apply_rescale(ds.pixel_array, ds)
    return np.asarray(hu[row - half:row + half + 1, column - half:column + half + 1])


def test_ct_hounsfield_units_are_realistic_where_the_anatomy_is(ct: list[Dataset]) -> None:
    mid_chest = 41  # 100 mm below the top slice, through a vertebral body
    assert np.median(_hu(ct, mid_chest, -185.0, -185.0)) == pytest.approx(-1000, abs=15)  # air outside
    assert -920 <= np.median(_hu(ct, mid_chest, -105.0, -20.0, half=3)) <= -780  # right lung
    assert 20 <= np.median(_hu(ct, 61, 22.0, -28.0)) <= 70  # heart
    assert 700 <= _hu(ct, mid_chest, 0.0, 62.0, half=14).max() <= 1000  # vertebral cortex
    assert 150 <= np.median(_hu(ct, mid_chest, 0.0, 62.0)) <= 350  # cancellous bone inside it
    assert 45 <= np.median(_hu(ct, 115, -80.0, 0.0, half=3)) <= 75  # liver, upper abdomen
    nodule = RIGHT_LOWER_LOBE_NODULE
    centre = round(nodule.depth / THICKNESS) + 1
    assert 5 <= np.median(_hu(ct, centre, nodule.x, nodule.y)) <= 55
    assert np.median(_hu(ct, centre, nodule.x + nodule.diameter, nodule.y)) < -700  # lung beside it


def test_compressed_instances_decode_to_the_uncompressed_pixels() -> None:
    def series(every: int) -> list[Dataset]:
        files = ct_series(DEMO_PATIENT, study_uid=STUDY_UID, series_uid=SERIES_UID, study_datetime=ACQUIRED,
                          n_slices=12, compressed_every=every, seed=3)
        return sorted((pydicom.dcmread(io.BytesIO(f)) for f in files), key=lambda ds: int(ds.InstanceNumber))

    compressed, plain = series(3), series(0)
    syntaxes = [ds.file_meta.TransferSyntaxUID for ds in compressed]
    assert syntaxes.count(JPEG2000Lossless) == 2 and syntaxes.count(RLELossless) == 2
    assert all(ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian for ds in plain)
    for packed, native in zip(compressed, plain, strict=True):
        assert packed.SOPInstanceUID == native.SOPInstanceUID
        assert np.array_equal(packed.pixel_array, native.pixel_array)


def test_full_series_mixes_jpeg2000_and_rle_instances(ct: list[Dataset]) -> None:
    syntaxes = [ds.file_meta.TransferSyntaxUID for ds in ct]
    assert syntaxes.count(JPEG2000Lossless) == 6 and syntaxes.count(RLELossless) == 6
    compressed = [number for number, syntax in enumerate(syntaxes, 1) if syntax != ExplicitVRLittleEndian]
    assert compressed == list(range(10, 121, 10))


def test_ct_series_is_reproducible() -> None:
    def small() -> list[bytes]:
        return ct_series(DEMO_PATIENT, study_uid=STUDY_UID, series_uid=SERIES_UID, study_datetime=ACQUIRED,
                         n_slices=6, compressed_every=2, seed=5)

    assert small() == small()


# --- chest X-ray -------------------------------------------------------------------------------


def _cxr(size_mm: float, photometric: str = "MONOCHROME2") -> Dataset:
    dicom = chest_xray(DEMO_PATIENT, study_uid=STUDY_UID, series_uid=SERIES_UID + ".9", acquired=ACQUIRED,
                       finding_size_mm=size_mm, photometric=photometric, seed=2)
    return pydicom.dcmread(io.BytesIO(dicom))


@pytest.fixture(scope="module")
def current_cxr() -> Dataset:
    return _cxr(24.0)


def test_cxr_is_a_pa_dx_image_for_presentation(current_cxr: Dataset) -> None:
    ds = current_cxr
    assert ds.SOPClassUID == DigitalXRayImageStorageForPresentation
    assert (ds.Modality, ds.BodyPartExamined, ds.ViewPosition) == ("DX", "CHEST", "PA")
    assert (ds.PhotometricInterpretation, ds.PresentationLUTShape) == ("MONOCHROME2", "IDENTITY")
    assert (ds.BitsAllocated, ds.BitsStored) == (16, 12)
    assert [float(v) for v in ds.ImagerPixelSpacing] == [0.35, 0.35]
    assert ds.pixel_array.shape == (1024, 1024) and int(ds.pixel_array.max()) <= 4095
    assert ds.PatientID == DEMO_PATIENT.mrn and ds.StudyInstanceUID == STUDY_UID


def test_monochrome1_stores_the_inverse_of_monochrome2(current_cxr: Dataset) -> None:
    inverted = _cxr(24.0, "MONOCHROME1")
    assert inverted.PhotometricInterpretation == "MONOCHROME1" and inverted.PresentationLUTShape == "INVERSE"
    expected = 4095 - current_cxr.pixel_array.astype(np.int32)
    assert np.array_equal(inverted.pixel_array.astype(np.int32), expected)


def _mean_at(ds: Dataset, right_mm: float, down_mm: float, radius_mm: float = 8.0) -> float:
    pixels = ds.pixel_array.astype(np.float64)
    rows, cols = pixels.shape
    row = (rows - 1) / 2 + down_mm / 0.35
    col = (cols - 1) / 2 + right_mm / 0.35
    yy, xx = np.mgrid[0:rows, 0:cols]
    return float(pixels[np.hypot(yy - row, xx - col) <= radius_mm / 0.35].mean())


def test_cxr_anatomy_has_dark_lungs_and_bright_mediastinum(current_cxr: Dataset) -> None:
    lung = _mean_at(current_cxr, -95.0, -30.0)
    assert _mean_at(current_cxr, 5.0, 60.0) > lung + 1200  # heart and spine
    assert _mean_at(current_cxr, -95.0, 150.0) > lung + 1200  # liver under the right dome
    assert _mean_at(current_cxr, -170.0, -170.0, radius_mm=4) < lung  # air beside the neck


def test_cxr_opacity_grows_with_the_finding_size(current_cxr: Dataset) -> None:
    prior = _cxr(12.0)  # same seed: the two images differ only by the opacity
    right, down = NODULE_CENTRE_MM
    assert nodule_centre_pixel() == (round(511.5 + down / 0.35), round(511.5 + right / 0.35))

    def growth(dx: float) -> float:
        at = (right + dx, down)
        return _mean_at(current_cxr, *at, radius_mm=2) - _mean_at(prior, *at, radius_mm=2)

    assert growth(0.0) > 300 and growth(9.0) > 800  # 9 mm out: inside the 24 mm one only
    assert abs(growth(35.0)) < 5 and abs(growth(-35.0)) < 5  # the rest of the chest is unchanged
    assert _mean_at(prior, right, down, radius_mm=2) > _mean_at(prior, right + 9.0, down, radius_mm=2) + 400
