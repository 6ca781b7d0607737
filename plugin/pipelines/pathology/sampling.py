"""Where the patches go: a one-tile grid of patch places over the chosen level, kept where the
tissue mask says there is tissue, grouped into tissue regions, and a deterministic spread sample
of them in which no two patches overlap.

    patch_step(level, patch_px)                     the grid's step (one tile)
    patch_candidates(level, mask, patch_px, ...)     places with enough tissue
    sample_patches(candidates, count, seed)          -> Sampling

The grid is aligned to the level's tiles with a step of one tile, so a patch of 896 px on 512 px
tiles still needs exactly 2 x 2 frames (an unaligned one up to 3 x 3), but a thin strip of tissue
is no longer missed because the coarse grid's rows fell beside it. Neighbouring places overlap,
so the sample never takes two overlapping places: the patches are disjoint, and since a patch
spans whole tiles (ceil(patch / tile) of them each way) no frame serves two patches. Spread:
every tissue region (8-connected places) gets a patch before any region gets a second, the rest
go by region size; inside a region each next patch is the free place farthest from those already
chosen, the distance weighted by the place's tissue fraction. The seed (from the series UID)
only picks each region's first place, so one slide always gives the same patches.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from plugin.pipelines.pathology.slide import PyramidLevel
from plugin.results import Box


@dataclass(frozen=True)
class Candidate:
    col: int  # place on the patch grid
    row: int
    region: Box  # in the level's total pixel matrix
    tissue_fraction: float


@dataclass(frozen=True)
class Sampling:
    chosen: tuple[Candidate, ...]  # in prompt order (top to bottom, left to right)
    candidates: int
    regions: tuple[int, ...]  # places per tissue region, largest first
    per_region: tuple[int, ...]  # patches taken from each region, same order
    seed: int


def seed_for(series_uid: str) -> int:
    return int.from_bytes(hashlib.sha256(series_uid.encode()).digest()[:8], "big")


def patch_step(level: PyramidLevel, patch_px: int) -> tuple[int, int]:
    """Grid step (x, y): one tile when a patch spans tiles (the patch still starts on a tile
    edge), else the patch size (several patches per tile, side by side)."""
    def one(tile: int) -> int:
        return tile if patch_px >= tile else patch_px
    return one(level.tile_columns), one(level.tile_rows)


def _window_starts(size: int, patch_px: int, step: int,
                   scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The grid's patch starts along one axis and, for each, the mask's [lo, hi) covering it."""
    starts = np.arange(0, size - patch_px + 1, step, dtype=np.int64)
    lo = np.floor(starts * scale).astype(np.int64)
    hi = np.maximum(lo + 1, np.ceil((starts + patch_px) * scale).astype(np.int64))
    return starts, lo, hi


def patch_candidates(level: PyramidLevel, mask: np.ndarray, patch_px: int, *, min_tissue: float,
                     present: Callable[[Box], bool] = lambda _box: True,
                     step: tuple[int, int] | None = None) -> list[Candidate]:
    """Grid places of `level` whose patch lies inside the matrix, has at least `min_tissue` of
    its area tissue by `mask` (which covers the same slide at another size) and whose tiles
    `present` says exist. `step` overrides the grid step (the benchmark's old coarse grid).

    The tissue fraction of every place comes from one integral image of the mask (a few array
    operations for the whole grid, whatever the step), so the finer grid costs `present` calls
    only for places that are tissue."""
    step_x, step_y = step or patch_step(level, patch_px)
    sx, sy = mask.shape[1] / level.total_columns, mask.shape[0] / level.total_rows
    xs, mx0, mx1 = _window_starts(level.total_columns, patch_px, step_x, sx)
    ys, my0, my1 = _window_starts(level.total_rows, patch_px, step_y, sy)
    mx1, my1 = np.minimum(mx1, mask.shape[1]), np.minimum(my1, mask.shape[0])
    kind = np.int32 if mask.size < 2**31 else np.int64  # a mask is at most 4 M pixels by default
    integral = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=kind)
    integral[1:, 1:] = np.asarray(mask, dtype=bool).cumsum(0, dtype=kind).cumsum(1, dtype=kind)
    counts = (integral[my1][:, mx1] - integral[my0][:, mx1] - integral[my1][:, mx0] + integral[my0][:, mx0])
    fractions = counts / ((my1 - my0)[:, None] * (mx1 - mx0)[None, :])
    found = []
    for row, col in zip(*np.nonzero(fractions >= min_tissue), strict=True):
        x, y = int(xs[col]), int(ys[row])
        box = Box(x, y, x + patch_px, y + patch_px)
        if present(box):
            found.append(Candidate(int(col), int(row), box, round(float(fractions[row, col]), 4)))
    return found


def tissue_regions(candidates: list[Candidate]) -> list[list[Candidate]]:
    """Candidates grouped by 8-connectivity on the grid, largest group first (ties: top-left).
    On the one-tile grid two places of separate tissue pieces are neighbours only when the glass
    between the pieces is narrower than about a tile."""
    by_place = {(c.col, c.row): c for c in candidates}
    seen: set[tuple[int, int]] = set()
    groups = []
    for place in sorted(by_place, key=lambda p: (p[1], p[0])):
        if place in seen:
            continue
        group, stack = [], [place]
        seen.add(place)
        while stack:
            col, row = stack.pop()
            group.append(by_place[(col, row)])
            for dc in (-1, 0, 1):
                for dr in (-1, 0, 1):
                    near = (col + dc, row + dr)
                    if near in by_place and near not in seen:
                        seen.add(near)
                        stack.append(near)
        groups.append(sorted(group, key=lambda c: (c.row, c.col)))
    return sorted(groups, key=lambda g: -len(g))


def _boxes(group: list[Candidate]) -> np.ndarray:
    return np.array([(c.region.x0, c.region.y0, c.region.x1, c.region.y1) for c in group], dtype=np.int64)


def _overlapping(boxes: np.ndarray, box: Box) -> np.ndarray:
    """Which of `boxes` (x0, y0, x1, y1 rows, x1/y1 exclusive) share a pixel with `box`."""
    return ((boxes[:, 0] < box.x1) & (box.x0 < boxes[:, 2]) & (boxes[:, 1] < box.y1) & (box.y0 < boxes[:, 3]))


def _farthest(points: np.ndarray, tissue: np.ndarray, picked: list[int], free: np.ndarray) -> int:
    """The free place farthest (grid distance) from the picked ones, the distance weighted by the
    place's tissue fraction; ties: the earlier in row order. Unweighted, the one-tile grid's
    farthest places are the region's outermost, mostly glass (median tissue 0.79 against 0.94
    on the coarse grid, bench/pathology_sampling.py); weighted, a half-glass place must be twice
    as far as a full one to win."""
    nearest = np.full(len(points), np.inf)
    for i in picked:
        nearest = np.minimum(nearest, np.hypot(*(points - points[i]).T))
    return int(np.argmax(np.where(free, nearest * tissue, -1.0)))


def sample_patches(candidates: list[Candidate], count: int, seed: int) -> Sampling:
    """Up to `count` pairwise disjoint places. First one place per region, largest region first
    (a seeded free place), while patches last; then one at a time to the region with the most
    places per patch taken (D'Hondt) among those with a free place left, at its free place
    farthest from its patches (weighted by tissue). Fewer than `count` only when no free place
    is left."""
    groups = tissue_regions(candidates)
    boxes = [_boxes(g) for g in groups]
    points = [np.array([(c.col, c.row) for c in g], dtype=np.float64) for g in groups]
    tissue = [np.array([c.tissue_fraction for c in g]) for g in groups]
    free = [np.ones(len(g), dtype=bool) for g in groups]
    picked: list[list[int]] = [[] for _ in groups]
    rng = np.random.default_rng(seed)
    total = 0

    def take(region: int, index: int) -> None:
        nonlocal total
        picked[region].append(index)
        total += 1
        box = groups[region][index].region
        for f, b in zip(free, boxes, strict=True):
            f &= ~_overlapping(b, box)

    for region in range(len(groups)):
        if total == count:
            break
        available = np.flatnonzero(free[region])
        if available.size:  # a region can be covered by patches of its neighbours
            take(region, int(available[rng.integers(available.size)]))
    sizes = [len(g) for g in groups]
    while total < count:
        open_regions = [i for i in range(len(groups)) if free[i].any() and picked[i]]
        if not open_regions:
            break
        best = max(open_regions, key=lambda i: (sizes[i] / (len(picked[i]) + 1), -i))
        take(best, _farthest(points[best], tissue[best], picked[best], free[best]))
    chosen = sorted((groups[r][i] for r in range(len(groups)) for i in picked[r]),
                    key=lambda c: (c.row, c.col))
    return Sampling(tuple(chosen), len(candidates), tuple(sizes), tuple(len(p) for p in picked), seed)
