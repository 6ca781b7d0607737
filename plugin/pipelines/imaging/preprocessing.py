"""Turn decoded DICOM pixel values into the images the model saw in training (pure, no I/O).

CT: stored values -> Hounsfield units (modality rescale) -> three windows packed into RGB:
R = -1024..1024 HU, G = -135..215 HU, B = 0..80 HU, each clipped and scaled to 0..255.
MR: one min-max over the whole volume to 0..255, the same value in R, G and B.
The modality LUT is pydicom's `apply_modality_lut`: the Modality LUT Sequence when there is one,
else RescaleSlope/RescaleIntercept. Projection radiographs: the modality LUT, then pydicom's
`apply_voi_lut` on the modality values (the VOI LUT Sequence, else the header's first window with
its VOILUTFunction: LINEAR, LINEAR_EXACT or SIGMOID), scaled from that function's output range to
0..255, MONOCHROME1 inverted so bone is bright, then padded to a square with zeros split evenly on
both sides. Volume slices larger than 512x512 are downscaled, keeping aspect.
Scaling rounds half up: value 127.5 becomes 128. A radiograph more than MAX_ASPECT_RATIO times
longer than wide is refused before padding (a 1x30000 strip would pad to a 30000x30000 square).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut

CT_WINDOWS: tuple[tuple[str, float, float], ...] = (
    ("R", -1024.0, 1024.0),
    ("G", -135.0, 215.0),
    ("B", 0.0, 80.0),
)
MAX_VOLUME_SIDE = 512
# Gemma 3's image processor resizes every image to 896x896, bilinear (REFERENCE.md; transformers'
# Gemma3ImageProcessor). A larger padded radiograph is resized to it before encoding, with the
# same filter, so the processor's own resize is then a no-op and the model sees the same pixels.
MODEL_IMAGE_SIDE = 896
# Long-leg and whole-spine radiographs are about 1:3; a strip beyond this is not a radiograph.
MAX_ASPECT_RATIO = 10


def _to_byte(values: np.ndarray) -> np.ndarray:
    """0..255 floats to uint8, rounding half up (np.round would round half to even)."""
    return np.floor(np.clip(values, 0.0, 255.0) + 0.5).astype(np.uint8)


def rescale(stored: np.ndarray, slope: float = 1.0, intercept: float = 0.0) -> np.ndarray:
    """The modality LUT as a linear rescale: stored values -> output units (HU for CT)."""
    return stored.astype(np.float64) * slope + intercept


def hu_dtype(stored: np.ndarray, slope: float = 1.0, intercept: float = 0.0) -> type[np.floating]:
    """The float type `rescale_hu` computes in: float32 when that gives the same window bytes
    as float64. With an integer slope and intercept every HU is an integer below 2**24 (exact in
    float32), the windows' bounds are integers, so a window's quotient (HU - low) x 255 /
    (high - low) is one correctly rounded division of exact integers and lies at least 1/700
    from any rounding boundary, far beyond float32's error. Otherwise float64."""
    if not (float(slope).is_integer() and float(intercept).is_integer()
            and stored.dtype.kind in "iub" and stored.size > 0):
        return np.float64
    largest = max(abs(float(stored.min())), abs(float(stored.max()))) * abs(slope) + abs(intercept)
    return np.float32 if largest < 2**24 else np.float64


def rescale_hu(stored: np.ndarray, slope: float = 1.0, intercept: float = 0.0) -> np.ndarray:
    """`rescale` for CT windowing in `hu_dtype`: half the working memory of every slice where
    float32 is exact (tests/unit/pipelines/imaging: exhaustive check over 16-bit values)."""
    dtype = hu_dtype(stored, slope, intercept)
    if dtype is np.float64:
        return rescale(stored, slope, intercept)
    return stored.astype(np.float32) * np.float32(slope) + np.float32(intercept)


def rescaled_range(stored: np.ndarray, slope: float = 1.0, intercept: float = 0.0) -> tuple[float, float]:
    """min and max of rescale(stored, slope, intercept) without making the float copy: the
    rescale is monotonic, so they are the rescaled extremes (the same float64 values)."""
    ends = rescale(np.array([stored.min(), stored.max()], dtype=stored.dtype), slope, intercept)
    return float(ends.min()), float(ends.max())


def window_to_byte(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Clip to [low, high] and scale linearly to 0..255."""
    if high <= low:
        raise ValueError(f"window {low}..{high} is empty")
    return _to_byte((np.clip(values, low, high) - low) * 255.0 / (high - low))


def ct_rgb(hu: np.ndarray) -> np.ndarray:
    """A CT slice in HU as (rows, cols, 3) uint8: one window per channel (CT_WINDOWS)."""
    return np.stack([window_to_byte(hu, low, high) for _, low, high in CT_WINDOWS], axis=-1)


def slope_intercept(ds: Dataset) -> tuple[float, float]:
    """RescaleSlope and RescaleIntercept, 1 and 0 when absent or empty."""
    return float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)


def modality_values(stored: np.ndarray, ds: Dataset, *, compact: bool = False) -> np.ndarray:
    """Stored values -> modality values (HU for CT) as pydicom's `apply_modality_lut` gives them:
    the Modality LUT Sequence when present, else the linear rescale (`compact`: in `hu_dtype`)."""
    if "ModalityLUTSequence" in ds:
        return np.asarray(apply_modality_lut(stored, ds), dtype=np.float64)
    slope, intercept = slope_intercept(ds)
    return rescale_hu(stored, slope, intercept) if compact else rescale(stored, slope, intercept)


def modality_work_dtype(stored: np.ndarray, ds: Dataset) -> type[np.floating]:
    """The float type `modality_values(..., compact=True)` computes in."""
    if "ModalityLUTSequence" in ds:
        return np.float64
    return hu_dtype(stored, *slope_intercept(ds))


def modality_range(stored: np.ndarray, ds: Dataset) -> tuple[float, float]:
    """min and max of the modality values; without a float copy for the (monotonic) rescale."""
    if "ModalityLUTSequence" in ds:
        values = apply_modality_lut(stored, ds)
        return float(np.min(values)), float(np.max(values))
    return rescaled_range(stored, *slope_intercept(ds))


def volume_min_max(volume: np.ndarray) -> tuple[float, float]:
    return float(np.min(volume)), float(np.max(volume))


def mr_gray(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """MR values min-max normalised with the whole volume's `low`/`high`, as (rows, cols, 3) uint8."""
    if high <= low:
        gray = np.zeros(values.shape, dtype=np.uint8)
    else:
        gray = _to_byte((values.astype(np.float64) - low) * 255.0 / (high - low))
    return np.repeat(gray[..., np.newaxis], 3, axis=-1)


@dataclass(frozen=True)
class ProjectionDisplay:
    """How a radiograph's values were made into display values (recorded in choices)."""

    voi: str  # "VOI LUT", "window C/W", or "min-max"
    window: tuple[float, float] | None
    inverted: bool


def linear_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2.1 'LINEAR' VOI function, output 0..1."""
    if width < 1:
        raise ValueError(f"window width {width} is below 1")
    scaled = (values - (center - 0.5)) / (width - 1) + 0.5
    return np.clip(scaled, 0.0, 1.0)


def projection_gray(stored: np.ndarray, ds: Dataset) -> tuple[np.ndarray, ProjectionDisplay]:
    """A monochrome radiograph's stored values -> display values 0..255 (bright = dense)."""
    if ds.get("PhotometricInterpretation", "MONOCHROME2") not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError(f"photometric interpretation {ds.PhotometricInterpretation} is not monochrome")
    values = modality_values(stored, ds)
    window: tuple[float, float] | None = None
    if "VOILUTSequence" in ds:
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        # A LUT is indexed by integers: the modality values are (integer stored values through an
        # integer LUT, or a rescale that is integral in practice); rounding keeps pydicom quiet.
        output = np.asarray(apply_voi_lut(np.rint(values).astype(np.int64), ds, index=0), dtype=np.float64)
        unit = np.clip(output / (2**bits - 1), 0.0, 1.0)
        voi = "VOI LUT"
    elif ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
        function = str(ds.get("VOILUTFunction", "") or "LINEAR").upper()
        if function == "LINEAR" and width < 1:
            raise ValueError(f"window width {width} is below 1")
        if width <= 0:
            raise ValueError(f"window width {width} is not positive")
        low, high = window_output_range(ds)
        output = np.asarray(apply_voi_lut(values, ds, index=0, prefer_lut=False), dtype=np.float64)
        unit = np.clip((output - low) / (high - low), 0.0, 1.0)
        window = (center, width)
        voi = "window C/W" if function == "LINEAR" else f"window C/W ({function})"
    else:
        low, high = float(values.min()), float(values.max())
        unit = (values - low) / (high - low) if high > low else np.zeros_like(values)
        voi = "min-max"
    inverted = ds.PhotometricInterpretation == "MONOCHROME1"
    if inverted:
        unit = 1.0 - unit
    return _to_byte(unit * 255.0), ProjectionDisplay(voi=voi, window=window, inverted=inverted)


def window_output_range(ds: Dataset) -> tuple[float, float]:
    """The range a window maps onto, as pydicom's `apply_windowing` chooses it (PS3.3
    C.11.2.1.2): the Modality LUT's output bits, else the stored range, rescaled when the header
    has a slope and intercept."""
    bits = int(ds.get("BitsStored") or ds.BitsAllocated)
    if ds.get("ModalityLUTSequence"):
        low, high = 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    elif int(ds.get("PixelRepresentation") or 0) == 0:
        low, high = 0.0, float(2**bits - 1)
    else:
        low, high = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    if ds.get("RescaleSlope") is not None and ds.get("RescaleIntercept") is not None:
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        low, high = low * slope + intercept, high * slope + intercept
    return min(low, high), max(low, high)


def pad_to_square(image: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """Zero-pad (rows, cols[, channels]) to a square, evenly on both sides (the odd pixel goes
    right/bottom). Returns the square and the (left, top) padding."""
    rows, cols = image.shape[:2]
    side = max(rows, cols)
    left, top = (side - cols) // 2, (side - rows) // 2
    pad = [(top, side - rows - top), (left, side - cols - left)] + [(0, 0)] * (image.ndim - 2)
    return np.pad(image, pad, mode="constant", constant_values=0), (left, top)


def to_rgb_image(pixels: np.ndarray) -> Image.Image:
    """(rows, cols) or (rows, cols, 3) uint8 -> an RGB PIL image."""
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., np.newaxis], 3, axis=-1)
    return Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8))


def fit_within(image: Image.Image, max_side: int = MAX_VOLUME_SIDE) -> Image.Image:
    """Downscale so neither side exceeds `max_side`, keeping the aspect ratio; never upscale."""
    width, height = image.size
    if max(width, height) <= max_side:
        return image
    scale = max_side / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def to_model_side(square: Image.Image, side: int = MODEL_IMAGE_SIDE) -> Image.Image:
    """A padded square larger than `side` resized to `side` x `side` (bilinear, as the model's
    processor does); never upscaled (the processor does that itself, and the request stays small)."""
    if square.width != square.height:
        raise ValueError(f"expected a square image, got {square.width}x{square.height}")
    if square.width <= side:
        return square
    return square.resize((side, side), Image.Resampling.BILINEAR)


def _first(value: object) -> float:
    """WindowCenter/WindowWidth may be multi-valued; the first pair is the default view."""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return float(value[0])  # type: ignore[index]
    return float(value)  # type: ignore[arg-type]
