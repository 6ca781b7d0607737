"""Patch sampling on generated slides: the old coarse grid (non-overlapping places, step
ceil(patch / tile) tiles, the candidate loop as it was) against the one-tile grid with disjoint
patches (plugin/pipelines/pathology/sampling.py), measured in the same run.

Variants:
  coarse   before: the coarse grid, farthest places by distance alone
  tile-d   the one-tile grid, farthest places by distance alone
  tile     now: the one-tile grid, distance weighted by the place's tissue fraction

Slides (plugin/sandbox/synthetic/slide.py; the mask is the reader's own tissue_mask of the
generator's thumbnail after a JPEG round trip, as the PACS would serve it):
  default  40k x 30k base, 512 px tiles, four large blobs
  small    8k x 6k base, 256 px tiles, two pieces of ~3000 x 2400 base px (the sandbox tests' slide)
  needle   24k x 16k base, 512 px tiles, three needle-core-like strips 0.5, 0.75 and 1 mm wide
  huge     an 89k x 89k base (the 8-gigapixel limit), 256 px tiles, tissue everywhere: cost only
Patches: 16 of 896 px at 0.5 µm/px (the defaults). "regions hit": drawn blobs with at least a
quarter of some patch inside them, of all blobs. "frames": distinct tiles of all the patches (the
frames fetched for them); "most/patch": the most tiles one patch spans; "tissue": the median
tissue fraction (by the mask) of the patches. Time: candidates (with
prepare.py's check that every tile of a place exists, a frame-index lookup) + sampling, median of
the repeats, milliseconds.

Run: .venv/bin/python bench/pathology_sampling.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import io
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from plugin.pipelines.pathology import sampling  # noqa: E402
from plugin.pipelines.pathology.slide import PyramidLevel  # noqa: E402
from plugin.pipelines.pathology.tiles import frame_index, frames_for_region, tiles_for_region  # noqa: E402
from plugin.pipelines.pathology.tissue import tissue_mask  # noqa: E402
from plugin.results import Box  # noqa: E402
from plugin.sandbox.synthetic.slide import Blob, SlideSpec, render  # noqa: E402

PATCH, PATCHES, MIN_TISSUE, LEVEL_DOWNSAMPLE = 896, 16, 0.5, 2  # 0.25 µm/px base -> 0.5 µm/px

SLIDES = {
    "default": SlideSpec(name="bench-default"),
    "small": SlideSpec(columns=8192, rows=6144, tile=256, downsamples=(1, 2, 8), thumbnail_downsample=32,
                       blobs=(Blob(2400, 2000, 1500, 1200), Blob(6000, 4200, 1400, 1200)),
                       name="bench-small"),
    # Cores 0.5, 0.75 and 1 mm wide (ry 1000-2000 base px at 0.25 µm/px), 4.5-5 mm long, centres
    # 1.25 mm apart (0.625 and 0.375 mm of glass between them).
    "needle": SlideSpec(columns=24576, rows=16384, tile=512, thumbnail_downsample=64, name="bench-needle",
                        blobs=(Blob(12000, 3000, 10000, 1000), Blob(12500, 8000, 9500, 1500),
                               Blob(11500, 13000, 9000, 2000))),
}


def coarse_candidates(level: PyramidLevel, mask: np.ndarray, patch_px: int) -> list[sampling.Candidate]:
    """The candidate loop before the one-tile grid: one mask slice per coarse grid place."""
    def one(tile: int) -> int:
        return math.ceil(patch_px / tile) * tile if patch_px >= tile else patch_px
    step_x, step_y = one(level.tile_columns), one(level.tile_rows)
    sx, sy = mask.shape[1] / level.total_columns, mask.shape[0] / level.total_rows
    found = []
    for row, y in enumerate(range(0, level.total_rows - patch_px + 1, step_y)):
        for col, x in enumerate(range(0, level.total_columns - patch_px + 1, step_x)):
            mx0, my0 = int(x * sx), int(y * sy)
            mx1 = max(mx0 + 1, math.ceil((x + patch_px) * sx))
            my1 = max(my0 + 1, math.ceil((y + patch_px) * sy))
            fraction = float(mask[my0:my1, mx0:mx1].mean())
            box = Box(x, y, x + patch_px, y + patch_px)
            if fraction >= MIN_TISSUE and present(level, box):
                found.append(sampling.Candidate(col, row, Box(x, y, x + patch_px, y + patch_px),
                                                round(fraction, 4)))
    return found


def fine_candidates(level: PyramidLevel, mask: np.ndarray, patch_px: int) -> list[sampling.Candidate]:
    return sampling.patch_candidates(level, mask, patch_px, min_tissue=MIN_TISSUE,
                                     present=lambda box: present(level, box))


def present(level: PyramidLevel, box: Box) -> bool:
    """As prepare.py asks it: does every tile of the patch exist (a lookup in the frame index)."""
    return all(f is not None for f in frames_for_region(level, box, _index(level)).values())


_INDEXES: dict[tuple[int, int, int], dict[tuple[int, int], int]] = {}


def _index(level: PyramidLevel) -> dict[tuple[int, int], int]:
    key = (level.total_columns, level.total_rows, level.tile_columns)
    if key not in _INDEXES:  # the reader builds it once per level too
        _INDEXES[key] = frame_index(level)
    return _INDEXES[key]


def level_of(spec: SlideSpec) -> PyramidLevel:
    columns, rows = -(-spec.columns // LEVEL_DOWNSAMPLE), -(-spec.rows // LEVEL_DOWNSAMPLE)
    return PyramidLevel(instance_uid="1.2.3", series_uid="1.2", image_type="VOLUME", total_columns=columns,
                        total_rows=rows, tile_columns=spec.tile, tile_rows=spec.tile,
                        frames=-(-columns // spec.tile) * -(-rows // spec.tile), organization="TILED_FULL",
                        pixel_spacing_mm=(0.0005, 0.0005))


def mask_of(spec: SlideSpec) -> np.ndarray:
    d = spec.thumbnail_downsample
    pixels = render(spec, d, 0, 0, -(-spec.columns // d), -(-spec.rows // d))
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return tissue_mask(np.asarray(Image.open(buffer).convert("RGB"))).mask


def blobs_hit(spec: SlideSpec, chosen: tuple[sampling.Candidate, ...]) -> int:
    hit = set()
    for c in chosen:  # the patch's pixel centres in base pixels, every 8th pixel
        u = (np.arange(c.region.x0, c.region.x1, 8) + 0.5) * LEVEL_DOWNSAMPLE
        v = (np.arange(c.region.y0, c.region.y1, 8) + 0.5) * LEVEL_DOWNSAMPLE
        for i, b in enumerate(spec.blobs):
            inside = ((u[None, :] - b.cx) / b.rx) ** 2 + ((v[:, None] - b.cy) / b.ry) ** 2 <= 1.0
            if inside.mean() >= 0.25:
                hit.add(i)
    return len(hit)


def frames_needed(level: PyramidLevel, chosen: tuple[sampling.Candidate, ...]) -> tuple[int, int]:
    """Distinct tiles of all the patches, and the most one patch spans."""
    tiles = [tiles_for_region(level, c.region) for c in chosen]
    return len(set().union(*tiles)), max(map(len, tiles), default=0)


def disjoint(chosen: tuple[sampling.Candidate, ...]) -> bool:
    return all(not (a.region.x0 < b.region.x1 and b.region.x0 < a.region.x1 and a.region.y0 < b.region.y1
                    and b.region.y0 < a.region.y1) for i, a in enumerate(chosen) for b in chosen[i + 1:])


def unweighted(found: list[sampling.Candidate], count: int, seed: int) -> sampling.Sampling:
    """The sample as before: farthest places by distance alone. Every tissue fraction set to 1
    makes the weighted distance plain distance; the chosen places get their fractions back."""
    real = {(c.col, c.row): c for c in found}
    picked = sampling.sample_patches([replace(c, tissue_fraction=1.0) for c in found], count, seed)
    return replace(picked, chosen=tuple(real[(c.col, c.row)] for c in picked.chosen))


def measure(level: PyramidLevel, mask: np.ndarray, find: Callable[..., list[sampling.Candidate]],
            sample: Callable[..., sampling.Sampling],
            repeats: int) -> tuple[list[sampling.Candidate], sampling.Sampling, float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        found = find(level, mask, PATCH)
        picked = sample(found, PATCHES, sampling.seed_for("1.2.bench"))
        times.append(time.perf_counter() - start)
    return found, picked, statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; medians of {args.repeats} repeats; {PATCHES} patches of {PATCH} px at "
          "0.5 µm/px\n")
    print(f"{'slide':<8} {'grid':<7} {'places':>7} {'cand.':>6} {'regions':>7} {'patches':>7} "
          f"{'regions hit':>11} {'frames':>6} {'most/patch':>10} {'tissue':>6} {'disjoint':>8} {'ms':>8}")
    ratios = []
    cases = [(name, spec, level_of(spec), mask_of(spec)) for name, spec in SLIDES.items()]
    huge = SlideSpec(columns=89000, rows=89000, tile=256, blobs=(), name="bench-huge")
    cases.append(("huge", huge, level_of(huge), np.ones((2048, 2048), dtype=bool)))
    for name, spec, level, mask in cases:
        timed = {}
        for grid, find, sample in (("coarse", coarse_candidates, unweighted),
                                   ("tile-d", fine_candidates, unweighted),
                                   ("tile", fine_candidates, sampling.sample_patches)):
            found, picked, ms = measure(level, mask, find, sample, args.repeats)
            timed[grid] = ms
            step = (math.ceil(PATCH / spec.tile) if grid == "coarse" else 1) * spec.tile
            places = len(range(0, level.total_columns - PATCH + 1, step)) * len(
                range(0, level.total_rows - PATCH + 1, step))
            frames, most = frames_needed(level, picked.chosen)
            tissue = statistics.median(c.tissue_fraction for c in picked.chosen)
            hit = f"{blobs_hit(spec, picked.chosen)}/{len(spec.blobs)}" if spec.blobs else "-"
            print(f"{name:<8} {grid:<7} {places:>7} {len(found):>6} {len(picked.regions):>7} "
                  f"{len(picked.chosen):>7} {hit:>11} {frames:>6} {most:>10} {tissue:>6.2f} "
                  f"{'yes' if disjoint(picked.chosen) else 'NO':>8} {ms:>8.1f}")
        ratios.append(f"{name} {timed['tile'] / timed['coarse']:.2f}x")
    print("\ntime, tile grid vs coarse grid: " + ", ".join(ratios))


if __name__ == "__main__":
    main()
