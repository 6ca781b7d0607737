"""The tissue mask (Otsu on saturation) measured against the synthetic slides' drawn truth, and
patch sampling: tissue only, spread over every tissue region, deterministic per series."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from plugin.pipelines.pathology import sampling
from plugin.pipelines.pathology.slide import PyramidLevel
from plugin.pipelines.pathology.tissue import otsu_threshold, saturation, tissue_mask
from tests.support.wsi_slides import DEFAULT_BLOBS, SlideSpec, render

SPEC = SlideSpec()  # 40k x 30k, four blobs
THUMB = 64  # the generator's THUMBNAIL downsample


def _thumbnail(quality: int = 90) -> np.ndarray:
    pixels = render(SPEC, THUMB, 0, 0, 625, 469)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def _truth() -> np.ndarray:
    from tests.support.wsi_slides import _coords, _inside
    u, v = _coords(THUMB, 0, 0, 625, 469)
    return _inside(SPEC.blobs, u, v)


def test_otsu_threshold_separates_two_populations() -> None:
    values = np.concatenate([np.full(1000, 10), np.full(500, 120)]).astype(np.uint8)
    assert 10 <= otsu_threshold(values) < 120
    assert saturation(np.array([[[255, 255, 255], [226, 158, 196], [0, 0, 0]]], dtype=np.uint8)).tolist() == [
        [0, 76, 0]]


def test_the_mask_matches_the_drawn_tissue_on_a_jpeg_thumbnail() -> None:
    found, truth = tissue_mask(_thumbnail()), _truth()
    iou = (found.mask & truth).sum() / (found.mask | truth).sum()
    precision = (found.mask & truth).sum() / found.mask.sum()
    assert iou > 0.97 and precision > 0.98, (iou, precision)


def test_an_empty_slide_has_no_tissue() -> None:
    blank = np.full((100, 100, 3), 242, dtype=np.uint8)
    blank[::7, ::5] = (236, 240, 242)  # JPEG-like noise on glass
    assert tissue_mask(blank).mask.sum() == 0


LEVEL = PyramidLevel(instance_uid="1.2.3", series_uid="1.2", image_type="VOLUME", total_columns=20000,
                     total_rows=15000, tile_columns=512, tile_rows=512, frames=40 * 30,
                     organization="TILED_FULL", pixel_spacing_mm=(0.0005, 0.0005))


def _candidates() -> list[sampling.Candidate]:
    return sampling.patch_candidates(LEVEL, _truth(), 896, min_tissue=0.5)


def test_candidates_are_tile_aligned_and_on_tissue() -> None:
    assert sampling.patch_step(LEVEL, 896) == (1024, 1024)
    assert sampling.patch_step(LEVEL, 256) == (256, 256)
    found = _candidates()
    assert found and all(c.region.x0 % 512 == 0 and c.region.y0 % 512 == 0 for c in found)
    assert all(c.region.x1 - c.region.x0 == 896 and c.tissue_fraction >= 0.5 for c in found)


def test_patches_spread_over_every_tissue_region() -> None:
    found = _candidates()
    regions = sampling.tissue_regions(found)
    assert len(regions) == len(DEFAULT_BLOBS)
    chosen = sampling.sample_patches(found, 8, seed=1)
    assert chosen.regions == (18, 16, 15, 4)
    assert chosen.per_region == (3, 2, 2, 1)  # one each, then by size
    for group, take in zip(regions, chosen.per_region, strict=True):
        assert len(set(group) & set(chosen.chosen)) == take


def test_fewer_patches_than_regions_go_to_the_largest() -> None:
    regions = sampling.tissue_regions(_candidates())
    chosen = sampling.sample_patches(_candidates(), 2, seed=1)
    assert chosen.per_region == (1, 1, 0, 0)
    assert set(chosen.chosen) <= set(regions[0]) | set(regions[1])


def test_sampling_is_deterministic_per_series_and_differs_between_series() -> None:
    found = _candidates()
    one = sampling.sample_patches(found, 16, sampling.seed_for("1.2.3.4"))
    again = sampling.sample_patches(found, 16, sampling.seed_for("1.2.3.4"))
    other = sampling.sample_patches(found, 16, sampling.seed_for("1.2.3.5"))
    assert one == again
    assert [c.region for c in one.chosen] != [c.region for c in other.chosen]


def test_patches_within_a_region_are_far_apart() -> None:
    (group, *_) = sampling.tissue_regions(_candidates())
    picked = sampling.farthest_points(group, 4, np.random.default_rng(0))
    places = np.array([(c.col, c.row) for c in picked], dtype=float)
    closest = min(np.hypot(*(places[i] - places[j])) for i in range(4) for j in range(i + 1, 4))
    # The region is 18 cells in a 4 x 5 box; four neighbouring cells would be 1 apart.
    assert closest >= 2


def test_allocate_gives_one_each_then_by_size() -> None:
    assert sampling.allocate([10, 5, 1], 2) == [1, 1, 0]
    assert sampling.allocate([10, 5, 1], 8) == [5, 2, 1]
    assert sampling.allocate([2, 1], 10) == [2, 1]
