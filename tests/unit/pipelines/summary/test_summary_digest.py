"""The chart digest: which lines a chart gives, how chartlight's own results are marked, trends,
and trimming to a token budget. Charts here are written by hand, not by the generator."""

from __future__ import annotations

from datetime import date
from typing import Any

from plugin.pipelines.summary import EstimatedCounter, build_digest
from plugin.pipelines.summary.digest import digest_lines

AIAST = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "AIAST"}
TODAY = date(2026, 12, 1)


def obs(rid: str, day: str, value: float, *, code: str = "4548-4", name: str = "HbA1c", unit: str = "%",
        category: str = "laboratory", flag: str = "", version: str = "1", **extra: Any) -> dict[str, Any]:
    r: dict[str, Any] = {"resourceType": "Observation", "id": rid, "meta": {"versionId": version},
                         "status": "final", "effectiveDateTime": day,
                         "category": [{"coding": [{"code": category}]}],
                         "code": {"coding": [{"system": "http://loinc.org", "code": code}], "text": name},
                         "valueQuantity": {"value": value, "unit": unit}, **extra}
    if flag:
        r["interpretation"] = [{"coding": [{"code": flag}]}]
    return r


CHART: list[dict[str, Any]] = [
    {"resourceType": "Condition", "id": "c1", "meta": {"versionId": "3"},
     "clinicalStatus": {"coding": [{"code": "active"}]}, "code": {"text": "Type 2 diabetes"},
     "onsetDateTime": "2019-03-04"},
    {"resourceType": "Condition", "id": "c2", "meta": {"versionId": "1"},
     "clinicalStatus": {"coding": [{"code": "resolved"}]}, "code": {"text": "Bronchitis"}},
    {"resourceType": "AllergyIntolerance", "id": "a1", "meta": {"versionId": "1"}, "criticality": "high",
     "code": {"text": "Penicillin"}, "reaction": [{"manifestation": [{"text": "Hives"}]}]},
    {"resourceType": "MedicationRequest", "id": "m1", "meta": {"versionId": "2"}, "status": "active",
     "medicationCodeableConcept": {"text": "Metformin 500 mg"}, "authoredOn": "2019-03-04",
     "dosageInstruction": [{"text": "1000 mg twice daily"}]},
    {"resourceType": "MedicationRequest", "id": "m2", "meta": {"versionId": "1"}, "status": "stopped",
     "medicationCodeableConcept": {"text": "Amoxicillin"}},
    obs("o1", "2026-02-01", 8.4), obs("o2", "2026-05-01", 7.9), obs("o3", "2026-08-01", 7.5),
    obs("o4", "2026-11-01", 7.1, flag="H"),
    obs("ai1", "2026-11-21", 5.4, code="2823-3", name="Potassium", unit="mmol/L",
        meta={"versionId": "1", "security": [AIAST]}, status="preliminary"),
]


def test_lines_cite_versions_skip_inactive_and_mark_own_results() -> None:
    texts = {line.refs[0]: line.text for line in digest_lines(CHART)}
    assert texts["Condition/c1/_history/3"] == "Problem (active): Type 2 diabetes, since 2019-03-04"
    assert "Condition/c2/_history/1" not in texts and "MedicationRequest/m2/_history/1" not in texts
    assert texts["AllergyIntolerance/a1/_history/1"] == (
        "Allergy (high criticality): Penicillin; reaction: Hives")
    assert texts["MedicationRequest/m1/_history/2"] == (
        "Medication order (active): Metformin 500 mg; 1000 mg twice daily, from 2019-03-04")
    assert texts["Observation/ai1/_history/1"].startswith(
        "[chartlight AI result, preliminary, not reviewed] Lab (preliminary): Potassium 5.4 mmol/L")


def test_a_lab_line_gives_the_latest_value_and_its_trend_citing_every_value_shown() -> None:
    (line,) = [x for x in digest_lines(CHART) if x.refs[0] == "Observation/o4/_history/1"]
    assert line.text == ("Lab (final): HbA1c 7.1 % on 2026-11-01 (flagged H); earlier 7.5 % on "
                         "2026-08-01, 7.9 % on 2026-05-01, 8.4 % on 2026-02-01; trend down")
    assert line.refs == tuple(f"Observation/{i}/_history/1" for i in ("o4", "o3", "o2", "o1"))
    assert line.abnormal


def test_blood_pressure_components_read_as_systolic_over_diastolic() -> None:
    bp = {"resourceType": "Observation", "id": "bp", "meta": {"versionId": "1"}, "status": "final",
          "effectiveDateTime": "2026-11-14T09:10:00+00:00",
          "category": [{"coding": [{"code": "vital-signs"}]}],
          "code": {"text": "Blood pressure"},
          "component": [{"code": {"text": "Systolic"}, "valueQuantity": {"value": 128, "unit": "mm[Hg]"}},
                        {"code": {"text": "Diastolic"}, "valueQuantity": {"value": 82, "unit": "mm[Hg]"}}]}
    (line,) = digest_lines([bp])
    assert line.text == "Vital sign (final): Blood pressure 128/82 mm[Hg] on 2026-11-14"


def test_our_own_summaries_are_not_chart_content() -> None:
    summary = {"resourceType": "DocumentReference", "id": "s", "meta": {"versionId": "1"},
               "type": {"coding": [{"system": "https://chartlight.dev/fhir/CodeSystem/document-kind",
                                    "code": "patient-summary"}]}}
    assert digest_lines([summary]) == []
    # Types the digest does not show are skipped, whatever their shape (Encounter.type is a list).
    assert digest_lines([{"resourceType": "Encounter", "id": "e", "type": [{"text": "visit"}]}]) == []


def test_trimming_keeps_problems_first_then_flagged_then_recent_and_numbers_in_section_order() -> None:
    counter = EstimatedCounter()
    full = build_digest(CHART, budget=10_000, count_tokens=counter, counter=counter.name, today=TODAY)
    assert [n.id for n in full.lines] == ["L1", "L2", "L3", "L4", "L5"]
    assert full.total_lines == 5 and full.tokens <= full.budget
    assert [n.line.section for n in full.lines] == ["problem", "allergy", "medication", "lab", "lab"]
    # A budget for about three lines keeps the problem list, allergy and medication.
    small = build_digest(CHART, budget=full.tokens * 3 // 5, count_tokens=counter, counter=counter.name,
                         today=TODAY)
    assert [n.line.section for n in small.lines] == ["problem", "allergy", "medication"]
    assert small.tokens <= small.budget < full.tokens and small.total_tokens == full.total_tokens


def test_the_fingerprint_changes_when_any_resource_gets_a_new_version() -> None:
    counter = EstimatedCounter()
    before = build_digest(CHART, budget=9999, count_tokens=counter, counter="", today=TODAY)
    changed = [*CHART[:-1], {**CHART[-1], "meta": {"versionId": "2", "security": [AIAST]}}]
    after = build_digest(changed, budget=9999, count_tokens=counter, counter="", today=TODAY)
    assert before.fingerprint != after.fingerprint
    assert build_digest(list(CHART), budget=9999, count_tokens=counter, counter="",
                        today=TODAY).fingerprint == before.fingerprint
