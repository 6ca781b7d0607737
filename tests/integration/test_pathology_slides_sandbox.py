"""Whole-slide preparation against the real HAPI FHIR server and Orthanc PACS: synthetic DICOM WSI
series (plugin/sandbox/synthetic/slide.py) stored by STOW-RS, an ImagingStudy + Endpoint on HAPI, and
prepare_slide fetching the series metadata, the thumbnail and only the patches' frames (counted
here on the wire); the patches lie on tissue and hold the pixels the generator drew there; each
broken slide fails with its own error and fetches nothing it did not need."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pytest
import requests
from PIL import Image

from plugin.config import Settings
from plugin.errors import InputError
from plugin.fhir import FhirClient
from plugin.pipelines.imaging.dicomweb import store_instances
from plugin.pipelines.pathology.prepare import (
    PathologyOptions,
    find_slide_studies,
    pathology_options,
    prepare_slide,
)
from plugin.pipelines.pathology.regions import overview_png, region_png
from plugin.pipelines.pathology.slide import PreparedSlide
from plugin.pipelines.pathology.tissue import tissue_mask
from plugin.sandbox.synthetic.slide import (
    DEFAULT_BLOBS,
    Blob,
    SlideSpec,
    SyntheticSlide,
    huge_slide_files,
    make_slide,
)

pytestmark = pytest.mark.sandbox

Resource = dict[str, Any]
DCM = "http://dicom.nema.org/resources/ontology/DCM"
RUN = uuid.uuid4().hex[:8]
# The 40k x 30k slide with its blobs at 0.7 of the default size: the same pyramid, quicker to make.
BIG = SlideSpec(blobs=tuple(Blob(b.cx, b.cy, b.rx * 0.7, b.ry * 0.7) for b in DEFAULT_BLOBS),
                name=f"big-{RUN}")
SMALL = SlideSpec(columns=8192, rows=6144, tile=256, downsamples=(1, 2, 8), thumbnail_downsample=32,
                  blobs=(Blob(2400, 2000, 1500, 1200), Blob(6000, 4200, 1400, 1200)), name=f"small-{RUN}")


class CountingSession(requests.Session):
    """Records every GET path it sends: the count of frames fetched, taken on the wire."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        self.paths.append(str(url).split("/dicom-web", 1)[-1])
        return super().request(method, url, *args, **kwargs)

    def frames(self) -> list[tuple[str, int]]:
        found = []
        for path in self.paths:
            parts = path.split("/")
            if "frames" in parts:  # one frame, or a list of them (`frames/3,4,9`)
                found += [(parts[parts.index("instances") + 1], int(n)) for n in parts[-1].split(",")]
        return found


@dataclass
class Stored:
    slide: SyntheticSlide | None
    study: Resource


@pytest.fixture(scope="module")
def client(sandbox_url: str) -> FhirClient:
    return FhirClient(sandbox_url, timeout_s=120, retry_backoff_s=0.05)


@pytest.fixture(scope="module")
def patient(client: FhirClient) -> str:
    created = client.create({"resourceType": "Patient",
                             "identifier": [{"system": "urn:test:wsi", "value": RUN}],
                             "name": [{"family": "Slide", "given": ["Test"]}]})
    return str(created["id"])


@pytest.fixture(scope="module")
def endpoint(client: FhirClient, pacs_url: str) -> str:
    created = client.create({
        "resourceType": "Endpoint", "status": "active", "address": pacs_url,
        "connectionType": {"system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
                           "code": "dicom-wado-rs"},
        "payloadType": [{"text": "DICOM"}]})
    return str(created["id"])


def store(client: FhirClient, pacs_url: str, patient: str, endpoint: str, study_uid: str, series_uid: str,
          files: tuple[bytes, ...]) -> Resource:
    store_instances(pacs_url, list(files), batch=1)
    return client.create({
        "resourceType": "ImagingStudy", "status": "available", "subject": {"reference": f"Patient/{patient}"},
        "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{study_uid}"}],
        "endpoint": [{"reference": f"Endpoint/{endpoint}"}], "started": "2026-01-01T12:00:00Z",
        "modality": [{"system": DCM, "code": "SM"}],
        "series": [{"uid": series_uid, "modality": {"system": DCM, "code": "SM"},
                    "numberOfInstances": len(files)}]})


@pytest.fixture(scope="module")
def slides(client: FhirClient, pacs_url: str, patient: str, endpoint: str) -> Iterator[dict[str, Stored]]:
    """Every slide of the module, made and stored once: name -> (slide, ImagingStudy)."""
    found = {}
    specs = {"big": BIG, "sparse": replace(SMALL, organization="TILED_SPARSE", name=f"sparse-{RUN}")}
    for bad in ("frames", "spacing", "missing_frame", "no_thumbnail"):
        specs[bad] = replace(SMALL, bad=bad, name=f"{bad}-{RUN}")
    specs["no_thumbnail"] = replace(specs["no_thumbnail"], downsamples=(1, 2), tile=512)
    for name, spec in specs.items():
        slide = make_slide(spec)
        study = store(client, pacs_url, patient, endpoint, spec.study_uid, spec.series_uid, slide.files)
        found[name] = Stored(slide, study)
    huge, files = huge_slide_files(f"huge-{RUN}")
    study = store(client, pacs_url, patient, endpoint, huge.study_uid, huge.series_uid, files)
    found["huge"] = Stored(None, study)
    yield found


def options(pacs_url: str, session: requests.Session | None = None, **changes: Any) -> PathologyOptions:
    return replace(PathologyOptions(allowed_endpoints=(pacs_url,), session=session), **changes)


def prepared(client: FhirClient, stored: Stored, pacs_url: str,
             **changes: Any) -> tuple[PreparedSlide, CountingSession]:
    session = CountingSession()
    return prepare_slide(client, stored.study, options(pacs_url, session, **changes)), session


def expected_frames(slide: SyntheticSlide, downsample: int, box: Any) -> set[int]:
    """Frames of the generator's level covering `box`, from the generator's own tile list."""
    made = slide.level(downsample)
    tile = slide.spec.tile
    return {number for number, (col, row) in enumerate(made.tile_positions, start=1)
            if col * tile < box.x1 and (col + 1) * tile > box.x0
            and row * tile < box.y1 and (row + 1) * tile > box.y0}


def test_a_slide_fetches_its_metadata_the_thumbnail_and_only_the_patches_frames(
        client: FhirClient, slides: dict[str, Stored], pacs_url: str) -> None:
    big = slides["big"]
    assert big.slide is not None
    slide, session = prepared(client, big, pacs_url)
    level = slide.patches[0].level
    assert level.instance_uid == big.slide.level(2).instance_uid  # 0.5 µm/px
    assert slide.thumbnail_level.instance_uid == big.slide.level(64, "THUMBNAIL").instance_uid
    assert len(slide.patches) == 16
    wanted = {(big.slide.level(64, "THUMBNAIL").instance_uid, 1)}
    for patch in slide.patches:
        frames = expected_frames(big.slide, 2, patch.region)
        assert set(patch.frames) == frames and len(frames) == 4  # tile-aligned 896 px on 512 px tiles
        wanted |= {(level.instance_uid, f) for f in frames}
    fetched = session.frames()
    assert len(fetched) == len(set(fetched)) == len(wanted) == 1 + 16 * 4
    assert set(fetched) == wanted
    assert [p for p in session.paths if p.endswith("/metadata")] == [
        f"/studies/{BIG.study_uid}/series/{BIG.series_uid}/metadata"]
    assert slide.choices["frames_fetched"] == 65
    # The thumbnail, then all 64 patch frames in one WADO-RS request (frames/a,b,...).
    assert len([p for p in session.paths if "/frames/" in p]) == slide.choices["frame_requests"] == 2
    assert slide.choices["transfer_syntaxes"] == ["1.2.840.10008.1.2.4.50"]  # as stored, no transcoding
    patch_frames = wanted - {(slide.thumbnail_level.instance_uid, 1)}
    assert slide.frames_used == {level.instance_uid: tuple(sorted(f for _, f in patch_frames))}
    assert slide.context.stain == "hematoxylin stain, water soluble eosin stain"
    assert slide.source.resource_type == "ImagingStudy" and slide.source.version_id == "1"


def test_patches_lie_on_tissue_spread_over_the_regions_and_hold_the_drawn_pixels(
        client: FhirClient, slides: dict[str, Stored], pacs_url: str) -> None:
    big = slides["big"]
    assert big.slide is not None
    slide, _ = prepared(client, big, pacs_url)
    for patch in slide.patches:
        r = patch.region
        box = (int(r.x0), int(r.y0), int(r.x1), int(r.y1))
        drawn = big.slide.render(2, *box).astype(int)
        got = np.asarray(patch.image).astype(int)
        assert got.shape == (896, 896, 3)
        assert np.abs(got - drawn).mean() < 8  # JPEG quality 90
        assert big.slide.tissue(2, *box).mean() >= 0.4
        assert (patch.base_region.x0, patch.base_region.y1) == (r.x0 * 2, r.y1 * 2)
    blobs_hit = {min(range(len(BIG.blobs)), key=lambda i: np.hypot(p.base_region.x0 - BIG.blobs[i].cx,
                                                                   p.base_region.y0 - BIG.blobs[i].cy))
                 for p in slide.patches}
    assert blobs_hit == set(range(len(BIG.blobs)))  # every tissue region has a patch
    again, _ = prepared(client, big, pacs_url)
    assert [p.region for p in again.patches] == [p.region for p in slide.patches]  # deterministic


def test_the_mask_measured_against_the_drawn_tissue(client: FhirClient, slides: dict[str, Stored],
                                                    pacs_url: str) -> None:
    big = slides["big"]
    assert big.slide is not None
    made = overview_png(client, big.study, options(pacs_url))
    overview = np.asarray(Image.open(io.BytesIO(made.png)).convert("RGB"))
    base = big.slide.level(1).instance_uid
    assert overview.shape == (469, 625, 3) and made.size == (625, 469)
    assert made.level_sizes[base] == (40000, 30000)
    found, truth = tissue_mask(overview).mask, big.slide.tissue(64, 0, 0, 625, 469)
    iou = (found & truth).sum() / (found | truth).sum()
    precision = (found & truth).sum() / found.sum()
    assert iou > 0.95 and precision > 0.97, (iou, precision)


def test_region_png_gives_a_patch_exactly_as_the_model_saw_it(client: FhirClient, slides: dict[str, Stored],
                                                             pacs_url: str) -> None:
    slide, _ = prepared(client, slides["big"], pacs_url, patches=2)
    patch = slide.patches[1]
    png = region_png(client, slides["big"].study, options(pacs_url), patch.level.instance_uid, patch.region)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png)).convert("RGB")), np.asarray(patch.image))
    with pytest.raises(InputError, match="is not a level of the slide"):
        region_png(client, slides["big"].study, options(pacs_url), "1.2.3", patch.region)


def test_sparse_tiling_fetches_only_frames_that_exist(client: FhirClient, slides: dict[str, Stored],
                                                      pacs_url: str) -> None:
    sparse = slides["sparse"]
    assert sparse.slide is not None
    slide, session = prepared(client, sparse, pacs_url, patch_px=512)
    level = slide.patches[0].level
    made = sparse.slide.level(2)
    assert level.organization == "TILED_SPARSE" and level.instance_uid == made.instance_uid
    for patch in slide.patches:
        r = patch.region
        drawn = sparse.slide.render(2, int(r.x0), int(r.y0), int(r.x1), int(r.y1)).astype(int)
        assert np.abs(np.asarray(patch.image).astype(int) - drawn).mean() < 8
        assert all(made.tile_positions[f - 1] in {(int(r.x0) // 256 + dx, int(r.y0) // 256 + dy)
                                                  for dx in (0, 1) for dy in (0, 1)} for f in patch.frames)
    assert max(f for _, f in session.frames()) <= made.frames


def test_a_small_two_piece_slide_gets_a_patch_in_each_piece(client: FhirClient, slides: dict[str, Stored],
                                                            pacs_url: str) -> None:
    # Issue 19: on the old 1024 px grid this sparse 8k x 6k slide was refused ("no tissue found":
    # its one tissue place lacked a glass tile). The one-tile grid gives disjoint patches in
    # both pieces, each still 4 x 4 whole 256 px tiles.
    small = slides["sparse"]
    assert small.slide is not None
    slide, session = prepared(client, small, pacs_url)  # the defaults: 896 px at 0.5 µm/px
    boxes = [p.region for p in slide.patches]
    assert all(not (a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1)
               for i, a in enumerate(boxes) for b in boxes[i + 1:])
    for blob in SMALL.blobs:  # each drawn piece holds a patch's centre (base pixels)
        assert any(((p.base_region.x0 + p.base_region.x1) / 2 - blob.cx) ** 2 / blob.rx ** 2
                   + ((p.base_region.y0 + p.base_region.y1) / 2 - blob.cy) ** 2 / blob.ry ** 2 <= 1
                   for p in slide.patches), blob
    for patch in slide.patches:
        assert set(patch.frames) == expected_frames(small.slide, 2, patch.region) and len(patch.frames) == 16
    fetched = session.frames()
    assert len(fetched) == len(set(fetched)) == 1 + 16 * len(slide.patches)


def test_find_slide_studies_lists_the_patients_sm_studies(client: FhirClient, slides: dict[str, Stored],
                                                          patient: str) -> None:
    found = {s["id"] for s in find_slide_studies(client, patient)}
    assert found == {s.study["id"] for s in slides.values()}


BAD = {
    "frames": ("inconsistent geometry: {n} frames, but", "metadata"),
    "spacing": ("inconsistent geometry: pixel spacing", "metadata"),
    "no_thumbnail": ("no thumbnail level: the smallest image of the slide is 4096 x 3072 pixels", "metadata"),
    "huge": ("the base level is 100000 x 100000 pixels (10,000,000,000), over the 8,000,000,000-pixel limit "
             "(pathology_max_base_pixels)", "metadata"),
    "missing_frame": ("could not be retrieved (the PACS answered HTTP 400)", "frames"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_each_broken_slide_fails_with_its_reason_and_fetches_no_more_than_needed(
        client: FhirClient, slides: dict[str, Stored], pacs_url: str, case: str) -> None:
    stored = slides[case]
    session = CountingSession()
    with pytest.raises(InputError) as caught:
        prepare_slide(client, stored.study, options(pacs_url, session))
    text, reached = BAD[case]
    where = f"ImagingStudy/{stored.study['id']} series "
    assert caught.value.source.startswith(where)
    if case == "frames":
        assert stored.slide is not None
        text = text.format(n=stored.slide.levels[1].frames)
    assert text in caught.value.reason, caught.value
    if reached == "metadata":
        assert session.frames() == [] and sum(p.endswith("/metadata") for p in session.paths) == 1
    else:
        assert stored.slide is not None
        broken = stored.slide.levels[1].instance_uid
        assert f"instance {broken} frame" in caught.value.source
        assert session.frames()[0] == (stored.slide.levels[-1].instance_uid, 1)  # the thumbnail first


def test_each_pathology_setting_changes_the_preparation(client: FhirClient, slides: dict[str, Stored],
                                                        pacs_url: str) -> None:
    base = Settings(fhir_base_url=client.base_url, imaging_allowed_endpoints=(pacs_url,))
    big = slides["big"]

    def run(**settings: Any) -> PreparedSlide:
        return prepare_slide(client, big.study, pathology_options(replace(base, **settings)))

    assert len(run(pathology_patches=3).patches) == 3
    assert run(pathology_patches=3, pathology_patch_px=512).patches[0].image.size == (512, 512)
    assert run(pathology_patches=3, pathology_target_um_per_px=2.0).choices["level_um_per_px"] == 2.0
    with pytest.raises(InputError, match=r"cutting 16 patches needs 64 frames and 1 were already fetched: "
                                         r"over the 20-frame limit \(pathology_max_frames_fetched\)"):
        run(pathology_max_frames_fetched=20)
    with pytest.raises(InputError, match=r"over the 1,000,000,000-pixel limit \(pathology_max_base_pixels\)"):
        run(pathology_max_base_pixels=1_000_000_000)
