"""PNG, JPEG and (multi-page) TIFF attachments as page images, each frame's size and shape checked
and its memory charged to the job's budget from its header, before any pixel is decoded."""

from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from plugin.budget import MemoryBudget
from plugin.errors import InputError

from .scan_cleanup import page_shape_problem

_FORMAT_NAMES = ((b"\x89PNG", "PNG"), (b"\xff\xd8", "JPEG"), (b"II", "TIFF"), (b"MM", "TIFF"))
_GREY_MODES = frozenset({"1", "L", "LA", "I;16", "I;16B", "I;16L", "I", "F"})
_WIDE_MODES = frozenset({"I;16", "I;16B", "I;16L", "I", "F"})
# Pillow's plugins raise many types on a damaged file (TypeError "Missing dimensions" from a
# TIFF without a width, struct.error, EOFError, ...): all mean the file is corrupt.
_DAMAGED = (OSError, SyntaxError, ValueError, TypeError, KeyError, IndexError, EOFError,
            struct.error, ZeroDivisionError, UserWarning)


def image_pages(data: bytes, *, source: str, max_pages: int, max_page_pixels: int,
                budget: MemoryBudget | None = None) -> tuple[list[Image.Image], int]:
    """The first `max_pages` frames as 8-bit images ("L" or "RGB", upright per EXIF) and the
    number of frames the file holds. Each returned frame stays charged to `budget`: the caller
    releases `image_bytes(frame)` when it drops one."""
    budget = budget if budget is not None else MemoryBudget(source)
    name = next((fmt for magic, fmt in _FORMAT_NAMES if data.startswith(magic)), "image")
    try:
        opened = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own guard fired first (it warns, or refuses outright when twice its limit).
        raise InputError(source, f"the image is too large to open safely ({exc})") from None
    except UnidentifiedImageError:
        raise InputError(source, f"corrupt {name} (no image decoder recognises its header)") \
            from None
    except _DAMAGED as exc:
        raise InputError(source, f"corrupt {name} (its header cannot be read: "
                                 f"{_describe(exc)})") from None
    pages: list[Image.Image] = []
    try:
        with opened:
            name = opened.format or name
            try:
                frame_count = int(getattr(opened, "n_frames", 1))
            except _DAMAGED as exc:
                raise InputError(source, f"corrupt {name} (its list of pages cannot be read: "
                                         f"{_describe(exc)})") from None
            for index in range(min(frame_count, max_pages)):
                try:
                    opened.seek(index)
                except EOFError:
                    break
                except _DAMAGED as exc:
                    raise InputError(source, f"corrupt {name} (page {index + 1} cannot be found: "
                                             f"{_describe(exc)})") from None
                pages.append(_decode_frame(opened, index + 1, name, source, max_page_pixels,
                                           budget))
    except BaseException:
        budget.release(sum(image_bytes(page) for page in pages))
        raise
    if not pages:
        raise InputError(source, "the image has no frames")
    return pages, frame_count


def image_bytes(image: Image.Image) -> int:
    """The memory an 8-bit image's pixels take."""
    return image.width * image.height * len(image.getbands())


def _decode_frame(opened: Image.Image, number: int, name: str, source: str,
                  max_page_pixels: int, budget: MemoryBudget) -> Image.Image:
    """One frame decoded once its header says it fits: pixel limit, page shape, then memory."""
    width, height = opened.size
    if width * height > max_page_pixels:
        raise InputError(source, f"page {number} is {width}x{height} pixels, over the "
                                 f"{max_page_pixels}-pixel limit")
    problem = page_shape_problem(width, height)
    if problem is not None:
        raise InputError(source, f"page {number} is refused: {problem}")
    pixels = width * height
    kept = pixels * (1 if opened.mode in _GREY_MODES else 3)
    # The decoded frame as stored, plus the float copy a 16-bit scan is stretched through or
    # the copy turning it upright makes.
    stored = pixels * len(opened.getbands()) * (4 if opened.mode in _WIDE_MODES else 1)
    working = stored + pixels * (8 if opened.mode in _WIDE_MODES else len(opened.getbands()))
    budget.charge(kept, f"page {number} ({width}x{height} pixels)")
    try:
        with budget.held(working, f"decoding page {number} ({width}x{height} {opened.mode})"):
            opened.load()
            return _eight_bit(ImageOps.exif_transpose(opened))
    except _DAMAGED as exc:
        budget.release(kept)
        raise InputError(source, f"corrupt {name} (page {number} cannot be decoded: "
                                 f"{_describe(exc)})") from None
    except BaseException:
        budget.release(kept)
        raise


def _eight_bit(frame: Image.Image) -> Image.Image:
    """Greyscale frames stay one channel; 16-bit and float scans are stretched to 8 bits."""
    if frame.mode in _WIDE_MODES:
        pixels = np.array(frame, dtype=np.float64)  # one copy, stretched in place
        low, high = float(pixels.min()), float(pixels.max())
        pixels -= low
        pixels *= 255.0 / max(high - low, 1e-9)
        return Image.fromarray(pixels.astype(np.uint8), "L")
    if frame.mode in ("1", "L", "LA"):
        return frame.convert("L")
    return frame.convert("RGB")


def _describe(exc: BaseException) -> str:
    message = str(exc).strip()
    return message or type(exc).__name__
