"""The narrative report draft of one imaging run (markdown): the study and the images the model
was shown, the model, the task, what it found — or, plainly, that its answer could not be read —
and what was left out. Deterministic, so a re-run with the same answer changes nothing."""

from __future__ import annotations

from dataclasses import dataclass

from plugin.results import Box, Finding, ImageEvidence, InputProblem, ModelInfo, Narrative

from .prepared import PreparedStudy
from .tasks import ImagingTask, Reading

_KINDS = {"ct-volume": "CT volume", "mr-volume": "MRI volume", "projection": "projection radiograph"}
_TITLES = {
    "findings": "findings",
    "question": "answer to a question",
    "compare": "comparison with the prior study",
    "localize": "localisation",
}


@dataclass(frozen=True)
class StudyRead:
    task: ImagingTask
    study: PreparedStudy
    prior: PreparedStudy | None
    model: ModelInfo
    reading: Reading | None  # None: the answer could not be read
    findings: tuple[Finding, ...]
    problems: tuple[InputProblem, ...]
    key: str


def report_narrative(read: StudyRead) -> Narrative:
    study = read.study
    what = f"{study.modality} {study.body_part.lower()}".strip()
    title = f"{what}: {_TITLES[read.task.kind]} (AI draft)"
    lines = [f"### {title}", "", f"- **Study:** {_study_line(study)}"]
    if read.prior is not None:
        lines.append(f"- **Prior study:** {_study_line(read.prior)}")
    model = read.model
    lines.append(f"- **Model:** {model.display or model.name}, version {model.version}"
                 + (" (TEST OUTPUT, not clinical: random test weights)" if model.test_weights else ""))
    lines.append(f"- **Task:** {_task_line(read.task)}")
    lines += ["", *_body(read)]
    if read.problems:
        lines += ["", "#### Not used or to check", ""]
        lines += [f"- {p.reason}" for p in read.problems]
    return Narrative(key=read.key, kind="report-draft", title=title, text="\n".join(lines) + "\n",
                     media_type="text/markdown",
                     evidence=tuple(ImageEvidence(study.study_uid, uid, "")
                                    for uid in dict.fromkeys(i.series_uid for i in study.images)))


def _body(read: StudyRead) -> list[str]:
    if read.reading is None:
        return ["**The model's answer could not be read, so nothing was taken from it.** No "
                "finding is written; see below for why."]
    if read.task.kind == "question":
        return ["#### Answer", "", read.reading.answer]
    lines = ["#### Boxes" if read.task.kind == "localize" else "#### Findings", ""]
    lines += [_finding_line(f) for f in read.findings] or ["- none reported"]
    if read.task.kind == "localize":
        asked = {f.strip().lower() for f in read.task.find if f.strip()}
        missing = sorted(asked - {f.text.lower() for f in read.findings})
        if missing:
            lines += ["", f"Not located: {', '.join(missing)}."]
    if read.reading.impression:
        lines += ["", "#### Impression", "", read.reading.impression]
    return lines


def _finding_line(finding: Finding) -> str:
    details = [d for d in (finding.body_site, _abnormal(finding.abnormal),
                           finding.change and f"{finding.change} since prior") if d]
    line = f"- {finding.text}" + (f" ({'; '.join(details)})" if details else "")
    places = [_place(e) for e in finding.evidence if isinstance(e, ImageEvidence) and e.instance_uid]
    return line + (f" — {', '.join(places)}" if places else "")


def _place(evidence: ImageEvidence) -> str:
    where = (f"slice {evidence.slice_index + 1} of the series" if evidence.slice_index is not None
             else f"instance …{evidence.instance_uid[-8:]} frame {evidence.frame or 1}")
    return where + (f" box {_box(evidence.box)}" if evidence.box is not None else "")


def _box(box: Box) -> str:
    return f"x {box.x0:g}–{box.x1:g}, y {box.y0:g}–{box.y1:g} px"


def _abnormal(abnormal: bool | None) -> str:
    return "" if abnormal is None else ("abnormal" if abnormal else "normal")


def _task_line(task: ImagingTask) -> str:
    if task.kind == "question":
        return f"question: “{task.question.strip()}”"
    if task.kind == "localize":
        return "locate " + ", ".join(f"“{f.strip()}”" for f in task.find if f.strip())
    return _TITLES[task.kind]


def _study_line(study: PreparedStudy) -> str:
    started = study.started.date().isoformat() if study.started else "date unknown"
    kind = _KINDS.get(study.kind, study.kind)
    series = len({i.series_uid for i in study.images})
    shown = f"{len(study.images)} image{'s' * (len(study.images) != 1)} from {series} series"
    return f"{study.source.versioned_reference}, {kind}, {started}; the model was shown {shown}"
