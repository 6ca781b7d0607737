"""Window arithmetic, MR normalisation, radiograph display values and padding, with exact numbers."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset

from plugin.pipelines.imaging import preprocessing
from tests.support.dicom_builders import radiograph_dataset


def test_ct_three_windows_clip_and_scale_exactly() -> None:
    hu = np.array([-2000, -1024, -135, 0, 40, 80, 215, 1024, 3000], dtype=np.float64)
    rgb = preprocessing.ct_rgb(hu)
    # R = -1024..1024, G = -135..215, B = 0..80; (v - low) * 255 / (high - low), rounded half up.
    assert rgb.dtype == np.uint8
    assert rgb[:, 0].tolist() == [0, 0, 111, 128, 132, 137, 154, 255, 255]
    assert rgb[:, 1].tolist() == [0, 0, 0, 98, 128, 157, 255, 255, 255]
    assert rgb[:, 2].tolist() == [0, 0, 0, 0, 128, 255, 255, 255, 255]


def test_rescale_slope_and_intercept_give_hounsfield_units() -> None:
    assert preprocessing.rescale(np.array([0, 1024, 1064]), 1.0, -1024.0).tolist() == [-1024.0, 0.0, 40.0]
    # 532 * 2 - 1024 = 40 HU
    assert preprocessing.ct_rgb(preprocessing.rescale(np.array([532]), 2.0, -1024.0))[0].tolist() == \
        [132, 128, 128]


def test_window_refuses_an_empty_range() -> None:
    with pytest.raises(ValueError, match="empty"):
        preprocessing.window_to_byte(np.zeros(2), 10.0, 10.0)


def test_mr_min_max_uses_the_volume_range_and_same_value_in_each_channel() -> None:
    slice_values = np.array([[100.0, 150.0], [200.0, 300.0]])
    gray = preprocessing.mr_gray(slice_values, low=100.0, high=500.0)  # range of the whole volume
    assert gray.shape == (2, 2, 3)
    # (v - 100) * 255 / 400: 0, 31.875, 63.75, 127.5
    assert gray[..., 0].tolist() == [[0, 32], [64, 128]]
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    assert preprocessing.mr_gray(slice_values, 7.0, 7.0).max() == 0  # a constant volume is black


def test_linear_window_is_dicoms_linear_function() -> None:
    ds = radiograph_dataset(np.array([[0, 100, 199, 200]]), window=(100.0, 201.0))
    gray, display = preprocessing.projection_gray(np.array([[0, 100, 199, 200]]), ds)
    # ((x - (c - 0.5)) / (w - 1) + 0.5) clipped to 0..1, times 255
    assert gray.tolist() == [[1, 128, 254, 255]]
    assert display.voi == "window C/W" and display.window == (100.0, 201.0) and not display.inverted


def test_monochrome1_is_inverted_after_windowing() -> None:
    pixels = np.array([[0, 100, 199, 200]])
    ds = radiograph_dataset(pixels, window=(100.0, 201.0), photometric="MONOCHROME1")
    gray, display = preprocessing.projection_gray(pixels, ds)
    assert gray.tolist() == [[254, 127, 1, 0]]
    assert display.inverted


def test_without_a_window_the_image_range_is_used() -> None:
    pixels = np.array([[10, 20], [30, 50]])
    gray, display = preprocessing.projection_gray(pixels, radiograph_dataset(pixels))
    assert gray.tolist() == [[0, 64], [128, 255]]  # (v - 10) * 255 / 40 rounded half up
    assert display.voi == "min-max"


def test_a_voi_lut_sequence_wins_over_the_window() -> None:
    pixels = np.array([[0, 1, 2, 3]])
    ds = radiograph_dataset(pixels, window=(1.0, 2.0), bits_stored=8)
    item = Dataset()
    item.LUTDescriptor = [4, 0, 8]  # 4 entries, first stored value 0, 8-bit output
    item.LUTData = [0, 51, 204, 255]
    ds.VOILUTSequence = [item]
    gray, display = preprocessing.projection_gray(pixels, ds)
    assert gray.tolist() == [[0, 51, 204, 255]]
    assert display.voi == "VOI LUT"


def test_padding_to_square_is_symmetric_with_the_odd_pixel_last() -> None:
    wide = np.ones((3, 6), dtype=np.uint8)
    square, (left, top) = preprocessing.pad_to_square(wide)
    assert square.shape == (6, 6) and (left, top) == (0, 1)
    assert square[:, 0].tolist() == [0, 1, 1, 1, 0, 0]  # 1 row on top, 2 below
    tall = np.ones((5, 2, 3), dtype=np.uint8)
    square, (left, top) = preprocessing.pad_to_square(tall)
    assert square.shape == (5, 5, 3) and (left, top) == (1, 0)
    assert square[0, :, 0].tolist() == [0, 1, 1, 0, 0]
    already, padding = preprocessing.pad_to_square(np.ones((4, 4)))
    assert already.shape == (4, 4) and padding == (0, 0)


def test_large_slices_are_downscaled_keeping_aspect_and_small_ones_kept() -> None:
    big = Image.new("RGB", (1024, 600))
    assert preprocessing.fit_within(big, 512).size == (512, 300)
    small = Image.new("RGB", (256, 256))
    assert preprocessing.fit_within(small, 512) is small


def test_gray_arrays_become_rgb_images() -> None:
    image = preprocessing.to_rgb_image(np.array([[0, 255]], dtype=np.uint8))
    assert image.mode == "RGB" and image.getpixel((1, 0)) == (255, 255, 255)
