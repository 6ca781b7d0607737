"""Spoken numbers in dictated words -> exact decimals, with the words they came from. Pure.

Dictation says numbers the way people speak them, and MedASR writes them as words:
"one hundred twenty-eight", "a hundred and four point five", the clinician's shorthand "one twenty
eight" (128) and "one oh five" (105), "ninety-four percent". Digits ("128", "37.5") are read too.
Every reading keeps the token span it came from, so a value can always be pointed at in the audio.

Tokens are the transcript's words, lower-cased, split at hyphens ("twenty-eight" is two tokens of
one word) and with MedASR's brace commands turned into either the word they stand for ("{percent}"
is "percent", "{slash}" is "slash") or a boundary that no number or phrase crosses ("{period}").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from plugin.pipelines.speech.formatting import COMMANDS

ONES = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
        "eight": 8, "nine": 9}
TEENS = {"ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
         "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19}
TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fourty": 40, "fifty": 50, "sixty": 60,
        "seventy": 70, "eighty": 80, "ninety": 90}
# "oh" is a digit only between digits ("one oh five", "point oh five"), never on its own.
DIGIT_WORDS = {**ONES, "oh": 0, "o": 0}
BOUNDARY = "|"
# Brace commands that are words of the sentence, not punctuation.
WORD_COMMANDS = {"percent": "percent", "percent sign": "percent", "slash": "slash",
                 "forward slash": "slash", "hyphen": "-", "dash": "-"}
_DIGITS = re.compile(r"^\d+(?:\.\d+)?$")
_STRIP = re.compile(r"^[^\w%/.]+|[^\w%]+$")


@dataclass(frozen=True)
class Token:
    """One spoken token and the index of the transcript word it is (part of)."""

    text: str
    word: int


@dataclass(frozen=True)
class SpokenNumber:
    """A number read from tokens [start, end) (token indices)."""

    value: Decimal
    start: int
    end: int


def tokenize(words: Sequence[str]) -> list[Token]:
    """The transcript's words as tokens (see the module docstring)."""
    tokens: list[Token] = []
    i = 0
    while i < len(words):
        raw = words[i].strip().lower()
        if "{" in raw or "}" in raw:
            consumed, command = _brace_command(words, i)
            mapped = WORD_COMMANDS.get(command)
            if mapped is None:
                tokens.append(Token(BOUNDARY, i))
            elif mapped != "-":  # a spoken hyphen joins its neighbours: no token of its own
                tokens.append(Token(mapped, i + consumed - 1))  # "{ percent }" ends at its "}"
            i += consumed
            continue
        for part in raw.replace("\u2013", "-").split("-"):
            text = _STRIP.sub("", part)
            ratio = text.split("/")
            if len(ratio) == 2 and all(_DIGITS.match(p) for p in ratio):  # "128/82" as digits
                tokens.extend([Token(ratio[0], i), Token("slash", i), Token(ratio[1], i)])
            elif text.endswith("%") and _DIGITS.match(text[:-1]):
                tokens.extend([Token(text[:-1], i), Token("percent", i)])
            elif text:
                tokens.append(Token(text, i))
            if part and part[-1] in ".,;:?!" and not _DIGITS.match(text):
                tokens.append(Token(BOUNDARY, i))  # written punctuation ends a phrase
        i += 1
    return tokens


def _brace_command(words: Sequence[str], i: int) -> tuple[int, str]:
    """How many words from i make one brace command, and its name ("" when unknown)."""
    for length in (3, 2, 1):
        if i + length > len(words):
            continue
        name = " ".join(w.strip().lower() for w in words[i:i + length]).strip("{} ")
        closed = "}" in words[i + length - 1]
        if name in COMMANDS and (closed or length == 1):
            return length, name
    return 1, words[i].strip().lower().strip("{} ")


def read_number(tokens: Sequence[Token], i: int) -> SpokenNumber | None:
    """The longest number starting at token i, or None. Reads cardinals ("one hundred and
    four"), the shorthand "one twenty eight" = 128 and "one oh five" = 105, decimals
    ("point five", "point oh five") and digits."""
    if i >= len(tokens):
        return None
    text = tokens[i].text
    if _DIGITS.match(text):
        return _decimal_tail(tokens, SpokenNumber(Decimal(text), i, i + 1))
    whole = _cardinal(tokens, i)
    if whole is None:
        return None
    value, end = whole
    if end == i + 1 and tokens[i].text in ONES and value > 0:
        group = _two_digit_group(tokens, end)
        if group is not None:  # "one twenty eight", "one oh five"
            value, end = value * 100 + group[0], group[1]
    return _decimal_tail(tokens, SpokenNumber(Decimal(value), i, end))


def numbers_in(tokens: Sequence[Token]) -> set[Decimal]:
    """Every number the tokens can be read as, from every start: the longest reading and each
    plain word ("one twenty eight" gives 128, 1, 20, 8 and 28)."""
    found: set[Decimal] = set()
    for i in range(len(tokens)):
        longest = read_number(tokens, i)
        if longest is not None:
            found.add(longest.value)
        plain = _cardinal(tokens, i)
        if plain is not None:
            found.add(Decimal(plain[0]))
    return found


def _cardinal(tokens: Sequence[Token], i: int) -> tuple[int, int] | None:
    """A cardinal below a million: "a hundred and four", "twenty-eight", "two thousand and
    twenty" -> (value, end)."""
    total, current, end, j = 0, None, i, i
    while j < len(tokens):
        word = tokens[j].text
        if current is None:
            small = _below_hundred(tokens, j)
            if small is not None:
                current, j = small
                end = j
                continue
            if word == "a" and j + 1 < len(tokens) and tokens[j + 1].text in ("hundred", "thousand"):
                current, j = 1, j + 1
                continue
            break
        if word == "hundred" and current < 10 and total % 1000 == 0:
            current *= 100
            j += 1
            end = j
            j = _skip_and(tokens, j)
            rest = _below_hundred(tokens, j)
            if rest is not None:
                current += rest[0]
                j = end = rest[1]
            continue
        if word == "thousand" and total == 0:
            total, current = current * 1000, None
            j += 1
            end = j
            j = _skip_and(tokens, j)
            continue
        break
    if end == i:
        return None
    return total + (current or 0), end


def _skip_and(tokens: Sequence[Token], j: int) -> int:
    return j + 1 if j < len(tokens) and tokens[j].text == "and" else j


def _below_hundred(tokens: Sequence[Token], j: int) -> tuple[int, int] | None:
    if j >= len(tokens):
        return None
    word = tokens[j].text
    if word in TENS:
        if j + 1 < len(tokens) and tokens[j + 1].text in ONES and tokens[j + 1].text != "zero":
            return TENS[word] + ONES[tokens[j + 1].text], j + 2
        return TENS[word], j + 1
    if word in TEENS:
        return TEENS[word], j + 1
    if word in ONES:
        return ONES[word], j + 1
    return None


def _two_digit_group(tokens: Sequence[Token], j: int) -> tuple[int, int] | None:
    """The "twenty eight" of "one twenty eight" or the "oh five" of "one oh five"."""
    if j >= len(tokens):
        return None
    word = tokens[j].text
    if word in TENS or word in TEENS:
        return _below_hundred(tokens, j)
    if word in ("oh", "o") and j + 1 < len(tokens) and tokens[j + 1].text in ONES:
        return ONES[tokens[j + 1].text], j + 2
    return None


def _decimal_tail(tokens: Sequence[Token], number: SpokenNumber) -> SpokenNumber:
    """`number` extended by "point five", "point one five", "point oh two" when they follow."""
    j = number.end
    if j >= len(tokens) or tokens[j].text != "point" or "." in str(number.value):
        return number
    digits = ""
    k = j + 1
    while k < len(tokens) and tokens[k].text in DIGIT_WORDS:
        digits += str(DIGIT_WORDS[tokens[k].text])
        k += 1
    if not digits and k < len(tokens) and tokens[k].text.isdigit():
        digits, k = tokens[k].text, k + 1
    if not digits:
        return number
    return SpokenNumber(Decimal(f"{int(number.value)}.{digits}"), number.start, k)
