"""Where the patches go: a grid of patch places over the chosen level, kept where the tissue mask
says there is tissue, grouped into tissue regions, and a deterministic spread sample of them.

    patch_step(level, patch_px)                     the grid's step (tile-aligned)
    patch_candidates(level, mask, patch_px, ...)     places with enough tissue
    sample_patches(candidates, count, seed)          -> Sampling

The grid is aligned to the level's tiles, so a patch of 896 px on 512 px tiles needs exactly
2 x 2 frames (an unaligned one up to 3 x 3). Spread: every tissue region (8-connected places)
gets a patch before any region gets a second, the rest go by region size; inside a region each
next patch is the place farthest from those already chosen. The seed (from the series UID)
only picks each region's first place, so one slide always gives the same patches.
"""

from __future__ import annotations

import hashlib
import math
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
    """Grid step (x, y): whole tiles when a patch spans tiles, else the patch size."""
    def one(tile: int) -> int:
        return math.ceil(patch_px / tile) * tile if patch_px >= tile else patch_px
    return one(level.tile_columns), one(level.tile_rows)


def patch_candidates(level: PyramidLevel, mask: np.ndarray, patch_px: int, *, min_tissue: float,
                     present: Callable[[Box], bool] = lambda _box: True) -> list[Candidate]:
    """Grid places of `level` whose patch lies inside the matrix, has at least `min_tissue` of
    its area tissue by `mask` (which covers the same slide at another size) and whose tiles
    `present` says exist."""
    step_x, step_y = patch_step(level, patch_px)
    sx, sy = mask.shape[1] / level.total_columns, mask.shape[0] / level.total_rows
    found = []
    for row, y in enumerate(range(0, level.total_rows - patch_px + 1, step_y)):
        for col, x in enumerate(range(0, level.total_columns - patch_px + 1, step_x)):
            mx0, my0 = int(x * sx), int(y * sy)
            mx1 = max(mx0 + 1, math.ceil((x + patch_px) * sx))
            my1 = max(my0 + 1, math.ceil((y + patch_px) * sy))
            fraction = float(mask[my0:my1, mx0:mx1].mean())
            box = Box(x, y, x + patch_px, y + patch_px)
            if fraction >= min_tissue and present(box):
                found.append(Candidate(col, row, box, round(fraction, 4)))
    return found


def tissue_regions(candidates: list[Candidate]) -> list[list[Candidate]]:
    """Candidates grouped by 8-connectivity on the grid, largest group first (ties: top-left)."""
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


def allocate(sizes: list[int], count: int) -> list[int]:
    """Patches per region: one each (largest regions first) while they last, then one at a time
    to the region with the most places per patch taken (D'Hondt), never more than it has."""
    taken = [1 if i < count else 0 for i in range(len(sizes))]
    for _ in range(min(count, sum(sizes)) - sum(taken)):
        best = max((i for i, s in enumerate(sizes) if s > taken[i]),
                   key=lambda i: (sizes[i] / (taken[i] + 1), -i))
        taken[best] += 1
    return taken


def farthest_points(group: list[Candidate], count: int, rng: np.random.Generator) -> list[Candidate]:
    """`count` places of one region: a seeded first, then each time the one farthest (grid
    distance) from those chosen; ties go to the earlier in row order."""
    points = np.array([(c.col, c.row) for c in group], dtype=np.float64)
    chosen = [int(rng.integers(len(group)))]
    nearest = np.hypot(*(points - points[chosen[0]]).T)
    while len(chosen) < count:
        pick = int(np.argmax(nearest))
        chosen.append(pick)
        nearest = np.minimum(nearest, np.hypot(*(points - points[pick]).T))
    return [group[i] for i in chosen]


def sample_patches(candidates: list[Candidate], count: int, seed: int) -> Sampling:
    groups = tissue_regions(candidates)
    per_region = allocate([len(g) for g in groups], count)
    rng = np.random.default_rng(seed)
    chosen = []
    for group, take in zip(groups, per_region, strict=True):
        if take:
            chosen += farthest_points(group, take, rng)
    chosen.sort(key=lambda c: (c.row, c.col))
    return Sampling(tuple(chosen), len(candidates), tuple(len(g) for g in groups), tuple(per_region), seed)
