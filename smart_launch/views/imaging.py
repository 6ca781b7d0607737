"""Imaging evidence made visible: the DICOM frame a finding points at (and the prior study's image
beside it) as a PNG at the frame's own pixel size, so the page can draw the finding's boxes over it
in the evidence's pixel coordinates. Instances are fetched the way the imaging pipeline fetches them
(its PACS / Binary sources, with the user's FHIR client) and shown with the pipeline's display
preprocessing: radiographs by their VOI, CT in a soft-tissue window, others by min-max."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image

from plugin.errors import InputError
from plugin.fhir import FhirClient
from plugin.pipelines.imaging.instance_headers import InstanceHeader
from plugin.pipelines.imaging.pixels import decode_instance
from plugin.pipelines.imaging.prepare import ImagingOptions
from plugin.pipelines.imaging.preprocessing import linear_window, projection_gray, rescale
from plugin.pipelines.imaging.sources import SourceLimits, open_source

from .results import ImageSpot

Resource = dict[str, Any]
CT_WINDOW = (40.0, 400.0)  # soft tissue: centre, width (HU)


def frame_png(client: FhirClient, study: Resource, spot: ImageSpot | None, options: ImagingOptions) -> bytes:
    """The frame `spot` names in `study` (1-based frame; the first frame when none), or, without a
    spot, the study's first image (a prior study's radiograph), as 8-bit greyscale PNG."""
    where = f"ImagingStudy/{study.get('id', '?')}"
    limits = SourceLimits(timeout_s=options.timeout_s, max_metadata_bytes=options.max_metadata_bytes,
                          max_instance_bytes=options.max_instance_bytes,
                          trusted_endpoints=options.trusted_endpoints,
                          allowed_endpoints=options.allowed_endpoints,
                          attachment_allowed_hosts=options.attachment_allowed_hosts, session=options.session)
    source = open_source(client, study, limits, where=where)
    header = _header(source.series_headers(), spot, where)
    decoded = decode_instance(source.fetch(header), source=f"{where} instance {header.instance_uid}",
                              max_pixels=options.max_pixels)
    frame_index = (spot.frame or 1) - 1 if spot else 0
    if not 0 <= frame_index < decoded.frames.shape[0]:
        raise InputError(where, f"instance {header.instance_uid} has no frame {frame_index + 1}")
    pixels = _display(decoded.frames[frame_index], decoded.dataset, header.modality)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG", optimize=True)
    return out.getvalue()


def _header(series: dict[str, list[InstanceHeader]], spot: ImageSpot | None, where: str) -> InstanceHeader:
    headers = [h for found in series.values() for h in found]
    if spot is not None:
        for header in headers:
            if header.instance_uid == spot.instance:
                return header
        raise InputError(where, f"instance {spot.instance} is not in the study")
    if not headers:
        raise InputError(where, "the study has no instances")
    return min(headers, key=lambda h: (h.series_number or 0, h.instance_number or 0))


def _display(stored: np.ndarray, dataset: Any, modality: str) -> np.ndarray:
    if stored.ndim == 3:  # colour: shown as it is stored
        return np.asarray(stored, dtype=np.uint8)
    if modality in ("CR", "DX", "MG", "RF", "XA"):
        gray, _ = projection_gray(stored, dataset)
        return np.asarray(gray, dtype=np.uint8)
    values = rescale(stored, float(dataset.get("RescaleSlope", 1) or 1),
                     float(dataset.get("RescaleIntercept", 0) or 0))
    if modality == "CT":
        unit = linear_window(values, *CT_WINDOW)
    else:
        low, high = float(values.min()), float(values.max())
        unit = (values - low) / (high - low) if high > low else np.zeros_like(values)
    return np.asarray(np.round(unit * 255.0), dtype=np.uint8)


def prior_study_reference(provenances: list[Resource], current: str) -> str | None:
    """The other ImagingStudy the write's Provenance names as a source ("ImagingStudy/7"), i.e.
    the prior study of a comparison; None when the result compared nothing."""
    for provenance in provenances:
        for entity in provenance.get("entity", []):
            reference = str(entity.get("what", {}).get("reference", "")).split("/_history/")[0]
            if reference.startswith("ImagingStudy/") and reference != current:
                return reference
    return None
