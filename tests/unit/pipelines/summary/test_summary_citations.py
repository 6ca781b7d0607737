"""Checking cited sentences: scripted model answers written by hand — well-formed, citing lines
that do not exist, stating numbers or dates the cited lines lack, and cut off midway."""

from __future__ import annotations

import json
import re
from datetime import date

from plugin.pipelines.summary import EstimatedCounter, build_digest, check_answer
from plugin.pipelines.summary.citations import unsupported_values
from plugin.pipelines.summary.pipeline import summary_result
from plugin.results import ModelInfo
from tests.unit.pipelines.summary.test_summary_digest import CHART, TODAY

COUNTER = EstimatedCounter()
DIGEST = build_digest(CHART, budget=10_000, count_tokens=COUNTER, counter=COUNTER.name, today=TODAY)
# L1 diabetes, L2 penicillin allergy, L3 metformin, L4 potassium (our AI result), L5 HbA1c series
MODEL = ModelInfo(name="scripted", version="1", kinds=("Large-Language-Models",))

WELL_FORMED = """```json
[
 {"problem": "Type 2 diabetes", "text": "Type 2 diabetes since 2019-03-04, on metformin 1000 mg twice daily.",
  "cites": ["L1", "L3"]},
 {"problem": "Type 2 diabetes", "text": "HbA1c fell from 8.4 % to 7.1 % (2026-11-01), still flagged high.",
  "cites": ["L5"]},
 {"problem": "Allergies", "text": "Penicillin allergy with hives.", "cites": ["L2"]},
]
```"""


def test_a_well_formed_answer_is_kept_whole_with_the_versions_it_cites() -> None:
    checked = check_answer(WELL_FORMED, DIGEST.by_id())
    assert checked.withheld == ()
    assert [s.cites for s in checked.kept] == [("L1", "L3"), ("L5",), ("L2",)]
    assert checked.cited_refs[:2] == ("Condition/c1/_history/3", "MedicationRequest/m1/_history/2")
    assert "Observation/o1/_history/1" in checked.cited_refs  # the 8.4 of the trend


def test_made_up_citations_and_unsupported_numbers_are_withheld_with_the_reason() -> None:
    answer = json.dumps([
        {"problem": "Kidneys", "text": "Creatinine is rising.", "cites": ["L9"]},
        {"problem": "Diabetes", "text": "HbA1c was 6.2 % on 2026-11-01.", "cites": ["L5"]},
        {"problem": "Type 3 diabetes", "text": "HbA1c was 7.1 %.", "cites": ["L5"]},
        {"problem": "Diabetes", "text": "Diagnosed on 2018-01-01.", "cites": ["L1"]},
        {"problem": "Diabetes", "text": "HbA1c improved.", "cites": []},
        {"problem": "Diabetes", "text": "Metformin continues.", "cites": ["L3"]},
    ])
    checked = check_answer(answer, DIGEST.by_id())
    assert [s.text for s in checked.kept] == ["Metformin continues."]
    assert [w.reason for w in checked.withheld] == [
        "cites line(s) that do not exist: L9",
        "states 6.2, not in the cited resources",
        "its heading states 3, not in the chart",
        "states 2018-01-01, not in the cited resources",
        "cites no digest line",
    ]


def test_numbers_must_be_in_the_lines_cited_not_elsewhere_in_the_digest() -> None:
    # 1000 is in L3 (metformin), not in L2 (the allergy) that the sentence cites.
    answer = json.dumps([{"problem": "x", "text": "Penicillin 1000 mg caused hives.", "cites": ["L2"]}])
    (withheld,) = check_answer(answer, DIGEST.by_id()).withheld
    assert withheld.reason == "states 1000, not in the cited resources"


def test_number_matching_is_numeric_and_whole_dates_only() -> None:
    assert unsupported_values("7.10 % and 8.40", "HbA1c 7.1 % ... 8.4 %") == []
    assert unsupported_values("on 2026-11-02", "on 2026-11-01") == ["2026-11-02"]
    assert unsupported_values("HbA1c 12", "HbA1c 1 and 2") == ["12"]


def test_a_truncated_answer_writes_nothing_and_says_why() -> None:
    result = summary_result(WELL_FORMED[:150], DIGEST, patient_id="p", patient_version="1", model=MODEL)
    assert result.items == ()
    assert re.search("could not be read .*nothing was written", result.problems[0].reason)


def test_an_answer_with_no_supported_sentence_writes_nothing() -> None:
    answer = json.dumps([{"problem": "x", "text": "HbA1c 9.9 %.", "cites": ["L5"]}])
    result = summary_result(answer, DIGEST, patient_id="p", patient_version="1", model=MODEL)
    assert result.items == ()
    assert "none of the model's 1 sentence" in result.problems[0].reason
    assert [p.where for p in result.problems[1:]] == ["sentence 1"]  # the withheld one, listed


def test_the_result_is_one_patient_summary_citing_every_resource_version_used() -> None:
    answer = json.dumps([*json.loads(WELL_FORMED.strip("`json\n").replace(",\n]", "\n]")),
                         {"problem": "x", "text": "Potassium 9.9.", "cites": ["L4"]}])
    result = summary_result(answer, DIGEST, patient_id="p", patient_version="4", model=MODEL)
    (narrative,) = result.items
    assert narrative.kind == "patient-summary" and narrative.media_type == "text/markdown"
    assert result.source.versioned_reference == "Patient/p/_history/4"
    assert {s.versioned_reference for s in result.other_sources} == {
        "Condition/c1/_history/3", "MedicationRequest/m1/_history/2", "AllergyIntolerance/a1/_history/1",
        *(f"Observation/{i}/_history/1" for i in ("o1", "o2", "o3", "o4"))}
    assert "## Type 2 diabetes" in narrative.text and "(Condition/c1/_history/3)" in narrative.text
    assert "1 sentence(s) withheld" in narrative.text and "TEST OUTPUT" not in narrative.text
    details = json.loads(narrative.details_json)
    assert details["withheld"] == [{"text": "Potassium 9.9.",
                                    "reason": "states 9.9, not in the cited resources"}]
    assert details["digest"]["chart_fingerprint"] == DIGEST.fingerprint
    assert [p.reason for p in result.problems] == ["states 9.9, not in the cited resources"]


def test_test_weights_mark_the_text() -> None:
    answer = json.dumps([{"problem": "x", "text": "Penicillin allergy.", "cites": ["L2"]}])
    model = ModelInfo(name="tiny", version="1", kinds=("Large-Language-Models",), test_weights=True)
    (narrative,) = summary_result(answer, DIGEST, patient_id="p", patient_version="1", model=model).items
    assert narrative.text.startswith("**TEST OUTPUT, not clinical**")


def test_today_only_orders_lines_never_changes_them() -> None:
    later = build_digest(CHART, budget=10_000, count_tokens=COUNTER, counter="", today=date(2030, 1, 1))
    assert later.text == DIGEST.text
