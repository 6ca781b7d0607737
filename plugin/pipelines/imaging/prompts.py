"""The user turn each imaging task sends: images and texts in the order MedGemma was trained on.

Volumes (CT, MRI): the instruction first (naming the plane and slice order when the volume is
not axial), then each slice followed by its label ("SLICE i"), the question last. One
projection: the image, then the question. A comparison of projections: the prior image, then the
current one, then the question. Localisation: the padded image, then the
request for `box_2d` boxes (0..1000 of the padded square). Gemma 3 has no system role: all of it
is the user's turn.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

from .prepared import PreparedStudy
from .series_selection import SLICE_ORDER
from .tasks import CHANGES, ImagingTask

if TYPE_CHECKING:
    from PIL.Image import Image

_CT = ("You are shown a CT study of the {site}: {count} {plane} slices in order, each image followed "
       "by its label. Each slice packs three windows into its colour channels: red -1024 to 1024 "
       "HU, green -135 to 215 HU (soft tissue), blue 0 to 80 HU (brain).")
_MR = ("You are shown an MRI study of the {site}: {count} slices in order, each image followed by "
       "its label.")
_PROJECTION = "The image above is an X-ray of the {site}."
_COMPARE_PROJECTIONS = ("The first image above is the prior X-ray of the {site}; the second is the "
                        "current one.")
_COMPARE_VOLUMES = ("You are shown two {modality} studies of the {site}: first the prior study's "
                    "slices (labels start PRIOR), then the current study's (labels start CURRENT), "
                    "each image followed by its label.")
# A volume without an axial series is shown in the plane it was acquired in; the model is told.
_ACQUIRED_PLANE = (" The slices are {plane}, in the plane they were acquired in, ordered from the "
                   "patient's {first} to {last}.")

FINDINGS = """List the findings of this study, normal and abnormal.
Answer with JSON only, in this form:
{{"findings": [{{"finding": "...", "body_site": "...", "abnormal": true{slices}}}], "impression": "..."}}
Rules:
- one object per finding; "body_site" names the anatomy (e.g. "right lower lobe");
- "abnormal" is false for a normal finding;{slice_rule}
- "impression" sums up the study in one or two sentences."""
_SLICES = ', "slices": [12]'
_SLICE_RULE = '\n- "slices" are the SLICE numbers where the finding is best seen;'

COMPARE = """Compare the current study with the prior one. For each finding, say how it changed.
Answer with JSON only, in this form:
{{"findings": [{{"finding": "...", "body_site": "...", "change": "stable"}}], "impression": "..."}}
Rules:
- "change" is one of {changes}; "new" means not seen on the prior study,
  "resolved" not seen on the current one;
- "impression" sums up the change in one or two sentences."""

LOCALIZE = """Locate the following in the image: {targets}.
Answer with a JSON list only, one object per structure or finding you can see:
[{{"box_2d": [y0, x0, y1, x1], "label": "..."}}]
Rules:
- coordinates are normalised to 0-1000 of the image: [y0, x0] is the top-left corner, [y1, x1]
  the bottom-right corner;
- "label" is the name asked for; "left" is the patient's left;
- leave out anything you cannot see."""

QUESTION = "{question}"

# Identifies the prompts and the answer readers: a change updates results, it does not duplicate.
PROMPT_VERSION = hashlib.sha256("|".join(
    (_CT, _MR, _PROJECTION, _COMPARE_PROJECTIONS, _COMPARE_VOLUMES, _ACQUIRED_PLANE, FINDINGS,
     _SLICES, _SLICE_RULE, COMPARE, LOCALIZE, QUESTION, "reader-1")).encode()).hexdigest()[:8]


def task_parts(task: ImagingTask, study: PreparedStudy,
               prior: PreparedStudy | None = None) -> list[Image | str]:
    """The user turn for `task` on `study` (and `prior`, for a comparison)."""
    if task.kind == "compare":
        if prior is None:
            raise ValueError("a comparison needs the prior study")
        return _comparison(study, prior)
    if task.kind == "localize":
        if study.kind != "projection":
            raise ValueError("localisation needs a projection image")
        targets = ", ".join(json.dumps(f.strip()) for f in task.find if f.strip())
        return [study.images[0].image, LOCALIZE.format(targets=targets)]
    request = (QUESTION.format(question=task.question.strip()) if task.kind == "question"
               else _findings_request(study))
    if study.kind == "projection":
        return [study.images[0].image, _describe(_PROJECTION, study) + "\n" + request]
    return [_describe(_CT if study.kind == "ct-volume" else _MR, study), *_slices(study), request]


def _findings_request(study: PreparedStudy) -> str:
    volume = study.kind != "projection"
    return FINDINGS.format(slices=_SLICES if volume else "", slice_rule=_SLICE_RULE if volume else "")


def _comparison(study: PreparedStudy, prior: PreparedStudy) -> list[Image | str]:
    request = COMPARE.format(changes=", ".join(f'"{c}"' for c in CHANGES))
    if study.kind == "projection":
        return [prior.images[0].image, study.images[0].image,
                _describe(_COMPARE_PROJECTIONS, study) + "\n" + request]
    return [_describe(_COMPARE_VOLUMES, study), *_slices(prior, "PRIOR "),
            *_slices(study, "CURRENT "), request]


def _slices(study: PreparedStudy, prefix: str = "") -> list[Image | str]:
    parts: list[Image | str] = []
    for number, prepared in enumerate(study.images, 1):
        parts += [prepared.image, prefix + slice_label(prepared.label, number)]
    return parts


def slice_label(label: str, number: int) -> str:
    """The label that follows a volume's slice: as preparation named it, else "SLICE n"."""
    return label.strip() or f"SLICE {number}"


def _describe(template: str, study: PreparedStudy) -> str:
    site = study.body_part.strip().lower() or "body"
    modality = {"MR": "MRI"}.get(study.modality, study.modality)
    plane = str(study.choices.get("plane") or "axial")
    text = template.format(site=site, count=len(study.images), modality=modality, plane=plane)
    if study.kind != "projection" and plane != "axial":
        first, last = SLICE_ORDER[plane][1]
        text += _ACQUIRED_PLANE.format(plane=plane, first=first, last=last)
    return text
