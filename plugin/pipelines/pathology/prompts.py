"""The user turn sent for one whole slide: the slide's context as its DICOM header words it, then
each patch followed by its label, then the request for findings that cite the patches.

A patch's label says where it came from, in the model's terms and a reader's: its number (what the
answer cites), the resolution in µm per pixel (from the level's PixelSpacing; "resolution not
stated" when the header has none), and its region in the level's total pixel matrix. Nothing in a
label is guessed: the magnification a scanner would call it is left out, since the header does
not give it. Gemma 3 has no system role: all of it is the user's turn.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from .slide import Patch, PreparedSlide, SlideContext

if TYPE_CHECKING:
    from PIL.Image import Image

INTRO = ("You are shown {count} patches of one whole-slide histopathology image (a digitised glass "
         "slide), each image followed by its label. The patches were sampled over the tissue of the "
         "slide.")
_CONTEXT = {"specimen": "Specimen", "stain": "Stain", "body_site": "Body site",
            "container": "Slide"}
_CONTEXT_INTRO = "From the slide's DICOM header:"
LABEL = "PATCH {number} ({resolution}, region x {x0}-{x1}, y {y0}-{y1} of pyramid level {level})"
FINDINGS = """Describe the histopathological findings of this slide, normal and abnormal.
Answer with JSON only, in this form:
{"findings": [{"finding": "...", "abnormal": true, "patches": [1, 3]}], "impression": "..."}
Rules:
- one object per finding, in the words a pathologist would use;
- "patches" are the PATCH numbers where the finding is seen: cite only patches shown above;
  a finding that no patch shows must be left out;
- "abnormal" is false for a normal finding;
- "impression" sums up the slide in one or two sentences."""

# Identifies the prompt and the answer reader: a change updates results, it does not duplicate.
PROMPT_VERSION = hashlib.sha256("|".join(
    (INTRO, _CONTEXT_INTRO, *_CONTEXT.values(), LABEL, FINDINGS, "reader-1")).encode()).hexdigest()[:8]


def slide_parts(slide: PreparedSlide) -> list[Image | str]:
    """The user turn for `slide`: the introduction and context, each patch then its label, the
    request last."""
    parts: list[Image | str] = [_introduction(slide)]
    for patch in slide.patches:
        parts += [patch.image, patch_label(patch, level_index(slide, patch))]
    parts.append(FINDINGS)
    return parts


def patch_label(patch: Patch, level: int) -> str:
    """"PATCH 3 (0.5 µm/px, region x 4096-4992, y 2048-2944 of pyramid level 1)"."""
    region = patch.region
    return LABEL.format(number=patch.number, resolution=resolution_text(patch.level.pixel_spacing_mm),
                        x0=_int(region.x0), x1=_int(region.x1), y0=_int(region.y0),
                        y1=_int(region.y1), level=level)


def resolution_text(spacing_mm: tuple[float, float] | None) -> str:
    """µm per pixel from PixelSpacing (mm): one value when rows and columns agree."""
    if spacing_mm is None:
        return "resolution not stated"
    rows, columns = (round(v * 1000, 4) for v in spacing_mm)
    return f"{rows:g} µm/px" if rows == columns else f"{rows:g} x {columns:g} µm/px"


def level_index(slide: PreparedSlide, patch: Patch) -> int:
    """The patch's pyramid level as its place among the slide's levels (0 = the base)."""
    for index, level in enumerate(slide.levels):
        if level.instance_uid == patch.level.instance_uid:
            return index
    raise ValueError(f"patch {patch.number} comes from instance {patch.level.instance_uid}, "
                     "which is not among the slide's levels")


def context_lines(context: SlideContext) -> list[str]:
    """"Stain: hematoxylin, eosin" for each part the header gives, as written there."""
    return [f"{name}: {' '.join(value.split())}" for key, name in _CONTEXT.items()
            if (value := str(getattr(context, key, "") or "")).strip()]


def _introduction(slide: PreparedSlide) -> str:
    text = INTRO.format(count=len(slide.patches))
    lines = context_lines(slide.context)
    if lines:
        text += "\n" + _CONTEXT_INTRO + "\n" + "\n".join(f"- {line}" for line in lines)
    return text


def _int(value: float) -> str:
    return f"{value:g}"
