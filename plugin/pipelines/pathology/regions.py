"""Pictures of a slide for the app's patch view: the thumbnail-level overview (where the patches
sit on the slide) and any region of any level (a patch as the model saw it, or its surroundings).

    overview_png(client, study, options)                       -> Overview (PNG, sizes)
    region_png(client, study, options, instance_uid, region)   -> PNG

Both read the series metadata and only the frames the picture needs, with the same allow-lists
and budgets as prepare_slide; a region is a Box in the named level's total pixel matrix (x1/y1
exclusive), as Patch.region is.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from plugin.errors import InputError
from plugin.fhir import FhirClient
from plugin.pipelines.pathology.prepare import PathologyOptions, mask_level, open_slide, whole
from plugin.results import Box

Resource = dict[str, Any]


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass(frozen=True)
class Overview:
    """The slide's thumbnail level as PNG, its size, and the size of every level of the slide
    (instance UID -> (columns, rows) of its total pixel matrix), to place a region of any level
    on the overview."""

    png: bytes
    size: tuple[int, int]
    level_sizes: dict[str, tuple[int, int]]


def overview_png(client: FhirClient, study: Resource, options: PathologyOptions) -> Overview:
    """The slide's thumbnail level (the one the tissue mask uses) as PNG, with the pyramid's sizes."""
    with open_slide(client, study, options) as slide:
        where = f"{slide.where} series {slide.series_uid}"
        level = mask_level(slide.pyramid, options.mask_max_pixels, where=where)
        pixels = slide.reader.read_region(level, whole(level))
        sizes = {lv.instance_uid: (lv.total_columns, lv.total_rows)
                 for lv in (*slide.pyramid.levels, *slide.pyramid.thumbnails)}
        return Overview(_png(pixels), (level.total_columns, level.total_rows), sizes)


def region_png(client: FhirClient, study: Resource, options: PathologyOptions, instance_uid: str,
               region: Box) -> bytes:
    """`region` of the level `instance_uid` (a VOLUME level or THUMBNAIL of the study's slide) as PNG."""
    with open_slide(client, study, options) as slide:
        where = f"{slide.where} series {slide.series_uid} instance {instance_uid}"
        level = slide.pyramid.find(instance_uid)
        if level is None:
            raise InputError(where, "is not a level of the slide")
        x0, y0, x1, y1 = (int(v) for v in (region.x0, region.y0, region.x1, region.y1))
        if (x0, y0, x1, y1) != (region.x0, region.y0, region.x1, region.y1) or not (
                0 <= x0 < x1 <= level.total_columns and 0 <= y0 < y1 <= level.total_rows):
            raise InputError(where, f"region {region.x0},{region.y0}-{region.x1},{region.y1} is not whole "
                                    f"pixels inside the {level.total_columns} x {level.total_rows} matrix")
        if (x1 - x0) * (y1 - y0) > options.max_region_pixels:
            raise InputError(where, f"a region of {x1 - x0} x {y1 - y0} pixels is over the "
                                    f"{options.max_region_pixels:,}-pixel limit")
        return _png(slide.reader.read_region(level, Box(x0, y0, x1, y1)))
