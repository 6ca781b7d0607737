"""Which analysis pipelines this installation runs, built once from the settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plugin.config import Settings
from plugin.engines import test_models
from plugin.engines.vision_language import VisionLanguageEngine
from plugin.fhir import FhirClient
from plugin.jobs import Pipeline

if TYPE_CHECKING:
    from plugin.pipelines.imaging import ImagingTask
    from plugin.pipelines.speech import SpeechOptions
    from plugin.pipelines.summary import SummaryPipeline


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
    # For a pipeline over the whole chart: queue its job again when the chart changed since it
    # ran (store, client, patient id) -> jobs queued. Called by the CDS analysis scan.
    refresh: Callable[[Any, FhirClient, str], int] | None = None
    # The model engine, for work outside jobs (the SMART app's live dictation uses speech's).
    engine: Any = None


def installed_pipelines(settings: Settings) -> dict[str, InstalledPipeline]:
    """The pipelines by name. Models load lazily, on a pipeline's first job."""
    from plugin.pipelines import documents, speech, summary

    # Every setting a pipeline honours reaches it here (tests/unit/pipelines/test_registry.py).
    doc_options = documents.DocumentsOptions(medgemma_model=settings.medgemma_model,
                                             attachment_allowed_hosts=settings.attachment_allowed_hosts,
                                             job_memory_bytes=settings.job_memory_bytes)
    # Documents never read pages with test models: random weights would only have every value
    # refused by the page check; without MedGemma the layout extractor reads real text.
    doc_engine = _configured_medgemma(settings)
    doc_pipeline = documents.DocumentsPipeline(doc_options, doc_engine)
    medgemma_missing = _why_unavailable(doc_engine)
    doc_note = ("MedGemma 1.5 reads each page; every value is checked against the page"
                if medgemma_missing is None else
                f"MedGemma cannot run here ({medgemma_missing}), so the deterministic lab-report "
                "layout extractor reads the pages instead")
    speech_options = speech_options_of(settings)
    speech_pipeline = speech.SpeechPipeline(speech_options, engine=_test_medasr(settings))
    # One MedGemma per process: imaging shares the documents' engine unless it uses the test model.
    imaging = imaging_pipeline(settings, engine=None if settings.test_models else doc_engine)
    guard = test_models.sandbox_only if settings.test_models else (lambda pipeline: pipeline)
    note = dictation_note_pipeline(settings, doc_engine, guard)
    return {
        documents.PIPELINE: InstalledPipeline(
            documents.PIPELINE, "lab reports (PDF, scans, photos) -> lab Observations",
            documents.find_sources, guard(doc_pipeline), engine_note=doc_note),
        speech.PIPELINE: InstalledPipeline(
            speech.PIPELINE, "dictation audio -> transcript DocumentReference (MedASR)",
            speech.find_sources, guard(speech_pipeline),
            unavailable_reason=speech_pipeline.unavailable_reason(),
            engine_note="the tiny random-weight test MedASR: TEST OUTPUT, not clinical"
            if settings.test_models else "", engine=speech_pipeline.engine),
        note.name: note,
        imaging.name: imaging,
        # Pathology shares imaging's engine (one MedGemma per process) and its GPU queue.
        "pathology": pathology_pipeline(settings, engine=None if settings.test_models else doc_engine),
        summary.PIPELINE: summary_pipeline(settings, engine=None if settings.test_models else doc_engine),
    }


def dictation_note_pipeline(settings: Settings, engine: VisionLanguageEngine,
                            guard: Callable[[Pipeline], Pipeline]) -> InstalledPipeline:
    """Transcripts -> a structured note (MedGemma: the test model with test_models) and the
    vital signs spoken in them (always: a deterministic reader)."""
    from plugin.pipelines.speech import dictation_note

    if settings.test_models:
        engine = medgemma_engine(settings)
    pipeline = dictation_note.DictationNotePipeline(
        dictation_note.NoteOptions(attachment_allowed_hosts=settings.attachment_allowed_hosts),
        engine)
    missing = pipeline.engine_missing()
    note = ("the tiny random-weight test MedGemma structures the note: TEST OUTPUT, not clinical"
            if settings.test_models else "MedGemma 1.5 structures the note; every sentence cites its audio"
            if not missing else f"{missing}: the note is not structured, only the vital signs are read")
    return InstalledPipeline(
        dictation_note.PIPELINE,
        "dictation transcripts -> structured note and vital-sign Observations (MedGemma)",
        dictation_note.find_sources, guard(pipeline), engine_note=note)


def chart_reader(settings: Settings, engine: VisionLanguageEngine | None = None) -> SummaryPipeline:
    """The summary pipeline object the settings choose (its engine, budget and tokenizer): the
    summary jobs run it, and the app's "ask the chart" asks its engine. `engine`: a MedGemma
    this process already has (one per process: the weights are 8 GB)."""
    from plugin.pipelines import summary

    tokenizer = settings.summary_tokenizer or (
        str(test_models.ensure_test_models(_test_models_dir(settings)).medgemma)
        if settings.test_models else settings.medgemma_model)
    return summary.SummaryPipeline(
        summary.SummaryOptions(token_budget=settings.summary_token_budget,
                               max_new_tokens=settings.summary_max_new_tokens),
        engine or medgemma_engine(settings), summary.token_counter(tokenizer))


def summary_pipeline(settings: Settings, engine: VisionLanguageEngine | None = None) -> InstalledPipeline:
    """The cited patient summary (plugin.pipelines.summary): one job per Patient version."""
    from plugin.pipelines import summary

    pipeline = chart_reader(settings, engine)
    run = test_models.sandbox_only(pipeline) if settings.test_models else pipeline
    return InstalledPipeline(
        summary.PIPELINE, "the patient's chart -> a cited patient summary DocumentReference (MedGemma 1.5)",
        lambda client, patient_id: [client.read("Patient", patient_id)], run,
        unavailable_reason=pipeline.unavailable_reason(),
        engine_note="the tiny random-weight test model: TEST OUTPUT, not clinical"
        if settings.test_models else "MedGemma 1.5 over the chart digest",
        refresh=summary.refresh_if_changed)


def medgemma_engine(settings: Settings) -> VisionLanguageEngine:
    """The MedGemma engine the settings choose: the tiny test model (test_models), local
    transformers, or a remote chat endpoint."""
    if settings.test_models:
        folders = test_models.ensure_test_models(_test_models_dir(settings))
        return test_models.medgemma_engine(folders.medgemma)
    return _configured_medgemma(settings)


def _configured_medgemma(settings: Settings) -> VisionLanguageEngine:
    if settings.medgemma_engine == "remote":
        from plugin.engines.openai_chat import OpenAIChatEngine

        assert settings.medgemma_remote_url is not None  # Settings checked it
        return OpenAIChatEngine(settings.medgemma_remote_url, settings.medgemma_remote_model,
                                api_key=settings.medgemma_remote_api_key,
                                timeout_s=settings.medgemma_remote_timeout_s)
    from plugin.engines import MedGemmaEngine

    # A stored test model is marked as one wherever it is configured.
    model = settings.medgemma_model
    return MedGemmaEngine(model, test_weights=test_models.is_test_model(model),
                          device=settings.medgemma_device or None, dtype=settings.medgemma_dtype or None,
                          attention=settings.medgemma_attention or None,
                          max_new_tokens=settings.medgemma_max_new_tokens)


def speech_options_of(settings: Settings) -> SpeechOptions:
    """The speech pipeline's options from the medasr_* settings ("" and 0 mean "the default")."""
    from plugin.pipelines.speech import SpeechOptions

    return SpeechOptions(
        medasr_model=settings.medasr_model, lm_path=settings.medasr_lm_path or None,
        lm_alpha=settings.medasr_lm_alpha, lm_beta=settings.medasr_lm_beta,
        quantize=settings.medasr_quantize, batch_size=settings.medasr_batch_size,
        chunk_s=settings.medasr_chunk_s, stride_s=settings.medasr_stride_s,
        device=settings.medasr_device or None, threads=settings.medasr_threads or None,
        runtime=settings.medasr_runtime, export_dir=settings.medasr_onnx_cache_dir or None,
        attachment_allowed_hosts=settings.attachment_allowed_hosts,
        job_memory_bytes=settings.job_memory_bytes, max_duration_s=settings.speech_max_duration_s)


def _test_models_dir(settings: Settings) -> Path:
    from plugin.sandbox.places import default_cache_dir

    configured = settings.test_models_dir
    return Path(configured).expanduser() if configured else default_cache_dir() / "test-models"


def _test_medasr(settings: Settings) -> Any:
    """With test_models, the stored tiny MedASR; else None (the pipeline builds MedASR)."""
    if not settings.test_models:
        return None
    folders = test_models.ensure_test_models(_test_models_dir(settings))
    return test_models.StoredMedAsr(folders.medasr)


def imaging_pipeline(settings: Settings, task: ImagingTask | None = None, *,
                     engine: VisionLanguageEngine | None = None) -> InstalledPipeline:
    """The imaging pipeline for one task (default: findings). Each task is its own job queue
    name (ImagingTask.job_pipeline), so asking a new question of a study runs a new job."""
    from plugin.pipelines.imaging import ImagingPipeline, ImagingTask
    from plugin.pipelines.imaging.pipeline import task_sources
    from plugin.pipelines.imaging.prepare import find_imaging_studies, imaging_options
    from plugin.pipelines.imaging.stow import dicom_write_options

    task = task or ImagingTask()
    engine = engine or medgemma_engine(settings)
    pipeline = ImagingPipeline(engine, task=task, preparation=imaging_options(settings),
                               dicom_write=dicom_write_options(settings))
    run = test_models.sandbox_only(pipeline) if settings.test_models else pipeline
    where = ("the tiny random-weight test model: TEST OUTPUT, not clinical" if settings.test_models
             else "local transformers" if settings.medgemma_engine == "local"
             else f"the remote endpoint {settings.medgemma_remote_url}")
    return InstalledPipeline(
        task.job_pipeline,
        f"CT/MRI volumes and chest X-rays -> imaging findings (MedGemma 1.5, task {task.kind})",
        lambda client, patient_id: task_sources(task, find_imaging_studies(client, patient_id)),
        run, unavailable_reason=pipeline.unavailable_reason(),
        engine_note=f"MedGemma 1.5 through {where}")


def pathology_pipeline(settings: Settings, *, engine: VisionLanguageEngine | None = None
                       ) -> InstalledPipeline:
    """Whole-slide pathology: the patient's studies with a slide (SM) series -> findings on
    patches of the slide (plugin.pipelines.pathology), with the slide options of the settings; the
    DICOM SR goes back under imaging's write-back settings."""
    from plugin.pipelines.imaging.stow import dicom_write_options
    from plugin.pipelines.pathology.pipeline import PIPELINE, PathologyPipeline
    from plugin.pipelines.pathology.prepare import pathology_options

    engine = engine or medgemma_engine(settings)
    pipeline = PathologyPipeline(engine, preparation=pathology_options(settings),
                                 dicom_write=dicom_write_options(settings))
    run = test_models.sandbox_only(pipeline) if settings.test_models else pipeline
    where = ("the tiny random-weight test model: TEST OUTPUT, not clinical" if settings.test_models
             else "local transformers" if settings.medgemma_engine == "local"
             else f"the remote endpoint {settings.medgemma_remote_url}")
    return InstalledPipeline(
        PIPELINE, "whole-slide pathology (DICOM SM) -> pathology findings and report (MedGemma 1.5)",
        pipeline.find_studies, run, unavailable_reason=pipeline.unavailable_reason(),
        engine_note=f"MedGemma 1.5 through {where}")


def _why_unavailable(engine: VisionLanguageEngine) -> str | None:
    if engine.available():
        return None
    reason: str | None = getattr(engine, "why_unavailable", lambda: "not available")()
    return reason or "not available"
