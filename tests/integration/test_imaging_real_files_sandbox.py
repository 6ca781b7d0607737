"""Real scanners' shapes (made from pydicom's bundled files: tests/support/real_dicom.py) stored in
the real Orthanc by STOW-RS and prepared through HAPI FHIR + DICOMweb: slices stored in any in-plane
orientation reach the model the same way up; an Enhanced CT is read frame by frame by WADO-RS
frame retrieval (native, RLE and JPEG 2000 frames) and gives the classic series' images; a damaged
codestream fails in one sentence; geometry Orthanc's metadata loses (ISO 2022 IR 13 + IR 87) is
read from the instances, and the PACS named."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import requests
from pydicom import dcmread
from pydicom.filebase import DicomBytesIO
from pydicom.uid import JPEG2000Lossless, RLELossless

from plugin.errors import InputError
from plugin.fhir import FhirClient
from plugin.pipelines.imaging.dicomweb import store_instances
from plugin.pipelines.imaging.prepare import ImagingOptions, prepare_study
from plugin.pipelines.imaging.prepared import PreparedStudy
from tests.support.pacs_studies import study_at
from tests.support.real_dicom import bundled, ct_series, damaged_codestream, enhanced_ct, japanese, part10

pytestmark = pytest.mark.sandbox

Resource = dict[str, Any]


@pytest.fixture(scope="module")
def client(sandbox_url: str) -> FhirClient:
    return FhirClient(sandbox_url, timeout_s=120, retry_backoff_s=0.05)


def uids(run_id: str, count: int) -> list[str]:
    return [f"2.25.{int(run_id[:12], 16)}{n:02d}" for n in range(count)]


def arrays(prepared: PreparedStudy) -> list[np.ndarray]:
    return [np.asarray(image.image) for image in prepared.images]


def test_slices_stored_in_any_orientation_reach_the_model_the_same_way_up(
        client: FhirClient, pacs_url: str, run_id: str) -> None:
    ids = uids(run_id, 6)
    variants = {"standard": ((1, 0, 0), (0, 1, 0)), "upside down": ((1, 0, 0), (0, -1, 0)),
                "turned": ((0, -1, 0), (1, 0, 0))}
    prepared = {}
    for n, (name, (row, column)) in enumerate(variants.items()):
        files, _ = ct_series(study_uid=ids[2 * n], series_uid=ids[2 * n + 1], row=row, column=column)
        store_instances(pacs_url, files)
        study = study_at(client, pacs_url, ids[2 * n], ids[2 * n + 1])
        prepared[name] = prepare_study(client, study, ImagingOptions(allowed_endpoints=(pacs_url,)))
    assert prepared["upside down"].choices["orientation"]["text"] == \
        "axial: flipped upside down to the standard display orientation"
    assert prepared["turned"].choices["orientation"]["text"] == \
        "axial: rotated 90 degrees counter-clockwise to the standard display orientation"
    for name in ("upside down", "turned"):
        for a, b in zip(arrays(prepared["standard"]), arrays(prepared[name]), strict=True):
            assert (a == b).all()


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2.1", RLELossless, JPEG2000Lossless])
def test_an_enhanced_ct_is_read_frame_by_frame_like_its_classic_series(
        client: FhirClient, pacs_url: str, run_id: str, syntax: str) -> None:
    study_uid, classic_uid, enhanced_uid, instance_uid = uids(run_id, 4)
    classic, _ = ct_series(study_uid=study_uid, series_uid=classic_uid, column=(0, -1, 0))
    enhanced = enhanced_ct(classic, series_uid=enhanced_uid, instance_uid=instance_uid, syntax=syntax)
    store_instances(pacs_url, [*classic, enhanced])
    options = ImagingOptions(allowed_endpoints=(pacs_url,))
    from_classic = prepare_study(client, study_at(client, pacs_url, study_uid, classic_uid), options)
    from_enhanced = prepare_study(client, study_at(client, pacs_url, study_uid, enhanced_uid), options)

    assert from_enhanced.kind == "ct-volume" and len(from_enhanced.images) == 6
    assert from_enhanced.instances_used == (instance_uid,)
    # highdicom stores the frames feet first; the model gets them head first, like the classic series.
    assert [image.frame for image in from_enhanced.images] == [6, 5, 4, 3, 2, 1]
    assert from_enhanced.choices["orientation"] == from_classic.choices["orientation"]
    assert from_enhanced.choices["instances_fetched"] == 6  # one WADO-RS frame request each
    for a, b in zip(arrays(from_classic), arrays(from_enhanced), strict=True):
        assert (a == b).all()
    # Frames only: less than the whole instance was read, and the hash is of the frames fetched.
    assert from_enhanced.choices["bytes_read"] < len(enhanced) + 64 * 1024
    assert len(from_enhanced.source.content_sha256) == 64


def test_a_damaged_codestream_in_the_pacs_fails_in_one_sentence(
        client: FhirClient, pacs_url: str, capfd: pytest.CaptureFixture[str]) -> None:
    # Five MR slices from MR_small_jp2klossless.dcm, the first one's codestream damaged.
    damaged = dcmread(DicomBytesIO(damaged_codestream("MR_small_jp2klossless.dcm")))
    good = bundled("MR_small_jp2klossless.dcm")
    files, base = [], str(damaged.SOPInstanceUID)
    for k, ds in enumerate([damaged, good, good, good, good]):
        ds.SOPInstanceUID = f"{base}.{k}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        x, y, z = (float(v) for v in damaged.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y, z + 5 * k]
        files.append(part10(ds))
    store_instances(pacs_url, files)
    study = study_at(client, pacs_url, str(damaged.StudyInstanceUID), str(damaged.SeriesInstanceUID),
                     modality="MR")
    with pytest.raises(InputError) as caught:
        prepare_study(client, study, ImagingOptions(allowed_endpoints=(pacs_url,), fetch_workers=1))
    assert str(caught.value) == (
        f"ImagingStudy/{study['id']} instance {base}.0: the JPEG 2000 Image Compression "
        "(Lossless Only) pixel data cannot be decoded (a damaged codestream, or not what the transfer "
        "syntax says)")
    assert "Traceback" not in capfd.readouterr().err


def test_geometry_the_pacs_metadata_lost_is_read_from_the_instances_and_the_pacs_named(
        client: FhirClient, pacs_url: str, run_id: str) -> None:
    study_uid, series_uid, plain_study, plain_series = uids(run_id, 4)
    files, _ = ct_series(study_uid=study_uid, series_uid=series_uid)
    store_instances(pacs_url, japanese(files))
    # What Orthanc 1.10 does with such a study: the multi-valued DS values are empty.
    metadata = requests.get(f"{pacs_url}/studies/{study_uid}/series/{series_uid}/metadata",
                            headers={"Accept": "application/dicom+json"}, timeout=30).json()
    assert all(not item["00200032"].get("Value") for item in metadata)
    plain, _ = ct_series(study_uid=plain_study, series_uid=plain_series)
    store_instances(pacs_url, plain)
    options = ImagingOptions(allowed_endpoints=(pacs_url,))
    prepared = prepare_study(client, study_at(client, pacs_url, study_uid, series_uid), options)
    expected = prepare_study(client, study_at(client, pacs_url, plain_study, plain_series), options)
    for a, b in zip(arrays(expected), arrays(prepared), strict=True):
        assert (a == b).all()
    fallback = prepared.choices["metadata_fallback"]
    assert fallback["instances"] == 6 and fallback["character_set"] == ["ISO 2022 IR 13", "ISO 2022 IR 87"]
    assert fallback["attributes"] == ["ImagePositionPatient", "ImageOrientationPatient"]
    assert fallback["cause"].startswith(f"the PACS at {pacs_url} sent series metadata with "
                                        "ImagePositionPatient and ImageOrientationPatient empty")
    assert "metadata_fallback" not in expected.choices
