"""Reading a stored DICOM SR back as plain values for assertions: each planar ROI's tracking
identifier, the instance and frames it references, its pixel origin interpretation and its
polyline as a box (x0, y0, x1, y1). Uses highdicom's own parsing of the SR."""

from __future__ import annotations

from dataclasses import dataclass

import highdicom as hd
from pydicom.multival import MultiValue


@dataclass(frozen=True)
class SrRegion:
    tracking: str
    instance_uid: str
    frames: tuple[int, ...]
    origin: str
    box: tuple[float, float, float, float]


def sr_regions(sr: hd.sr.Comprehensive3DSR) -> list[SrRegion]:
    regions = []
    for group in sr.content.get_planar_roi_measurement_groups():
        roi = group.roi
        reference = roi.ContentSequence[0].ReferencedSOPSequence[0]
        value = reference.get("ReferencedFrameNumber")
        frames = () if value is None else tuple(
            int(f) for f in (value if isinstance(value, MultiValue) else [value]))
        points = roi.value
        regions.append(SrRegion(
            tracking=str(group.tracking_identifier), instance_uid=str(reference.ReferencedSOPInstanceUID),
            frames=frames, origin=str(roi.get("PixelOriginInterpretation", "")),
            box=(float(points[:, 0].min()), float(points[:, 1].min()), float(points[:, 0].max()),
                 float(points[:, 1].max()))))
    return regions
