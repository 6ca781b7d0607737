"""Checking a model's cited sentences against the digest: what may be shown, what is withheld.

The model answers with JSON: a list of sentences, each `{"problem": ..., "text": ..., "cites":
["L3", ...]}`. A sentence is kept only when it cites at least one line, every line it cites
exists, and every number and date it states appears in the text of the lines it cites — which
are read from the cited resources. A problem heading is a grouping, not a claim about one line:
its numbers ("Type 2 diabetes") must appear somewhere in the digest. Anything else is withheld
with the reason. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from plugin.engines.answers import find_json
from plugin.pipelines.summary.digest import NumberedLine

_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*(?![\w])")
_LINE_ID = re.compile(r"\bL\d+\b")


@dataclass(frozen=True)
class CitedSentence:
    problem: str
    text: str
    cites: tuple[str, ...]  # line ids, as the model gave them
    refs: tuple[str, ...]  # the versioned references of those lines


@dataclass(frozen=True)
class Withheld:
    text: str
    reason: str


@dataclass(frozen=True)
class CheckedAnswer:
    kept: tuple[CitedSentence, ...]
    withheld: tuple[Withheld, ...]

    @property
    def cited_refs(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(ref for s in self.kept for ref in s.refs))


def check_answer(answer: str, lines: Mapping[str, NumberedLine]) -> CheckedAnswer:
    """Read the model's JSON and check each sentence. An unreadable answer (no JSON, cut off)
    raises plugin.engines.answers.AnswerFormatError."""
    found = find_json(answer, expect=list)
    kept: list[CitedSentence] = []
    withheld: list[Withheld] = []
    everything = " ".join(n.line.text for n in lines.values())
    for entry in found:
        sentence, reason = _check_entry(entry, lines, everything)
        if sentence is not None:
            kept.append(sentence)
        else:
            withheld.append(Withheld(_entry_text(entry), reason))
    return CheckedAnswer(tuple(kept), tuple(withheld))


def _check_entry(entry: Any, lines: Mapping[str, NumberedLine],
                 everything: str) -> tuple[CitedSentence | None, str]:
    if not isinstance(entry, dict) or not isinstance(entry.get("text"), str) or not entry["text"].strip():
        return None, "not a sentence object with a text"
    text = " ".join(entry["text"].split())
    problem = " ".join(str(entry.get("problem") or "").split())
    cites = entry.get("cites")
    if not isinstance(cites, list) or not cites or not all(isinstance(c, str) for c in cites):
        return None, "cites no digest line"
    cites = [c.strip() for c in cites]
    missing = [c for c in cites if c not in lines]
    if missing:
        return None, f"cites line(s) that do not exist: {', '.join(missing[:5])}"
    source = " ".join(lines[c].line.text for c in cites)
    unsupported = unsupported_values(_LINE_ID.sub(" ", text), source)
    if unsupported:
        return None, f"states {', '.join(unsupported[:5])}, not in the cited resources"
    unsupported = unsupported_values(_LINE_ID.sub(" ", problem), everything)
    if unsupported:
        return None, f"its heading states {', '.join(unsupported[:5])}, not in the chart"
    refs = tuple(dict.fromkeys(ref for c in cites for ref in lines[c].line.refs))
    return CitedSentence(problem, text, tuple(dict.fromkeys(cites)), refs), ""


def unsupported_values(claim: str, source: str) -> list[str]:
    """The dates and numbers in `claim` that `source` does not contain (7.20 matches 7.2; a
    date must match whole, and the parts of a date are not numbers: "3" is not in 2019-03-04)."""
    source_dates = set(_DATE.findall(source))
    source_numbers = {_canonical(n) for n in _NUMBER.findall(_DATE.sub(" ", source))}
    missing = [d for d in _DATE.findall(claim) if d not in source_dates]
    for number in _NUMBER.findall(_DATE.sub(" ", claim)):
        if _canonical(number) not in source_numbers:
            missing.append(number)
    return missing


def _canonical(number: str) -> str:
    plain = number.replace(",", "") if re.fullmatch(r"\d{1,3}(,\d{3})+", number) else number.replace(",", ".")
    try:
        return format(Decimal(plain).normalize(), "f")
    except InvalidOperation:
        return plain


def _entry_text(entry: Any) -> str:
    if isinstance(entry, dict) and isinstance(entry.get("text"), str):
        return " ".join(entry["text"].split())[:500]
    return str(entry)[:200]
