"""PNG, JPEG and (multi-page) TIFF attachments as page images, each frame's size checked against
the pixel budget from its header, before any pixel is decoded."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from plugin.errors import InputError


def image_pages(data: bytes, *, source: str, max_pages: int,
                max_page_pixels: int) -> tuple[list[Image.Image], int]:
    """The first `max_pages` frames as 8-bit images ("L" or "RGB", upright per EXIF) and the
    number of frames the file holds."""
    try:
        opened = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own guard fired first (it warns, or refuses outright when twice its limit).
        raise InputError(source, f"the image is too large to open safely ({exc})") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(source, f"the image cannot be read ({exc})") from None
    with opened:
        frame_count = int(getattr(opened, "n_frames", 1))
        pages = []
        for index in range(min(frame_count, max_pages)):
            try:
                opened.seek(index)
            except EOFError:
                break
            width, height = opened.size
            if width * height > max_page_pixels:
                raise InputError(source, f"page {index + 1} is {width}x{height} pixels, over the "
                                         f"{max_page_pixels}-pixel limit")
            try:
                opened.load()
                pages.append(_eight_bit(ImageOps.exif_transpose(opened)))
            except (OSError, ValueError, SyntaxError) as exc:
                raise InputError(source, f"page {index + 1} of the image cannot be decoded "
                                         f"({exc})") from None
    if not pages:
        raise InputError(source, "the image has no frames")
    return pages, frame_count


def _eight_bit(frame: Image.Image) -> Image.Image:
    """Greyscale frames stay one channel; 16-bit and float scans are stretched to 8 bits."""
    if frame.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        pixels = np.asarray(frame, dtype=np.float64)
        low, high = float(pixels.min()), float(pixels.max())
        scaled = (pixels - low) * (255.0 / max(high - low, 1e-9))
        return Image.fromarray(scaled.astype(np.uint8), "L")
    if frame.mode in ("1", "L", "LA"):
        return frame.convert("L")
    return frame.convert("RGB")
