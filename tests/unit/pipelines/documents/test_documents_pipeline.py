"""The whole documents pipeline without a server: the layout engine's result on the text PDF
(values, panels, summary, source hash, determinism, the resources it maps to), the real type of a
mislabelled attachment, and engine choice."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence

import pytest
from PIL import Image

from fhir_mappers.systems import EXT_EVIDENCE_TEXT
from plugin.errors import ConfigError
from plugin.pipelines.documents import (
    LAYOUT_MODEL,
    PIPELINE_VERSION,
    DocumentsOptions,
    DocumentsPipeline,
)
from plugin.results import MeasuredValue, ModelInfo, Narrative, PipelineResult, TextEvidence
from plugin.writeback import plan_resources
from tests.support.lab_documents import Seeded, document_reference, offline_context


class AbsentModel:
    """An engine whose weights are not on this machine."""

    def available(self) -> bool:
        return False

    def why_unavailable(self) -> str:
        return "no model weights at /models/medgemma"

    def model_info(self) -> ModelInfo:
        return ModelInfo("google/medgemma-1.5-4b-it", "unresolved", ("Vision-Language-Models",))

    def generate(self, parts: Sequence[Image.Image | str], *, max_new_tokens: int = 1024) -> str:
        raise AssertionError("an unavailable engine is never asked")


@pytest.fixture(scope="module")
def text_pdf_result(seeded: Seeded) -> PipelineResult:
    pipeline = DocumentsPipeline(engine=AbsentModel())
    return pipeline(offline_context(document_reference(seeded.text_pdf, "application/pdf")))


def values_of(result: PipelineResult) -> list[MeasuredValue]:
    return [item for item in result.items if isinstance(item, MeasuredValue)]


def summary_of(result: PipelineResult) -> Narrative:
    (summary,) = [item for item in result.items if isinstance(item, Narrative)]
    return summary


def test_the_layout_engine_reads_the_text_pdf_into_a_result(text_pdf_result: PipelineResult,
                                                            seeded: Seeded) -> None:
    result = text_pdf_result
    assert (result.pipeline, result.pipeline_version, result.model) == (
        "documents", PIPELINE_VERSION, LAYOUT_MODEL)
    assert result.model.kinds == ("Deterministic-AI",) and result.model.test_weights is False
    assert result.source.versioned_reference == "DocumentReference/doc-1/_history/3"
    assert result.source.content_sha256 == hashlib.sha256(seeded.text_pdf).hexdigest()
    assert len(values_of(result)) == 32 and result.problems == ()
    codes = [(g.code.code, len(g.item_keys)) for g in result.reports]
    assert codes == [("57021-8", 11), ("24323-8", 15), ("24331-1", 4), ("11502-2", 1),
                     ("11502-2", 1)]
    assert {k for g in result.reports for k in g.item_keys} == {v.key for v in values_of(result)}
    assert all(g.effective is not None for g in result.reports)


def test_the_summary_says_what_was_read_extracted_and_why_no_model(
        text_pdf_result: PipelineResult) -> None:
    summary = summary_of(text_pdf_result)
    assert (summary.kind, summary.media_type) == ("summary", "text/markdown")
    text = summary.text
    assert "page 1: text layer; page 2: text layer" in text
    assert "32 values in 5 panels, 14 outside the reference range; 0 not verified" in text
    assert "MedGemma not used: no model weights at /models/medgemma" in text
    assert "| Lipid Panel | HDL cholesterol | 44 | mg/dL | >50 | L | 2 |" in text


def test_a_rerun_gives_the_same_result(text_pdf_result: PipelineResult, seeded: Seeded) -> None:
    again = DocumentsPipeline(engine=AbsentModel())(
        offline_context(document_reference(seeded.text_pdf, "application/pdf")))
    assert again == text_pdf_result


def test_the_result_maps_to_observations_with_evidence(text_pdf_result: PipelineResult) -> None:
    planned = plan_resources(text_pdf_result, subject="Patient/1")
    kinds = [p.resource["resourceType"] for p in planned]
    assert (kinds.count("Observation"), kinds.count("DiagnosticReport"),
            kinds.count("DocumentReference")) == (32, 5, 1)
    glucose = next(p.resource for p in planned if p.resource.get("code", {}).get("text") == "Glucose")
    assert glucose["code"]["coding"][0]["code"] == "2345-7"
    assert glucose["valueQuantity"]["value"] == 128
    assert glucose["interpretation"][0]["coding"][0]["code"] == "H"
    (evidence,) = [e for e in glucose["extension"] if e["url"] == EXT_EVIDENCE_TEXT]
    parts = {p["url"]: next(v for k, v in p.items() if k.startswith("value")) for p in evidence["extension"]}
    assert parts["page"] == 1 and parts["quote"] == "Glucose 128 mg/dL 70-99 H"
    assert len(parts["box"].split(",")) == 4


def test_a_png_declared_as_pdf_is_read_as_the_png_it_is() -> None:
    blank = io.BytesIO()
    Image.new("L", (300, 200), 255).save(blank, format="PNG")
    result = DocumentsPipeline(DocumentsOptions(engine="layout"))(
        offline_context(document_reference(blank.getvalue(), "application/pdf")))
    assert values_of(result) == [] and len(result.reports) == 0
    text = summary_of(result).text
    assert "PNG image, 1 page" in text and "declared application/pdf" in text
    assert "page 1: OCR" in text and "0 values" in text


def test_medgemma_required_but_absent_is_a_configuration_error(seeded: Seeded) -> None:
    pipeline = DocumentsPipeline(DocumentsOptions(engine="medgemma"), engine=AbsentModel())
    with pytest.raises(ConfigError, match="no model weights at /models/medgemma"):
        pipeline(offline_context(document_reference(seeded.text_pdf, "application/pdf")))


def test_every_value_has_text_evidence_on_its_page(text_pdf_result: PipelineResult) -> None:
    for value in values_of(text_pdf_result):
        (evidence,) = value.evidence
        assert isinstance(evidence, TextEvidence) and value.name in evidence.quote
        assert value.key.endswith(f"@p{evidence.page}")
