"""Choose what of a study the model sees, from headers alone (no pixel data, no I/O).

Volumes (CT, MR): the series that is not a localizer, in a standard plane (slice normal within 30
degrees of a patient axis), with the most slices, an axial one preferred (MedGemma was trained
mainly on axial slices); without an axial series, a sagittal or coronal one in its acquired plane
(the prompt says which: plugin.pipelines.imaging.prompts). Its slices ordered by position along
the normal (InstanceNumber is not trusted): head first, right first (sagittal) or front first
(coronal); checked for one orientation, no duplicate positions and uniform spacing (5 %
tolerance, so a missing slice is a gap), at least 5 slices; then at most `max_slices` indices
sampled uniformly. Projections (CR, DX): one image,
preferring a PA, then an AP view.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from plugin.errors import InputError
from plugin.pipelines.imaging.instance_headers import InstanceHeader
from plugin.pipelines.imaging.prepared import StudyKind

VOLUME_MODALITIES = {"CT": "ct-volume", "MR": "mr-volume"}
PROJECTION_MODALITIES = frozenset({"CR", "DX"})
MIN_VOLUME_SLICES = 5
PLANE_MIN_COSINE = float(np.cos(np.radians(30)))
ORIENTATION_TOLERANCE = 1e-3
SPACING_TOLERANCE = 0.05  # of the median spacing
VIEW_PREFERENCE = ("PA", "AP")


PLANES = ("sagittal", "coronal", "axial")  # by the patient axis (x, y, z) nearest the normal
# The order slices are shown in, per plane: (sort sign along the axis, words for the prompt).
SLICE_ORDER = {"axial": (-1.0, ("head", "feet")), "sagittal": (1.0, ("right", "left")),
               "coronal": (1.0, ("front", "back"))}


@dataclass(frozen=True)
class VolumePlan:
    """The series chosen, its slices in spatial order, and which of them the model gets."""

    series_uid: str
    ordered: tuple[InstanceHeader, ...]  # along the normal (SLICE_ORDER)
    sampled: tuple[int, ...]  # indices into `ordered`
    spacing_mm: float
    choices: dict[str, Any]
    plane: str = "axial"


@dataclass(frozen=True)
class ProjectionPlan:
    instance: InstanceHeader
    choices: dict[str, Any]


def study_kind(modalities: Sequence[str], *, source: str) -> tuple[StudyKind, str]:
    """The kind of study and the modality used, from the modalities it holds."""
    present = {m.upper() for m in modalities}
    for modality, kind in VOLUME_MODALITIES.items():
        if modality in present:
            return kind, modality  # type: ignore[return-value]
    for modality in sorted(present & PROJECTION_MODALITIES):
        return "projection", modality
    found = ", ".join(sorted(present)) or "none"
    raise InputError(source, f"no CT, MR, CR or DX images (modalities: {found})")


def plan_volume(series: dict[str, list[InstanceHeader]], modality: str, *, max_slices: int,
                source: str) -> VolumePlan:
    """Pick the series of `modality` and the slices to show. Raises InputError why not."""
    rejected: dict[str, str] = {}
    candidates: list[tuple[str, str, list[InstanceHeader]]] = []
    for series_uid, headers in series.items():
        images = [h for h in headers if h.modality == modality and not h.is_localizer]
        plane, reason = _plane(images)
        if reason:
            rejected[series_uid] = reason
        else:
            candidates.append((series_uid, plane, images))
    if not candidates:
        detail = "; ".join(f"{uid}: {why}" for uid, why in rejected.items()) or "no series"
        raise InputError(source, f"no {modality} series in an axial, sagittal or coronal plane ({detail})")
    # Axial first, then most slices: the finest sampling of the volume (sampling brings it down
    # to max_slices).
    candidates.sort(key=lambda item: (item[1] != "axial", -len(item[2]), item[0]))
    series_uid, plane, images = candidates[0]
    for other, other_plane, _ in candidates[1:]:
        if other_plane != "axial" and plane == "axial":
            rejected[other] = f"not axial ({other_plane}; an axial series is preferred)"
    where = f"{source} series {series_uid}"
    ordered, spacing = order_slices(images, source=where)
    if len(ordered) < MIN_VOLUME_SLICES:
        raise InputError(where, f"a volume needs at least {MIN_VOLUME_SLICES} slices, this series has "
                                f"{len(ordered)}")
    sampled = sample_indices(len(ordered), max_slices)
    choices = {
        "series_uid": series_uid,
        "series_description": images[0].series_description,
        "series_reason": ("axial, not a localizer, most slices of the axial series" if plane == "axial"
                          else f"no axial series: {plane} in its acquired plane, not a localizer, "
                               "most slices"),
        "plane": plane,
        "series_considered": len(series),
        "series_rejected": rejected,
        "slices_stored": len(ordered),
        "slice_spacing_mm": round(spacing, 4),
        "ordered_by": "ImagePositionPatient along the slice normal, "
                      f"{SLICE_ORDER[plane][1][0]} first",
        "sampled_indices": list(sampled),
    }
    return VolumePlan(series_uid=series_uid, ordered=tuple(ordered), sampled=sampled,
                      spacing_mm=spacing, choices=choices, plane=plane)


def plan_projection(series: dict[str, list[InstanceHeader]], modality: str, *,
                    source: str) -> ProjectionPlan:
    """Pick one projection image of `modality`: PA, else AP, else the lowest-numbered."""
    images = [h for headers in series.values() for h in headers if h.modality == modality]
    if not images:
        raise InputError(source, f"no {modality} image in the study")

    def rank(header: InstanceHeader) -> tuple[int, int, str]:
        view = VIEW_PREFERENCE.index(header.view_position) if header.view_position in VIEW_PREFERENCE \
            else len(VIEW_PREFERENCE)
        return view, header.instance_number or 0, header.instance_uid

    chosen = min(images, key=rank)
    return ProjectionPlan(chosen, {
        "series_uid": chosen.series_uid,
        "series_description": chosen.series_description,
        "instance_uid": chosen.instance_uid,
        "view_position": chosen.view_position or "unknown",
        "series_reason": f"{modality} projection, preferring PA then AP views "
                         f"({len(images)} image(s) in the study)",
    })


def order_slices(headers: Sequence[InstanceHeader], *, source: str) -> tuple[list[InstanceHeader], float]:
    """Slices sorted by position along the slice normal (SLICE_ORDER: head, right or front
    first), and their spacing (mm).

    Refuses mixed orientations, missing positions, duplicate positions and non-uniform spacing.
    """
    if not headers:
        raise InputError(source, "the series has no images")
    for header in headers:
        if header.frames != 1 and header.frame is None:
            raise InputError(f"{source} instance {header.instance_uid}",
                             f"a multi-frame instance ({header.frames} frames) is read frame by frame "
                             "from its per-frame functional groups through DICOMweb; this one has "
                             "none, or came as a DICOM attachment")
        if header.position is None or header.orientation is None:
            raise InputError(f"{source} instance {header.instance_uid}",
                             "ImagePositionPatient or ImageOrientationPatient is missing")
    reference = np.array(headers[0].orientation)
    for header in headers[1:]:
        if np.max(np.abs(np.array(header.orientation) - reference)) > ORIENTATION_TOLERANCE:
            raise InputError(source, f"mixed orientations: instance {header.instance_uid} differs from "
                                     f"{headers[0].instance_uid}")
    sizes = {(h.rows, h.columns) for h in headers}
    if len(sizes) > 1:
        raise InputError(source, f"slices of different sizes: {sorted(sizes)}")
    normal = slice_normal(headers[0].orientation)  # type: ignore[arg-type]
    distances = [float(np.dot(normal, h.position)) for h in headers]  # type: ignore[arg-type]
    # Head first (the patient's +z is superior), like the usual InstanceNumber order of an axial
    # CT; right first (+x is the patient's left) for sagittal, front first (+y is posterior) for
    # coronal slices.
    axis = int(np.argmax(np.abs(normal)))
    direction = SLICE_ORDER[PLANES[axis]][0] * (1.0 if normal[axis] > 0 else -1.0)
    order = sorted(range(len(headers)), key=lambda i: direction * distances[i])
    ordered = [headers[i] for i in order]
    if len(ordered) < 2:
        return ordered, 0.0
    steps = np.abs(np.diff([distances[i] for i in order]))
    if np.min(steps) <= 1e-4:
        i = int(np.argmin(steps))
        raise InputError(source, f"instances {ordered[i].instance_uid} and {ordered[i + 1].instance_uid} "
                                 "lie at the same position")
    spacing = float(np.median(steps))
    worst = int(np.argmax(np.abs(steps - spacing)))
    if abs(steps[worst] - spacing) > SPACING_TOLERANCE * spacing:
        raise InputError(source, f"non-uniform slice spacing: {steps[worst]:.3f} mm between instances "
                                 f"{ordered[worst].instance_uid} and {ordered[worst + 1].instance_uid}, "
                                 f"{spacing:.3f} mm elsewhere (a gap or overlap)")
    return ordered, spacing


def slice_normal(orientation: Sequence[float]) -> np.ndarray:
    """The unit normal of a slice: row direction x column direction."""
    row, column = np.array(orientation[:3], dtype=float), np.array(orientation[3:6], dtype=float)
    normal = np.cross(row, column)
    length = float(np.linalg.norm(normal))
    if length < 1e-6:
        raise ValueError("ImageOrientationPatient has parallel row and column directions")
    return normal / length


def sample_indices(count: int, max_count: int) -> tuple[int, ...]:
    """At most `max_count` indices of `count`, evenly spread, always keeping the first and last."""
    if max_count <= 0:
        raise ValueError("max_count must be positive")
    if count <= max_count:
        return tuple(range(count))
    if max_count == 1:
        return (count // 2,)
    # Exact rational positions i * (count - 1) / (max_count - 1), rounded half up.
    return tuple((2 * i * (count - 1) + (max_count - 1)) // (2 * (max_count - 1)) for i in range(max_count))


def _plane(images: Sequence[InstanceHeader]) -> tuple[str, str]:
    """The series' plane, or "" and the reason it has none."""
    if not images:
        return "", "no images of the modality"
    orientation = images[0].orientation
    if orientation is None:
        return "", "no ImageOrientationPatient"
    try:
        normal = slice_normal(orientation)
    except ValueError as exc:
        return "", str(exc)
    axis = int(np.argmax(np.abs(normal)))
    if abs(normal[axis]) < PLANE_MIN_COSINE:
        return "", f"oblique (slice normal {np.round(normal, 3).tolist()}, more than 30 degrees from " \
                   "every patient axis)"
    return PLANES[axis], ""
