"""The summary settings reach the pipeline: the token budget trims the digest, the answer length
reaches the engine, the time limit reaches the job runner, the tokenizer setting picks the
counter."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from plugin.config import Settings
from plugin.engines.test_models import ensure_test_models
from plugin.jobs import JobLimits
from plugin.pipelines.registry import summary_pipeline
from plugin.pipelines.summary import EstimatedCounter, SummaryPipeline
from tests.unit.pipelines.summary.test_summary_digest import CHART

BASE = "http://127.0.0.1:1/fhir"


def _pipeline(**settings: Any) -> SummaryPipeline:
    run = summary_pipeline(Settings(fhir_base_url=BASE, **settings)).run
    assert isinstance(run, SummaryPipeline)
    return run


def test_the_token_budget_trims_the_digest() -> None:
    from plugin.pipelines.summary import build_digest

    small, large = _pipeline(summary_token_budget=90), _pipeline(summary_token_budget=9000)
    lines = [build_digest(CHART, budget=p.options.token_budget, count_tokens=EstimatedCounter(), counter="",
                          today=date(2026, 12, 1)).lines for p in (small, large)]
    assert len(lines[0]) < len(lines[1]) == 5


def test_the_answer_length_reaches_the_pipeline() -> None:
    assert _pipeline(summary_max_new_tokens=77).options.max_new_tokens == 77


def test_the_time_limit_reaches_the_runner() -> None:
    limits = JobLimits.from_settings(Settings(fhir_base_url=BASE, job_timeout_summary_s=42))
    assert limits.time_limit("summary") == 42


def test_the_tokenizer_setting_picks_the_counter(tmp_path: Path) -> None:
    assert _pipeline().count_tokens.name.startswith("estimate")  # no Gemma 3 tokenizer files here
    folder = ensure_test_models(tmp_path).medgemma
    counter = _pipeline(summary_tokenizer=str(folder)).count_tokens
    assert counter.name == f"GemmaTokenizer of {folder}" or counter.name.endswith(f"of {folder}")
    assert counter("abc") == 3  # the tiny test vocabulary has one token per character
