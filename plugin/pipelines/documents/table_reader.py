"""Lab tables read by geometry: the header row names the columns and their x-ranges, and every
line below it is cut into cells by where its words were printed, whatever order the columns
come in (Test | Flag | Result, Test | Range | Result, "Result and Flag" in one column).

Works on any page whose words have boxes (text layer or OCR). Handles multi-line headers, two
tables side by side under one header line, dotted or spaced leaders, and test names wrapped onto
a second line. A line under a header whose result cell cannot be read is reported, not guessed.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from fhir_mappers.loinc import lookup_loinc
from plugin.results import Box

from .lab_rows import QUALITATIVE, LabRow, clean_name, clean_unit, flag_code, is_unit
from .pages import Line, PageText, Word
from .printed_numbers import Conventions, parse_value

Role = Literal["name", "result", "unit", "range", "flag"]

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
_CONTINUED = re.compile(r"\s*\((?:continued|cont\.?)\)", re.IGNORECASE)
# Dotted or spaced leaders between a name and its value ("Glucose ..... 128", ". . ."); a lone
# dash stays, it may join a range ("135 - 145").
_LEADER = re.compile(r"^(?:[.·•_…:]+|[-–—_]{2,})$")
WRAPPED = 0.8  # lines closer than this many row pitches hold one wrapped name
_SPECKS = ".,:;'\"“”‘’`|_~°»«"
_UNIT_SUFFIX = re.compile(r"^(?P<value>.*?\d)\s*(?P<unit>[A-Za-zµμ%/][^\s]*(?:\s[^\s\d][^\s]*)?)$")


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
class _Placed:
    word: Word
    text: str
    box: Box  # the word's frame (straightened page)


@dataclass
class _Row:
    line: Line
    cells: dict[Role, list[_Placed]] = field(default_factory=dict)

    def text(self, role: Role) -> str:
        return " ".join(p.text for p in self.cells.get(role, ()))


@dataclass(frozen=True)
class _NameOnly:
    """A line with a name and no values: a panel title, or half of a wrapped test name."""

    text: str


@dataclass(frozen=True)
class TableReading:
    rows: tuple[LabRow, ...]
    unreadable: tuple[str, ...]  # lines under a header that look like rows but cannot be read
    covered: frozenset[int]  # starts of the lines that belong to a table (header or body)
    panel: str  # the panel title in force at the end of the page (it carries over)


def placed_lines(page: PageText) -> list[tuple[Line, list[_Placed]]]:
    """Each line of the page with its boxed words."""
    words = sorted((w for w in page.words if w.frame is not None), key=lambda w: w.start)
    result: list[tuple[Line, list[_Placed]]] = []
    k = 0
    for line in page.lines():
        inside: list[_Placed] = []
        while k < len(words) and words[k].start < line.end:
            word = words[k]
            if word.start >= line.start and word.frame is not None:
                inside.append(_Placed(word, page.text[word.start:word.end], word.frame))
            k += 1
        result.append((line, inside))
    return result


def header_roles(words: Sequence[_Placed]) -> list[tuple[tuple[Role, ...], Box]] | None:
    """The column headings of a header line, left to right, or None when the line is not one:
    every word a heading word (or a connector), naming the result and one other column."""
    if len(words) < 2:
        return None
    words = _rejoined(words)
    cells: list[tuple[list[Role], list[Box], bool]] = []  # roles, boxes, ends with a connector
    strays = 0  # short unknown words: a heading split by OCR ("F lag")
    for placed in words:
        token = placed.text.strip(_SPECKS + "()[]").lower()
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
    return [(tuple(roles), _union(boxes)) for roles, boxes, _ in cells]


def _rejoined(words: Sequence[_Placed]) -> list[_Placed]:
    """Headings OCR split in two ("Un its", "F lag") joined again."""
    out: list[_Placed] = []
    for placed in words:
        if out:
            last = out[-1]
            joined = (last.text + placed.text).strip(_SPECKS + "()[]").lower()
            alone = {last.text.strip(_SPECKS).lower(), placed.text.strip(_SPECKS).lower()}
            if joined in _ROLE_WORDS and not alone & set(_ROLE_WORDS) and \
                    placed.box.x0 - last.box.x1 < 0.5 * (placed.box.y1 - placed.box.y0):
                out[-1] = _Placed(last.word, last.text + placed.text,
                                  _union([last.box, placed.box]))
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


def column_bands(table: Table, body: Sequence[Sequence[_Placed]]) -> tuple[Band, ...]:
    """The table's columns measured on its body: x-ranges covered by words in at least a
    sixth of the rows, split at gutters wider than a space. Each is matched to the heading
    it lies under, or, when the body is aligned away from its heading (numbers set right
    under a heading set left), to the heading left unmatched between its neighbours."""
    rows = [[p for p in line if table.left <= (p.box.x0 + p.box.x1) / 2 < table.right
             and not _LEADER.match(p.text)] for line in body]
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


def _wordy(words: Sequence[_Placed]) -> bool:
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


def read_tables(page: PageText, conventions: Conventions, *, panel: str = "",
                skip: frozenset[str] = frozenset()) -> TableReading:
    """Every row under a recognised header on `page`. `panel` is the panel title in force
    from the page before; lines whose plain text is in `skip` (running headers) are ignored."""
    ocr = page.origin == "ocr"
    lines = placed_lines(page)
    rows: list[LabRow] = []
    unreadable: list[str] = []
    covered: set[int] = set()
    tables: list[Table] = []
    bands: list[tuple[Band, ...]] = []
    pitches: list[float] = []
    previous: list[tuple[LabRow, float] | None] = []  # per table: the last row and its middle
    pending: list[tuple[str, float]] = []  # per table: a name-only line waiting for its values
    panels: list[str] = []
    title, title_at = panel, -2  # the last line that can be a panel title, and its index
    i = 0
    while i < len(lines):
        line, words = lines[i]
        heading = header_roles(words)
        if heading is None and " ".join(line.text.lower().split()) in skip:
            i += 1
            continue
        if heading is not None:
            # A second heading line straight under this one (multi-line headings) adds to it.
            if i + 1 < len(lines) and _continues_heading(words, lines[i + 1][1]):
                more = header_roles(lines[i + 1][1]) or _loose_heading(lines[i + 1][1])
                heading = _merge_headings(heading, more)
                covered.add(lines[i + 1][0].start)
                i += 1
            tables = tables_from_header(heading, page.width)
            body = _body(lines, i + 1)
            bands = [column_bands(table, body) for table in tables]
            pitches = [_row_pitch(table, body) for table in tables]
            previous = [None] * len(tables)
            pending = [("", 0.0)] * len(tables)
            carried = title if title_at == i - 1 else (panels[0] if panels else panel)
            panels = [carried] * len(tables)
            covered.add(line.start)
            i += 1
            continue
        if not tables or line.text.count("|") >= 2:
            if _is_title(line.text):
                title, title_at = _CONTINUED.sub("", line.text).strip(), i
            i += 1
            continue
        covered.add(line.start)
        for t, table in enumerate(tables):
            mine = [p for p in words if table.left <= (p.box.x0 + p.box.x1) / 2 < table.right
                    and not _LEADER.match(p.text)]
            if not mine:
                continue
            if ocr:
                mine = [p for p in (_mended(p) for p in mine) if p.text]
            if not mine:
                continue
            row = _Row(line)
            for placed in mine:
                role = band_of(bands[t], placed.box).roles[0]
                row.cells.setdefault(role, []).append(placed)
            read = _read_row(row, page.number, conventions, ocr,
                             any("unit" in c.roles for c in table.columns))
            # A wrapped name's lines are closer together than the table's rows.
            middle = statistics.median((p.box.y0 + p.box.y1) / 2 for p in mine)
            if isinstance(read, LabRow):
                waiting, waited_at = pending[t]
                if waiting and middle - waited_at < WRAPPED * pitches[t]:
                    read = _renamed(read, f"{waiting} {read.name}", ocr)
                elif waiting and _is_title(waiting):
                    panels[t] = _CONTINUED.sub("", waiting).strip()
                pending[t] = ("", 0.0)
                read = replace(read, panel=panels[t])
                rows.append(read)
                previous[t] = (read, middle)
            elif isinstance(read, _NameOnly):
                name = read.text
                last = previous[t]
                if last is not None and middle - last[1] < WRAPPED * pitches[t] and \
                        _wraps(last[0].name, name):
                    joined = _renamed(last[0], f"{last[0].name} {name}", ocr)
                    rows[rows.index(last[0])] = joined
                    previous[t] = (joined, middle)
                else:
                    pending[t] = (name, middle)
                    if _is_title(name) and len(mine) == len(words):
                        title, title_at = _CONTINUED.sub("", name).strip(), i
            elif read is not None:
                unreadable.append(read)
        i += 1
    return TableReading(tuple(rows), tuple(unreadable), frozenset(covered),
                        panels[-1] if panels else title)


def _read_row(row: _Row, page: int, conventions: Conventions, ocr: bool,
              has_unit_column: bool) -> LabRow | _NameOnly | str | None:
    """A LabRow; _NameOnly for a line with words but no values (a title or half a wrapped
    name); the line's text when it looks like a row but cannot be read; None otherwise."""
    for role in ("result", "unit"):  # a lone mark beside a value is a speck, not a cell
        row.cells[role] = [p for p in row.cells.get(role, []) if p.text not in ("-", "~", "=")]
    words = sorted((p for cell in row.cells.values() for p in cell), key=lambda p: p.box.x0)
    everything = " ".join(p.text for p in words)
    name = row.text("name").strip()
    result_words = row.cells.get("result", [])
    if not re.search(r"\d", everything) and not is_unit(row.text("unit"), ocr=ocr) and \
            row.text("result").lower() not in QUALITATIVE:
        # A title can run on past the name column ("Comprehensive Metabolic Panel").
        return _NameOnly(everything) if _is_name(everything) else None
    if not result_words:
        others = any(row.cells.get(r) for r in ("unit", "range", "flag"))
        if not others:
            return _NameOnly(everything) if _is_name(everything) else None
        # A unit or range printed beside a name, but no result where results are: a row the
        # columns did not catch, reported rather than dropped.
        return everything if _is_name(name) and is_unit(row.text("unit"), ocr=ocr) else None
    name = name.rstrip(":").strip()
    if not _is_name(name):
        return None
    result_text = " ".join(p.text for p in result_words)
    unit = row.text("unit")
    printed = parse_value(result_text, conventions)
    qualitative = " ".join(result_text.split()).lower() in QUALITATIVE
    value_words = result_words
    if printed is None and not qualitative and not unit and (split := _UNIT_SUFFIX.match(result_text)):
        # "128 mg/dL" in a result column with no unit column.
        printed = parse_value(split["value"], conventions)
        if printed is not None:
            unit = split["unit"]
            value_words = result_words[:len(result_words) - len(unit.split())] or result_words
    if printed is None and not qualitative:
        return everything
    if ocr and has_unit_column and not unit.strip() and printed is not None:
        # OCR lost the unit the report prints in its column: the value alone is not enough.
        return everything
    reference = " ".join(row.text("range").split())
    split = re.match(r"^(.*\d\)?)\s+(\S+)$", reference) if reference and not unit else None
    if split and not re.search(r"\d", split[2].replace("10^", "")):
        # "70-99 mg/dL" in a range column with no unit column.
        reference, unit = split[1], split[2]
    flag = row.text("flag") or (printed.flag if printed is not None else "")
    if flag and flag_code(flag) is None and flag not in ("*", "**", "!"):
        flag = ""
    result = printed.result if printed is not None else " ".join(result_text.split())
    span = (min(p.word.start for p in words), max(p.word.end for p in words))
    return LabRow(page=page, name=clean_name(name, ocr=ocr), result=result,
                  unit=clean_unit(unit, ocr=ocr), reference_range=reference.strip("()"),
                  flag=flag, span=span, at=_union([p.box for p in value_words]))


def _mended(placed: _Placed) -> _Placed:
    """An OCR'd word without the specks and quote marks a scan leaves around it ("11.8.",
    "“Glucose", "|"); a word that is only specks becomes empty. A word's own comma stays
    ("Neutrophils, absolute")."""
    text = placed.text.strip(_SPECKS.replace(",", "")).strip()
    if not re.search(r"[A-Za-z]", text):
        text = text.strip(_SPECKS)
    return replace(placed, text=text) if text != placed.text else placed


def _renamed(row: LabRow, name: str, ocr: bool) -> LabRow:
    return replace(row, name=clean_name(name, ocr=ocr))


def _wraps(name: str, more: str) -> bool:
    """Whether `more`, on the line under a row named `name`, is the rest of that name."""
    return (more[:1].islower() or name.rstrip().endswith((",", "-", "/", "("))
            or name.count("(") > name.count(")")
            or lookup_loinc(f"{name} {more}") is not None)


def _is_title(text: str) -> bool:
    """A line that can be a panel title: a few words, mostly letters, no values."""
    words = text.split()
    return (1 <= len(words) <= 8 and ":" not in text and "|" not in text
            and sum(c.isalpha() for c in text) >= 3 and sum(c.isdigit() for c in text) <= 2
            and words[0].lower() != "page")


def _is_name(text: str) -> bool:
    words = text.split()
    return (1 <= len(words) <= 8 and sum(c.isalpha() for c in text) >= 2
            and not any(w.endswith(":") for w in words[:-1]) and words[0].lower() != "page")


def _continues_heading(first: list[_Placed], second: list[_Placed]) -> bool:
    if not first or not second:
        return False
    height = max(p.box.y1 - p.box.y0 for p in first)
    gap = min(p.box.y0 for p in second) - max(p.box.y1 for p in first)
    return gap < height and (header_roles(second) is not None or
                             _loose_heading(second) is not None)


def _loose_heading(words: list[_Placed]) -> list[tuple[tuple[Role, ...], Box]] | None:
    """A second heading line: heading words, connectors or bracketed units ("(units)")."""
    cells: list[tuple[tuple[Role, ...], Box]] = []
    for placed in words:
        token = placed.text.strip(".:()[]").lower()
        role = _ROLE_WORDS.get(token)
        if role is None and token not in _CONNECTORS and not placed.text.startswith("("):
            return None
        cells.append(((role,) if role else (), placed.box))
    return cells


def _merge_headings(top: list[tuple[tuple[Role, ...], Box]],
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
        merged[merged.index(target)] = (target[0], _union([target[1], box]))
    return [(tuple(roles), box) for roles, box in merged if roles]


def _body(lines: list[tuple[Line, list[_Placed]]], start: int) -> list[list[_Placed]]:
    """The lines under a heading, up to the next heading."""
    body: list[list[_Placed]] = []
    for _, words in lines[start:]:
        if header_roles(words) is not None:
            break
        body.append(words)
    return body


def _row_pitch(table: Table, body: Sequence[Sequence[_Placed]]) -> float:
    """The usual distance between the table's rows: the median step between the middles of
    consecutive lines of its body that print a number."""
    middles = []
    for line in body:
        mine = [p for p in line if table.left <= (p.box.x0 + p.box.x1) / 2 < table.right]
        if any(re.search(r"\d", p.text) for p in mine):
            middles.append(statistics.median((p.box.y0 + p.box.y1) / 2 for p in mine))
    steps = [b - a for a, b in zip(middles, middles[1:], strict=False) if b > a]
    return statistics.median(steps) if steps else 12.0


def _union(boxes: Sequence[Box]) -> Box:
    return Box(min(b.x0 for b in boxes), min(b.y0 for b in boxes),
               max(b.x1 for b in boxes), max(b.y1 for b in boxes))
