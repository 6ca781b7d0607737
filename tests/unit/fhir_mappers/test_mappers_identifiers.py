"""Deterministic identifiers: same origin, same identifier; any change of origin, a new one; a new
model or prompt version, the same one."""

from __future__ import annotations

from dataclasses import replace

import pytest

from fhir_mappers import (
    device_identifier,
    fhir_id_safe,
    identifier_query,
    item_identifier,
    report_identifier,
    result_identifier,
    structured_results_identifier,
)
from plugin.results import ModelInfo, PipelineResult, SourceRef

SOURCE = SourceRef("DocumentReference", "7", "2", "ab" * 32)


def test_result_identifier_is_our_system_and_a_pinned_hash() -> None:
    # Pinned: the hash inputs and their encoding are a stored contract (a re-run must find what
    # earlier versions of chartlight wrote). Change this only with a migration of stored data.
    assert result_identifier(SOURCE, "documents", "glucose") == {
        "system": "https://chartlight.dev/fhir/sid/result",
        "value": "1815ad012aafb226ea7081a6ac3c85c4bc516a86",
    }


@pytest.mark.parametrize("other", [
    (SourceRef("DocumentReference", "7", "3", "ab" * 32), "documents", "glucose"),  # new version
    (SourceRef("DocumentReference", "7", "2", "cd" * 32), "documents", "glucose"),  # new bytes
    (SourceRef("DocumentReference", "8", "2", "ab" * 32), "documents", "glucose"),  # other id
    (SourceRef("Media", "7", "2", "ab" * 32), "documents", "glucose"),  # other type
    (SOURCE, "imaging", "glucose"),  # other pipeline
    (SOURCE, "documents", "sodium"),  # other item
])
def test_any_change_of_origin_gives_another_identifier(
    other: tuple[SourceRef, str, str],
) -> None:
    assert result_identifier(*other) != result_identifier(SOURCE, "documents", "glucose")


def test_parts_cannot_run_together() -> None:
    a = result_identifier(SourceRef("DocumentReference", "7", "2"), "doc", "uments|x")
    b = result_identifier(SourceRef("DocumentReference", "7", "2"), "doc|uments", "x")
    assert a != b


def test_new_model_or_prompt_version_keeps_every_identifier(result: PipelineResult) -> None:
    newer = replace(result, pipeline_version="prompt-8",
                    model=replace(result.model, version="rev-2"))
    for key in ("p1/glucose", "opacity-1"):
        assert item_identifier(newer, key) == item_identifier(result, key)
    assert report_identifier(newer, result.reports[0]) == report_identifier(
        result, result.reports[0])
    assert structured_results_identifier(newer) == structured_results_identifier(result)


def test_key_conventions_match_result_identifier(result: PipelineResult) -> None:
    group = result.reports[0]
    assert report_identifier(result, group) == result_identifier(
        result.source, result.pipeline, "report/bmp")
    assert structured_results_identifier(result) == result_identifier(
        result.source, result.pipeline, "structured-results")
    assert report_identifier(result, group) != item_identifier(result, "bmp")


def test_device_identifier_is_per_model_name_and_version() -> None:
    model = ModelInfo("google/medgemma-1.5-4b-it", "rev-1", ("Vision-Language-Models",))
    same = ModelInfo("google/medgemma-1.5-4b-it", "rev-1", ("Large-Language-Models",), "Shown")
    assert device_identifier(model) == device_identifier(same)
    assert device_identifier(model)["system"] == "https://chartlight.dev/fhir/sid/device"
    assert device_identifier(replace(model, version="rev-2")) != device_identifier(model)
    assert device_identifier(replace(model, name="google/medasr")) != device_identifier(model)
    assert device_identifier(replace(model, test_weights=True)) != device_identifier(model)


def test_identifier_query() -> None:
    assert identifier_query({"system": "https://x/sid", "value": "abc"}) == (
        "identifier=https://x/sid|abc")


@pytest.mark.parametrize("value", ["abc", "A-1.2", "x" * 64])
def test_fhir_id_safe_keeps_valid_ids(value: str) -> None:
    assert fhir_id_safe(value) == value


@pytest.mark.parametrize("value", ["a b", "google/medgemma", "x" * 65, "ü", "a_b"])
def test_fhir_id_safe_makes_valid_distinct_ids(value: str) -> None:
    made = fhir_id_safe(value)
    assert len(made) <= 64
    assert all(c.isascii() and (c.isalnum() or c in "-.") for c in made)
    assert fhir_id_safe(value) == made
    assert fhir_id_safe(value + "!") != made


def test_fhir_id_safe_refuses_empty() -> None:
    with pytest.raises(ValueError):
        fhir_id_safe("")
