"""Make a scanned or photographed page easy for OCR: find the sheet in a photo and flatten its
perspective, straighten the text lines, size the text for Tesseract, even out the lighting,
binarise.

The geometric steps are composed into one warp of the original image, kept as a 3x3 matrix that
maps cleaned pixels back to original pixels, so OCR word boxes land where the words really are.
Every image made on the way is charged to the job's memory budget before it is made, and no step
may grow the page past a bound: a hostile page (a 100000x1 strip) cannot turn into gigabytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from plugin.budget import MemoryBudget
from plugin.errors import InputError

# Skew search: coarse steps over what scanners and hand-held photos produce, then a fine pass.
MAX_SKEW_DEG = 6.0
_COARSE_STEP, _FINE_STEP = 0.25, 0.05
# Pixels along the long side of the small copies that analyses work on (never OCR): text lines
# need the most; the sheet's outline and the lighting are coarse.
_ANALYSIS_SIZE, _SHEET_SIZE, _LIGHTING_SIZE = 1000, 500, 500
_EDGE_TRIM = 0.006  # fraction trimmed inside a found sheet edge, where the desk shows through
# The height of a text line Tesseract is given. Measured (bench/documents.py and the seeded scan):
# 28 px reads as many values as 36 px (more, on the seeded scan) on 40% fewer pixels.
TARGET_LINE_HEIGHT = 28.0
_MIN_SCALE, _MAX_SCALE = 0.5, 3.0
# Enlarging for OCR stops at this many pixels (a letter page at 600 dpi is 34 Mpx), or at the
# page's own size when that is larger.
MAX_CLEAN_PIXELS = 40_000_000
# The longest a page may be for its width: a till receipt is about 10:1; a 100000x1 strip is no
# page, and turning it by a few degrees would make it 10000 times larger.
MAX_ASPECT_RATIO = 30.0

Matrix = np.ndarray  # 3x3, maps cleaned (x, y, 1) to original pixels


@dataclass(frozen=True)
class CleanPage:
    image: Image.Image  # 8-bit greyscale, ready for OCR
    to_original: tuple[float, ...]  # the 3x3 matrix, row-major
    skew_deg: float
    sheet_found: bool  # a photo: the sheet was cut out of its background and flattened
    scale: float = 1.0  # how much the page was enlarged for OCR

    def original_box(self, x0: float, y0: float, x1: float, y1: float) -> tuple[float, ...]:
        """A cleaned-image box as the box around its corners in the original image."""
        matrix = np.array(self.to_original, dtype=np.float64).reshape(3, 3)
        corners = np.array([[x0, y0, 1], [x1, y0, 1], [x1, y1, 1], [x0, y1, 1]], dtype=np.float64)
        mapped = corners @ matrix.T
        xs, ys = mapped[:, 0] / mapped[:, 2], mapped[:, 1] / mapped[:, 2]
        return float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())


def page_shape_problem(width: int, height: int) -> str | None:
    """Why an image of this size cannot be a page, or None when it can."""
    if min(width, height) < 1 or max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        return (f"{width}x{height} pixels is not the shape of a page (its sides are more than "
                f"{MAX_ASPECT_RATIO:.0f} times as long as each other)")
    return None


def clean_page(image: Image.Image, budget: MemoryBudget | None = None) -> CleanPage:
    """The page flattened, straightened, enlarged (or shrunk) until its text lines are the height
    Tesseract reads best, evened out and binarised."""
    budget = budget if budget is not None else MemoryBudget("page image")
    problem = page_shape_problem(*image.size)
    if problem is not None:
        raise InputError(budget.source, problem)
    pixels = image.width * image.height
    with budget.held(pixels, f"the page in grey ({image.width}x{image.height})"):
        return _clean(image.convert("L"), budget)


def _clean(gray: Image.Image, budget: MemoryBudget) -> CleanPage:
    corners = find_sheet(gray)
    if corners is not None:
        width, height = _sheet_size(corners)
        to_sheet = _homography(_rectangle(width, height), corners)
    else:
        width, height = gray.size
        to_sheet = np.eye(3)
    # Skew and text size are measured on a small flattened copy; the page is resampled once.
    preview_scale = min(1.0, _ANALYSIS_SIZE / max(width, height))
    preview = gray if corners is None else _warp(
        gray, to_sheet @ np.diag([1 / preview_scale, 1 / preview_scale, 1.0]),
        (max(1, round(width * preview_scale)), max(1, round(height * preview_scale))))
    angle, line_height = measure_text(preview)
    scale = _best_scale(line_height * max(width, height) / max(preview.size))
    to_straight, (straight_w, straight_h) = _rotation(width, height, angle)
    room = max(MAX_CLEAN_PIXELS, gray.width * gray.height)
    scale = min(scale, (room / max(straight_w * straight_h, 1)) ** 0.5)
    enlarge = np.diag([1 / scale, 1 / scale, 1.0])
    matrix = to_sheet @ to_straight @ enlarge
    size = (max(1, round(straight_w * scale)), max(1, round(straight_h * scale)))
    # Held at once: the lighting's float copy and result, the warped page, binarising's copies.
    working = 6 * gray.width * gray.height + 4 * size[0] * size[1]
    with budget.held(working, f"cleaning a {gray.width}x{gray.height} page into "
                              f"{size[0]}x{size[1]} for OCR"):
        # Lighting is evened out before enlarging: the same result on a third of the pixels.
        flat = flatten_background(gray)
        warped = flat if np.allclose(matrix, np.eye(3)) else _warp(flat, matrix, size)
        cleaned = erase_rules(binarise(warped), TARGET_LINE_HEIGHT)
    return CleanPage(cleaned, tuple(float(v) for v in matrix.ravel()), angle,
                     corners is not None, round(scale, 3))


def find_sheet(gray: Image.Image) -> np.ndarray | None:
    """The four corners (TL, TR, BR, BL; original pixels) of a bright sheet photographed on a
    darker surface, or None when the image is all page (a scan) or no clear sheet shows."""
    small, scale = _analysis_copy(gray, _SHEET_SIZE)
    pixels = np.asarray(small.filter(ImageFilter.GaussianBlur(1)), dtype=np.float64)
    paper = pixels > _otsu_threshold(pixels)
    # Open then close: drop bright specks on the desk and dark print on the sheet.
    mask = Image.fromarray((paper * 255).astype(np.uint8))
    mask = mask.filter(ImageFilter.MinFilter(3)).filter(ImageFilter.MaxFilter(3))
    mask = mask.filter(ImageFilter.MaxFilter(5)).filter(ImageFilter.MinFilter(5))
    paper = np.asarray(mask) > 127
    fraction = paper.mean()
    border = np.concatenate([paper[0], paper[-1], paper[:, 0], paper[:, -1]])
    if not 0.25 <= fraction <= 0.97 or border.mean() > 0.4:
        return None
    ys, xs = np.nonzero(paper)
    corners = np.array([
        _extreme(xs, ys, -(xs + ys)), _extreme(xs, ys, xs - ys),
        _extreme(xs, ys, xs + ys), _extreme(xs, ys, ys - xs),
    ], dtype=np.float64)
    if _polygon_area(corners) < 0.9 * paper.sum():  # not a quadrilateral: leave the photo alone
        return None
    centre = corners.mean(axis=0)
    corners = centre + (corners - centre) * (1 - 2 * _EDGE_TRIM)
    return (corners + 0.5) / scale - 0.5


def measure_text(gray: Image.Image) -> tuple[float, float]:
    """The rotation (degrees, counter-clockwise) that makes the text lines horizontal — the
    angle whose row profile of ink is sharpest — and the typical height of a line of text in
    pixels of `gray` (0 when no lines show)."""
    small, scale = _analysis_copy(gray)
    pixels = np.asarray(small, dtype=np.float64)
    inked = pixels < _otsu_threshold(pixels)
    if not inked.any():  # a blank page: every angle scores zero, so none is better than none
        return 0.0, 0.0
    ink = Image.fromarray((inked * 255).astype(np.uint8))

    def profile(angle: float) -> np.ndarray:
        rotated = np.asarray(ink.rotate(angle, resample=Image.Resampling.NEAREST))
        return rotated.sum(axis=1, dtype=np.float64) / 255.0

    def sharpness(angle: float) -> float:
        return float(np.sum(np.diff(profile(angle)) ** 2))

    coarse = np.arange(-MAX_SKEW_DEG, MAX_SKEW_DEG + 1e-9, _COARSE_STEP)
    best = max(coarse, key=sharpness)
    fine = np.arange(best - _COARSE_STEP, best + _COARSE_STEP + 1e-9, _FINE_STEP)
    angle = round(float(max(fine, key=sharpness)), 2)
    angle = 0.0 if abs(angle) < _FINE_STEP else angle
    return angle, _line_height(profile(angle), small.width) / scale


def _line_height(row_ink: np.ndarray, width: int) -> float:
    """Median height of the bands of rows that hold ink (text lines, once straightened)."""
    inked = np.concatenate([[False], row_ink > 0.01 * width, [False]])
    edges = np.flatnonzero(np.diff(inked.astype(np.int8)))
    heights = edges[1::2] - edges[::2]
    heights = heights[heights >= 3]
    return float(np.median(heights)) if len(heights) >= 5 else 0.0


def _best_scale(line_height: float) -> float:
    if line_height <= 0:
        return 1.0
    return float(np.clip(TARGET_LINE_HEIGHT / line_height, _MIN_SCALE, _MAX_SCALE))


def binarise(gray: Image.Image) -> Image.Image:
    """Black ink on white paper, split at Otsu's threshold (after the lighting is flattened one
    threshold fits the whole page)."""
    # Pillow's histogram and a lookup table: the same split as comparing every pixel in numpy,
    # without the page-sized int64 and bool copies (0.4 s of a 300 dpi page's cleanup).
    threshold = _threshold_of(np.asarray(gray.histogram(), dtype=np.float64))
    table = [255 if level > threshold else 0 for level in range(256)]
    return gray.point(table)


def erase_rules(binary: Image.Image, line_height: float) -> Image.Image:
    """The page without its ruled lines: runs of ink longer than five text lines, across or
    down the page (a table's grid), are painted white. Tesseract reads a cell's text poorly
    when the cell's borders touch it."""
    ink = np.asarray(binary) < 128
    length = max(int(5 * line_height), 10)
    rules = _long_runs(ink, length) | _long_runs(ink.T, length).T
    if not rules.any():
        return binary
    # A ruled line is a pixel or two thicker than its core run where it was anti-aliased.
    grown = rules.copy()
    grown[1:] |= rules[:-1]
    grown[:-1] |= rules[1:]
    grown[:, 1:] |= rules[:, :-1]
    grown[:, :-1] |= rules[:, 1:]
    pixels = np.asarray(binary).copy()
    pixels[grown] = 255
    return Image.fromarray(pixels, "L")


def _long_runs(ink: np.ndarray, length: int) -> np.ndarray:
    """The pixels of each row that lie in a horizontal run of ink at least `length` long (run
    lengths from where the ink starts and stops: one pass, no sliding window)."""
    edges = np.diff(np.pad(ink, ((0, 0), (1, 1))).astype(np.int8), axis=1)
    starts, stops = np.argwhere(edges == 1), np.argwhere(edges == -1)
    runs = np.zeros_like(ink)
    for (row, start), (_, stop) in zip(starts[stops[:, 1] - starts[:, 1] >= length],
                                       stops[stops[:, 1] - starts[:, 1] >= length], strict=True):
        runs[row, start:stop] = True
    return runs


def flatten_background(gray: Image.Image) -> Image.Image:
    """Divide out uneven lighting: each pixel relative to the paper brightness around it."""
    small, _ = _analysis_copy(gray, _LIGHTING_SIZE)
    paper = small.filter(ImageFilter.MaxFilter(5)).filter(ImageFilter.GaussianBlur(4))
    # One float copy of the page, worked on in place (a 34 Mpx scan would otherwise need five).
    gain = np.asarray(paper.resize(gray.size, Image.Resampling.BILINEAR), np.float32)
    np.maximum(gain, 1.0, out=gain)
    np.divide(255.0, gain, out=gain)
    np.multiply(gain, np.asarray(gray), out=gain)
    np.minimum(gain, 255.0, out=gain)
    return Image.fromarray(gain.astype(np.uint8), "L")


def _analysis_copy(gray: Image.Image, long_side: int = _ANALYSIS_SIZE) -> tuple[Image.Image, float]:
    """A copy at most `long_side` pixels long, and its scale."""
    scale = min(1.0, long_side / max(gray.size))
    if scale == 1.0:
        return gray, 1.0
    size = (max(1, round(gray.width * scale)), max(1, round(gray.height * scale)))
    return gray.resize(size, Image.Resampling.BOX), scale


def _otsu_threshold(pixels: np.ndarray) -> float:
    return _threshold_of(np.bincount(np.asarray(pixels, dtype=np.uint8).ravel(), minlength=256))


def _threshold_of(histogram: np.ndarray) -> float:
    """Otsu's threshold of a 256-level histogram."""
    weights = histogram / max(histogram.sum(), 1)
    below = np.cumsum(weights)
    mean_below = np.cumsum(weights * np.arange(256))
    total_mean = mean_below[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (total_mean * below - mean_below) ** 2 / (below * (1 - below))
    if np.all(np.isnan(between)):
        return -1.0  # one grey level only: no ink at all, everything is paper
    return float(np.nanargmax(between))


def _extreme(xs: np.ndarray, ys: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    i = int(np.argmax(score))
    return float(xs[i]), float(ys[i])


def _polygon_area(corners: np.ndarray) -> float:
    x, y = corners[:, 0], corners[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def _sheet_size(corners: np.ndarray) -> tuple[int, int]:
    tl, tr, br, bl = corners
    width = max(np.linalg.norm(tr - tl), np.linalg.norm(br - bl))
    height = max(np.linalg.norm(bl - tl), np.linalg.norm(br - tr))
    return round(width), round(height)


def _rectangle(width: int, height: int) -> np.ndarray:
    return np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float64)


def _homography(source: np.ndarray, target: np.ndarray) -> Matrix:
    """The 3x3 matrix taking each `source` corner to its `target` corner."""
    rows, rhs = [], []
    for (sx, sy), (tx, ty) in zip(source, target, strict=True):
        rows.append([sx, sy, 1, 0, 0, 0, -tx * sx, -tx * sy])
        rows.append([0, 0, 0, sx, sy, 1, -ty * sx, -ty * sy])
        rhs.extend([tx, ty])
    solution = np.linalg.solve(np.array(rows, dtype=np.float64), np.array(rhs, dtype=np.float64))
    return np.append(solution, 1.0).reshape(3, 3)


def _rotation(width: int, height: int, angle: float) -> tuple[Matrix, tuple[int, int]]:
    """Matrix from the straightened image (expanded to hold the whole turned page) back to the
    unrotated one, and the straightened size. Positive angles turn counter-clockwise."""
    theta = np.deg2rad(angle)
    cos, sin = abs(np.cos(theta)), abs(np.sin(theta))
    new_w = round(width * cos + height * sin)
    new_h = round(width * sin + height * cos)
    c, s = np.cos(theta), np.sin(theta)
    # Image y points down, so a visually counter-clockwise turn of the content is this matrix
    # from output back to input.
    back = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=np.float64)
    to_centre = np.array([[1, 0, -new_w / 2], [0, 1, -new_h / 2], [0, 0, 1]], dtype=np.float64)
    from_centre = np.array([[1, 0, width / 2], [0, 1, height / 2], [0, 0, 1]], dtype=np.float64)
    return from_centre @ back @ to_centre, (new_w, new_h)


def _warp(gray: Image.Image, matrix: Matrix, size: tuple[int, int]) -> Image.Image:
    # Bilinear is enough before binarising, and an affine warp (no photo perspective) is
    # cheaper than a perspective one: together they halve the cleanup's largest step.
    normal = matrix / matrix[2, 2]
    if np.allclose(normal[2, :2], 0.0):
        return gray.transform(size, Image.Transform.AFFINE,
                              tuple(float(v) for v in normal.ravel()[:6]),
                              Image.Resampling.BILINEAR, fillcolor=255)
    return gray.transform(size, Image.Transform.PERSPECTIVE,
                          tuple(float(v) for v in normal.ravel()[:8]),
                          Image.Resampling.BILINEAR, fillcolor=255)
