"""A UCUM code reader (https://ucum.org/ucum, the case-sensitive syntax): "mg/dL", "10*3/uL",
"u[IU]/mL", "mL/min/{1.73_m2}", "mg/(24.h)" -> the dimension the unit measures.

Only what a lab report's unit can be is known: the SI base units, litre, the time units, %,
international units, enzyme units, equivalents and osmoles, pressures, pH, per-field counts and
the US customary weight and length. A code using anything else is refused rather than guessed.
Arbitrary units ([IU], [arb'U]) and [pH] are dimensions of their own: UCUM never converts them to
anything else, so 5 µIU/mL is not comparable with a count per µL.
"""

from __future__ import annotations

import re

Dimension = tuple[tuple[str, int], ...]  # sorted (base, exponent) pairs, no zero exponents


class UcumError(ValueError):
    """The text is not a UCUM code this reader knows."""


_LENGTH, _MASS, _TIME, _AMOUNT, _TEMPERATURE = "L", "M", "T", "N", "Θ"

# atom -> (dimension as {base: exponent}, may take a metric prefix)
_ATOMS: dict[str, tuple[dict[str, int], bool]] = {
    "m": ({_LENGTH: 1}, True),
    "g": ({_MASS: 1}, True),
    "s": ({_TIME: 1}, True),
    "mol": ({_AMOUNT: 1}, True),
    "K": ({_TEMPERATURE: 1}, True),
    "Cel": ({_TEMPERATURE: 1}, True),
    "[degF]": ({_TEMPERATURE: 1}, False),
    "L": ({_LENGTH: 3}, True),
    "l": ({_LENGTH: 3}, True),
    "min": ({_TIME: 1}, False),
    "h": ({_TIME: 1}, False),
    "d": ({_TIME: 1}, False),
    "wk": ({_TIME: 1}, False),
    "mo": ({_TIME: 1}, False),
    "a": ({_TIME: 1}, False),
    "Hz": ({_TIME: -1}, True),
    "%": ({}, False),
    "[ppm]": ({}, False),
    "[ppb]": ({}, False),
    "10*": ({}, False),
    "10^": ({}, False),
    "[IU]": ({"[IU]": 1}, True),
    "[iU]": ({"[IU]": 1}, True),
    "[arb'U]": ({"[arb'U]": 1}, False),
    "U": ({_AMOUNT: 1, _TIME: -1}, True),  # µmol/min
    "kat": ({_AMOUNT: 1, _TIME: -1}, True),
    "eq": ({_AMOUNT: 1}, True),
    "osm": ({_AMOUNT: 1}, True),
    "g%": ({_MASS: 1, _LENGTH: -3}, True),
    "Pa": ({_MASS: 1, _LENGTH: -1, _TIME: -2}, True),
    "bar": ({_MASS: 1, _LENGTH: -1, _TIME: -2}, True),
    "m[Hg]": ({_MASS: 1, _LENGTH: -1, _TIME: -2}, True),
    "[pH]": ({"[pH]": 1}, False),
    "[HPF]": ({"[HPF]": 1}, False),
    "[LPF]": ({"[LPF]": 1}, False),
    "[lb_av]": ({_MASS: 1}, False),
    "[oz_av]": ({_MASS: 1}, False),
    "[in_i]": ({_LENGTH: 1}, False),
    "[ft_i]": ({_LENGTH: 1}, False),
}
_PREFIXES = ("da", "Y", "Z", "E", "P", "T", "G", "M", "k", "h", "d", "c", "m", "u", "n", "p", "f",
             "a", "z", "y")
_SIMPLE = re.compile(r"(?P<body>.*?)(?P<exponent>[+-]?\d+)?")
_ANNOTATION = re.compile(r"\{[!-z|~ ]*\}")  # printable ASCII other than the braces


def parse_dimension(code: str) -> Dimension:
    """The dimension of a UCUM code; UcumError when it is not one."""
    reader = _Reader(code)
    if reader.peek() == "/":
        reader.take()
        dims = _scaled(reader.term(), -1)
    else:
        dims = reader.term()
    if not reader.done():
        raise UcumError(f"unexpected {code[reader.at:]!r} in {code!r}")
    return tuple(sorted((base, power) for base, power in dims.items() if power))


def _scaled(dims: dict[str, int], by: int) -> dict[str, int]:
    return {base: power * by for base, power in dims.items()}


def _combined(left: dict[str, int], right: dict[str, int]) -> dict[str, int]:
    out = dict(left)
    for base, power in right.items():
        out[base] = out.get(base, 0) + power
    return out


class _Reader:
    def __init__(self, code: str) -> None:
        self.code = code
        self.at = 0

    def peek(self) -> str:
        return self.code[self.at] if self.at < len(self.code) else ""

    def take(self) -> str:
        char = self.peek()
        self.at += 1
        return char

    def done(self) -> bool:
        return self.at >= len(self.code)

    def term(self) -> dict[str, int]:
        dims = self.component()
        while self.peek() in (".", "/") and not self.done():
            operator = self.take()
            right = self.component()
            dims = _combined(dims, right if operator == "." else _scaled(right, -1))
        return dims

    def component(self) -> dict[str, int]:
        if self.peek() == "(":
            self.take()
            dims = self.term()
            if self.take() != ")":
                raise UcumError(f"unclosed '(' in {self.code!r}")
            return dims
        if self.peek() == "{":
            self.annotation()
            return {}
        start = self.at
        depth = 0
        while not self.done():
            char = self.peek()
            if char == "[":
                depth += 1
            elif char == "]":
                depth -= 1
            elif depth == 0 and char in "./(){}":
                break
            self.take()
        text = self.code[start:self.at]
        if not text:
            raise UcumError(f"a unit is missing at {start} in {self.code!r}")
        dims = _simple(text, self.code)
        if self.peek() == "{":
            self.annotation()
        return dims

    def annotation(self) -> None:
        found = _ANNOTATION.match(self.code, self.at)
        if found is None:
            raise UcumError(f"bad annotation in {self.code!r}")
        self.at = found.end()


def _simple(text: str, code: str) -> dict[str, int]:
    if text.isdigit():
        return {}  # a plain number: "24" in mg/(24.h)
    match = _SIMPLE.fullmatch(text)
    assert match is not None  # the pattern matches every string
    body, exponent = match["body"], match["exponent"]
    if body in ("10*", "10^") and exponent is None:
        raise UcumError(f"{body} needs an exponent in {code!r}")
    dims = _atom(body, code)
    return _scaled(dims, int(exponent)) if exponent else dims


def _atom(body: str, code: str) -> dict[str, int]:
    if body in _ATOMS:
        return dict(_ATOMS[body][0])
    for prefix in _PREFIXES:
        if body.startswith(prefix) and body[len(prefix):] in _ATOMS:
            dims, metric = _ATOMS[body[len(prefix):]]
            if metric:
                return dict(dims)
    raise UcumError(f"{body!r} is not a unit this reader knows (in {code!r})")
