"""The imaging pipeline's readers on real-world shapes made from pydicom's bundled files
(tests/support/real_dicom.py): broken codestreams, LUTs, orientations, enhanced multi-frame."""

from __future__ import annotations

import json
import logging
import sys

import numpy as np
import pytest
import requests
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.pixels import apply_modality_lut, apply_voi_lut
from pydicom.uid import ExplicitVRLittleEndian

from plugin.engines.test_models.tiny_gemma import tiny_processor
from plugin.errors import InputError
from plugin.fhir import FhirClient
from plugin.pipelines.imaging import orientation, preprocessing
from plugin.pipelines.imaging.boxes import to_pixel_box
from plugin.pipelines.imaging.frames import frame_headers
from plugin.pipelines.imaging.instance_headers import header_from_json
from plugin.pipelines.imaging.pixels import decode_instance
from plugin.pipelines.imaging.prepare import ImagingOptions, prepare_study
from plugin.pipelines.imaging.prepared import PreparedStudy
from plugin.pipelines.imaging.prompts import task_parts
from plugin.pipelines.imaging.tasks import ImagingTask
from plugin.sandbox.synthetic.dicom_file import part10_bytes
from tests.support.dicom_builders import radiograph_dataset
from tests.support.fake_transport import Reply, ScriptedAdapter, session_with
from tests.support.real_dicom import (
    bundled,
    ct_series,
    damaged_codestream,
    enhanced_ct,
    reoriented_pixels,
    sagittal_mr_series,
    with_modality_lut,
    with_voi_lut,
)


@pytest.mark.parametrize("name", ["MR_small_jp2klossless.dcm", "MR_small_RLE.dcm"])
def test_an_undecodable_codestream_is_one_sentence_and_nothing_on_stderr(
        name: str, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    data = damaged_codestream(name)
    # A service's logging set-up: the root logger writes WARNING and above to stderr.
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    logging.getLogger().addHandler(handler)
    try:
        with caplog.at_level(logging.DEBUG, logger="plugin.pipelines.imaging.pixels"), \
                pytest.raises(InputError) as caught:
            decode_instance(data, source="instance 1.2.3.4", max_pixels=10**6)
    finally:
        logging.getLogger().removeHandler(handler)
    message = str(caught.value)
    assert message.startswith("instance 1.2.3.4: the ") and "pixel data cannot be decoded" in message
    assert "\n" not in message and "Traceback" not in message and "pylibjpeg" not in message
    assert capfd.readouterr().err == ""
    # The decoders' own messages are kept, at DEBUG, for whoever looks into it.
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG and r.name.endswith("pixels")]
    assert any("pydicom" in r.getMessage() for r in debug)


# ---- modality and VOI LUTs: pydicom's apply_modality_lut / apply_voi_lut semantics -----------

def _pydicom_display(ds: Dataset, low: float, high: float) -> np.ndarray:
    """What pydicom's own functions give, scaled from the VOI output range to 0..255."""
    modality = apply_modality_lut(ds.pixel_array, ds)
    if "VOILUTSequence" in ds:  # a LUT's input is integral; pydicom warns on floats
        modality = modality.astype(np.int64)
    values = apply_voi_lut(modality, ds, index=0)
    unit = np.clip((np.asarray(values, dtype=np.float64) - low) / (high - low), 0.0, 1.0)
    return np.floor(unit * 255.0 + 0.5).astype(np.uint8)


def test_a_voi_lut_is_applied_to_the_rescaled_values() -> None:
    ds = bundled("CT_small.dcm")  # signed 16-bit, RescaleSlope 1, RescaleIntercept -1024
    ds.RescaleSlope, ds.RescaleIntercept = 2, -1024
    hu = apply_modality_lut(ds.pixel_array, ds)
    first = int(hu.min())
    with_voi_lut(ds, first=first, entries=int(hu.max()) - first + 1)
    gray, display = preprocessing.projection_gray(ds.pixel_array, ds)
    assert display.voi == "VOI LUT"
    assert (gray == _pydicom_display(ds, 0, 4095)).all()
    # Indexing the LUT with the stored values (what was done before) gives another image.
    stored_indexed = apply_voi_lut(ds.pixel_array, ds, index=0).astype(np.float64) / 4095
    assert (np.floor(stored_indexed * 255 + 0.5).astype(np.uint8) != gray).mean() > 0.5


def test_a_modality_lut_sequence_replaces_the_rescale() -> None:
    ds = with_modality_lut(bundled("MR_small.dcm"))
    ds.WindowCenter, ds.WindowWidth = 2000, 3000
    gray, display = preprocessing.projection_gray(ds.pixel_array, ds)
    assert display.voi == "window C/W" and display.window == (2000.0, 3000.0)
    assert (gray == _pydicom_display(ds, 0, 65535)).all()
    values = preprocessing.modality_values(ds.pixel_array, ds, compact=True)
    assert (values == apply_modality_lut(ds.pixel_array, ds)).all()
    assert preprocessing.modality_range(ds.pixel_array, ds) == (float(values.min()), float(values.max()))


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_the_headers_window_function_is_used(function: str) -> None:
    ds = bundled("CT_small.dcm")
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = 40, 400, function
    gray, display = preprocessing.projection_gray(ds.pixel_array, ds)
    low, high = preprocessing.window_output_range(ds)
    assert (low, high) == (-32768 - 1024, 32767 - 1024)  # signed 16-bit stored range, rescaled
    assert (gray == _pydicom_display(ds, low, high)).all()
    assert display.voi == ("window C/W" if function == "LINEAR" else f"window C/W ({function})")


# ---- in-plane orientation -------------------------------------------------------------------

AXIAL_DIRECTIONS = [((1, 0), (0, 1)), ((1, 0), (0, -1)), ((-1, 0), (0, 1)), ((-1, 0), (0, -1)),
                    ((0, 1), (1, 0)), ((0, 1), (-1, 0)), ((0, -1), (1, 0)), ((0, -1), (-1, 0))]


@pytest.mark.parametrize(("row", "column"), AXIAL_DIRECTIONS)
def test_every_axis_aligned_axial_slice_is_shown_in_standard_orientation(
        row: tuple[int, int], column: tuple[int, int]) -> None:
    standard = bundled("CT_small.dcm").pixel_array
    stored, _ = reoriented_pixels(standard, row, column)
    turn = orientation.from_image_orientation((*row, 0, *column, 0))
    assert turn.plane == "axial" and turn.oblique_degrees == 0
    assert (turn.apply(stored) == standard).all()
    assert turn.changes_pixels == ((row, column) != ((1, 0), (0, 1)))


def test_coronal_and_sagittal_standards() -> None:
    coronal = orientation.from_image_orientation((1, 0, 0, 0, 0, -1))
    sagittal = orientation.from_image_orientation((0, 1, 0, 0, 0, -1))
    assert (coronal.plane, coronal.changes_pixels) == ("coronal", False)
    assert (sagittal.plane, sagittal.changes_pixels) == ("sagittal", False)
    upside_down_sagittal = orientation.from_image_orientation((0, 1, 0, 0, 0, 1))
    assert upside_down_sagittal.flip_rows and not upside_down_sagittal.flip_columns


def _rotated_axial(degrees: float) -> tuple[float, ...]:
    a = np.radians(degrees)
    return (np.cos(a), np.sin(a), 0.0, -np.sin(a), np.cos(a), 0.0)


def test_an_oblique_plane_is_shown_as_the_nearest_standard_up_to_30_degrees() -> None:
    turn = orientation.from_image_orientation(_rotated_axial(20))
    assert turn.plane == "axial" and not turn.changes_pixels
    assert round(turn.oblique_degrees, 6) == 20
    assert "oblique, 20 degrees from the nearest standard orientation" in turn.describe()
    with pytest.raises(orientation.ObliqueError, match="lie 40 degrees from the nearest patient axis"):
        orientation.from_image_orientation(_rotated_axial(40))


def prepare_files(files: list[bytes], **options: object) -> PreparedStudy:
    """prepare_study on DICOM files attached to a study (the Binary route, scripted FHIR)."""
    def answer(request: requests.PreparedRequest) -> Reply:
        url = request.url or ""
        if "/DocumentReference" in url:
            return Reply(body=json.dumps({"resourceType": "Bundle", "type": "searchset", "entry": [
                {"resource": {"resourceType": "DocumentReference", "id": str(i), "status": "current",
                              "content": [{"attachment": {"contentType": "application/dicom",
                                                          "url": f"Binary/{i}"}}]}}
                for i in range(len(files))]}).encode())
        return Reply(body=files[int(url.rsplit("/", 1)[1])], headers={"Content-Type": "application/dicom"})

    client = FhirClient("https://ehr.example.org/fhir", session=session_with(ScriptedAdapter(answer)))
    study = {"resourceType": "ImagingStudy", "id": "s1", "meta": {"versionId": "1"},
             "status": "available", "subject": {"reference": "Patient/1"}}
    return prepare_study(client, study, ImagingOptions(fetch_workers=1, **options))  # type: ignore[arg-type]


def test_an_upside_down_ct_reaches_the_model_the_right_way_up() -> None:
    # The case: ImageOrientationPatient column direction (0, -1, 0).
    upright, standards = ct_series(study_uid="2.25.1", series_uid="2.25.11")
    flipped, _ = ct_series(study_uid="2.25.2", series_uid="2.25.21", column=(0, -1, 0))
    expected = prepare_files(upright)
    got = prepare_files(flipped)
    assert got.choices["orientation"]["text"] == \
        "axial: flipped upside down to the standard display orientation"
    assert expected.choices["orientation"]["text"] == "axial: already in the standard display orientation"
    for a, b in zip(expected.images, got.images, strict=True):
        assert (np.asarray(a.image) == np.asarray(b.image)).all()
    # Head first, and each image is its standard slice, windowed.
    hu = standards[0].astype(np.float64) + float(bundled("CT_small.dcm").RescaleIntercept)
    assert (np.asarray(got.images[0].image) == preprocessing.ct_rgb(hu)).all()


def test_a_transposed_radiograph_is_turned_and_its_boxes_map_back_exactly() -> None:
    # A 1955 x 1300 coronal radiograph made from CT_small, stored with its rows running to the
    # feet and its columns to the patient's left (PatientOrientation F\L: transposed).
    base = bundled("CT_small.dcm").pixel_array.astype(np.int32) + 2000
    standard = np.kron(base, np.ones((11, 16), dtype=np.int32))[:1300, :1955].astype(np.uint16)
    standard[400:520, 300:700] = 4095  # the thing to find, in display coordinates
    stored, _ = reoriented_pixels(standard, (0, 1), (1, 0))  # rows to F, columns to L
    ds = radiograph_dataset(stored)
    ds.PatientOrientation = ["F", "L"]
    prepared = prepare_files([part10_bytes(ds, ExplicitVRLittleEndian)])
    (image,) = prepared.images
    assert prepared.choices["orientation"]["transposed"] is True
    assert prepared.choices["padded_size"] == [1955, 1955] and prepared.choices["resized_to"] == [896, 896]
    assert image.image.size == (896, 896) and image.padding == (0, 327)
    # The box the model would give for the marked region, from the display geometry alone.
    side, top = 1955, 327
    box_2d = [(400 + top) / side * 1000, 300 / side * 1000, (520 + top) / side * 1000, 700 / side * 1000]
    box = to_pixel_box(box_2d, image)
    ys, xs = np.nonzero(stored == 4095)
    assert (box.x0, box.y0, box.x1, box.y1) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    # And the model's image shows it where the box says.
    shown = np.asarray(image.image)[..., 0]
    centre = (round((400 + 520) / 2 + top) * 896 // side, round(500 * 896 / side))
    assert shown[centre] == 255


def test_the_resized_radiograph_is_what_the_models_processor_makes_of_the_full_one() -> None:
    pixels = np.kron(bundled("CT_small.dcm").pixel_array, np.ones((3, 3), dtype=np.int16))
    full = preprocessing.to_rgb_image(((pixels - pixels.min()) * 255 // np.ptp(pixels)).astype(np.uint8))
    processor = tiny_processor()
    side = processor.image_processor.size["height"]
    small = preprocessing.to_model_side(full, side)
    assert small.size == (side, side)
    as_full = processor.image_processor(images=[full], return_tensors="np")["pixel_values"]
    as_small = processor.image_processor(images=[small], return_tensors="np")["pixel_values"]
    assert (as_full == as_small).all()


# ---- enhanced multi-frame: functional groups -------------------------------------------------

def test_each_frame_takes_its_own_groups_before_the_shared_ones() -> None:
    classic, _ = ct_series(study_uid="2.25.3", series_uid="2.25.31", column=(0, -1, 0))
    enhanced = dcmread(DicomBytesIO(enhanced_ct(classic, series_uid="2.25.32", instance_uid="2.25.321")))
    # Frame 2 gets a rescale of its own (Pixel Value Transformation in its per-frame item).
    own = Dataset()
    own.RescaleSlope, own.RescaleIntercept, own.RescaleType = 2, -2048, "HU"
    enhanced.PerFrameFunctionalGroupsSequence[1].PixelValueTransformationSequence = [own]
    item = enhanced.to_json_dict(bulk_data_threshold=10**9, bulk_data_element_handler=lambda _: "")
    header = header_from_json(item, source="t")
    frames = frame_headers(header, item, source="t")
    assert [f.frame for f in frames] == [1, 2, 3, 4, 5, 6] and header.frames == 6
    positions = sorted(tuple(float(v) for v in dcmread(DicomBytesIO(f)).ImagePositionPatient)
                       for f in classic)
    assert sorted(f.position for f in frames) == positions  # type: ignore[type-var]
    assert {f.orientation for f in frames} == {(1.0, 0.0, 0.0, 0.0, -1.0, 0.0)}
    attributes = [dict(f.frame_attributes) for f in frames]
    assert (attributes[0]["RescaleSlope"], attributes[0]["RescaleIntercept"]) == (1, -1024)
    assert (attributes[1]["RescaleSlope"], attributes[1]["RescaleIntercept"]) == (2, -2048)
    assert attributes[0]["PixelSpacing"] == [0.661468, 0.661468]
    assert attributes[0]["BitsAllocated"] == 16 and attributes[0]["PixelRepresentation"] == 1


# ---- non-axial acquisitions: the acquired plane, said in the prompt ---------------------------

def test_a_sagittal_mr_is_shown_in_its_plane_and_the_prompt_says_so() -> None:
    files = sagittal_mr_series(study_uid="2.25.4", series_uid="2.25.41")
    prepared = prepare_files(files)
    assert prepared.kind == "mr-volume" and prepared.choices["plane"] == "sagittal"
    assert prepared.choices["orientation"]["text"] == "sagittal: already in the standard display orientation"
    # Right first: the last file written (x = 20 mm) is the patient's rightmost slice.
    assert prepared.images[0].instance_uid == str(dcmread(DicomBytesIO(files[-1])).SOPInstanceUID)
    intro = task_parts(ImagingTask(), prepared)[0]
    assert intro == ("You are shown an MRI study of the body: 6 slices in order, each image followed by "
                     "its label. The slices are sagittal, in the plane they were acquired in, ordered "
                     "from the patient's right to left.")
