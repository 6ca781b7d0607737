"""Scans and phone photos of the corpus's layouts: pages rendered to images (pypdfium2) and
degraded the way paper is: a tilt of up to ±3°, 200 or 300 dpi, sensor noise, JPEG artefacts, and
for photos a perspective and a shadow. Seeded by the layout's and variant's names, so the same
code always makes the same bytes.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import pypdfium2
from PIL import Image, ImageFilter

from .cache import cached
from .model import LabLayout, ScanVariant


@dataclass(frozen=True)
class _Kind:
    suffix: str
    dpi: int
    description: str
    degrade: Callable[[Image.Image, np.random.Generator], Image.Image]
    jpeg_quality: int


def _pages(pdf: bytes, dpi: int) -> list[Image.Image]:
    document = pypdfium2.PdfDocument(pdf)
    try:
        return [document[i].render(scale=dpi / 72).to_pil().convert("L")
                for i in range(len(document))]
    finally:
        document.close()


def _tilt(image: Image.Image, rng: np.random.Generator, most: float = 3.0) -> Image.Image:
    angle = float(rng.uniform(-most, most))
    return image.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=255)


def _noise(image: Image.Image, rng: np.random.Generator, sigma: float) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float64) + rng.normal(0.0, sigma, (image.height, image.width))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="L")


def _scan(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    return _noise(_tilt(image, rng), rng, 6.0)


def _perspective_coefficients(source: list[tuple[float, float]],
                              target: list[tuple[float, float]]) -> list[float]:
    """PIL's 8 perspective coefficients mapping each target point onto its source point."""
    rows = []
    for (x, y), (u, v) in zip(target, source, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    solution = np.linalg.solve(np.array(rows, dtype=np.float64),
                               np.array([c for point in source for c in point], dtype=np.float64))
    return [float(c) for c in solution]


def _photo(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The page held at a slant under a lamp: perspective, a shadow, soft focus, a desk around."""
    page = _tilt(image, rng, 2.0).convert("RGB")
    w, h = page.size
    border = int(0.06 * w)
    canvas = Image.new("RGB", (w + 2 * border, h + 2 * border), (96, 84, 70))
    canvas.paste(page, (border, border))
    cw, ch = canvas.size
    corners = [(0.0, 0.0), (cw, 0.0), (cw, ch), (0.0, ch)]
    squeeze = [float(s) * cw for s in rng.uniform(0.0, 0.035, 8)]
    target = [(squeeze[0], squeeze[1]), (cw - squeeze[2], squeeze[3] * 0.5),
              (cw - squeeze[4] * 0.5, ch - squeeze[5]), (squeeze[6], ch - squeeze[7] * 0.5)]
    warped = canvas.transform((cw, ch), Image.Transform.PERSPECTIVE,
                              _perspective_coefficients(corners, target),
                              resample=Image.Resampling.BICUBIC, fillcolor=(96, 84, 70))
    # A shadow falling across one side: brightness from 0.55 to 1.0 along a seeded direction.
    ys, xs = np.mgrid[0:ch, 0:cw].astype(np.float32)
    theta = float(rng.uniform(0, 2 * np.pi))
    ramp = (xs / cw) * np.cos(theta) + (ys / ch) * np.sin(theta)
    ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
    shade = 0.55 + 0.45 * ramp
    pixels = np.asarray(warped, dtype=np.float32) * shade[..., None]
    pixels += rng.normal(0.0, 4.0, pixels.shape)
    photo = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="RGB")
    return photo.filter(ImageFilter.GaussianBlur(0.6))


_KINDS = (
    _Kind("scan-300dpi", 300, "300 dpi grey scan, tilted up to ±3°, noise, JPEG q85", _scan, 85),
    _Kind("scan-200dpi-jpeg", 200, "200 dpi scan, tilted up to ±3°, noise, heavy JPEG q35",
          _scan, 35),
    _Kind("photo", 200, "phone photo: perspective, shadow, soft focus, desk border, JPEG q75",
          _photo, 75),
)


def _encode(images: list[Image.Image], dpi: int, quality: int) -> tuple[bytes, str]:
    out = io.BytesIO()
    if len(images) == 1:
        images[0].save(out, "JPEG", quality=quality, dpi=(dpi, dpi))
        return out.getvalue(), "image/jpeg"
    # A multi-page scan arrives as a PDF of page images (JPEG-compressed, no text layer).
    jpegs = []
    for image in images:
        page = io.BytesIO()
        image.save(page, "JPEG", quality=quality)
        jpegs.append(Image.open(io.BytesIO(page.getvalue())))
    jpegs[0].save(out, "PDF", save_all=True, append_images=jpegs[1:], resolution=float(dpi))
    return out.getvalue(), "application/pdf"


def _make(layout: LabLayout, kind: _Kind) -> bytes:
    rng = np.random.default_rng(zlib.crc32(f"{layout.name}/{kind.suffix}".encode()))
    images = [kind.degrade(page, rng) for page in _pages(layout.render(), kind.dpi)]
    return _encode(images, kind.dpi, kind.jpeg_quality)[0]


def scans(layout: LabLayout) -> tuple[ScanVariant, ...]:
    """The layout's scans and photo: one image (JPEG) per single-page layout, an image-only PDF
    for a multi-page one. Each page keeps its page number."""
    variants = []
    for kind in _KINDS:
        content_type = "image/jpeg" if layout.pages == 1 else "application/pdf"
        extension = "jpg" if layout.pages == 1 else "pdf"
        data = cached(f"{layout.name}.{kind.suffix}.{extension}", partial(_make, layout, kind))
        variants.append(ScanVariant(f"{layout.name}/{kind.suffix}", layout.name, data,
                                    content_type, kind.dpi, kind.description))
    return tuple(variants)
