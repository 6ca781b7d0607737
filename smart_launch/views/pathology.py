"""Whole-slide evidence made visible: each patch a pathology finding cites, cut from the slide as
the model saw it (plugin.pipelines.pathology.regions.region_png), and the slide's overview (its
thumbnail level, the image the tissue mask is computed on) with the place of every cited patch.

A patch's evidence box is in its *level's* total pixel matrix; the overview is another level of
the same pyramid, so a box is placed on it by the ratio of the two levels' sizes
(`overview_box`). Slides are read with the user's own FHIR client through the study's DICOMweb
Endpoint, under the pathology allow-lists and budgets; nothing here logs patient data."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from plugin.errors import InputError
from plugin.fhir import FhirClient
from plugin.pipelines.pathology.prepare import PathologyOptions
from plugin.pipelines.pathology.regions import overview_png, region_png
from plugin.results import Box
from plugin.writeback import subject_of

from .results import ImageSpot, ReviewItem

Resource = dict[str, Any]


@dataclass(frozen=True)
class CitedPatch:
    """One distinct patch the page shows, numbered 1.. in the order findings first cite it."""

    number: int
    spot: ImageSpot


@dataclass(frozen=True)
class Mark:
    number: int  # the CitedPatch's number
    box: Box  # in overview pixels (x1/y1 exclusive, may be fractional)


@dataclass(frozen=True)
class SlideOverview:
    png: bytes
    width: int  # overview pixels
    height: int
    marks: tuple[Mark, ...]
    # Patches that cannot be placed: their instance is not a level of the slide's pyramid.
    unplaced: tuple[int, ...]

    def as_json(self) -> dict[str, Any]:
        return {"width": self.width, "height": self.height, "unplaced": list(self.unplaced),
                "marks": [{"number": m.number, "box": [m.box.x0, m.box.y0, m.box.x1, m.box.y1]}
                          for m in self.marks]}


def is_patch(spot: ImageSpot) -> bool:
    """A whole-slide patch (it names its pyramid level and region), not an imaging frame spot."""
    return spot.level is not None and spot.box is not None


def cited_patches(items: Iterable[ReviewItem]) -> tuple[CitedPatch, ...]:
    """The distinct patches (same instance and region) the items cite, numbered from 1 in the
    order of the items and of each item's evidence. Pure."""
    seen: dict[tuple[str, Box | None], int] = {}
    found = []
    for item in items:
        for spot in item.image_spots:
            key = (spot.instance, spot.box)
            if is_patch(spot) and key not in seen:
                seen[key] = len(seen) + 1
                found.append(CitedPatch(seen[key], spot))
    return tuple(found)


def patches_of(item: ReviewItem, patches: tuple[CitedPatch, ...]) -> list[tuple[int, int, ImageSpot]]:
    """(page number, 1-based index among the item's image spots, spot) of each patch the item
    cites; the index is what the patch URL names."""
    numbers = {(p.spot.instance, p.spot.box): p.number for p in patches}
    return [(numbers[(s.instance, s.box)], index, s) for index, s in enumerate(item.image_spots, start=1)
            if is_patch(s) and (s.instance, s.box) in numbers]


def overview_box(region: Box, level_size: tuple[int, int], overview_size: tuple[int, int]) -> Box:
    """`region` of a level of `level_size` (columns, rows) placed on the overview of
    `overview_size`: both are the whole slide, so each axis scales by overview / level size.
    Pure."""
    sx = overview_size[0] / level_size[0]
    sy = overview_size[1] / level_size[1]
    return Box(region.x0 * sx, region.y0 * sy, region.x1 * sx, region.y1 * sy)


def slide_overview(client: FhirClient, study: Resource, options: PathologyOptions,
                   patches: tuple[CitedPatch, ...]) -> SlideOverview:
    """The study's slide at its thumbnail level as PNG, with where each patch lies on it. One
    metadata call and the thumbnail's frames; InputError names the study and the reason."""
    overview = overview_png(client, study, options)
    marks, unplaced = [], []
    for patch in patches:
        level_size = overview.level_sizes.get(patch.spot.instance)
        if level_size is None or patch.spot.box is None:
            unplaced.append(patch.number)
            continue
        marks.append(Mark(patch.number, overview_box(patch.spot.box, level_size, overview.size)))
    return SlideOverview(overview.png, overview.size[0], overview.size[1], tuple(marks), tuple(unplaced))


def patch_png(client: FhirClient, study: Resource, options: PathologyOptions, spot: ImageSpot) -> bytes:
    """The patch `spot` cites, cut from its level of the study's slide, as PNG."""
    if not is_patch(spot) or spot.box is None:
        raise InputError(f"ImagingStudy/{study.get('id', '?')}", "the evidence names no slide region")
    return region_png(client, study, options, spot.instance, spot.box)


def subject_is(study: Resource, patient_id: str, *, base_url: str) -> bool:
    """Whether the study is about the patient on the server at `base_url` (a relative subject,
    or an absolute one on that server: the same id on another server is someone else)."""
    return subject_of(study, base_url=base_url) == f"Patient/{patient_id}"
