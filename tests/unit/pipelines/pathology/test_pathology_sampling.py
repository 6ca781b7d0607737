"""The tissue mask (Otsu on saturation) measured against the synthetic slides' drawn truth, and
patch sampling: tissue only, spread over every tissue region, deterministic per series."""

from __future__ import annotations

import io
import math
import statistics
from dataclasses import replace

import numpy as np
from PIL import Image

from plugin.pipelines.pathology import sampling
from plugin.pipelines.pathology.slide import PyramidLevel
from plugin.pipelines.pathology.tiles import tiles_for_region
from plugin.pipelines.pathology.tissue import otsu_threshold, saturation, tissue_mask
from plugin.results import Box
from plugin.sandbox.synthetic.slide import DEFAULT_BLOBS, Blob, SlideSpec, render

SPEC = SlideSpec()  # 40k x 30k, four blobs
THUMB = 64  # the generator's THUMBNAIL downsample


def _thumbnail(quality: int = 90) -> np.ndarray:
    pixels = render(SPEC, THUMB, 0, 0, 625, 469)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def _truth() -> np.ndarray:
    from plugin.sandbox.synthetic.slide import _coords, _inside
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


def test_the_threshold_follows_the_slide_not_a_fixed_value() -> None:
    # Yellowed glass (saturation ~30, over the fixed floor of 20): Otsu still splits glass from
    # tissue, where a fixed threshold at the floor would call the whole slide tissue.
    tinted, truth = _thumbnail().copy(), _truth()
    tinted[~truth] = (240, 232, 212)
    found = tissue_mask(tinted)
    assert found.threshold > 30
    assert (found.mask & truth).sum() / (found.mask | truth).sum() > 0.97


def test_an_empty_slide_has_no_tissue() -> None:
    blank = np.full((100, 100, 3), 242, dtype=np.uint8)
    blank[::7, ::5] = (236, 240, 242)  # JPEG-like noise on glass
    assert tissue_mask(blank).mask.sum() == 0


LEVEL = PyramidLevel(instance_uid="1.2.3", series_uid="1.2", image_type="VOLUME", total_columns=20000,
                     total_rows=15000, tile_columns=512, tile_rows=512, frames=40 * 30,
                     organization="TILED_FULL", pixel_spacing_mm=(0.0005, 0.0005))


def _candidates() -> list[sampling.Candidate]:
    return sampling.patch_candidates(LEVEL, _truth(), 896, min_tissue=0.5)


def _disjoint(chosen: tuple[sampling.Candidate, ...]) -> bool:
    return all(not (a.region.x0 < b.region.x1 and b.region.x0 < a.region.x1 and a.region.y0 < b.region.y1
                    and b.region.y0 < a.region.y1) for i, a in enumerate(chosen) for b in chosen[i + 1:])


def test_candidates_are_tile_aligned_and_on_tissue() -> None:
    assert sampling.patch_step(LEVEL, 896) == (512, 512)  # one tile: the patch still starts on a tile edge
    assert sampling.patch_step(replace(LEVEL, tile_columns=256, tile_rows=256), 896) == (256, 256)
    assert sampling.patch_step(LEVEL, 256) == (256, 256)  # smaller than a tile: side by side
    found = _candidates()
    assert found and all(c.region.x0 % 512 == 0 and c.region.y0 % 512 == 0 for c in found)
    assert all(c.region.x1 - c.region.x0 == 896 and c.tissue_fraction >= 0.5 for c in found)


def test_the_tissue_fraction_is_the_mask_mean_under_the_patch() -> None:
    # The integral image gives what slicing the mask under each patch gives (a 1/8 mask here).
    mask = np.random.default_rng(3).random((400, 500)) < 0.6
    level = replace(LEVEL, total_columns=4000, total_rows=3200)
    for c in sampling.patch_candidates(level, mask, 896, min_tissue=0.0):
        x0, y0 = c.region.x0 // 8, c.region.y0 // 8
        assert c.tissue_fraction == round(float(mask[y0:y0 + 112, x0:x0 + 112].mean()), 4)


def _strip_level() -> tuple[PyramidLevel, np.ndarray]:
    """An 8192 x 4096 level with one strip of tissue across it, rows 504-1351 (a needle core 848 px,
    0.42 mm at 0.5 µm/px), drawn on a 1/8 mask. The old 1024 px grid's rows start at 0 and 1024:
    each holds under half a patch of it (392 and 328 of 896 rows)."""
    level = replace(LEVEL, total_columns=8192, total_rows=4096, frames=16 * 8)
    mask = np.zeros((512, 1024), dtype=bool)
    mask[63:169] = True
    return level, mask


def test_the_tile_grid_finds_a_thin_strip_the_coarse_grid_missed() -> None:
    level, mask = _strip_level()
    assert sampling.patch_candidates(level, mask, 896, min_tissue=0.5, step=(1024, 1024)) == []
    found = sampling.patch_candidates(level, mask, 896, min_tissue=0.5)
    assert found and {c.region.y0 for c in found} == {512}  # 840 of its 896 rows are tissue
    chosen = sampling.sample_patches(found, 16, seed=1)
    assert len(sampling.tissue_regions(found)) == 1  # one strip, one region
    # 8 fit side by side; spreading (farthest first) is not packing, and leaves one gap.
    assert len(chosen.chosen) >= 7 and _disjoint(chosen.chosen)


def test_chosen_patches_never_overlap_and_keep_their_frames() -> None:
    for tile, frames in ((512, {(0, 0), (1, 0), (0, 1), (1, 1)}), (256, None)):
        level = replace(LEVEL, tile_columns=tile, tile_rows=tile)
        found = sampling.patch_candidates(level, _truth(), 896, min_tissue=0.5)
        chosen = sampling.sample_patches(found, 200, seed=1).chosen
        assert len(chosen) > 16 and _disjoint(chosen)
        tiles = [tiles_for_region(level, c.region) for c in chosen]
        # ceil(896 / tile) tiles each way, as on the old grid: 2 x 2 of 512, 4 x 4 of 256.
        assert all(len(t) == math.ceil(896 / tile) ** 2 for t in tiles)
        assert len(set().union(*tiles)) == sum(map(len, tiles))  # no frame serves two patches
        if frames:
            origin = [(c.region.x0 // tile, c.region.y0 // tile) for c in chosen]
            assert all({(tx - ox, ty - oy) for tx, ty in t} == frames for t, (ox, oy) in zip(tiles, origin,
                                                                                             strict=True))


def test_patches_spread_over_every_tissue_region() -> None:
    found = _candidates()
    regions = sampling.tissue_regions(found)
    assert len(regions) == len(DEFAULT_BLOBS)  # the finer grid still sees four pieces, not more
    chosen = sampling.sample_patches(found, 8, seed=1)
    assert chosen.regions == tuple(len(g) for g in regions) == (70, 62, 60, 14)
    assert chosen.per_region == (3, 2, 2, 1)  # one each, then by size
    for group, take in zip(regions, chosen.per_region, strict=True):
        assert len(set(group) & set(chosen.chosen)) == take


def test_the_small_two_piece_slide_gets_a_patch_in_each_piece() -> None:
    # The sandbox tests' 8192 x 6144 slide (256 px tiles) at 0.5 µm/px: the 1024 px grid found one
    # place, in one of the two pieces.
    from plugin.sandbox.synthetic.slide import _coords, _inside
    blobs = (Blob(2400, 2000, 1500, 1200), Blob(6000, 4200, 1400, 1200))
    level = replace(LEVEL, total_columns=4096, total_rows=3072, tile_columns=256, tile_rows=256)
    mask = _inside(blobs, *_coords(32, 0, 0, 256, 192))
    assert len(sampling.patch_candidates(level, mask, 896, min_tissue=0.5, step=(1024, 1024))) == 1
    chosen = sampling.sample_patches(sampling.patch_candidates(level, mask, 896, min_tissue=0.5), 16, seed=1)
    assert len(chosen.regions) == 2 and min(chosen.per_region) >= 1 and _disjoint(chosen.chosen)
    for blob in blobs:  # each drawn piece holds a patch's centre (level px are 2 base px)
        assert any((((c.region.x0 + 448) * 2 - blob.cx) / blob.rx) ** 2
                   + (((c.region.y0 + 448) * 2 - blob.cy) / blob.ry) ** 2 <= 1 for c in chosen.chosen)


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
    assert [(c.row, c.col) for c in one.chosen] == sorted((c.row, c.col) for c in one.chosen)  # prompt order


def test_patches_within_a_region_are_far_apart() -> None:
    (group, *_) = sampling.tissue_regions(_candidates())
    picked = sampling.sample_patches(group, 4, seed=0).chosen
    places = np.array([(c.col, c.row) for c in picked], dtype=float)
    closest = min(np.hypot(*(places[i] - places[j])) for i in range(4) for j in range(i + 1, 4))
    # The region spans 8 x 11 places; disjoint neighbours would be 2 places apart.
    assert closest >= 4


def test_spread_patches_stay_on_tissue_not_on_the_region_edge() -> None:
    # Farthest by distance alone goes to a region's outermost places, which on the one-tile grid
    # are barely half tissue (median 0.60-0.78 over these seeds); the distance weighted by the
    # tissue fraction keeps the spread on tissue.
    found = _candidates()
    for seed in range(5):
        chosen = sampling.sample_patches(found, 16, seed).chosen
        assert statistics.median(c.tissue_fraction for c in chosen) > 0.95, seed


def _blocks(sizes: list[int]) -> list[sampling.Candidate]:
    """Separate rows of places (10 rows apart), one place per 512 px patch: none overlap."""
    return [sampling.Candidate(col, 10 * i, Box(col * 512, 5120 * i, col * 512 + 512, 5120 * i + 512), 1.0)
            for i, size in enumerate(sizes) for col in range(size)]


def test_patches_go_one_per_region_then_by_size() -> None:
    assert sampling.sample_patches(_blocks([10, 5, 1]), 2, seed=1).per_region == (1, 1, 0)
    assert sampling.sample_patches(_blocks([10, 5, 1]), 8, seed=1).per_region == (5, 2, 1)
    assert sampling.sample_patches(_blocks([2, 1]), 10, seed=1).per_region == (2, 1)


def test_a_region_under_its_neighbours_patch_is_skipped_not_overlapped() -> None:
    # Two one-place regions 2 places apart on a 256 px grid: a 896 px patch of either covers the
    # other's place, so only one patch can be cut.
    found = [sampling.Candidate(0, 0, Box(0, 0, 896, 896), 1.0),
             sampling.Candidate(2, 0, Box(512, 0, 1408, 896), 1.0)]
    chosen = sampling.sample_patches(found, 4, seed=1)
    assert chosen.regions == (1, 1) and chosen.per_region == (1, 0) and len(chosen.chosen) == 1
