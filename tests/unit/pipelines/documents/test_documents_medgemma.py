"""The MedGemma path of the documents pipeline: answers are parsed and every value grounded in
the page text (a hallucinated value becomes an "unverified" problem, an unreadable answer a page
problem); and the whole path on a tiny random-weight Gemma 3 — processor, chat template, greedy
generation, parsing — whose noise must be reported, never turned into values."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from PIL import Image

from plugin.engines.test_models.tiny_gemma import save_tiny_medgemma, tiny_engine
from plugin.pipelines.documents import DocumentsOptions, DocumentsPipeline
from plugin.pipelines.documents.lab_extraction import PROMPT_VERSION
from plugin.results import MeasuredValue, ModelInfo, Narrative, PipelineResult
from tests.support.lab_documents import Seeded, document_reference, offline_context

PAGE_ONE = """<unused94>thought
I will list the CBC and metabolic rows.<unused95>```json
[
 {"name": "WBC", "result": "11.8", "unit": "x10^9/L", "reference_range": "4.0-11.0", "flag": "H",
  "panel": "Complete Blood Count (CBC) with Differential", "specimen": "EDTA whole blood",
  "collection_time": "2026-11-20 08:15 +00:00"},
 {"name": "Glucose", "result": "140", "unit": "mg/dL", "reference_range": "70-99", "flag": "H",
  "panel": "Comprehensive Metabolic Panel"},
 {"name": "Sodium", "result": "138", "unit": "mmol/L", "reference_range": "135-145",
  "panel": "Comprehensive Metabolic Panel", "collection_time": "2026-11-21 09:00"},
 {"name": "Potassium", "result": "4.3", "unit": "mg/dL", "reference_range": "3.5-5.1",
  "panel": "Comprehensive Metabolic Panel"},
]
```"""
PAGE_TWO = "The second page lists a lipid panel: Total cholesterol 232 mg/dL (H), LDL 151"


class ScriptedModel:
    """A vision-language engine that answers each page with a prepared text."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = answers
        self.calls: list[tuple[int, str, int]] = []

    def available(self) -> bool:
        return True

    def model_info(self) -> ModelInfo:
        return ModelInfo("google/medgemma-1.5-4b-it", "scripted", ("Vision-Language-Models",))

    def generate(self, parts: Sequence[Image.Image | str], *, max_new_tokens: int = 1024) -> str:
        # One page: its image, then the prompt.
        images = [p for p in parts if isinstance(p, Image.Image)]
        assert isinstance(parts[0], Image.Image) and isinstance(parts[-1], str)
        self.calls.append((len(images), parts[-1], max_new_tokens))
        return self.answers[len(self.calls) - 1]


def values_of(result: PipelineResult) -> dict[str, MeasuredValue]:
    return {item.name: item for item in result.items if isinstance(item, MeasuredValue)}


def test_only_values_the_page_shows_are_kept(seeded: Seeded) -> None:
    engine = ScriptedModel([PAGE_ONE, PAGE_TWO])
    result = DocumentsPipeline(engine=engine)(
        offline_context(document_reference(seeded.text_pdf, "application/pdf")))
    assert [(n, "page 1 of 2" in p or "page 2 of 2" in p) for n, p, _ in engine.calls] == \
        [(1, True), (1, True)]
    assert "WBC 11.8 x10^9/L 4.0-11.0 H" in engine.calls[0][1]  # the page text goes along
    # and so do the rows the geometry read from that page, and only from that page.
    assert "WBC | 11.8 | x10^9/L | 4.0-11.0 | H" in engine.calls[0][1]
    assert "TSH | " not in engine.calls[0][1] and "TSH | 2.14" in engine.calls[1][1]
    assert result.model.version == "scripted"
    assert result.pipeline_version.endswith(f"+prompt.{PROMPT_VERSION}")

    values = values_of(result)
    assert sorted(values) == ["Sodium", "WBC"]
    assert values["WBC"].value == Decimal("11.8") and values["WBC"].interpretation == "H"
    assert values["WBC"].effective == datetime(2026, 11, 20, 8, 15, tzinfo=UTC)
    # A time the model gives but the page does not print is not used: the header's is.
    assert values["Sodium"].effective == datetime(2026, 11, 20, 8, 15, tzinfo=UTC)
    reasons = [(p.where, p.reason) for p in result.problems]
    # The model's rows are checked where the geometry read the same test.
    assert ("page 1", "unverified: Glucose = 140 mg/dL (the page shows '128' there)") in reasons
    assert ("page 1", "unverified: Potassium = 4.3 mg/dL (the unit 'mg/dL' is not printed "
                      "on the row)") in reasons
    assert any(where == "page 2" and "could not be read" in why for where, why in reasons)
    summary = next(i for i in result.items if isinstance(i, Narrative))
    assert "2 not verified against the page" in summary.text
    assert "unverified: Glucose = 140 mg/dL" in summary.text


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_medgemma(tmp_path_factory.mktemp("tiny-medgemma"))


def test_a_random_weight_model_runs_end_to_end_and_its_noise_is_reported(
        tiny_checkpoint: Path, seeded: Seeded) -> None:
    pipeline = DocumentsPipeline(DocumentsOptions(engine="medgemma", max_new_tokens=24),
                                 engine=tiny_engine(tiny_checkpoint))
    result = pipeline(offline_context(document_reference(seeded.text_pdf, "application/pdf")))
    assert result.model.test_weights is True
    assert result.model.name == "chartlight-test/tiny-medgemma"
    assert values_of(result) == {}
    assert [p.where for p in result.problems] == ["page 1", "page 2"]
    assert all("the model's answer could not be read" in p.reason for p in result.problems)
