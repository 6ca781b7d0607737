"""How a printed page looks once an office scanner or a phone camera has captured it."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

_PAPER = 243.0  # scanner glass white is never pure white
_INK = 28.0
# Strong enough to look captured, mild enough that OCR still reads >= 90% of the values.
# Blur radii are in output pixels; noise in grey levels.
_SCAN_BLUR = 0.8
_SCAN_NOISE = 5.0
_PHOTO_BLUR = 0.9
_PHOTO_NOISE = 2.5


def _sign(rng: np.random.Generator) -> float:
    return 1.0 if rng.random() < 0.5 else -1.0


def _sample(image: Image.Image, oversampling: int) -> Image.Image:
    """Integrate an oversampled rendering over each sensor pixel, as a CCD/CMOS element does."""
    width, height = image.size
    return image.resize((width // oversampling, height // oversampling), Image.Resampling.BOX)


def scanner_pass(page: Image.Image, rng: np.random.Generator, *, oversampling: int = 1) -> Image.Image:
    """A flatbed scan: skewed 1-2 degrees, softened by the optics, sensor noise and some dust.

    `page` is rendered at `oversampling` times the scan resolution; skew and optics act on it
    before it is sampled, which keeps glyph edges as crisp as a real scanner's.
    """
    angle = _sign(rng) * rng.uniform(1.0, 2.0)
    skewed = page.convert("L").rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=255)
    soft = _sample(skewed.filter(ImageFilter.GaussianBlur(_SCAN_BLUR * oversampling)), oversampling)
    pixels = _INK + np.asarray(soft, dtype=np.float32) * ((_PAPER - _INK) / 255.0)
    pixels += rng.normal(0.0, _SCAN_NOISE, pixels.shape).astype(np.float32)
    height, width = pixels.shape
    # Dust and toner specks: a few dark dots, one or two pixels wide.
    for _ in range(int(rng.integers(40, 80))):
        y, x = int(rng.integers(0, height - 2)), int(rng.integers(0, width - 2))
        pixels[y : y + int(rng.integers(1, 3)), x : x + int(rng.integers(1, 3))] = rng.uniform(40, 120)
    # A faint streak where the scanner bar has a dirty pixel.
    column = int(rng.integers(width // 8, width - width // 8))
    pixels[:, column] -= 18.0
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _perspective_coefficients(
    source: list[tuple[float, float]], target: list[tuple[float, float]]
) -> tuple[float, ...]:
    """Coefficients PIL's PERSPECTIVE transform needs to map `target` corners back onto `source`."""
    rows = []
    for (sx, sy), (tx, ty) in zip(source, target, strict=True):
        rows.append([tx, ty, 1, 0, 0, 0, -sx * tx, -sx * ty])
        rows.append([0, 0, 0, tx, ty, 1, -sy * tx, -sy * ty])
    rhs = np.array([coordinate for point in source for coordinate in point], dtype=np.float64)
    return tuple(float(c) for c in np.linalg.solve(np.array(rows, dtype=np.float64), rhs))


def _lighting(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Uneven room light: a gradient from a window on one side plus a lens vignette."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    direction = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(direction) * (x / width - 0.5) + np.sin(direction) * (y / height - 0.5)) * 2
    radius = np.hypot(x / width - 0.5, y / height - 0.5) / 0.707
    return np.asarray(0.86 + 0.14 * ramp - 0.18 * radius**2, dtype=np.float32)


def _on_desk(page: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, Image.Image]:
    """The page placed in the camera's frame, rotated ~3 degrees and keystoned (top edge further
    away); returns the warped page and the mask of where paper is."""
    page_width, page_height = page.size
    margin = int(0.07 * page_width)
    width, height = page_width + 2 * margin, page_height + 2 * margin
    angle = np.deg2rad(_sign(rng) * rng.uniform(2.5, 3.5))
    keystone = rng.uniform(0.015, 0.03) * page_width
    half_w, half_h = page_width / 2, page_height / 2
    corners = [(-half_w + keystone, -half_h), (half_w - keystone, -half_h),
               (half_w, half_h), (-half_w, half_h)]
    cos, sin, scale = np.cos(angle), np.sin(angle), 0.97
    target = [(width / 2 + scale * (cos * x - sin * y), height / 2 + scale * (sin * x + cos * y))
              for x, y in corners]
    source = [(0.0, 0.0), (float(page_width), 0.0), (float(page_width), float(page_height)),
              (0.0, float(page_height))]
    coefficients = _perspective_coefficients(source, target)
    # Page and paper mask warped together (one pass) as luminance + alpha.
    with_alpha = Image.merge("LA", (page.convert("L"), Image.new("L", page.size, 255)))
    warped = with_alpha.transform((width, height), Image.Transform.PERSPECTIVE, coefficients,
                                  Image.Resampling.BICUBIC, fillcolor=(0, 0))
    ink, paper = warped.split()
    return ink, paper


def _desk(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A dark wooden desk with a little low-frequency grain, RGB float."""
    coarse = Image.fromarray(rng.normal(0, 12, (height // 16, width // 16)).astype(np.float32))
    grain = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32)
    return np.array([92.0, 70.0, 52.0], dtype=np.float32) + grain[..., None]


def phone_photo(page: Image.Image, rng: np.random.Generator, *, oversampling: int = 1) -> Image.Image:
    """A hand-held photo of the page on a desk: rotated ~3 degrees, keystoned, unevenly lit, noisy.

    `page` is rendered at `oversampling` times the photo's resolution (see `scanner_pass`).
    """
    warped, on_paper = _on_desk(page, rng)
    ink = np.asarray(_sample(warped, oversampling), dtype=np.float32)[..., None] / 255.0
    paper_mask = np.asarray(_sample(on_paper, oversampling), dtype=np.float32)[..., None] / 255.0
    height, width = ink.shape[:2]
    paper = ink * np.array([248.0, 244.0, 234.0], dtype=np.float32) + (1 - ink) * 35.0
    photo = paper_mask * paper + (1 - paper_mask) * _desk(height, width, rng)
    photo *= _lighting(height, width, rng)[..., None]
    lit = Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8))
    soft = np.asarray(lit.filter(ImageFilter.GaussianBlur(_PHOTO_BLUR)), dtype=np.float32)
    # Sensor noise after the phone's own denoising: mild, and in luminance only.
    noisy = soft + rng.normal(0, _PHOTO_NOISE, (height, width, 1)).astype(np.float32)
    return Image.fromarray(np.clip(np.round(noisy), 0, 255).astype(np.uint8))
