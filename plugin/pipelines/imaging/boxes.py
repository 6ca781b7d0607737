"""Boxes the model gives back to pixels of the original image.

MedGemma answers localisation with `box_2d` = [y0, x0, y1, x1], each 0..1000 of the padded square
it was shown (top-left, then bottom-right). Back in the displayed frame's pixels: coord / 1000 x the
padded side (the square's side before any resize: resizing a square is uniform, so the thousandths
are the same), minus the padding on that axis, clipped to the frame; then back through the
reorientation (flips and quarter turns, plugin.pipelines.imaging.orientation) to the DICOM frame
as stored. A box that is not four numbers in range, is upside down, or lies wholly in the padding
is refused with a reason, never repaired.
"""

from __future__ import annotations

import math
from typing import Any

from plugin.results import Box

from .prepared import PreparedImage

SCALE = 1000  # box_2d coordinates are thousandths of the padded square's side


class BoxError(ValueError):
    """A box_2d that cannot be mapped back; the message says why."""


def padded_side(original_size: tuple[int, int], padding: tuple[int, int]) -> int:
    """The side of the square the frame was padded to. Padding is symmetric zero padding of the
    short side (its odd pixel on the right/bottom), so the square's side is the long side."""
    width, height = original_size
    left, top = padding
    side = max(width, height)
    if width <= 0 or height <= 0:
        raise BoxError(f"the image has no pixels ({width}x{height})")
    if left < 0 or top < 0 or width + 2 * left > side + 1 or height + 2 * top > side + 1:
        raise BoxError(f"padding {padding} does not square a {width}x{height} image")
    return side


def to_pixel_box(box_2d: Any, image: PreparedImage) -> Box:
    """The box in pixel coordinates of `image`'s original frame (x0,y0 top-left)."""
    y0, x0, y1, x1 = _coordinates(box_2d)
    displayed = image.reorientation.display_size(image.original_size)
    side = padded_side(displayed, image.padding)
    width, height = displayed
    left, top = image.padding
    corners = [(_back(x0, side, left, width), _back(y0, side, top, height)),
               (_back(x1, side, left, width), _back(y1, side, top, height))]
    if corners[1][0] <= corners[0][0] or corners[1][1] <= corners[0][1]:
        raise BoxError(f"box_2d {list(box_2d)} lies in the padding, outside the image")
    stored = [image.reorientation.to_source(x, y, image.original_size) for x, y in corners]
    xs, ys = sorted(x for x, _ in stored), sorted(y for _, y in stored)
    return Box(x0=round(xs[0], 2), y0=round(ys[0], 2), x1=round(xs[1], 2), y1=round(ys[1], 2))


def _back(coordinate: float, side: int, offset: int, limit: int) -> float:
    value = coordinate / SCALE * side - offset
    return min(max(value, 0.0), float(limit))


def _coordinates(box_2d: Any) -> tuple[float, float, float, float]:
    if not isinstance(box_2d, list | tuple) or len(box_2d) != 4:
        raise BoxError(f"box_2d must be four numbers [y0, x0, y1, x1], got {_short(box_2d)}")
    values: list[float] = []
    for value in box_2d:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise BoxError(f"box_2d must be four numbers [y0, x0, y1, x1], got {_short(box_2d)}")
        if not 0 <= value <= SCALE:
            raise BoxError(f"box_2d {list(box_2d)} is outside 0..{SCALE}")
        values.append(float(value))
    y0, x0, y1, x1 = values
    if y1 <= y0 or x1 <= x0:
        raise BoxError(f"box_2d {list(box_2d)} is not [y0, x0, y1, x1] with y0 < y1 and x0 < x1")
    return y0, x0, y1, x1


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
