"""Reading a generative model's answer: drop its thinking, find the JSON in what is left.

Models wrap JSON in ```json fences, put prose around it, leave trailing commas, or stop halfway.
`find_json` accepts the first three and refuses the last with a reason: a caller reports an answer
it cannot read, it never guesses at one.
"""

from __future__ import annotations

import json
import re
from typing import Any

# MedGemma thinks between these tokens before it answers; a block with no end ran out of tokens.
THOUGHT_START, THOUGHT_END = "<unused94>", "<unused95>"
_THOUGHT = re.compile(re.escape(THOUGHT_START) + r".*?(?:" + re.escape(THOUGHT_END) + r"|\Z)",
                      re.DOTALL)
_TURN_MARKERS = re.compile(r"<end_of_turn>|<start_of_turn>model|<eos>|<pad>|<bos>")
_FENCE = re.compile(r"```[ \t]*(?:json|JSON|javascript)?[ \t]*\n?(.*?)(?:```|\Z)", re.DOTALL)
_CLOSER = {"[": "]", "{": "}"}


class AnswerFormatError(ValueError):
    """The answer holds no JSON that can be read; the message says what was wrong."""


def strip_thoughts(answer: str) -> str:
    """The answer without thought blocks and chat-turn markers."""
    return _TURN_MARKERS.sub("", _THOUGHT.sub("", answer)).strip()


def find_json(answer: str, *, expect: type[list[Any]] | type[dict[str, Any]] | None = None) -> Any:
    """The first JSON value in `answer` (of type `expect` when given).

    Fenced blocks are tried first, then the whole text, then each bracketed span in them.
    Trailing commas are forgiven; anything else that does not parse is an AnswerFormatError.
    """
    text = strip_thoughts(answer)
    if not text:
        raise AnswerFormatError("the answer is empty once its thinking is removed")
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    problems: list[str] = []
    for candidate in candidates:
        for span, bracketed in _json_spans(candidate):
            try:
                value = _loads(span)
            except ValueError as exc:
                if bracketed:  # prose that is not JSON says nothing worth reporting
                    problems.append(str(exc))
                continue
            if expect is None or isinstance(value, expect):
                return value
            problems.append(f"found a JSON {type(value).__name__}, expected a {expect.__name__}")
    raise AnswerFormatError(problems[0] if problems else "no JSON array or object in the answer")


def _json_spans(text: str) -> list[tuple[str, bool]]:
    """The whole text, then each balanced [...] or {...} span in it (an unbalanced one runs to
    the end); each with whether it is a bracketed span."""
    spans = [(text.strip(), False)]
    start = 0
    while (found := _next_opening(text, start)) is not None:
        end = _matching_close(text, found)
        if end is None:
            spans.append((text[found:], True))  # unbalanced: let the parser say where it breaks
            break
        spans.append((text[found:end + 1], True))
        start = end + 1
    return [(span, bracketed) for span, bracketed in spans if span]


def _next_opening(text: str, start: int) -> int | None:
    positions = [i for i in (text.find("[", start), text.find("{", start)) if i >= 0]
    return min(positions) if positions else None


def _matching_close(text: str, start: int) -> int | None:
    """Index of the bracket closing the one at `start`, skipping brackets inside strings."""
    stack = [_CLOSER[text[start]]]
    in_string = escaped = False
    for i in range(start + 1, len(text)):
        char = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in _CLOSER:
            stack.append(_CLOSER[char])
        elif char in "]}":
            if char != stack.pop():
                return None
            if not stack:
                return i
    return None


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as first:
        repaired = _without_trailing_commas(text)
        if repaired != text:
            try:
                return json.loads(repaired)
            except json.JSONDecodeError:
                pass
        raise ValueError(f"not valid JSON: {first.msg} at line {first.lineno} column "
                         f"{first.colno}") from None


def _without_trailing_commas(text: str) -> str:
    """Drop commas that directly precede a closing bracket, outside strings."""
    out: list[str] = []
    in_string = escaped = False
    for i, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "," and text[i + 1:].lstrip()[:1] in ("]", "}"):
            continue
        out.append(char)
    return "".join(out)


# ---- findings answers: {"findings": [...], "impression": "..."} or a bare list -------------------

TEXT_KEYS = ("finding", "text", "description", "observation", "name")


def listed_items(answer: str, list_keys: tuple[str, ...]) -> tuple[list[Any], str]:
    """The items of a findings answer and its impression ("" when none): the JSON list itself, or
    the first list under `list_keys` of a JSON object (whose "impression" or "summary" is the
    impression). Raises AnswerFormatError."""
    found = find_json(answer)
    impression = ""
    if isinstance(found, dict):
        impression = one_line(found.get("impression") or found.get("summary") or "")
        listed = next((found[k] for k in list_keys if isinstance(found.get(k), list)), None)
        if listed is None:
            raise AnswerFormatError(f"the JSON object holds no list ({', '.join(list_keys)})")
        found = listed
    if not isinstance(found, list):
        raise AnswerFormatError(f"expected a JSON list, got {type(found).__name__}")
    return found, impression


def finding_fields(item: Any, number: int) -> tuple[dict[str, Any], str] | str:
    """A finding item's fields (keys lower-cased, spaces as underscores) and its text, or why it
    cannot be used (one line)."""
    if not isinstance(item, dict):
        return f"finding #{number} is not an object: {short(item)}"
    fields = {str(k).strip().lower().replace(" ", "_"): v for k, v in item.items()}
    text = one_line(next((fields[k] for k in TEXT_KEYS if fields.get(k)), ""))
    if not text:
        return f"finding #{number} has no text: {short(item)}"
    return fields, text


def one_line(value: Any) -> str:
    """A string value with its whitespace collapsed; "" for anything else."""
    return " ".join(value.split()) if isinstance(value, str) else ""


def short(item: object) -> str:
    """An item as quoted in a problem line, at most 80 characters."""
    text = repr(item) if not isinstance(item, str) else item
    return text if len(text) <= 80 else text[:77] + "..."
