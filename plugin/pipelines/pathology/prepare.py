"""Make one whole-slide ImagingStudy ready for the model (docs/pathology.md): its SM series'
pyramid from one WADO-RS metadata call, a tissue mask from the thumbnail level, and patches at
the level closest to the target resolution, spread over the tissue; only the frames (tiles)
those need are fetched.

    find_slide_studies(client, patient_id)         the patient's ImagingStudy with an SM series
    pathology_options(settings)                    -> PathologyOptions
    prepare_slide(client, study, options)          -> PreparedSlide, or InputError for bad input
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import requests
from PIL import Image

from plugin.budget import DEFAULT_JOB_MEMORY_BYTES, MemoryBudget
from plugin.config import Settings
from plugin.errors import InputError
from plugin.fhir import FhirClient
from plugin.pipelines.imaging.sources import DicomWebSource, SourceLimits, open_source, study_instance_uid
from plugin.pipelines.pathology import sampling
from plugin.pipelines.pathology.pyramid import Pyramid, read_pyramid
from plugin.pipelines.pathology.slide import Patch, PreparedSlide, PyramidLevel
from plugin.pipelines.pathology.tiles import TileReader, frames_for_region
from plugin.pipelines.pathology.tissue import METHOD, tissue_mask
from plugin.results import Box, SourceRef

Progress = Callable[[float, str], None]
Resource = dict[str, Any]
MB = 1024 * 1024
SLIDE_MODALITY = "SM"


@dataclass(frozen=True)
class PathologyOptions:
    """Limits and choices of slide preparation (settings `pathology_*`, docs/configuration.md)."""

    # The same endpoint allow-lists as imaging: the token goes only to trusted endpoints.
    trusted_endpoints: tuple[str, ...] = ()
    allowed_endpoints: tuple[str, ...] = ()
    timeout_s: float = 30.0  # every request (metadata, each frame)
    max_metadata_bytes: int = 64 * MB  # the series metadata answer
    max_frame_bytes: int = 16 * MB  # one frame's codestream
    memory_bytes: int = DEFAULT_JOB_MEMORY_BYTES  # decoded tiles, the mask level, the patches
    target_um_per_px: float = 0.5
    patches: int = 16
    patch_px: int = 896
    max_base_pixels: int = 8_000_000_000
    max_frames_fetched: int = 512
    # The mask is computed on the smallest image of the slide (a THUMBNAIL or the smallest level);
    # when even that is over this many pixels, the slide "has no thumbnail level" and is refused.
    mask_max_pixels: int = 4 * 1024 * 1024
    max_tile_pixels: int = 4096 * 4096
    min_tissue: float = 0.5  # of a patch's area, by the mask
    fetch_workers: int = 4
    max_region_pixels: int = 4096 * 4096  # what region_png may assemble
    session: requests.Session | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if min(self.patches, self.patch_px, self.max_frames_fetched, self.fetch_workers,
               self.mask_max_pixels, self.memory_bytes) < 1 or self.target_um_per_px <= 0:
            raise ValueError("pathology options must be positive")


def pathology_options(settings: Settings) -> PathologyOptions:
    """PathologyOptions from the service settings."""
    return PathologyOptions(
        trusted_endpoints=settings.imaging_trusted_endpoints,
        allowed_endpoints=settings.imaging_allowed_endpoints,
        timeout_s=settings.fhir_timeout_s,
        max_metadata_bytes=settings.imaging_max_instance_bytes,
        memory_bytes=settings.job_memory_bytes,
        target_um_per_px=settings.pathology_target_um_per_px,
        patches=settings.pathology_patches,
        patch_px=settings.pathology_patch_px,
        max_base_pixels=settings.pathology_max_base_pixels,
        max_frames_fetched=settings.pathology_max_frames_fetched,
    )


def slide_series(study: Resource) -> list[str]:
    """UIDs of the study's SM series, in the order listed."""
    return [str(s["uid"]) for s in study.get("series", [])
            if (s.get("modality") or {}).get("code") == SLIDE_MODALITY and s.get("uid")]


def find_slide_studies(client: FhirClient, patient_id: str) -> list[Resource]:
    """The patient's ImagingStudy resources with an SM series, newest `started` first."""
    studies = [s for s in client.search("ImagingStudy", {"patient": patient_id, "_count": 100})
               if slide_series(s)]
    dated = sorted((s for s in studies if s.get("started")), key=lambda s: str(s["started"]), reverse=True)
    return dated + [s for s in studies if not s.get("started")]


@dataclass
class OpenSlide:
    """A slide's pyramid and a reader of its tiles, for one preparation or one app request."""

    where: str
    study_uid: str
    series_uid: str
    pyramid: Pyramid
    reader: TileReader
    budget: MemoryBudget
    source: DicomWebSource


@contextmanager
def open_slide(client: FhirClient, study: Resource, options: PathologyOptions) -> Iterator[OpenSlide]:
    """The study's first SM series behind its DICOMweb Endpoint (the imaging allow-lists), its
    metadata read and checked. InputErrors name the study (and series/instance)."""
    where = f"ImagingStudy/{study.get('id', '?')}"
    series = slide_series(study)
    if not series:
        raise InputError(where, "the ImagingStudy lists no series of modality SM (slide microscopy)")
    limits = SourceLimits(timeout_s=options.timeout_s, max_metadata_bytes=options.max_metadata_bytes,
                          max_instance_bytes=options.max_frame_bytes,
                          trusted_endpoints=options.trusted_endpoints,
                          allowed_endpoints=options.allowed_endpoints, session=options.session)
    source = open_source(client, study, limits, where=where)
    try:
        if not isinstance(source, DicomWebSource):
            raise InputError(where, "whole-slide images are read from a DICOMweb Endpoint only (the study "
                                    "has DICOM attachments but no usable dicom-wado-rs Endpoint)")
        study_uid = study_instance_uid(study) or ""
        series_where = f"{where} series {series[0]}"
        try:
            items = source.client.series_metadata(study_uid, series[0])
        except InputError as exc:
            raise InputError(series_where, f"the series metadata could not be read ({exc.reason})") from None
        pyramid = read_pyramid(items, where=series_where, max_base_pixels=options.max_base_pixels,
                               max_tile_pixels=options.max_tile_pixels)
        budget = MemoryBudget(where, options.memory_bytes)
        reader = TileReader(source.client, study_uid, where=series_where, budget=budget,
                            max_frames=options.max_frames_fetched, max_frame_bytes=options.max_frame_bytes,
                            workers=options.fetch_workers)
        yield OpenSlide(where, study_uid, series[0], pyramid, reader, budget, source)
    finally:
        source.close()


def mask_level(pyramid: Pyramid, max_pixels: int, *, where: str) -> PyramidLevel:
    """The smallest image of the slide (THUMBNAIL images and VOLUME levels alike), when it has at
    most `max_pixels` pixels; otherwise the slide has no thumbnail level."""
    smallest = min(pyramid.thumbnails + pyramid.levels, key=lambda lv: lv.total_columns * lv.total_rows)
    if smallest.total_columns * smallest.total_rows > max_pixels:
        raise InputError(where, f"no thumbnail level: the smallest image of the slide is "
                                f"{smallest.total_columns} x {smallest.total_rows} pixels (instance "
                                f"{smallest.instance_uid}), over the {max_pixels:,}-pixel limit for "
                                "the tissue mask")
    return smallest


def closest_level(pyramid: Pyramid, target_um: float) -> PyramidLevel:
    """The VOLUME level whose µm/px is closest to the target on a log scale. A tie goes to the
    coarser level: scanners halve or quarter per level, so the default 0.5 µm/px sits exactly
    between 40x (0.25) and 10x (1.0) on a 4x pyramid, and MedGemma 1.5 was given slides at about
    10x (REFERENCE.md), not 40x."""
    return min(pyramid.levels, key=lambda lv: (abs(math.log(pyramid.um_per_px(lv) / target_um)),
                                               -pyramid.um_per_px(lv)))


def whole(level: PyramidLevel) -> Box:
    return Box(0, 0, level.total_columns, level.total_rows)


def base_box(pyramid: Pyramid, level: PyramidLevel, region: Box) -> Box:
    sx, sy = pyramid.scale(level)
    return Box(round(region.x0 * sx), round(region.y0 * sy),
               min(pyramid.base.total_columns, round(region.x1 * sx)),
               min(pyramid.base.total_rows, round(region.y1 * sy)))


def prepare_slide(client: FhirClient, study: Resource, options: PathologyOptions, *,
                  progress: Progress | None = None) -> PreparedSlide:
    """Fetch what the model needs of the slide in `study` and cut its patches. Raises InputError
    naming the study (and the series or instance) and the reason when the slide cannot be used."""
    report = progress or (lambda _fraction, _text: None)
    where = f"ImagingStudy/{study.get('id', '?')}"
    version = (study.get("meta") or {}).get("versionId")
    if not study.get("id") or not version:
        raise InputError(where, "the ImagingStudy has no id or meta.versionId")
    started = _started(study)
    try:
        with open_slide(client, study, options) as slide:
            return _prepare(slide, study, str(version), started, options, report)
    except InputError as exc:
        if exc.source.startswith(where):
            raise
        raise InputError(f"{where} {exc.source}", exc.reason) from None


def _prepare(slide: OpenSlide, study: Resource, version: str, started: datetime | None,
             options: PathologyOptions, report: Progress) -> PreparedSlide:
    pyramid, reader = slide.pyramid, slide.reader
    series_where = f"{slide.where} series {slide.series_uid}"
    report(0.1, f"read the pyramid: {len(pyramid.levels)} levels")
    thumb = mask_level(pyramid, options.mask_max_pixels, where=series_where)
    level = closest_level(pyramid, options.target_um_per_px)
    if options.patch_px > min(level.total_columns, level.total_rows):
        raise InputError(f"{series_where} instance {level.instance_uid}",
                         f"a {options.patch_px}-pixel patch does not fit the {level.total_columns} x "
                         f"{level.total_rows} level closest to {options.target_um_per_px} µm/px")
    thumb_pixels = reader.read_region(thumb, whole(thumb))
    mask_frames = reader.record.frames
    try:
        tissue = tissue_mask(thumb_pixels)
    finally:
        slide.budget.release(thumb_pixels.nbytes)
        del thumb_pixels
    report(0.3, f"tissue mask: {tissue.fraction:.1%} of the slide")
    index = reader.index(level)

    def present(box: Box) -> bool:
        return all(f is not None for f in frames_for_region(level, box, index).values())

    candidates = sampling.patch_candidates(level, tissue.mask, options.patch_px,
                                           min_tissue=options.min_tissue, present=present)
    if not candidates:
        raise InputError(series_where, f"no tissue found: no {options.patch_px}-pixel patch of the level at "
                                       f"{pyramid.um_per_px(level):.3g} µm/px is {options.min_tissue:.0%} "
                                       f"tissue by the mask ({tissue.fraction:.1%} of the thumbnail is "
                                       "tissue)")
    chosen = sampling.sample_patches(candidates, options.patches, sampling.seed_for(slide.series_uid))
    frames_of = [tuple(sorted(f for f in frames_for_region(level, c.region, index).values() if f is not None))
                 for c in chosen.chosen]
    # All patches' frames together, the frame budget checked first: one request per
    # FRAMES_PER_REQUEST frames (16 patches of 2 x 2 tiles: one request), each frame once.
    regions = reader.read_regions(level, [c.region for c in chosen.chosen],
                                  f"cutting {len(chosen.chosen)} patches")
    patches = []
    for number, (candidate, frames, pixels) in enumerate(zip(chosen.chosen, frames_of, regions, strict=True),
                                                         start=1):
        patches.append(Patch(number=number, image=Image.fromarray(pixels, "RGB"), level=level,
                             region=candidate.region, base_region=base_box(pyramid, level, candidate.region),
                             frames=frames, tissue_fraction=candidate.tissue_fraction))
    report(1.0, f"{len(patches)} patches cut")
    used = [(level.instance_uid, f) for p in patches for f in p.frames]
    record = reader.record
    choices = {
        "levels": [{"instance": lv.instance_uid, "size": [lv.total_columns, lv.total_rows],
                    "tile": [lv.tile_columns, lv.tile_rows], "frames": lv.frames,
                    "organization": lv.organization, "um_per_px": round(pyramid.um_per_px(lv), 4)}
                   for lv in pyramid.levels],
        "thumbnails": [lv.instance_uid for lv in pyramid.thumbnails],
        "other_images": list(pyramid.others),
        "level_used": level.instance_uid, "level_um_per_px": round(pyramid.um_per_px(level), 4),
        "target_um_per_px": options.target_um_per_px,
        "mask": {"instance": thumb.instance_uid, "size": [thumb.total_columns, thumb.total_rows],
                 "method": METHOD, "threshold": tissue.threshold, "otsu": tissue.otsu,
                 "tissue_fraction": round(tissue.fraction, 4), "frames": mask_frames},
        "patch_px": options.patch_px, "patch_grid_step": list(sampling.patch_step(level, options.patch_px)),
        "min_tissue": options.min_tissue, "candidates": chosen.candidates,
        "tissue_regions": list(chosen.regions), "patches_per_region": list(chosen.per_region),
        "patches_requested": options.patches, "patches": len(patches), "seed": chosen.seed,
        "frames_fetched": record.frames, "frame_requests": record.requests, "frame_bytes": record.frame_bytes,
        "bytes_read": slide.source.client.bytes_read, "requests": slide.source.client.requests_made,
        "decode_s": round(record.decode_s, 3), "transfer_syntaxes": sorted(record.transfer_syntaxes),
        "source": slide.source.describe(),
        # The DICOMweb base the slide was read from: the SR write-back (imaging/stow.py) stores the
        # report there when that base is also on the write allow-list.
        "endpoint": slide.source.client.base_url,
    }
    source = SourceRef("ImagingStudy", str(study["id"]), version, content_sha256=reader.digest(used))
    return PreparedSlide(source=source, study_uid=slide.study_uid, series_uid=slide.series_uid,
                         levels=pyramid.levels, thumbnail_level=thumb, context=pyramid.context,
                         patches=tuple(patches), started=started, choices=choices)


def _started(study: Resource) -> datetime | None:
    value = study.get("started")
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
