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


def with_modality_lut(ds: Dataset, *, first: int = 0) -> Dataset:
    """`ds` with a non-linear Modality LUT Sequence (a square-root curve, 16-bit output) that
    replaces its slope and intercept (PS3.3 C.11.1)."""
    stored = ds.pixel_array
    entries = int(stored.max()) - first + 1
    curve = np.sqrt(np.arange(entries, dtype=np.float64) / max(entries - 1, 1)) * 4000.0
    item = Dataset()
    item.LUTDescriptor = [entries, first, 16]
    item.ModalityLUTType = "HU" if ds.Modality == "CT" else "US"
    item.LUTData = [int(v) for v in np.round(curve)]
    item["LUTData"].VR = "US"
    ds.ModalityLUTSequence = [item]
    for name in ("RescaleSlope", "RescaleIntercept", "RescaleType"):
        if name in ds:
            delattr(ds, name)
    return ds


def with_voi_lut(ds: Dataset, *, first: int, entries: int, bits: int = 12) -> Dataset:
    """`ds` with a VOI LUT Sequence (a cubic curve) whose input range is the modality values
    `first`..`first + entries - 1` (PS3.3 C.11.2)."""
    curve = (np.linspace(0.0, 1.0, entries) ** 3) * (2**bits - 1)
    item = Dataset()
    item.LUTDescriptor = [entries, first, bits]
    item.LUTData = [int(v) for v in np.round(curve)]
    item["LUTData"].VR = "US"
    ds.VOILUTSequence = [item]
    return ds


def reoriented_pixels(standard: np.ndarray, row_direction: tuple[int, int],
                      column_direction: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """The stored pixels of a frame whose rows run along `row_direction` and columns along
    `column_direction` ((dx, dy) unit steps in the standard frame's columns and rows), showing the
    same anatomy as `standard`. Made from the geometry alone: each stored pixel (i, j) lies at
    j x row + i x column from the stored origin, the origin placed so all land on the frame.
    Returns the stored pixels and the (column, row) of the standard frame its first pixel shows."""
    rows, cols = standard.shape[:2]
    row_step, column_step = np.array(row_direction), np.array(column_direction)
    along_x = row_step[0] != 0
    shape = (rows, cols) if along_x else (cols, rows)
    i, j = np.indices(shape)
    dx = j * row_step[0] + i * column_step[0]
    dy = j * row_step[1] + i * column_step[1]
    return standard[dy - dy.min(), dx - dx.min()], (int(-dx.min()), int(-dy.min()))


def ct_series(*, study_uid: str, series_uid: str, row: tuple[float, float, float] = (1, 0, 0),
              column: tuple[float, float, float] = (0, 1, 0), count: int = 6,
              spacing: float = 5.0) -> tuple[list[bytes], list[np.ndarray]]:
    """`count` axial CT slices made from CT_small.dcm with ImageOrientationPatient (row, column)
    (axis-aligned in the axial plane), pixels rewritten to match; slice k is CT_small shifted
    k pixels right, so each slice differs. Returns the files and each slice's standard-display
    pixels (stored values), head first."""
    template = bundled("CT_small.dcm")
    origin = np.array([float(v) for v in template.ImagePositionPatient])
    pixel_mm = float(template.PixelSpacing[0])
    files, standards = [], []
    for k in range(count):
        standard = np.roll(template.pixel_array, k, axis=1)
        stored, (x0, y0) = reoriented_pixels(standard, (int(row[0]), int(row[1])),
                                             (int(column[0]), int(column[1])))
        ds = bundled("CT_small.dcm")
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.SOPInstanceUID = uid(series_uid, k)
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = k + 1
        ds.ImageOrientationPatient = [float(v) for v in (*row, *column)]
        position = origin + np.array([x0 * pixel_mm, y0 * pixel_mm, -spacing * k])
        ds.ImagePositionPatient = [round(float(v), 4) for v in position]
        ds.SliceLocation = round(float(position[2]), 4)
        ds.Rows, ds.Columns = stored.shape
        ds.PixelData = np.ascontiguousarray(stored).astype(template.pixel_array.dtype).tobytes()
        files.append(part10(ds))
        standards.append(standard)
    return files, standards


def enhanced_ct(classic: list[bytes], *, series_uid: str, instance_uid: str,
                syntax: str = "1.2.840.10008.1.2.1") -> bytes:
    """A classic CT series made one Enhanced CT instance by highdicom's legacy conversion (the
    functional groups a scanner writes: plane position and orientation, pixel measures, pixel
    value transformation, frame VOI LUT), its SOP class set to Enhanced CT Image Storage, and its
    frames compressed to `syntax` when that is a compressed one."""
    from highdicom.legacy import LegacyConvertedEnhancedCTImage

    slices = [dcmread(io.BytesIO(f)) for f in classic]
    converted = LegacyConvertedEnhancedCTImage(slices, series_instance_uid=series_uid, series_number=90,
                                               sop_instance_uid=instance_uid, instance_number=1)
    ds = dcmread(io.BytesIO(part10(converted)))
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"  # Enhanced CT Image Storage
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    if syntax != "1.2.840.10008.1.2.1":
        ds.compress(syntax, encoding_plugin="pylibjpeg", generate_instance_uid=False)
    return part10(ds)


def japanese(files: list[bytes]) -> list[bytes]:
    """The files as a Japanese site writes them: Specific Character Set ISO 2022 IR 13 (JIS X 0201,
    where the byte of DICOM's value separator "\\" is the yen sign) with ISO 2022 IR 87 (kanji),
    and the patient's name in three forms."""
    out = []
    for data in files:
        ds = dcmread(io.BytesIO(data))
        ds.SpecificCharacterSet = ["ISO 2022 IR 13", "ISO 2022 IR 87"]
        ds.PatientName = "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう"
        out.append(part10(ds))
    return out


def sagittal_mr_series(*, study_uid: str, series_uid: str, count: int = 6,
                       spacing: float = 4.0) -> list[bytes]:
    """`count` sagittal MR slices made from MR_small.dcm (rows run posterior, columns to the
    feet: the standard sagittal display), `spacing` mm apart from the patient's left to right."""
    files = []
    for k in range(count):
        ds = bundled("MR_small.dcm")
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.SOPInstanceUID = uid(series_uid, k)
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = k + 1
        ds.ImageOrientationPatient = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]
        ds.ImagePositionPatient = [40.0 - spacing * k, -20.0, 30.0]
        ds.PixelData = np.roll(ds.pixel_array, k, axis=0).astype(ds.pixel_array.dtype).tobytes()
        files.append(part10(ds))
    return files
