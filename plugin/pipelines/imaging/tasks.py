"""The imaging tasks and how their answers are read.

    findings   a CT/MR volume or one projection image -> a list of findings and an impression
    question   a free-text question about the study -> the model's answer, as a narrative
    compare    the study and the patient's prior comparable one -> each finding's change
    localize   one projection image -> boxes for the structures or findings asked for

Answers are read with plugin.engines.answers: an answer with no readable JSON raises
AnswerFormatError (the pipeline reports it, and writes no finding); an item that is unusable is
reported on its own and the rest are kept. Nothing here guesses at what the model meant.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Literal, get_args

from plugin.engines.answers import (
    AnswerFormatError,
    finding_fields,
    listed_items,
    one_line,
    short,
    strip_thoughts,
)
from plugin.errors import ConfigError
from plugin.results import ChangeFromPrior

TaskKind = Literal["findings", "question", "compare", "localize"]
TASK_KINDS: tuple[TaskKind, ...] = get_args(TaskKind)
CHANGES: tuple[ChangeFromPrior, ...] = get_args(ChangeFromPrior)
_CHANGE_WORDS: dict[str, ChangeFromPrior] = {
    **{change: change for change in CHANGES},
    "unchanged": "stable", "no change": "stable", "better": "improved", "worse": "worsened",
    "progressed": "worsened", "increased": "worsened", "decreased": "improved",
}
_SITE_KEYS = ("body_site", "location", "site", "anatomy", "region")
_LIST_KEYS = ("findings", "results", "items", "changes", "boxes")
_SLICE = re.compile(r"(\d+)")


@dataclass(frozen=True)
class ImagingTask:
    """What to ask the model about a study. `question` is for "question"; `find` names the
    structures or findings to box for "localize"."""

    kind: TaskKind = "findings"
    question: str = ""
    find: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in TASK_KINDS:
            raise ConfigError(f"imaging task must be one of {', '.join(TASK_KINDS)}, not {self.kind!r}")
        if self.kind == "question" and not self.question.strip():
            raise ConfigError("the imaging question task needs a question")
        if self.kind == "localize" and not any(f.strip() for f in self.find):
            raise ConfigError("the imaging localize task needs at least one structure or finding "
                              "to find")
        if self.kind != "question" and self.question.strip():
            raise ConfigError(f"a question is only asked by the question task, not {self.kind!r}")
        if self.kind != "localize" and self.find:
            raise ConfigError(f"structures to find are only used by the localize task, not {self.kind!r}")

    @property
    def key(self) -> str:
        """Stable per task and its words: item keys (and so identifiers) start with it, so two
        different questions about one study write two results, and re-asking updates one."""
        if self.kind in ("findings", "compare"):
            return self.kind
        words = self.question.strip() if self.kind == "question" else "\n".join(
            f.strip() for f in self.find if f.strip())
        return f"{self.kind}-{hashlib.sha256(words.encode()).hexdigest()[:10]}"

    @property
    def job_pipeline(self) -> str:
        """The job queue's pipeline name: one job per study version and task."""
        return "imaging" if self.kind == "findings" else f"imaging-{self.key}"


@dataclass(frozen=True)
class ReadFinding:
    text: str
    body_site: str = ""
    abnormal: bool | None = None
    change: ChangeFromPrior | None = None
    slices: tuple[int, ...] = ()  # "SLICE n" labels the model cited


@dataclass(frozen=True)
class ReadBox:
    label: str
    box_2d: Any  # checked and converted by boxes.to_pixel_box


@dataclass(frozen=True)
class Reading:
    """What could be read from one answer, and what could not (one line per unusable item)."""

    findings: tuple[ReadFinding, ...] = ()
    boxes: tuple[ReadBox, ...] = ()
    impression: str = ""
    answer: str = ""  # the question task's text answer
    unusable: tuple[str, ...] = ()


def read_answer(task: ImagingTask, answer: str) -> Reading:
    """The answer of `task` read into findings, boxes or text. Raises AnswerFormatError."""
    if task.kind == "question":
        text = strip_thoughts(answer)
        if not text:
            raise AnswerFormatError("the answer is empty once its thinking is removed")
        return Reading(answer=text)
    found, impression = listed_items(answer, _LIST_KEYS)
    if task.kind == "localize":
        return _read_boxes(found)
    return _read_findings(found, impression, with_change=task.kind == "compare")


def _read_findings(items: list[Any], impression: str, *, with_change: bool) -> Reading:
    findings: list[ReadFinding] = []
    unusable: list[str] = []
    for number, item in enumerate(items, 1):
        read = finding_fields(item, number)
        if isinstance(read, str):
            unusable.append(read)
            continue
        fields, text = read
        change: ChangeFromPrior | None = None
        if with_change:
            said = one_line(fields.get("change", fields.get("status", ""))).lower()
            change = _CHANGE_WORDS.get(said)
            if change is None:
                unusable.append(f"finding #{number} ({text[:40]}) has no change from prior among "
                                f"{', '.join(CHANGES)}: {said or 'none given'}")
                continue
        findings.append(ReadFinding(
            text=text, body_site=one_line(next((fields[k] for k in _SITE_KEYS if fields.get(k)), "")),
            abnormal=fields["abnormal"] if isinstance(fields.get("abnormal"), bool) else None,
            change=change, slices=_slices(fields.get("slices", fields.get("slice")))))
    return Reading(findings=tuple(findings), impression=impression, unusable=tuple(unusable))


def _read_boxes(items: list[Any]) -> Reading:
    boxes: list[ReadBox] = []
    unusable: list[str] = []
    for number, item in enumerate(items, 1):
        if not isinstance(item, dict) or "box_2d" not in item:
            unusable.append(f"box #{number} has no box_2d: {short(item)}")
            continue
        label = one_line(item.get("label", ""))
        if not label:
            unusable.append(f"box #{number} has no label: {short(item)}")
            continue
        boxes.append(ReadBox(label=label, box_2d=item["box_2d"]))
    return Reading(boxes=tuple(boxes), unusable=tuple(unusable))


def _slices(value: Any) -> tuple[int, ...]:
    """Slice numbers from 12, "SLICE 12", [3, "SLICE 4"]; anything else gives none."""
    values = value if isinstance(value, list) else [value]
    numbers: list[int] = []
    for entry in values:
        if isinstance(entry, int) and not isinstance(entry, bool):
            numbers.append(entry)
        elif isinstance(entry, str) and (match := _SLICE.search(entry)):
            numbers.append(int(match[1]))
    return tuple(dict.fromkeys(numbers))


