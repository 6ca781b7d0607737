"""In-plane orientation: the flips and quarter turns that bring a frame to the standard display
orientation, and the way back for coordinates (pure, no I/O).

Standard display (radiological convention), in the patient coordinates of DICOM (LPS: +x the
patient's left, +y posterior, +z head):

    axial     columns run to the patient's left (+x), rows to posterior (+y): anterior up,
              the patient's right on the image's left
    coronal   columns run to the patient's left (+x), rows to the feet (-z): head up
    sagittal  columns run to posterior (+y), rows to the feet (-z): anterior left, head up

A slice's plane is the patient axis nearest its normal; its row and column directions
(ImageOrientationPatient; for radiographs the first letter of each PatientOrientation value) are
snapped to the nearest patient axes. Snapping a direction up to MAX_OBLIQUE_DEGREES away is
accepted and the angle stated; a frame more oblique than that is refused: showing it turned by
more than that as if it were standard would mislead, and resampling it is not done here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MAX_OBLIQUE_DEGREES = 30.0
# plane -> the standard display's row direction (along a row: increasing column index) and
# column direction (down a column), as (patient axis, sign) pairs: ImageOrientationPatient's order.
_STANDARD = {
    "sagittal": ((1, 1), (2, -1)),
    "coronal": ((0, 1), (2, -1)),
    "axial": ((0, 1), (1, 1)),
}
_PLANE_OF_NORMAL = ("sagittal", "coronal", "axial")
_LETTERS = {"L": (1.0, 0.0, 0.0), "R": (-1.0, 0.0, 0.0), "P": (0.0, 1.0, 0.0),
            "A": (0.0, -1.0, 0.0), "H": (0.0, 0.0, 1.0), "F": (0.0, 0.0, -1.0)}


class ObliqueError(ValueError):
    """The frame's directions are too far from the patient axes to show it as standard."""


@dataclass(frozen=True)
class Reorientation:
    """What was done to a frame's pixels, in this order: transpose (swap rows and columns), then
    flip upside down, then flip left-right. `plane` is "" when the frame's orientation is unknown
    (shown as stored)."""

    plane: str = ""
    transpose: bool = False
    flip_rows: bool = False
    flip_columns: bool = False
    oblique_degrees: float = 0.0

    @property
    def changes_pixels(self) -> bool:
        return self.transpose or self.flip_rows or self.flip_columns

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        """The frame (rows, cols[, channels]) in display orientation (a view, not a copy)."""
        if self.transpose:
            pixels = np.swapaxes(pixels, 0, 1)
        if self.flip_rows:
            pixels = pixels[::-1]
        if self.flip_columns:
            pixels = pixels[:, ::-1]
        return pixels

    def display_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """(width, height) of the displayed frame, from the stored frame's (width, height)."""
        return (size[1], size[0]) if self.transpose else size

    def to_source(self, x: float, y: float, size: tuple[int, int]) -> tuple[float, float]:
        """A point of the displayed frame (pixel edges, 0..width) in the stored frame, whose
        (width, height) is `size`. Exact: every step is a reflection or a swap."""
        width, height = self.display_size(size)
        if self.flip_columns:
            x = width - x
        if self.flip_rows:
            y = height - y
        return (y, x) if self.transpose else (x, y)

    def describe(self) -> str:
        """One line for the record, e.g. "axial: flipped upside down to the standard display"."""
        if not self.plane:
            return "orientation unknown (no ImageOrientationPatient or PatientOrientation): shown as stored"
        steps = {
            (False, False, False): "already in the standard display orientation",
            (False, True, False): "flipped upside down",
            (False, False, True): "flipped left-right",
            (False, True, True): "rotated 180 degrees",
            (True, False, False): "transposed (mirrored across the main diagonal)",
            (True, False, True): "rotated 90 degrees clockwise",
            (True, True, False): "rotated 90 degrees counter-clockwise",
            (True, True, True): "transposed across the anti-diagonal",
        }[(self.transpose, self.flip_rows, self.flip_columns)]
        text = f"{self.plane}: {steps}"
        if self.changes_pixels:
            text += " to the standard display orientation"
        if self.oblique_degrees >= 0.5:
            text += f"; the plane is oblique, {self.oblique_degrees:.0f} degrees from the nearest " \
                    "standard orientation (shown as that one, not resampled)"
        return text

    def record(self) -> dict[str, object]:
        """JSON for the preparation's choices."""
        return {"plane": self.plane or "unknown", "transposed": self.transpose,
                "flipped_upside_down": self.flip_rows, "flipped_left_right": self.flip_columns,
                "oblique_degrees": round(self.oblique_degrees, 2), "text": self.describe()}


AS_STORED = Reorientation()


def from_image_orientation(orientation: Sequence[float]) -> Reorientation:
    """The reorientation of a frame with ImageOrientationPatient `orientation` (row direction,
    then column direction). Raises ObliqueError beyond MAX_OBLIQUE_DEGREES."""
    row = np.asarray(orientation[:3], dtype=float)
    column = np.asarray(orientation[3:6], dtype=float)
    lengths = float(np.linalg.norm(row)), float(np.linalg.norm(column))
    normal = np.cross(row, column)
    if min(lengths) < 1e-6 or float(np.linalg.norm(normal)) < 1e-6:
        raise ObliqueError("ImageOrientationPatient has a zero or parallel row and column direction")
    row, column = row / lengths[0], column / lengths[1]
    plane = _PLANE_OF_NORMAL[int(np.argmax(np.abs(normal)))]
    row_axis, column_axis = int(np.argmax(np.abs(row))), int(np.argmax(np.abs(column)))
    worst = max(_degrees(row[row_axis]), _degrees(column[column_axis]))
    if row_axis == column_axis or worst > MAX_OBLIQUE_DEGREES:
        raise ObliqueError(f"the {plane} plane is oblique: its rows or columns lie {worst:.0f} degrees "
                           f"from the nearest patient axis (more than {MAX_OBLIQUE_DEGREES:.0f}), so "
                           "it cannot be shown in a standard orientation without resampling")
    (target_row, row_sign), (target_column, column_sign) = _STANDARD[plane]
    transpose = row_axis == target_column
    if transpose:
        row, column, row_axis, column_axis = column, row, column_axis, row_axis
    if (row_axis, column_axis) != (target_row, target_column):
        raise ObliqueError(f"the row and column directions do not span the {plane} plane")
    return Reorientation(plane=plane, transpose=transpose,
                         flip_rows=bool(np.sign(column[column_axis]) != column_sign),
                         flip_columns=bool(np.sign(row[row_axis]) != row_sign),
                         oblique_degrees=worst)


def from_patient_orientation(values: Sequence[str] | None) -> Reorientation:
    """A radiograph's reorientation from PatientOrientation (0020,0020): the directions of its
    rows and columns as letters (L, R, A, P, H, F; the first letter of each value counts).
    Absent or unreadable: shown as stored."""
    if values is None or len(values) != 2:
        return AS_STORED
    try:
        row, column = (_LETTERS[str(value).strip().upper()[:1]] for value in values)
    except KeyError:
        return AS_STORED
    try:
        return from_image_orientation((*row, *column))
    except ObliqueError:
        return AS_STORED  # e.g. "L\L": contradictory, so not acted on


def _degrees(cosine: float) -> float:
    return float(np.degrees(np.arccos(min(abs(float(cosine)), 1.0))))
