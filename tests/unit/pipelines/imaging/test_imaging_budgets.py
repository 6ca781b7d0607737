"""Imaging budgets: deflated files inflate in charged, bounded steps; header and codestream
claims are checked before decoding; the study byte limit is checked before each download; the
job memory budget (setting job_memory_bytes) bounds what a study may hold; a strip radiograph is
refused before padding. Files come from tests/corpus/hostile/dicom.py and tests/support."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import requests
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

from plugin.budget import BudgetExceeded, MemoryBudget
from plugin.config import load_settings
from plugin.errors import InputError
from plugin.fhir import FhirClient
from plugin.pipelines.imaging import preprocessing
from plugin.pipelines.imaging.codestreams import declared_size
from plugin.pipelines.imaging.dicomweb import DicomWebClient
from plugin.pipelines.imaging.instance_headers import header_from_part10
from plugin.pipelines.imaging.pixels import decode_instance
from plugin.pipelines.imaging.prepare import ImagingOptions, imaging_options, prepare_study
from plugin.sandbox.synthetic.dicom_file import part10_bytes
from tests.corpus.hostile import dicom as hostile
from tests.support.dicom_builders import axial_specs, radiograph_dataset, series_files
from tests.support.fake_transport import Reply, ScriptedAdapter, session_with

BASE = "https://ehr.example.org/fhir"
MIB = 1024 * 1024


# ---- deflated files ----------------------------------------------------------------------------

def test_a_deflate_bomb_fails_after_inflating_about_a_mebibyte() -> None:
    bomb = hostile.deflate_bomb(inflated_gib=3)
    assert len(bomb) < 4 * MIB
    budget = MemoryBudget("bomb")
    with pytest.raises(InputError, match="decompression bomb") as err:
        decode_instance(bomb, source="DocumentReference/5 content[0]", max_pixels=10**8, budget=budget)
    assert err.value.source == "DocumentReference/5 content[0]"
    assert budget.peak_bytes < 4 * MIB  # pydicom alone inflated all 3 GiB
    assert budget.held_bytes == 0


def test_a_deflate_bomb_header_is_read_without_inflating_the_pixels() -> None:
    budget = MemoryBudget("bomb")
    header = header_from_part10(hostile.deflate_bomb(inflated_gib=1), source="b", budget=budget)
    assert (header.rows, header.columns, header.modality) == (64, 64, "DX")
    assert budget.peak_bytes < MIB and budget.held_bytes == 0


def test_inflation_is_charged_to_the_budget_before_it_happens() -> None:
    ds = radiograph_dataset(np.zeros((512, 512), dtype=np.uint16))
    data = part10_bytes(ds, DeflatedExplicitVRLittleEndian)  # 512 KiB of pixels, deflated to ~1 KiB
    with pytest.raises(BudgetExceeded, match="inflating"):
        decode_instance(data, source="s", max_pixels=10**8, budget=MemoryBudget("s", limit_bytes=300 * 1024))


def test_a_valid_deflated_file_decodes_to_the_same_values_as_explicit_little_endian() -> None:
    pixels = (np.arange(96 * 80, dtype=np.uint16) * 7 % 4096).reshape(96, 80)
    ds = radiograph_dataset(pixels)
    explicit = decode_instance(part10_bytes(ds, ExplicitVRLittleEndian), source="e", max_pixels=10**6)
    budget = MemoryBudget("d")
    deflated = decode_instance(part10_bytes(ds, DeflatedExplicitVRLittleEndian), source="d",
                               max_pixels=10**6, budget=budget)
    assert (deflated.frames == explicit.frames).all() and (deflated.frames[0] == pixels).all()
    assert budget.held_bytes == pixels.size * 2  # the decoded frame stays charged for its holder
    assert deflated.dataset.SOPInstanceUID == ds.SOPInstanceUID


def test_a_deflated_header_claiming_terabytes_is_refused_before_decoding() -> None:
    with pytest.raises(InputError, match="exceed the 100000000-pixel limit"):
        decode_instance(hostile.deflated_huge_claim(), source="h", max_pixels=10**8)


# ---- header and codestream claims ------------------------------------------------------------

@pytest.mark.parametrize(("make", "reason"), [
    (hostile.frames_overflow, "pixel limit"),
    (hostile.wrong_bits_allocated, "bits allocated 12"),
    (hostile.four_samples, "samples per pixel 4"),
    (hostile.bits_stored_over_allocated, "bits stored"),
    (hostile.jpeg_lying_header, "declares 4000x4000 pixels, the DICOM header 64x64"),
])
def test_lying_or_impossible_pixel_descriptions_are_refused_before_decoding(make: Any, reason: str) -> None:
    budget = MemoryBudget("x")
    with pytest.raises(InputError, match=reason):
        decode_instance(make(), source="x", max_pixels=10**8, budget=budget)
    assert budget.peak_bytes < MIB  # nothing was decoded


def test_the_decoded_array_is_charged_before_it_is_made() -> None:
    data = part10_bytes(radiograph_dataset(np.zeros((256, 256), dtype=np.uint16)), ExplicitVRLittleEndian)
    with pytest.raises(BudgetExceeded, match="decoding 256x256x1 pixels"):
        decode_instance(data, source="x", max_pixels=10**8, budget=MemoryBudget("x", limit_bytes=200_000))


def test_only_the_first_frame_of_a_multi_frame_instance_is_decoded_when_asked() -> None:
    budget = MemoryBudget("m")
    decoded = decode_instance(hostile.multiframe_dx(), source="m", max_pixels=10**6, budget=budget,
                              first_frame_only=True)
    assert decoded.frames.shape == (1, 48, 48) and decoded.frame_count == 3
    assert (decoded.frames[0] == 100).all()
    assert budget.held_bytes == 48 * 48 * 2


def test_codestream_sizes_are_read_from_jpeg_and_jpeg_2000_headers() -> None:
    from pydicom import dcmread

    lying = dcmread(__import__("io").BytesIO(hostile.jpeg_lying_header()))
    assert declared_size(lying.PixelData) == (4000, 4000)
    siz = (b"\xff\x4f\xff\x51" + b"\x00\x29\x00\x00" + (300).to_bytes(4, "big") + (200).to_bytes(4, "big")
           + (0).to_bytes(4, "big") * 2)
    assert declared_size(b"\x00" * 8 + siz) == (200, 300)
    assert declared_size(b"\x00" * 64) is None


def test_a_uid_that_would_climb_out_of_the_dicomweb_base_is_refused() -> None:
    client = DicomWebClient("https://pacs.example.org/dicom-web", token="tok")
    with pytest.raises(InputError, match="dot-segment"):
        client.series_metadata("..", "1.2.3")


# ---- whole studies (Binary route through a scripted FHIR server) ---------------------------------

def binary_server(files: list[bytes]) -> ScriptedAdapter:
    documents = [{"resourceType": "DocumentReference", "id": str(i), "status": "current",
                  "content": [{"attachment": {"contentType": "application/dicom", "url": f"Binary/{i}"}}]}
                 for i in range(len(files))]

    def answer(request: requests.PreparedRequest) -> Reply:
        url = request.url or ""
        if "/DocumentReference" in url:
            bundle = {"resourceType": "Bundle", "type": "searchset",
                      "entry": [{"resource": d} for d in documents]}
            return Reply(body=json.dumps(bundle).encode())
        index = int(url.rsplit("/", 1)[1])
        return Reply(body=files[index], headers={"Content-Type": "application/dicom"})

    return ScriptedAdapter(answer)


STUDY = {"resourceType": "ImagingStudy", "id": "s1", "meta": {"versionId": "1"}, "status": "available",
         "subject": {"reference": "Patient/1"}}


def prepare(files: list[bytes], **options: Any) -> tuple[Any, ScriptedAdapter]:
    adapter = binary_server(files)
    client = FhirClient(BASE, session=session_with(adapter))
    return prepare_study(client, STUDY, ImagingOptions(fetch_workers=1, **options)), adapter


def binary_reads(adapter: ScriptedAdapter) -> int:
    return sum("/Binary/" in (r.url or "") for r in adapter.requests)


def test_the_study_byte_limit_is_checked_before_each_download() -> None:
    files = series_files(axial_specs(30), rows=64, cols=64)  # ~9 KiB each
    with pytest.raises(InputError, match="pass the 40000-byte study limit") as err:
        prepare(files, max_study_bytes=40_000)[0]
    assert err.value.source.startswith("ImagingStudy/s1 DocumentReference/")
    adapter = binary_server(files)
    with pytest.raises(InputError):
        prepare_study(FhirClient(BASE, session=session_with(adapter)), STUDY,
                      ImagingOptions(max_study_bytes=40_000))
    assert binary_reads(adapter) == 5  # 5 x ~9 KiB pass 40,000 bytes; the other 25 are never read


def test_the_job_memory_budget_bounds_a_study_and_follows_the_setting() -> None:
    files = series_files(axial_specs(20), rows=128, cols=128)
    prepared, _ = prepare(files)
    assert len(prepared.images) == 20
    options = imaging_options(load_settings(environ={"CHARTLIGHT_JOB_MEMORY_BYTES": "600000"}))
    assert options.memory_bytes == 600_000
    client = FhirClient(BASE, session=session_with(binary_server(files)))
    with pytest.raises(BudgetExceeded, match="of its 0.6 MiB memory budget"):
        prepare_study(client, STUDY, options)


def test_a_strip_radiograph_is_refused_before_it_is_padded_to_a_square() -> None:
    with pytest.raises(InputError, match="30000 times longer than wide") as err:
        prepare([hostile.dx_strip()])
    assert "instance" in err.value.source


def test_padding_is_charged_before_it_happens() -> None:
    data = part10_bytes(radiograph_dataset(np.zeros((100, 1000), dtype=np.uint16)), ExplicitVRLittleEndian)
    with pytest.raises(BudgetExceeded, match="padding a 1000x100 radiograph to 1000x1000"):
        prepare([data], memory_bytes=5 * MIB)
    prepared, _ = prepare([data], memory_bytes=12 * MIB)
    assert prepared.choices["padded_size"] == [1000, 1000]
    assert prepared.images[0].image.size == (896, 896)  # then resized to the model's side


def test_a_deflate_bomb_attached_to_a_study_fails_the_study_naming_it() -> None:
    with pytest.raises(InputError, match="decompression bomb") as err:
        prepare([hostile.deflate_bomb(inflated_gib=1)])
    assert err.value.source.startswith("ImagingStudy/s1")


@pytest.mark.parametrize("slope", [1.0, -0.5, 0.0, 3.25])
def test_the_volume_range_from_stored_extremes_equals_the_range_of_the_rescaled_volume(slope: float) -> None:
    stored = np.random.default_rng(1).integers(0, 4096, size=(50, 40)).astype(np.uint16)
    full = preprocessing.rescale(stored, slope, -1024.0)
    assert preprocessing.rescaled_range(stored, slope, -1024.0) == (float(full.min()), float(full.max()))


def test_series_metadata_stops_at_the_study_limit_before_the_next_request() -> None:
    from plugin.pipelines.imaging.sources import DicomWebSource
    from tests.support.loopback import ServerState, loopback_server

    state = ServerState(body=b"[]" + b" " * 5000)
    with loopback_server(state) as base:
        source = DicomWebSource(DicomWebClient(base), "1.2", [f"1.2.{i}" for i in range(50)],
                                max_study_bytes=12_000)
        with pytest.raises(InputError, match="12000-byte study limit"):
            source.series_headers()
    assert len(state.seen) == 3  # 3 x 5 KB passed 12 KB; 47 series were never asked for


@pytest.mark.parametrize(("stored", "slope", "intercept"), [
    (np.arange(-32768, 32768, dtype=np.int32).astype(np.int16), 1.0, 0.0),
    (np.arange(0, 65536, dtype=np.int32).astype(np.uint16), 1.0, -1024.0),
    (np.arange(0, 65536, dtype=np.int32).astype(np.uint16), 2.0, -2048.0),
])
def test_float32_hounsfield_units_give_the_same_window_bytes_as_float64(stored: np.ndarray, slope: float,
                                                                        intercept: float) -> None:
    assert preprocessing.hu_dtype(stored, slope, intercept) is np.float32
    compact = preprocessing.rescale_hu(stored, slope, intercept)
    assert compact.dtype == np.float32
    exact = preprocessing.rescale(stored, slope, intercept)
    assert (preprocessing.ct_rgb(compact) == preprocessing.ct_rgb(exact)).all()


def test_a_fractional_slope_keeps_float64() -> None:
    stored = np.arange(0, 4096, dtype=np.uint16)
    assert preprocessing.hu_dtype(stored, 0.5, -1024.0) is np.float64
    assert preprocessing.rescale_hu(stored, 0.5, -1024.0).dtype == np.float64
