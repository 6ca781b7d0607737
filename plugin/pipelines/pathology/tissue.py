"""The tissue mask of a slide, from its thumbnail level: Otsu's threshold on HSV saturation.

    tissue_mask(rgb) -> TissueMask(mask, threshold, ...)

Stained tissue is coloured (H&E: pink/purple, saturation ~0.3-0.6) and glass is white or grey
(saturation near 0), so one threshold on saturation separates them whatever the slide's
brightness. Otsu picks it from the thumbnail's own histogram; a floor keeps a slide that is
almost all glass from having its JPEG noise called tissue. Measured against the synthetic
slides' drawn truth in docs/pathology.md ("Tissue mask").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

METHOD = "otsu-hsv-saturation"
# Saturation (0-255) below which nothing is tissue, whatever Otsu says: white glass under JPEG
# noise stays under ~10; the palest eosin is above ~40.
SATURATION_FLOOR = 20


@dataclass(frozen=True)
class TissueMask:
    mask: np.ndarray  # bool, the thumbnail's rows x columns
    threshold: int  # saturation (0-255) above which a pixel is tissue
    otsu: int  # Otsu's own threshold, before the floor
    fraction: float  # of the thumbnail that is tissue


def saturation(rgb: np.ndarray) -> np.ndarray:
    """HSV saturation scaled to 0-255: (max - min) / max of the channels."""
    high = rgb.max(axis=2).astype(np.int32)
    low = rgb.min(axis=2).astype(np.int32)
    return np.where(high > 0, (high - low) * 255 // np.maximum(high, 1), 0).astype(np.uint8)


def otsu_threshold(values: np.ndarray) -> int:
    """Otsu's threshold of uint8 values: the t maximising the between-class variance of
    values <= t and values > t."""
    histogram = np.bincount(values.ravel(), minlength=256).astype(np.float64)
    total = histogram.sum()
    if total == 0:
        return 0
    levels = np.arange(256, dtype=np.float64)
    weight_low = np.cumsum(histogram)
    mass_low = np.cumsum(histogram * levels)
    weight_high = total - weight_low
    mean_low = np.divide(mass_low, weight_low, out=np.zeros(256), where=weight_low > 0)
    mean_high = np.divide(mass_low[-1] - mass_low, weight_high, out=np.zeros(256), where=weight_high > 0)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return int(np.argmax(between))


def tissue_mask(rgb: np.ndarray) -> TissueMask:
    sat = saturation(rgb)
    otsu = otsu_threshold(sat)
    threshold = max(otsu, SATURATION_FLOOR)
    mask = sat > threshold
    fraction = float(mask.mean()) if mask.size else 0.0
    return TissueMask(mask=mask, threshold=threshold, otsu=otsu, fraction=fraction)
