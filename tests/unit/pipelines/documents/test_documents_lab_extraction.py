"""Reading MedGemma's lab-extraction answers, written the ways the model answers: fenced or
bare JSON, thinking first, prose around, trailing commas, other key names, and broken output
that must be reported rather than guessed."""

from __future__ import annotations

import pytest

from plugin.engines.answers import AnswerFormatError
from plugin.pipelines.documents.lab_extraction import PROMPT_VERSION, page_prompt, parse_answer
from plugin.pipelines.documents.pages import PageText

FENCED = """```json
[
  {"name": "Glucose", "result": "128", "unit": "mg/dL", "reference_range": "70-99", "flag": "H",
   "panel": "Comprehensive Metabolic Panel", "method": "", "specimen": "Serum",
   "collection_time": "2026-11-20 08:15 +00:00"},
  {"name": "BUN", "result": "18", "unit": "mg/dL", "reference_range": "7-20", "flag": "",
   "panel": "Comprehensive Metabolic Panel", "method": "", "specimen": "Serum",
   "collection_time": "2026-11-20 08:15 +00:00"}
]
```"""

THINKING = """<unused94>thought
The user wants the tests on page 2. I see a lipid panel: Total cholesterol 232 mg/dL, and the
reference range <200 so it is flagged H. Let me format as [{"name": ...}].<unused95>Here is the
extracted data:

```json
[{"name": "Total cholesterol", "result": "232", "unit": "mg/dL", "reference_range": "<200",
  "flag": "H", "panel": "Lipid Panel",},]
```
All values were copied as printed."""

OTHER_KEYS = """{"tests": [{"Test Name": "TSH", "Value": 2.14, "Units": "uIU/mL",
 "Range": "0.40-4.00", "Sample": "Serum"}, {"test": "Comment", "value": ""},
 "not an object"]}"""


def test_a_fenced_list_becomes_rows_with_every_field() -> None:
    rows, problems = parse_answer(FENCED, page=1)
    assert problems == []
    glucose, bun = rows
    assert (glucose.page, glucose.name, glucose.result, glucose.unit) == (1, "Glucose", "128", "mg/dL")
    assert (glucose.reference_range, glucose.flag, glucose.specimen) == ("70-99", "H", "Serum")
    assert glucose.panel == "Comprehensive Metabolic Panel"
    assert glucose.collected == "2026-11-20 08:15 +00:00" and glucose.span is None
    assert bun.flag == "" and bun.method == ""


def test_thinking_prose_and_trailing_commas_are_looked_past() -> None:
    rows, problems = parse_answer(THINKING, page=2)
    assert problems == []
    assert [(r.name, r.result, r.flag, r.panel) for r in rows] == [
        ("Total cholesterol", "232", "H", "Lipid Panel")]


def test_an_unfenced_list_in_prose_and_an_empty_page() -> None:
    rows, _ = parse_answer('The page shows: [{"name": "WBC", "result": "11.8"}] (one test).',
                           page=1)
    assert [(r.name, r.result, r.unit) for r in rows] == [("WBC", "11.8", "")]
    assert parse_answer("```json\n[]\n```", page=3) == ([], [])


def test_other_key_names_and_incomplete_items() -> None:
    rows, problems = parse_answer(OTHER_KEYS, page=2)
    assert [(r.name, r.result, r.unit, r.reference_range, r.specimen) for r in rows] == [
        ("TSH", "2.14", "uIU/mL", "0.40-4.00", "Serum")]
    assert [p.reason.split(":")[0] for p in problems] == [
        "the model's test #2 has no name or result", "the model's test #3 has no name or result"]


@pytest.mark.parametrize("answer", [
    "I'm sorry, I cannot read this page.",
    '```json\n[{"name": "Glucose", "result": "128", "unit": "mg/dL"\n',  # ran out of tokens
    '{"page": 1, "summary": "normal"}',  # an object with no list of tests
    "<unused94>thought\nReading the table row by row: WBC 11.8",  # never stopped thinking
    '"Glucose 128 mg/dL"',
])
def test_unreadable_answers_raise_instead_of_guessing(answer: str) -> None:
    with pytest.raises(AnswerFormatError):
        parse_answer(answer, page=1)


def test_the_prompt_carries_the_page_text_and_asks_for_verbatim_json() -> None:
    page = PageText(number=2, text="Glucose 128 mg/dL 70-99 H", origin="ocr")
    prompt = page_prompt(page, 3)
    assert "page 2 of 3" in prompt and "Glucose 128 mg/dL 70-99 H" in prompt
    assert "exactly as printed" in prompt and "as read by OCR" in prompt
    assert len(PROMPT_VERSION) == 8
