"""Ask the chart without a server: the question's checks, the saved answer's transaction (the
clinician as author and agent, every cited version an entity), and the tiny random-weight
Gemma 3 streaming exactly what it generates."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from plugin.engines.test_models import ensure_test_models, medgemma_engine
from plugin.pipelines.summary.ask import BadQuestion, ChartAnswer, check_question, saved_answer_bundle
from plugin.pipelines.summary.citations import check_answer
from plugin.results import ModelInfo, SourceRef
from tests.unit.pipelines.summary.test_summary_citations import DIGEST

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
MODEL = ModelInfo(name="scripted", version="1", kinds=("Large-Language-Models",))


def test_a_question_must_have_words_and_a_limit() -> None:
    assert check_question("  How   is the HbA1c? ") == "How is the HbA1c?"
    for bad in ("", "   ", None, 7, "x" * 501):
        with pytest.raises(BadQuestion):
            check_question(bad)


def _answer(sentences: list[dict[str, object]]) -> ChartAnswer:
    return ChartAnswer("How is the HbA1c?", check_answer(json.dumps(sentences), DIGEST.by_id()), MODEL,
                       SourceRef("Patient", "p", "2"))


def test_a_saved_answer_names_the_clinician_and_every_cited_version() -> None:
    answer = _answer([{"problem": "Answer", "text": "HbA1c fell to 7.1 %.", "cites": ["L5"]},
                      {"problem": "Answer", "text": "It was 9 %.", "cites": ["L5"]}])
    bundle = saved_answer_bundle(answer, clinician="Practitioner/7", now=NOW, base_url="http://x/fhir")
    assert bundle is not None
    by_type = {e["resource"]["resourceType"]: e for e in bundle["entry"]}
    document = by_type["DocumentReference"]["resource"]
    assert document["author"][1] == {"reference": "Practitioner/7"}
    assert document["type"]["coding"][1]["code"] == "chart-answer" and document["docStatus"] == "preliminary"
    provenance = by_type["Provenance"]["resource"]
    assert provenance["agent"][0]["onBehalfOf"] == {"reference": "Practitioner/7"}
    assert provenance["agent"][1]["who"] == {"reference": "Practitioner/7"}
    assert {e["what"]["reference"] for e in provenance["entity"]} == {
        "Patient/p/_history/2", *(f"Observation/{i}/_history/1" for i in ("o1", "o2", "o3", "o4"))}
    assert by_type["DocumentReference"]["request"]["method"] == "POST"


def test_an_answer_with_nothing_supported_is_not_saved() -> None:
    answer = _answer([{"problem": "Answer", "text": "It was 9 %.", "cites": ["L5"]}])
    assert saved_answer_bundle(answer, clinician="Practitioner/7", now=NOW, base_url="http://x/fhir") is None


def test_the_tiny_gemma_streams_what_it_generates(tmp_path: Path) -> None:
    engine = medgemma_engine(ensure_test_models(tmp_path).medgemma)
    assert engine.model_info().test_weights
    whole = engine.generate(["Chart lines: L1 Problem (active): diabetes"], max_new_tokens=12)
    pieces = list(engine.stream(["Chart lines: L1 Problem (active): diabetes"], max_new_tokens=12))
    assert "".join(pieces).strip() == whole and len(pieces) >= 1
