"""The columns of a lab table: which line is a header and what its headings name (any order,
two-line headings, headings OCR split, two tables side by side), and the columns' x-ranges as the
table's body prints them (gutters found by projection, each matched to the heading above it).
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from plugin.results import Box

from .pages import Word

SPECKS = ".,:;'\"“”‘’`|_~°»«"  # marks a scan leaves around an OCR'd word
# Dotted or spaced leaders between a name and its value ("Glucose ..... 128", ". . ."); a lone
# dash stays, it may join a range ("135 - 145").
LEADER = re.compile(r"^(?:[.·•_…:]+|[-–—_]{2,})$")

Role = Literal["name", "result", "unit", "range", "flag"]
# OCR confidence below which a run of lower-case words is taken for leaders. Measured on the
# corpus's three scans of a dotted-leader report: 75% of the other words score below it, 90% of
# the test names' words 0.91 or more.
DEBRIS_CONFIDENCE = 0.35
LEADER_RUN = 5
_X_HEIGHT = re.compile(r"[acemnorstuvwxz]+")


def leader_debris(texts: Sequence[str], scores: Sequence[float | None]) -> list[bool]:
    """Which of a line's OCR'd words (left to right, with their confidences) are dotted leaders
    Tesseract read as letters ("Glucose nee eee ene e eee 128"): three or more words in a row
    without a digit, each lower-case or barely recognised, at least half of them barely
    recognised, or `LEADER_RUN` of them that can only be dots (`_dotted`). A weak word alone
    stays (it may be part of the name)."""
    confidences = [1.0 if c is None else c for c in scores]
    weak = [not re.search(r"[\d<>]", t) and (t.islower() and c < 0.6 or c < DEBRIS_CONFIDENCE
                                              or _X_HEIGHT.fullmatch(t) is not None)
            for t, c in zip(texts, confidences, strict=True)]
    debris = [False] * len(texts)
    start = 0
    while start < len(texts):
        end = start
        while end < len(texts) and weak[end]:
            end += 1
        run = confidences[start:end]
        low = sum(c < DEBRIS_CONFIDENCE for c in run) * 2 >= len(run)
        if len(run) >= 3 and (low or _dotted(texts[start:end])):
            debris[start:end] = [True] * (end - start)
        start = max(end, start + 1)
    return debris


def _dotted(texts: Sequence[str]) -> bool:
    """A run of words that can only be dots read as letters, however confidently: at least
    `LEADER_RUN` of them, each lower-case letters of x-height (dots make no ascenders or
    descenders: "nee eee ene tenner"). A test name is not five such words in a row."""
    return len(texts) >= LEADER_RUN and all(_X_HEIGHT.fullmatch(t) for t in texts)


_ROLE_WORDS: dict[str, Role] = {
    **dict.fromkeys(("test", "tests", "analyte", "analytes", "investigation", "parameter",
                     "parameters", "examination", "component", "determination", "description",
                     "untersuchung", "analyse", "examen", "prueba"), "name"),
    **dict.fromkeys(("result", "results", "value", "values", "observed", "finding", "findings",
                     "ergebnis", "wert", "resultat", "résultat", "resultado"), "result"),
    **dict.fromkeys(("unit", "units", "uom", "einheit", "unité", "unidad", "unidades"), "unit"),
    **dict.fromkeys(("reference", "ref", "range", "interval", "normal", "limits", "expected",
                     "biological", "referenzbereich", "norm", "normwert", "référence",
                     "referencia", "rango"), "range"),
    **dict.fromkeys(("flag", "flags", "abnormal", "indicator", "h/l", "status"), "flag"),
}


_CONNECTORS = frozenset({"and", "&", "/", "name", "of", "(", ")", "-", "und", "et", "y"})


@dataclass(frozen=True)
class Column:
    roles: tuple[Role, ...]  # usually one; "Result and Flag" is two
    x0: float  # the header's extent
    x1: float


@dataclass(frozen=True)
class Table:
    columns: tuple[Column, ...]  # left to right
    left: float  # the x-range this table's body may use (two tables can share a line)
    right: float


@dataclass(frozen=True)
class Placed:
    word: Word
    text: str
    box: Box  # the word's frame (straightened page)


def header_roles(words: Sequence[Placed]) -> list[tuple[tuple[Role, ...], Box]] | None:
    """The column headings of a header line, left to right, or None when the line is not one:
    every word a heading word (or a connector), naming the result and one other column."""
    if len(words) < 2:
        return None
    words = _rejoined(words)
    cells: list[tuple[list[Role], list[Box], bool]] = []  # roles, boxes, ends with a connector
    strays = 0  # short unknown words: a heading split by OCR ("F lag")
    for placed in words:
        token = placed.text.strip(SPECKS + "()[]").lower()
        if not token:
            continue
        role = _ROLE_WORDS.get(token)
        if role is None and token not in _CONNECTORS:
            strays += 1
            if len(token) > 3 or strays > 2:
                return None
            continue
        if cells and (role is None or cells[-1][2] or role in cells[-1][0]
                      or _joins(cells[-1][0], role)) and _close(cells[-1][1][-1], placed.box):
            roles, boxes, _ = cells[-1]
            if role is not None and role not in roles:
                roles.append(role)
            boxes.append(placed.box)
            cells[-1] = (roles, boxes, role is None)
        elif role is not None:
            cells.append(([role], [placed.box], False))
    found = [r for roles, _, _ in cells for r in roles]
    if "result" not in found or len(set(found)) < 2 or (strays and len(found) < 3):
        return None
    return [(tuple(roles), union(boxes)) for roles, boxes, _ in cells]


def _rejoined(words: Sequence[Placed]) -> list[Placed]:
    """Headings OCR split in two ("Un its", "F lag") joined again."""
    out: list[Placed] = []
    for placed in words:
        if out:
            last = out[-1]
            joined = (last.text + placed.text).strip(SPECKS + "()[]").lower()
            alone = {last.text.strip(SPECKS).lower(), placed.text.strip(SPECKS).lower()}
            if joined in _ROLE_WORDS and not alone & set(_ROLE_WORDS) and \
                    placed.box.x0 - last.box.x1 < 0.5 * (placed.box.y1 - placed.box.y0):
                out[-1] = Placed(last.word, last.text + placed.text,
                                  union([last.box, placed.box]))
                continue
        out.append(placed)
    return out


def _joins(roles: list[Role], role: Role) -> bool:
    """Words of one heading: "Reference range", "Normal values", "Test name"."""
    return roles[-1] == "range" and role == "range"


def _close(left: Box, right: Box) -> bool:
    return right.x0 - left.x1 <= 1.2 * max(left.y1 - left.y0, right.y1 - right.y0)


def tables_from_header(cells: list[tuple[tuple[Role, ...], Box]],
                       page_width: float) -> list[Table]:
    """One table per run of headings that does not repeat a role (two tables side by side
    repeat "Test ... Result")."""
    groups: list[list[Column]] = [[]]
    for roles, box in sorted(cells, key=lambda c: c[1].x0):
        seen = {r for column in groups[-1] for r in column.roles}
        if seen & set(roles) and groups[-1]:
            groups.append([])
        groups[-1].append(Column(roles, box.x0, box.x1))
    tables: list[Table] = []
    for i, columns in enumerate(groups):
        if not any("name" in c.roles for c in columns):
            # The test name's column often has no heading: it is what lies left of the others.
            start = tables[-1].right if tables else 0.0
            columns.insert(0, Column(("name",), start, start))
        left = tables[-1].right if tables else 0.0
        right = (groups[i + 1][0].x0 - 2 if i + 1 < len(groups) else max(page_width, 1e9))
        if i + 1 < len(groups) and "name" not in groups[i + 1][0].roles:
            right = groups[i + 1][0].x0 - 2
        tables.append(Table(tuple(columns), left, right))
    return tables


@dataclass(frozen=True)
class Band:
    """A column as the body prints it: an x-range most rows put words in, and its heading."""

    x0: float
    x1: float
    roles: tuple[Role, ...]


def column_bands(table: Table, body: Sequence[Sequence[Placed]]) -> tuple[Band, ...]:
    """The table's columns measured on its body: x-ranges covered by words in at least a
    sixth of the rows, split at gutters wider than a space. Each is matched to the heading
    it lies under, or, when the body is aligned away from its heading (numbers set right
    under a heading set left), to the heading left unmatched between its neighbours."""
    rows = [[p for p in line if table.left <= (p.box.x0 + p.box.x1) / 2 < table.right
             and not LEADER.match(p.text)] for line in body]
    # Rows print values: notes and footers under a short table must not shape its columns.
    rows = [row for row in rows if any(re.search(r"\d", p.text) for p in row)
            and sum("|" in p.text for p in row) < 2]
    if len(rows) < 2:
        return tuple(Band(c.x0, c.x1, c.roles) for c in table.columns)
    lo = int(min(p.box.x0 for row in rows for p in row))
    hi = int(max(p.box.x1 for row in rows for p in row)) + 2
    counts = np.zeros(hi - lo, dtype=np.int32)
    for row in rows:
        covered = np.zeros(hi - lo, dtype=bool)
        for p in row:
            covered[int(p.box.x0) - lo:int(p.box.x1) - lo + 1] = True
        counts += covered
    height = statistics.median(p.box.y1 - p.box.y0 for row in rows for p in row)
    inked = np.concatenate([[False], counts >= max(1 if len(rows) < 4 else 2, len(rows) / 6),
                            [False]])
    edges = np.flatnonzero(np.diff(inked.astype(np.int8)))
    spans: list[list[float]] = []
    for start, end in zip(edges[::2], edges[1::2], strict=True):
        if spans and start + lo - spans[-1][1] < 0.5 * height:
            spans[-1][1] = float(end + lo)
        else:
            spans.append([float(start + lo), float(end + lo)])
    words = [p for row in rows for p in row]
    wordy = [_wordy([p for p in words if x0 <= (p.box.x0 + p.box.x1) / 2 <= x1])
             for x0, x1 in spans]
    return _matched(spans, table.columns, wordy)


def _wordy(words: Sequence[Placed]) -> bool:
    """Mostly words, not values: the end of long test names run past the name column."""
    return bool(words) and sum(bool(re.search(r"\d", p.text)) for p in words) < len(words) / 4


def _matched(spans: list[list[float]], columns: Sequence[Column],
             wordy: Sequence[bool]) -> tuple[Band, ...]:
    owner: list[int | None] = []
    for x0, x1 in spans:
        overlaps = [min(x1, c.x1) - max(x0, c.x0) for c in columns]
        best = max(range(len(columns)), key=lambda k: overlaps[k])
        owner.append(best if overlaps[best] > 0 else None)
    # The widest unmatched spans choose first: a sliver of a column must not take its heading.
    for i in sorted(range(len(spans)), key=lambda k: spans[k][0] - spans[k][1]):
        if owner[i] is not None:
            continue
        left = owner[i - 1] if i else None
        if wordy[i] and left is not None and "name" in columns[left].roles:
            owner[i] = left
            continue
        before = max((o for o in owner[:i] if o is not None), default=-1)
        after = min((o for o in owner[i + 1:] if o is not None), default=len(columns))
        free = [k for k in range(before + 1, after) if k not in owner]
        middle = (spans[i][0] + spans[i][1]) / 2
        choices = free or list(range(max(before, 0), min(after, len(columns) - 1) + 1))
        if not wordy[i] and any("result" in columns[k].roles for k in choices):
            # Numbers with no heading over them are the results, not an empty flag column.
            choices = [k for k in choices if "result" in columns[k].roles]
        owner[i] = min(choices, key=lambda k: min(abs(middle - columns[k].x0),
                                                  abs(middle - columns[k].x1)))
    bands = [Band(x0, x1, columns[k].roles) for (x0, x1), k in zip(spans, owner, strict=True)
             if k is not None]
    # Headings no body column lies under keep their own x-range (a column empty so far).
    taken = set(owner)
    bands += [Band(c.x0, c.x1, c.roles) for k, c in enumerate(columns) if k not in taken]
    return tuple(sorted(bands, key=lambda b: b.x0))


def band_of(bands: Sequence[Band], box: Box) -> Band:
    """The band holding the word's centre, else the nearest one."""
    centre = (box.x0 + box.x1) / 2
    return min(bands, key=lambda b: 0.0 if b.x0 <= centre <= b.x1
               else min(abs(centre - b.x0), abs(centre - b.x1)))


def continues_heading(first: list[Placed], second: list[Placed]) -> bool:
    if not first or not second:
        return False
    height = max(p.box.y1 - p.box.y0 for p in first)
    gap = min(p.box.y0 for p in second) - max(p.box.y1 for p in first)
    return gap < height and (header_roles(second) is not None or
                             loose_heading(second) is not None)


def loose_heading(words: list[Placed]) -> list[tuple[tuple[Role, ...], Box]] | None:
    """A second heading line: heading words, connectors or bracketed units ("(units)")."""
    cells: list[tuple[tuple[Role, ...], Box]] = []
    for placed in words:
        token = placed.text.strip(".:()[]").lower()
        role = _ROLE_WORDS.get(token)
        if role is None and token not in _CONNECTORS and not placed.text.startswith("("):
            return None
        cells.append(((role,) if role else (), placed.box))
    return cells


def merge_headings(top: list[tuple[tuple[Role, ...], Box]],
                    below: list[tuple[tuple[Role, ...], Box]] | None
                    ) -> list[tuple[tuple[Role, ...], Box]]:
    """Headings printed on two lines, joined where they overlap in x."""
    merged = [(list(roles), box) for roles, box in top]
    for roles, box in below or []:
        target = next((m for m in merged if box.x0 < m[1].x1 and box.x1 > m[1].x0), None)
        if target is None:
            if roles:
                merged.append((list(roles), box))
            continue
        for role in roles:
            if role not in target[0]:
                target[0].append(role)
        merged[merged.index(target)] = (target[0], union([target[1], box]))
    return [(tuple(roles), box) for roles, box in merged if roles]


def union(boxes: Sequence[Box]) -> Box:
    return Box(min(b.x0 for b in boxes), min(b.y0 for b in boxes),
               max(b.x1 for b in boxes), max(b.y1 for b in boxes))
