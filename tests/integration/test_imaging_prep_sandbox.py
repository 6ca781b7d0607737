"""Image preparation against the real HAPI FHIR and Orthanc sandboxes: the seeded CT and chest
X-rays go ImagingStudy -> Endpoint -> WADO-RS (metadata, then only the sampled instances) ->
selection -> preprocessing; the Binary route gives the same images; the token reaches a DICOMweb
endpoint only when it is trusted; bad studies fail with an InputError naming them."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.filebase import DicomBytesIO
from pydicom.uid import ExplicitVRLittleEndian

from plugin.errors import InputError
from plugin.fhir import FhirClient
from plugin.pipelines.imaging import preprocessing
from plugin.pipelines.imaging.dicomweb import store_instances
from plugin.pipelines.imaging.prepare import ImagingOptions, find_imaging_studies, prepare_study
from plugin.pipelines.imaging.prepared import PreparedStudy
from plugin.sandbox import synthetic
from plugin.sandbox.seed import CT_ACQUIRED, CXR_VARIANTS, SEED_SYSTEM, seed_demo_patient
from plugin.sandbox.synthetic.dicom_file import part10_bytes
from tests.support.dicom_builders import axial_specs, radiograph_dataset, series_files
from tests.support.loopback import ServerState, loopback_server
from tests.support.pacs_studies import study_at

pytestmark = pytest.mark.sandbox

Resource = dict[str, Any]
# Patients of our own, so no other test's seed of the demo patient (Binary route) interferes.
PACS_PATIENT = replace(synthetic.DEMO_PATIENT, mrn=f"CL-PACS-{uuid.uuid4().hex[:8]}")
BINARY_PATIENT = replace(synthetic.DEMO_PATIENT, mrn=f"CL-BIN-{uuid.uuid4().hex[:8]}")


def seed_key(study: Resource) -> str:
    (value,) = [i["value"] for i in study["identifier"] if i["system"] == SEED_SYSTEM]
    return str(value).rsplit("/", 1)[1]


def dicom_uid(study: Resource) -> str:
    (value,) = [i["value"] for i in study["identifier"] if i["system"] == "urn:dicom:uid"]
    return str(value).removeprefix("urn:oid:")


@pytest.fixture
def options(pacs_url: str) -> ImagingOptions:
    """Preparation options that may call the PACS sandbox (a configured endpoint)."""
    return ImagingOptions(allowed_endpoints=(pacs_url,))


@pytest.fixture(scope="module")
def client(sandbox_url: str) -> FhirClient:
    return FhirClient(sandbox_url, timeout_s=120, retry_backoff_s=0.05)


@pytest.fixture(scope="module")
def pacs_studies(client: FhirClient, pacs_url: str) -> dict[str, Resource]:
    """The patient seeded with the PACS: seed key -> ImagingStudy, and "_order" newest first."""
    report = seed_demo_patient(client, PACS_PATIENT, pacs_url=pacs_url)
    again = seed_demo_patient(client, PACS_PATIENT, pacs_url=pacs_url)
    assert {status for *_, status in again.rows[1:]} == {"already seeded"}  # idempotent
    studies = find_imaging_studies(client, report.patient_id)
    return {seed_key(s): s for s in studies} | {"_order": [seed_key(s) for s in studies]}  # type: ignore[dict-item]


@pytest.fixture(scope="module")
def binary_studies(client: FhirClient) -> dict[str, Resource]:
    report = seed_demo_patient(client, BINARY_PATIENT)
    return {seed_key(s): s for s in find_imaging_studies(client, report.patient_id)}


def images_as_arrays(prepared: PreparedStudy) -> list[np.ndarray]:
    return [np.asarray(image.image) for image in prepared.images]


def test_seeded_studies_point_at_the_pacs_and_come_newest_first(
        client: FhirClient, pacs_url: str, pacs_studies: dict[str, Any]) -> None:
    assert pacs_studies["_order"] == ["ct-chest", "cxr-current", "cxr-prior"]
    for key in ("ct-chest", "cxr-current", "cxr-prior"):
        (reference,) = [e["reference"] for e in pacs_studies[key]["endpoint"]]
        endpoint = client.read("Endpoint", reference.split("/")[1])
        assert endpoint["connectionType"]["code"] == "dicom-wado-rs"
        assert endpoint["address"] == pacs_url


def test_seeded_ct_is_fetched_sampled_and_windowed(
        client: FhirClient, pacs_studies: dict[str, Any], options: ImagingOptions) -> None:
    study = pacs_studies["ct-chest"]
    seen: list[tuple[float, str]] = []
    prepared = prepare_study(client, study, options, progress=lambda f, text: seen.append((f, text)))

    assert prepared.kind == "ct-volume" and prepared.modality == "CT" and prepared.body_part == "CHEST"
    assert prepared.source.versioned_reference == f"ImagingStudy/{study['id']}/_history/1"
    assert len(prepared.images) == 85
    assert [i.label for i in prepared.images[:2]] == ["SLICE 1", "SLICE 2"]
    choices = prepared.choices
    assert choices["route"] == "dicomweb" and choices["token_sent"] is False
    assert choices["slices_stored"] == 120 and choices["instances_fetched"] == 85
    assert choices["sampled_indices"][:3] == [0, 1, 3] and choices["sampled_indices"][-1] == 119
    assert [i.slice_index for i in prepared.images] == choices["sampled_indices"]
    assert choices["windows_hu"] == {"R": [-1024.0, 1024.0], "G": [-135.0, 215.0], "B": [0.0, 80.0]}
    assert ("instances fetched 85/85" in [t for _, t in seen]) and seen[-1] == (1.0, "slices prepared 85/85")

    # Every image checked against the generator's own files: order by position, HU, windows.
    files = synthetic.ct_series(PACS_PATIENT, study_uid=dicom_uid(study),
                                series_uid=study["series"][0]["uid"], study_datetime=CT_ACQUIRED)
    by_uid = {str(dcmread(DicomBytesIO(f), stop_before_pixels=True).SOPInstanceUID): f for f in files}
    used = [by_uid[i.instance_uid] for i in prepared.images]
    heights = [float(dcmread(DicomBytesIO(f), stop_before_pixels=True).ImagePositionPatient[2]) for f in used]
    assert heights == sorted(heights, reverse=True)  # head first
    assert prepared.source.content_sha256 == hashlib.sha256(b"".join(used)).hexdigest()
    for image, data in zip(prepared.images[::17], used[::17], strict=True):
        ds = dcmread(DicomBytesIO(data))
        expected = preprocessing.ct_rgb(ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept))
        assert image.image.size == (256, 256) and image.original_size == (256, 256)
        assert (np.asarray(image.image) == expected).all()
    # Bytes read: the metadata plus 85 of the 120 instances, not all of them.
    assert choices["bytes_read"] < sum(len(f) for f in files) * 0.85


def test_seeded_chest_xrays_are_windowed_inverted_and_square(
        client: FhirClient, pacs_studies: dict[str, Any], options: ImagingOptions) -> None:
    current = prepare_study(client, pacs_studies["cxr-current"], options)
    prior = prepare_study(client, pacs_studies["cxr-prior"], options)
    for prepared in (current, prior):
        assert prepared.kind == "projection" and prepared.modality == "DX"
        (image,) = prepared.images
        # 1024 x 1024, resized to the model's 896 px before it is encoded.
        assert image.image.size == (896, 896) and image.padding == (0, 0)
        assert prepared.choices["padded_size"] == [1024, 1024]
        assert prepared.choices["resized_to"] == [896, 896]
        assert image.original_size == (1024, 1024) and prepared.choices["voi"] == "window C/W"
    assert current.choices["inverted"] is True and prior.choices["inverted"] is False
    # The MONOCHROME1 current image, inverted, matches the same radiograph stored as MONOCHROME2.
    when, size_mm, _ = CXR_VARIANTS["current"]
    as_mono2 = synthetic.chest_xray(synthetic.DEMO_PATIENT, study_uid="1.2.3", series_uid="1.2.3.4",
                                    acquired=when, finding_size_mm=size_mm, photometric="MONOCHROME2")
    ds = dcmread(DicomBytesIO(as_mono2))
    expected, _ = preprocessing.projection_gray(ds.pixel_array, ds)
    shown = np.asarray(preprocessing.to_model_side(preprocessing.to_rgb_image(expected), 896))[..., 0]
    got = np.asarray(current.images[0].image)[..., 0].astype(int)
    assert np.abs(got - shown.astype(int)).max() <= 1


def test_the_binary_route_gives_the_same_images(
        client: FhirClient, pacs_studies: dict[str, Any], binary_studies: dict[str, Resource],
        options: ImagingOptions) -> None:
    assert "endpoint" not in binary_studies["ct-chest"]
    for key in ("ct-chest", "cxr-current"):
        from_binary = prepare_study(client, binary_studies[key], options)
        from_pacs = prepare_study(client, pacs_studies[key], options)
        assert from_binary.choices["route"] == "binary"
        assert from_binary.choices["sampled_indices" if key == "ct-chest" else "inverted"] == \
            from_pacs.choices["sampled_indices" if key == "ct-chest" else "inverted"]
        for a, b in zip(images_as_arrays(from_binary), images_as_arrays(from_pacs), strict=True):
            assert (a == b).all()


def test_the_token_reaches_a_dicomweb_endpoint_only_when_trusted(
        sandbox_url: str, pacs_url: str, pacs_studies: dict[str, Any]) -> None:
    ct = pacs_studies["ct-chest"]
    client = FhirClient(sandbox_url, token="secret-test-token", timeout_s=120)
    pacs_origin = pacs_url.removesuffix("/dicom-web")
    state = ServerState(upstream=pacs_origin)
    with loopback_server(state) as proxy:
        study = study_at(client, f"{proxy}/dicom-web", dicom_uid(ct), ct["series"][0]["uid"],
                         family="Img-token")
        anonymous = prepare_study(client, study, ImagingOptions(max_slices=6, allowed_endpoints=(proxy,)))
        calls = len(state.seen)
        trusted = prepare_study(client, study, ImagingOptions(max_slices=6, trusted_endpoints=(f"{proxy}/",)))
    assert calls == 7 and len(state.seen) == 14  # metadata + 6 instances, twice
    assert all("Authorization" not in seen.headers for seen in state.seen[:calls])
    assert all(seen.headers.get("Authorization") == "Bearer secret-test-token" for seen in state.seen[calls:])
    assert anonymous.choices["token_sent"] is False and trusted.choices["token_sent"] is True
    assert images_as_arrays(anonymous)[3].tolist() == images_as_arrays(trusted)[3].tolist()


def test_an_endpoint_that_is_not_configured_is_never_contacted(
        sandbox_url: str, pacs_url: str, pacs_studies: dict[str, Any]) -> None:
    ct = pacs_studies["ct-chest"]
    client = FhirClient(sandbox_url, token="secret-test-token", timeout_s=120)
    state = ServerState(upstream=pacs_url.removesuffix("/dicom-web"))
    with loopback_server(state) as elsewhere:
        study = study_at(client, f"{elsewhere}/dicom-web", dicom_uid(ct), ct["series"][0]["uid"],
                         family="Img-ssrf")
        with pytest.raises(InputError, match="is not a configured DICOMweb endpoint") as caught:
            prepare_study(client, study, ImagingOptions(allowed_endpoints=(pacs_url,)))
    assert state.seen == []  # not one request reached the address the Endpoint named
    assert caught.value.source.startswith(f"ImagingStudy/{study['id']}")


def test_bad_studies_fail_with_the_study_and_the_reason(
        client: FhirClient, pacs_url: str, run_id: str, options: ImagingOptions) -> None:
    # A single-slice "volume" and a series with a gap, stored in the real PACS.
    uids = [f"2.25.{int(run_id[:12], 16)}{n}" for n in range(4)]
    single = series_files(axial_specs(1), study_uid=uids[0], series_uid=uids[1])
    gapped_specs = [s for i, s in enumerate(axial_specs(8)) if i != 4]
    gapped = series_files(gapped_specs, study_uid=uids[2], series_uid=uids[3])
    store_instances(pacs_url, single + gapped)
    one = study_at(client, pacs_url, uids[0], uids[1], family=f"Img-{run_id}")
    with pytest.raises(InputError, match="at least 5 slices, this series has 1") as caught:
        prepare_study(client, one, options)
    assert caught.value.source.startswith(f"ImagingStudy/{one['id']}")
    gap = study_at(client, pacs_url, uids[2], uids[3], family=f"Img-{run_id}")
    with pytest.raises(InputError, match="non-uniform slice spacing"):
        prepare_study(client, gap, options)

    # An unreachable PACS.
    with loopback_server(ServerState()) as closed:
        pass
    gone = study_at(client, f"{closed}/dicom-web", "1.2.3", "1.2.3.4", family=f"Img-{run_id}")
    with pytest.raises(InputError, match="did not answer") as caught:
        prepare_study(client, gone, ImagingOptions(allowed_endpoints=(f"{closed}/dicom-web",)))
    assert caught.value.source.startswith(f"ImagingStudy/{gone['id']}")

    # A file labelled application/dicom that is not DICOM (Binary route).
    patient = client.create({"resourceType": "Patient", "name": [{"family": f"Img-{run_id}"}]})
    study = client.create({"resourceType": "ImagingStudy", "status": "available",
                           "subject": {"reference": f"Patient/{patient['id']}"}})
    stored = client.create_binary(b"%PDF-1.4 not a DICOM file" * 10, "application/dicom")
    document = client.create({
        "resourceType": "DocumentReference", "status": "current",
        "subject": {"reference": f"Patient/{patient['id']}"},
        "content": [{"attachment": {"contentType": "application/dicom", "url": f"Binary/{stored['id']}"}}],
        "context": {"related": [{"reference": f"ImagingStudy/{study['id']}"}]}})
    with pytest.raises(InputError, match="not a DICOM Part-10 file") as caught:
        prepare_study(client, study, options)
    assert caught.value.source == f"ImagingStudy/{study['id']} DocumentReference/{document['id']} content[0]"


def test_an_mr_volume_and_a_non_square_radiograph(
        client: FhirClient, pacs_url: str, run_id: str, options: ImagingOptions) -> None:
    uids = [f"2.25.{int(run_id[:12], 16)}{n}" for n in range(5, 9)]
    # MR slices whose stored value is 10 x InstanceNumber: 10..60 across the volume.
    store_instances(pacs_url, series_files(axial_specs(6), study_uid=uids[0], series_uid=uids[1],
                                           modality="MR", rows=4, cols=6))
    mr = prepare_study(client, study_at(client, pacs_url, uids[0], uids[1], family=f"Img-{run_id}"), options)
    assert mr.kind == "mr-volume" and mr.modality == "MR" and len(mr.images) == 6
    assert mr.choices["normalisation"] == {"method": "min-max over the sampled volume", "min": 10.0,
                                           "max": 60.0}
    values = sorted(int(np.asarray(image.image)[0, 0, 0]) for image in mr.images)
    assert values == [0, 51, 102, 153, 204, 255]  # (v - 10) * 255 / 50
    assert all((np.asarray(i.image)[..., 0] == np.asarray(i.image)[..., 2]).all() for i in mr.images)
    assert mr.images[0].image.size == (6, 4) and mr.images[0].original_size == (6, 4)

    pixels = np.arange(6 * 10, dtype=np.uint16).reshape(6, 10) * 60
    ds = radiograph_dataset(pixels, window=(1800.0, 3600.0))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uids[2], uids[3]
    store_instances(pacs_url, [part10_bytes(ds, ExplicitVRLittleEndian)])
    xray = prepare_study(client, study_at(client, pacs_url, uids[2], uids[3], family=f"Img-{run_id}"),
                         options)
    (image,) = xray.images
    assert image.original_size == (10, 6) and image.padding == (0, 2) and image.image.size == (10, 10)
    square = np.asarray(image.image)[..., 0]
    assert (square[:2] == 0).all() and (square[8:] == 0).all()  # 2 rows of zeros above and below
    expected, _ = preprocessing.projection_gray(pixels, ds)
    assert (square[2:8] == expected).all()
    assert xray.choices["padding"] == [0, 2] and xray.choices["inverted"] is False


def test_seeding_again_with_the_pacs_moves_binary_studies_behind_the_endpoint(
        client: FhirClient, pacs_url: str, binary_studies: dict[str, Resource],
        options: ImagingOptions) -> None:
    # Runs last: the Binary-route patient seeded again, now with the PACS.
    report = seed_demo_patient(client, BINARY_PATIENT, pacs_url=pacs_url)
    statuses = {what: status for kind, _, what, status in report.rows if kind == "ImagingStudy"}
    # The whole-slide image is seeded only with a PACS: it is new now.
    slide = [what for what, status in statuses.items() if what.startswith("Colon biopsy")]
    assert len(slide) == 1 and statuses.pop(slide[0]) == "created"
    assert statuses == dict.fromkeys(("ct-chest", "cxr-prior", "cxr-current"),
                                     "already seeded; now reachable through the PACS")
    study = client.read("ImagingStudy", binary_studies["cxr-prior"]["id"])
    assert study["meta"]["versionId"] == "2" and len(study["endpoint"]) == 1
    prepared = prepare_study(client, study, options)
    assert prepared.choices["route"] == "dicomweb"
    assert prepared.source.versioned_reference.endswith("/_history/2")
    again = seed_demo_patient(client, BINARY_PATIENT, pacs_url=pacs_url)
    assert {status for kind, *_, status in again.rows if kind == "ImagingStudy"} == {"already seeded"}
