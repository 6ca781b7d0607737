"""How the model's answer about a slide is read: JSON findings, each citing the patches that show
it, and an impression.

An answer with no readable JSON raises AnswerFormatError (the pipeline reports it and writes no
finding). Each finding is then checked against the patches the model was actually shown
(`check_citations`): a citation of a patch not shown — a number out of range, or a citation that
is not a patch number at all — is dropped and listed; a finding left citing nothing is withheld
and listed. Trust over recall: nothing is written that no shown patch supports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from plugin.engines.answers import finding_fields, listed_items, short

_LIST_KEYS = ("findings", "results", "items")
_CITE_KEYS = ("patches", "patch", "cited_patches", "evidence")
_PATCH = re.compile(r"^\s*(?:patch\s*#?\s*)?(\d+)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class ReadFinding:
    """One finding as the model wrote it: `patches` the numbers it cited that read as patch
    numbers, `unreadable` the citations that did not (kept to be reported)."""

    text: str
    abnormal: bool | None = None
    patches: tuple[int, ...] = ()
    unreadable: tuple[str, ...] = ()


@dataclass(frozen=True)
class SlideReading:
    findings: tuple[ReadFinding, ...] = ()
    impression: str = ""
    unusable: tuple[str, ...] = ()  # one line per item that could not be read


@dataclass(frozen=True)
class CheckedFinding:
    """A finding kept: the patches it cites that were shown, in the order cited."""

    number: int  # its place in the answer, from 1
    finding: ReadFinding
    patches: tuple[int, ...]


@dataclass(frozen=True)
class Checked:
    kept: tuple[CheckedFinding, ...]
    problems: tuple[str, ...]  # every citation dropped and every finding withheld, one line each


def read_answer(answer: str) -> SlideReading:
    """The answer read into findings with their citations. Raises AnswerFormatError."""
    items, impression = listed_items(answer, _LIST_KEYS)
    findings: list[ReadFinding] = []
    unusable: list[str] = []
    for number, item in enumerate(items, 1):
        read = finding_fields(item, number)
        if isinstance(read, str):
            unusable.append(read)
            continue
        fields, text = read
        cited = next((fields[k] for k in _CITE_KEYS if k in fields), None)
        patches, unreadable = _citations(cited)
        findings.append(ReadFinding(
            text=text, abnormal=fields["abnormal"] if isinstance(fields.get("abnormal"), bool) else None,
            patches=patches, unreadable=unreadable))
    return SlideReading(findings=tuple(findings), impression=impression, unusable=tuple(unusable))


def check_citations(reading: SlideReading, shown: set[int]) -> Checked:
    """Each finding's citations against the patch numbers `shown`. Pure."""
    kept: list[CheckedFinding] = []
    problems: list[str] = []
    for number, finding in enumerate(reading.findings, 1):
        name = f"finding #{number} ({finding.text[:60]})"
        valid = tuple(p for p in finding.patches if p in shown)
        dropped = [f"PATCH {p}" for p in finding.patches if p not in shown]
        dropped += [repr(u) for u in finding.unreadable]
        if dropped:
            problems.append(f"{name} cites {', '.join(dropped)}: not a patch the model was shown; "
                            "that citation is left out")
        if not valid:
            problems.append(f"{name} is withheld: it cites no patch the model was shown, so "
                            "nothing on the slide supports it")
            continue
        kept.append(CheckedFinding(number, finding, valid))
    return Checked(tuple(kept), tuple(problems))


def _citations(value: Any) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """Patch numbers from 3, "PATCH 3", "3", [1, "patch 2"]; anything else is unreadable."""
    if value is None:
        return (), ()
    values = value if isinstance(value, list) else [value]
    numbers: list[int] = []
    unreadable: list[str] = []
    for entry in values:
        if isinstance(entry, int) and not isinstance(entry, bool):
            numbers.append(entry)
        elif isinstance(entry, str) and (match := _PATCH.match(entry)):
            numbers.append(int(match[1]))
        else:
            unreadable.append(short(entry))
    return tuple(dict.fromkeys(numbers)), tuple(unreadable)


