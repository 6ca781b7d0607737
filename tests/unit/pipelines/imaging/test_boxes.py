"""box_2d [y0, x0, y1, x1] in 0..1000 of the padded square -> pixels of the original frame:
exact numbers with and without padding, clipping, and boxes refused with a reason."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from plugin.pipelines.imaging.boxes import BoxError, padded_side, to_pixel_box
from plugin.pipelines.imaging.prepared import PreparedImage
from plugin.pipelines.imaging.preprocessing import pad_to_square
from plugin.results import Box


def frame(width: int, height: int, padding: tuple[int, int] = (0, 0)) -> PreparedImage:
    side = max(width, height)
    return PreparedImage(image=Image.new("RGB", (side, side)), series_uid="1.2.3",
                         instance_uid="1.2.3.4", frame=1, label="", original_size=(width, height),
                         padding=padding)


def test_a_portrait_frame_padded_left_and_right() -> None:
    # 400 wide, 500 high: 50 px of padding each side makes the 500 px square.
    image = frame(400, 500, padding=(50, 0))
    assert to_pixel_box([100, 200, 600, 700], image) == Box(x0=50.0, y0=50.0, x1=300.0, y1=300.0)


def test_a_landscape_frame_padded_top_and_bottom() -> None:
    image = frame(1000, 600, padding=(0, 200))
    assert to_pixel_box([250, 100, 500, 300], image) == Box(x0=100.0, y0=50.0, x1=300.0, y1=300.0)


def test_an_odd_padding_and_a_box_over_the_whole_square_is_clipped_to_the_frame() -> None:
    # 301 wide, 400 high: 49 px left, 50 px right (the odd pixel goes right).
    image = frame(301, 400, padding=(49, 0))
    assert to_pixel_box([0, 0, 1000, 1000], image) == Box(x0=0.0, y0=0.0, x1=301.0, y1=400.0)
    assert to_pixel_box([0, 500, 1000, 1000], image) == Box(x0=151.0, y0=0.0, x1=301.0, y1=400.0)


def test_an_unpadded_square_keeps_two_decimals() -> None:
    image = frame(896, 896)
    assert to_pixel_box([123, 456, 789, 999], image) == Box(x0=408.58, y0=110.21, x1=895.1,
                                                             y1=706.94)
    assert to_pixel_box([0.5, 10.25, 20, 30], frame(1000, 1000)) == Box(10.25, 0.5, 30.0, 20.0)


def test_a_box_drawn_on_the_padded_image_maps_back_onto_the_object() -> None:
    """With the PACS side's own padding: a bright block at rows 100-150, columns 40-80 of a
    200x300 frame, boxed on the 300x300 padded square, comes back at exactly those pixels."""
    pixels = np.zeros((300, 200), dtype=np.uint8)
    pixels[100:150, 40:80] = 255
    square, padding = pad_to_square(pixels)
    assert padding == (50, 0) and square.shape == (300, 300)
    rows, cols = np.nonzero(square)
    side = square.shape[0]
    box_2d = [rows.min() / side * 1000, cols.min() / side * 1000,
              (rows.max() + 1) / side * 1000, (cols.max() + 1) / side * 1000]
    image = frame(200, 300, padding=padding)
    assert to_pixel_box(box_2d, image) == Box(x0=40.0, y0=100.0, x1=80.0, y1=150.0)


def test_a_box_wholly_in_the_padding_is_refused() -> None:
    image = frame(400, 500, padding=(50, 0))  # x 0..100 of 1000 is the left padding (0..50 px)
    with pytest.raises(BoxError, match="lies in the padding"):
        to_pixel_box([100, 0, 600, 90], image)


@pytest.mark.parametrize(("box_2d", "reason"), [
    ([1, 2, 3], "four numbers"),
    ("10,20,30,40", "four numbers"),
    ([10, 20, "30", 40], "four numbers"),
    ([10, 20, True, 40], "four numbers"),
    ([10, 20, float("nan"), 40], "four numbers"),
    ([10, 20, 1001, 40], "outside 0..1000"),
    ([-1, 20, 30, 40], "outside 0..1000"),
    ([500, 20, 300, 40], "y0 < y1"),
    ([10, 400, 300, 400], "x0 < x1"),
])
def test_malformed_boxes_are_refused_not_repaired(box_2d: object, reason: str) -> None:
    with pytest.raises(BoxError, match=reason):
        to_pixel_box(box_2d, frame(100, 100))


def test_padding_that_does_not_square_the_frame_is_an_error() -> None:
    assert padded_side((400, 500), (50, 0)) == 500
    with pytest.raises(BoxError, match="does not square"):
        padded_side((400, 500), (120, 0))
    with pytest.raises(BoxError, match="no pixels"):
        padded_side((0, 500), (0, 0))
