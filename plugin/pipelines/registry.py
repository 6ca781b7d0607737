"""Which analysis pipelines this installation runs, built once from the settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from plugin.config import Settings
from plugin.fhir import FhirClient
from plugin.jobs import Pipeline


@dataclass(frozen=True)
class InstalledPipeline:
    name: str
    description: str
    find_sources: Callable[[FhirClient, str], list[dict[str, Any]]]
    run: Pipeline
    # Why the pipeline cannot produce results here (e.g. model weights absent); "" when it can.
    unavailable_reason: str = ""
    # Which engine it will use, for people to read (e.g. a fallback taken for lack of weights).
    engine_note: str = ""


def installed_pipelines(settings: Settings) -> dict[str, InstalledPipeline]:
    """The pipelines by name. Models load lazily, on a pipeline's first job."""
    from plugin.engines import MedGemmaEngine
    from plugin.pipelines import documents, speech

    doc_options = documents.DocumentsOptions()
    medgemma = MedGemmaEngine(doc_options.medgemma_model)
    doc_pipeline = documents.DocumentsPipeline(doc_options, medgemma)
    medgemma_missing = medgemma.why_unavailable()
    doc_note = ("MedGemma 1.5 reads each page; every value is checked against the page"
                if medgemma_missing is None else
                f"MedGemma cannot run here ({medgemma_missing}), so the deterministic lab-report "
                "layout extractor reads the pages instead")
    speech_options = speech.SpeechOptions()
    speech_pipeline = speech.SpeechPipeline(speech_options)
    return {
        documents.PIPELINE: InstalledPipeline(
            documents.PIPELINE, "lab reports (PDF, scans, photos) -> lab Observations",
            documents.find_sources, doc_pipeline, engine_note=doc_note),
        speech.PIPELINE: InstalledPipeline(
            speech.PIPELINE, "dictation audio -> transcript DocumentReference (MedASR)",
            speech.find_sources, speech_pipeline,
            unavailable_reason=speech_pipeline.unavailable_reason()),
    }
