"""MedASR's spoken formatting ({period}, {comma}, {next line}, ...) -> punctuation and layout. Pure.

MedASR writes lower-case words and says punctuation and layout as brace tokens. The model
sometimes loses a brace or splits one ("{period", "period}", "{ period }", "{next" "line}"), so a
command is recognised by its words with either brace present. A brace token we do not know is
kept in the text as it was heard, never dropped: a reviewer sees it. Ordinary words are never
removed or reordered; only their case and the spacing around them change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# What each spoken command writes. Marks attach to the word before them; "open" marks attach to
# the word after.
PUNCTUATION = {
    "period": ".", "full stop": ".", "dot": ".",
    "comma": ",",
    "colon": ":",
    "semicolon": ";", "semi colon": ";",
    "question mark": "?",
    "exclamation mark": "!", "exclamation point": "!",
    "close paren": ")", "close parenthesis": ")", "right paren": ")", "right parenthesis": ")",
    "close bracket": "]", "close quote": "\u201d", "end quote": "\u201d", "unquote": "\u201d",
    "percent": "%", "percent sign": "%",
    "ellipsis": "\u2026",
}
OPENING = {
    "open paren": "(", "open parenthesis": "(", "left paren": "(", "left parenthesis": "(",
    "open bracket": "[", "open quote": "\u201c", "begin quote": "\u201c", "quote": "\u201c",
}
JOINING = {"hyphen": "-", "dash": "-", "slash": "/", "forward slash": "/"}
LAYOUT = {
    "next line": "\n", "new line": "\n", "newline": "\n",
    "new paragraph": "\n\n", "next paragraph": "\n\n", "paragraph": "\n\n",
}
COMMANDS = {**PUNCTUATION, **OPENING, **JOINING, **LAYOUT}
SENTENCE_END = {".", "?", "!"}
# How many words may stand between a "{" and its "}": the longest command, plus one to spare.
MAX_COMMAND_WORDS = max(len(name.split()) for name in COMMANDS) + 1

_BRACE_SPLIT = re.compile(r"([{}])")


@dataclass(frozen=True)
class Piece:
    """One unit of the formatted text: a word as heard, or a formatting command."""

    text: str
    command: str | None = None  # the mark/layout it writes; None for a word


def parse(raw: str) -> list[Piece]:
    """Split raw CTC text into words and recognised commands."""
    parts = _BRACE_SPLIT.sub(r" \1 ", raw).split()
    pieces: list[Piece] = []
    i = 0
    while i < len(parts):
        part = parts[i]
        if part == "{":
            close = _find_close(parts, i + 1)
            inner = " ".join(parts[i + 1:close]) if close is not None else ""
            if close is not None and inner in COMMANDS:
                pieces.append(Piece(inner, COMMANDS[inner]))
                i = close + 1
                continue
            length = _command_length(parts, i + 1)
            if length:  # "{period" (the "}" lost) or "{period the ..." (closed much later)
                name = " ".join(parts[i + 1:i + 1 + length])
                pieces.append(Piece(name, COMMANDS[name]))
                i += 1 + length
            elif close is not None:  # a brace token we do not know: keep it as heard
                pieces.append(Piece("{" + inner + "}"))
                i = close + 1
            else:
                pieces.append(Piece("{"))
                i += 1
            continue
        if part == "}":
            # "period}" or "next line}": the words just before were a command that lost its "{".
            if not _make_trailing_command(pieces):
                pieces.append(Piece("}"))
            i += 1
            continue
        pieces.append(Piece(part))
        i += 1
    return pieces


def render(pieces: list[Piece]) -> str:
    """Join words and commands into text: marks hug the word before, layout breaks lines,
    sentences start with a capital letter."""
    out: list[str] = []
    capitalise = True
    glue = True  # the next word attaches without a space (start, new line, after "(" or "-")
    for piece in pieces:
        mark = piece.command
        if mark is None:
            word = piece.text
            if capitalise and word[:1].isalpha():
                word = word[0].upper() + word[1:]
            out.append(word if glue else " " + word)
            capitalise, glue = False, False
        elif piece.text in LAYOUT:
            out.append(mark)
            capitalise, glue = True, True
        elif piece.text in OPENING:
            out.append(mark if glue else " " + mark)
            glue = True
        else:
            out.append(mark)
            glue = piece.text in JOINING
            capitalise = capitalise or mark in SENTENCE_END
    text = "".join(out)
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text)


def format_transcript(raw: str) -> str:
    """Raw MedASR text -> readable text (see the module docstring)."""
    text = render(parse(raw))
    # Layout commands at the very start or end of a dictation add nothing.
    return text.strip("\n")


def spoken_words(raw: str) -> list[str]:
    """The words of `raw` that are not formatting commands, in order (what must survive)."""
    return [p.text for p in parse(raw) if p.command is None]


def _find_close(parts: list[str], start: int) -> int | None:
    for j in range(start, min(len(parts), start + MAX_COMMAND_WORDS + 1)):
        if parts[j] == "}":
            return j
        if parts[j] == "{":
            return None
    return None


def _command_length(parts: list[str], start: int) -> int:
    """How many words from `start` name a known command (the longest such), or 0."""
    for length in range(MAX_COMMAND_WORDS, 0, -1):
        if start + length <= len(parts) and " ".join(parts[start:start + length]) in COMMANDS:
            return length
    return 0


def _make_trailing_command(pieces: list[Piece]) -> bool:
    """Turn the last words into a command when they name one (longest first)."""
    for length in range(min(MAX_COMMAND_WORDS, len(pieces)), 0, -1):
        tail = pieces[-length:]
        if any(p.command is not None for p in tail):
            continue
        name = " ".join(p.text for p in tail)
        if name in COMMANDS:
            pieces[-length:] = [Piece(name, COMMANDS[name])]
            return True
    return False
