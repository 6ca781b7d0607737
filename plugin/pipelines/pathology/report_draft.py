"""The narrative report draft of one slide read (markdown): the slide and its context as the header
words it, the model, how the slide was prepared (level, µm/px, tissue mask, sampling), every patch
the model was shown (level, region, frames), what it found with the patches each finding cites —
or, plainly, that its answer could not be read — and what was left out. Deterministic, so a re-run
with the same answer changes nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from plugin.results import Finding, ImageEvidence, InputProblem, ModelInfo, Narrative

from .prompts import context_lines, level_index, resolution_text
from .reading import SlideReading
from .slide import PreparedSlide

TITLE = "Whole-slide pathology: findings (AI draft)"
# Timings in the preparation's record are left out: a re-run must write the same draft (else every
# run would update it), and how long a fetch took says nothing about the result.


@dataclass(frozen=True)
class SlideRead:
    slide: PreparedSlide
    model: ModelInfo
    reading: SlideReading | None  # None: the answer could not be read
    findings: tuple[Finding, ...]
    problems: tuple[InputProblem, ...]
    key: str
    cited: tuple[tuple[int, ...], ...] = ()  # per finding (same order): the patch numbers it cites


def report_narrative(read: SlideRead) -> Narrative:
    slide, model = read.slide, read.model
    lines = [f"### {TITLE}", "", f"- **Slide:** {_slide_line(slide)}"]
    lines += [f"- **{line.split(': ', 1)[0]}** (DICOM header): {line.split(': ', 1)[1]}"
              for line in context_lines(slide.context)]
    lines.append(f"- **Model:** {model.display or model.name}, version {model.version}"
                 + (" (TEST OUTPUT, not clinical: random test weights)" if model.test_weights else ""))
    lines += ["", "#### Preparation", "", *[f"- {note}" for note in preparation_notes(slide)]]
    lines += ["", "#### Patches shown to the model", "",
              "| Patch | Level | µm/px | Region (x, y in the level's pixels) | Frames | Tissue |",
              "|---|---|---|---|---|---|"]
    for patch in slide.patches:
        r = patch.region
        lines.append(f"| {patch.number} | {level_index(slide, patch)} | "
                     f"{resolution_text(patch.level.pixel_spacing_mm)} | "
                     f"{r.x0:g}–{r.x1:g}, {r.y0:g}–{r.y1:g} | "
                     f"{', '.join(str(f) for f in patch.frames)} | {patch.tissue_fraction:.0%} |")
    lines += ["", *_body(read)]
    if read.problems:
        lines += ["", "#### Not used or to check", ""]
        lines += [f"- {p.reason}" for p in read.problems]
    return Narrative(key=read.key, kind="report-draft", title=TITLE, text="\n".join(lines) + "\n",
                     media_type="text/markdown",
                     evidence=tuple(ImageEvidence(slide.study_uid, slide.series_uid, uid)
                                    for uid in slide.instances_used))


def preparation_notes(slide: PreparedSlide) -> list[str]:
    """What was done to the slide, one sentence each: the level and resolution the patches came
    from, the tissue mask's level, the patches and frames used — all from the typed slide — then
    the preparation's own record of its choices (mask method, threshold, sampling seed...)."""
    notes: list[str] = []
    used = sorted({level_index(slide, p) for p in slide.patches})
    for index in used:
        level = slide.levels[index]
        notes.append(f"patches from pyramid level {index} of {len(slide.levels)} "
                     f"({level.total_columns} x {level.total_rows} px, "
                     f"{resolution_text(level.pixel_spacing_mm)}), instance {level.instance_uid}")
    thumb = slide.thumbnail_level
    notes.append(f"tissue mask computed on instance {thumb.instance_uid} "
                 f"({thumb.total_columns} x {thumb.total_rows} px, {thumb.image_type or 'level'})")
    frames = sum(len(f) for f in slide.frames_used.values())
    notes.append(f"{len(slide.patches)} patch{'es' * (len(slide.patches) != 1)} shown, "
                 f"from {frames} frame{'s' * (frames != 1)} fetched for them")
    sampling = sampling_note(slide.choices)
    if sampling:
        notes.append(sampling)
    return notes


def sampling_note(choices: dict[str, Any]) -> str:
    """The mask and sampling choices the reader recorded, as one sentence (only what it recorded;
    no timings, byte counts or addresses, which differ between runs or say nothing clinical)."""
    parts = []
    mask = choices.get("mask")
    if isinstance(mask, dict) and mask.get("method"):
        tissue = mask.get("tissue_fraction")
        parts.append(f"tissue mask {mask['method']}"
                     + (f", threshold {mask['threshold']}" if mask.get("threshold") is not None else "")
                     + (f", {float(tissue):.1%} of the slide tissue"
                        if isinstance(tissue, int | float) else ""))
    if choices.get("target_um_per_px") is not None:
        parts.append(f"target {choices['target_um_per_px']} µm/px")
    if choices.get("patch_px"):
        parts.append(f"patches of {choices['patch_px']} px"
                     + (f" with at least {float(choices['min_tissue']):.0%} tissue"
                        if isinstance(choices.get("min_tissue"), int | float) else ""))
    if choices.get("candidates") is not None:
        regions = choices.get("tissue_regions")
        parts.append(f"{choices['candidates']} candidate places"
                     + (f" in {len(regions)} tissue region{'s' * (len(regions) != 1)}"
                        if isinstance(regions, list) else ""))
    if isinstance(choices.get("patches_per_region"), list):
        parts.append("patches per region " + ", ".join(map(str, choices["patches_per_region"])))
    if choices.get("seed") is not None:
        parts.append(f"sampling seed {choices['seed']}")
    return "; ".join(parts)


def _body(read: SlideRead) -> list[str]:
    if read.reading is None:
        return ["**The model's answer could not be read, so nothing was taken from it.** No "
                "finding is written; see below for why."]
    lines = ["#### Findings", ""]
    lines += [_finding_line(f, cited) for f, cited in zip(read.findings, read.cited, strict=True)
              ] or ["- none reported"]
    if read.reading.impression:
        lines += ["", "#### Impression", "", read.reading.impression]
    return lines


def _finding_line(finding: Finding, cited: tuple[int, ...]) -> str:
    details = "" if finding.abnormal is None else (" (abnormal)" if finding.abnormal else " (normal)")
    return (f"- {finding.text}{details} — patch{'es' * (len(cited) != 1)} "
            f"{', '.join(str(n) for n in cited)}")


def _slide_line(slide: PreparedSlide) -> str:
    started = slide.started.date().isoformat() if slide.started else "date unknown"
    return (f"{slide.source.versioned_reference}, {started}; series {slide.series_uid}, "
            f"{len(slide.levels)} pyramid level{'s' * (len(slide.levels) != 1)}")
