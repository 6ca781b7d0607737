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

from fhir_mappers.loinc import lookup_loinc

from .lab_rows import QUALITATIVE, LabRow, clean_name, clean_unit, flag_code, is_unit
from .pages import Line, PageText
from .printed_numbers import Conventions, parse_value
from .table_columns import (
    LEADER,
    SPECKS,
    Band,
    Placed,
    Role,
    Table,
    band_of,
    column_bands,
    continues_heading,
    header_roles,
    leader_debris,
    loose_heading,
    merge_headings,
    tables_from_header,
    union,
)

_CONTINUED = re.compile(r"\s*\((?:continued|cont\.?)\)", re.IGNORECASE)
WRAPPED = 0.8  # lines closer than this many row pitches hold one wrapped name
_UNIT_SUFFIX = re.compile(r"^(?P<value>.*?\d)\s*(?P<unit>[A-Za-zµμ%/][^\s]*(?:\s[^\s\d][^\s]*)?)$")


@dataclass
class _Row:
    line: Line
    cells: dict[Role, list[Placed]] = field(default_factory=dict)

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


def placed_lines(page: PageText) -> list[tuple[Line, list[Placed]]]:
    """Each line of the page with its boxed words."""
    words = sorted((w for w in page.words if w.frame is not None), key=lambda w: w.start)
    result: list[tuple[Line, list[Placed]]] = []
    k = 0
    for line in page.lines():
        inside: list[Placed] = []
        while k < len(words) and words[k].start < line.end:
            word = words[k]
            if word.start >= line.start and word.frame is not None:
                inside.append(Placed(word, page.text[word.start:word.end], word.frame))
            k += 1
        result.append((line, inside))
    return result


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
            if i + 1 < len(lines) and continues_heading(words, lines[i + 1][1]):
                more = header_roles(lines[i + 1][1]) or loose_heading(lines[i + 1][1])
                heading = merge_headings(heading, more)
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
                    and not LEADER.match(p.text)]
            if not mine:
                continue
            # A capital I read as a bar ("Troponin |") is dropped with the specks below; the
            # name gets it back when that makes a test the catalogue knows (clean_name).
            barred = ocr and _trailing_bar([p for p in mine if band_of(bands[t], p.box).roles[0] == "name"])
            if ocr:
                mine = [p for p in (_mended(p) for p in mine) if p.text]
                # Leaders Tesseract read as letters ("HDL Cholesterol nee eee ene 38 L") are
                # not part of the name.
                debris = leader_debris([p.text for p in mine], [p.word.confidence for p in mine])
                mine = [p for p, d in zip(mine, debris, strict=True) if not d]
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
            if isinstance(read, LabRow) and barred and \
                    (named := clean_name(f"{read.name} |", ocr=True)) != read.name:
                read = replace(read, name=named)
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
    named = clean_name(name, ocr=ocr)
    return LabRow(page=page, name=named, result=result,
                  unit=clean_unit(unit, ocr=ocr, test=named), reference_range=reference.strip("()"),
                  flag=flag, span=span, at=union([p.box for p in value_words]))


def _mended(placed: Placed) -> Placed:
    """An OCR'd word without the specks and quote marks a scan leaves around it ("11.8.",
    "“Glucose", "|"); a word that is only specks becomes empty. A word's own comma stays
    ("Neutrophils, absolute")."""
    text = placed.text.strip(SPECKS.replace(",", "")).strip()
    if not re.search(r"[A-Za-z]", text):
        text = text.strip(SPECKS)
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


def _body(lines: list[tuple[Line, list[Placed]]], start: int) -> list[list[Placed]]:
    """The lines under a heading, up to the next heading."""
    body: list[list[Placed]] = []
    for _, words in lines[start:]:
        if header_roles(words) is not None:
            break
        body.append(words)
    return body


def _row_pitch(table: Table, body: Sequence[Sequence[Placed]]) -> float:
    """The usual distance between the table's rows: the median step between the middles of
    consecutive lines of its body that print a number."""
    middles = []
    for line in body:
        mine = [p for p in line if table.left <= (p.box.x0 + p.box.x1) / 2 < table.right]
        if any(re.search(r"\d", p.text) for p in mine):
            middles.append(statistics.median((p.box.y0 + p.box.y1) / 2 for p in mine))
    steps = [b - a for a, b in zip(middles, middles[1:], strict=False) if b > a]
    return statistics.median(steps) if steps else 12.0


def _trailing_bar(name_words: list[Placed]) -> bool:
    """Whether the name cell ends in a bar that can be a capital I read as "|": the last word,
    at most a space after the word before it, about as tall as that word. A bar anywhere else
    (a ruled table's border at the cell's left, a separator) is not a letter."""
    ordered = sorted(name_words, key=lambda p: p.box.x0)
    if len(ordered) < 2 or ordered[-1].text != "|":
        return False
    bar, before = ordered[-1].box, ordered[-2].box
    height = before.y1 - before.y0
    return (bar.x0 - before.x1 <= 0.6 * height
            and 0.6 * height <= bar.y1 - bar.y0 <= 1.6 * height)
