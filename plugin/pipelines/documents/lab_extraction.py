"""Lab extraction with a vision-language model: the prompt for one page (its image, its text and
the rows the table geometry read from it), and reading the model's JSON answer into rows. An
answer that cannot be read is reported for its page, never guessed at. The model's rows pass the
same gates as the geometry's: its numbers must be printed on the page where the test is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from plugin.engines.answers import AnswerFormatError, find_json
from plugin.engines.vision_language import VisionLanguageEngine
from plugin.results import InputProblem

from .lab_rows import LabRow
from .pages import PageText

if TYPE_CHECKING:
    from PIL.Image import Image

MAX_NEW_TOKENS = 2048
MAX_PAGE_TEXT = 6000  # characters of the page's own text passed along with its image

PROMPT = """You are reading page {page} of {pages} of a laboratory report (the image above).
List every laboratory test result printed on this page.

Answer with a JSON list and nothing else, one object per test:
[{{"name": "...", "result": "...", "unit": "...", "reference_range": "...", "flag": "...",
"panel": "...", "method": "...", "specimen": "...", "collection_time": "..."}}]

Rules:
- Copy every value exactly as printed (same digits, spelling and symbols); do not convert units
  or compute anything.
- "panel" is the heading the test is printed under; "flag" is the abnormal flag printed beside
  the result (such as H or L).
- Use "" for anything the page does not print. If the page has no test results, answer [].

The text of this page as read by {reader} (it may contain reading errors; the image is
authoritative):
<<<
{text}
>>>
{rows}"""
ROWS = """
The table rows read from this page's layout, as name | result | unit | reference range | flag
(check them against the image; add rows they miss, name rows they left unnamed):
<<<
{rows}
>>>"""
# Identifies the prompt and the answer reader: a change updates results, it does not duplicate.
PROMPT_VERSION = hashlib.sha256((PROMPT + ROWS + "|reader-2").encode()).hexdigest()[:8]
MAX_LAYOUT_ROWS = 120  # rows of the layout reading passed along with a page

_FIELDS: dict[str, tuple[str, ...]] = {
    "name": ("name", "test", "test_name", "analyte"),
    "result": ("result", "value", "result_value"),
    "unit": ("unit", "units"),
    "reference_range": ("reference_range", "range", "ref_range", "reference", "normal_range"),
    "flag": ("flag", "abnormal_flag", "interpretation"),
    "panel": ("panel", "panel_name", "section"),
    "method": ("method",),
    "specimen": ("specimen", "sample", "specimen_type"),
    "collected": ("collection_time", "sample_collection_time", "collected", "collection_date"),
}
_LIST_KEYS = ("tests", "results", "lab_results", "labs", "items")


@dataclass(frozen=True)
class PageExtraction:
    rows: tuple[LabRow, ...]
    problems: tuple[InputProblem, ...]


def page_prompt(page: PageText, page_count: int, layout_rows: Sequence[LabRow] = ()) -> str:
    """The prompt for one page: its text, and the rows the geometry read from it (the model
    may name a row the rules could not; its numbers are still checked against the page)."""
    reader = "OCR" if page.origin == "ocr" else "the PDF text layer"
    listed = "\n".join(" | ".join((r.name, r.result, r.unit, r.reference_range, r.flag))
                       for r in layout_rows[:MAX_LAYOUT_ROWS] if r.page == page.number)
    return PROMPT.format(page=page.number, pages=page_count, reader=reader,
                         text=page.text[:MAX_PAGE_TEXT].strip() or "(no text)",
                         rows=ROWS.format(rows=listed) if listed else "")


def extract_page(engine: VisionLanguageEngine, image: Image, page: PageText, page_count: int,
                 *, max_new_tokens: int = MAX_NEW_TOKENS,
                 layout_rows: Sequence[LabRow] = ()) -> PageExtraction:
    answer = engine.generate([image, page_prompt(page, page_count, layout_rows)],
                             max_new_tokens=max_new_tokens)
    try:
        rows, problems = parse_answer(answer, page=page.number)
    except AnswerFormatError as exc:
        return PageExtraction((), (InputProblem(
            f"page {page.number}",
            f"the model's answer could not be read ({exc}); nothing was taken from this page"),))
    return PageExtraction(tuple(rows), tuple(problems))


def parse_answer(answer: str, *, page: int) -> tuple[list[LabRow], list[InputProblem]]:
    """Rows from a model's answer: a JSON list of test objects (or an object holding one).
    Raises AnswerFormatError when there is no such list."""
    found = find_json(answer)
    if isinstance(found, dict):
        listed = next((found[k] for k in _LIST_KEYS if isinstance(found.get(k), list)), None)
        if listed is None:
            raise AnswerFormatError("the JSON object holds no list of tests")
        found = listed
    if not isinstance(found, list):
        raise AnswerFormatError(f"expected a JSON list of tests, got {type(found).__name__}")
    rows: list[LabRow] = []
    problems: list[InputProblem] = []
    for index, item in enumerate(found):
        fields = _fields(item) if isinstance(item, dict) else None
        if fields is None or not fields["name"] or not fields["result"]:
            problems.append(InputProblem(f"page {page}", f"the model's test #{index + 1} has no "
                                                         f"name or result: {_short(item)}"))
            continue
        rows.append(LabRow(page=page, name=fields["name"], result=fields["result"],
                           unit=fields["unit"], reference_range=fields["reference_range"],
                           flag=fields["flag"], panel=fields["panel"], method=fields["method"],
                           specimen=fields["specimen"], collected=fields["collected"]))
    return rows, problems


def _fields(item: dict[str, Any]) -> dict[str, str] | None:
    lowered = {str(k).strip().lower().replace(" ", "_"): v for k, v in item.items()}
    fields: dict[str, str] = {}
    for field, names in _FIELDS.items():
        value = next((lowered[n] for n in names if lowered.get(n) not in (None, "")), "")
        if isinstance(value, dict | list):
            return None
        fields[field] = " ".join(str(value).split())
    return fields


def _short(item: object) -> str:
    text = repr(item)
    return text if len(text) <= 80 else text[:77] + "..."
