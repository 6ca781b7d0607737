"""The speech pipeline: a dictation (Media or DocumentReference audio) -> a transcript Narrative
with word times, for plugin.writeback to store as a DICTAST-labelled DocumentReference."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from plugin.budget import DEFAULT_JOB_MEMORY_BYTES, MemoryBudget
from plugin.errors import ConfigError, InputError, ResponseTooLarge
from plugin.fhir import resolve_attachment
from plugin.jobs import JobContext
from plugin.pipelines.speech.audio import decode_audio
from plugin.pipelines.speech.beam_search import DEFAULT_ALPHA, DEFAULT_BETA, BeamOptions
from plugin.pipelines.speech.ctc import CtcTranscript
from plugin.pipelines.speech.formatting import format_transcript
from plugin.pipelines.speech.inputs import audio_attachment
from plugin.results import AudioEvidence, ModelInfo, Narrative, PipelineResult, SourceRef

PIPELINE = "speech"
# Bump when decoding or formatting changes what is written: re-runs then update the transcript.
PIPELINE_VERSION = "1"
DETAILS_SCHEMA = "https://chartlight.dev/fhir/transcript-words/1"
TITLE = "Transcript of dictation"


class SpeechEngine(Protocol):
    """What the pipeline needs from a speech model (plugin.engines.medasr.MedAsrEngine)."""

    def available(self) -> bool: ...

    def requirements(self) -> str: ...  # what available() needs, for people to read

    def model_info(self) -> ModelInfo: ...

    def transcribe(self, audio_16k: np.ndarray, *,
                   progress: Callable[[float], None] | None = None) -> CtcTranscript: ...


@dataclass(frozen=True)
class SpeechOptions:
    medasr_model: str = "google/medasr"  # HF id (from the local cache) or a local directory
    chunk_s: float = 20.0  # window length for long audio
    stride_s: float = 2.0  # context on each side of a window beyond the part it is kept for
    # Dictations run minutes; an hour bounds memory (230 MB of samples) and time, and refuses
    # decompression bombs (hours of compressed silence) before they are decoded.
    max_duration_s: float = 3600.0
    lm_path: str | None = None  # KenLM model (ARPA or binary): CTC beam search with it
    # int8 dynamic quantisation of the Linear layers (MatMuls in ONNX Runtime) on CPU
    # (bench/speech.py); False keeps exact fp32. Ignored on GPU (bf16/fp16 there).
    quantize: bool = True
    batch_size: int = 4  # chunks per forward pass
    lm_alpha: float = DEFAULT_ALPHA  # the LM's weight in beam search
    lm_beta: float = DEFAULT_BETA  # the bonus per word in beam search
    device: str | None = None  # None: CUDA when present, else CPU
    threads: int | None = None  # intra-op threads (torch's, or ONNX Runtime's pool); None: default
    # "torch" (transformers), "onnxruntime" (the exported graph, CPU only) or "auto" (ONNX
    # Runtime on the CPU, PyTorch on a GPU); docs/speech.md "Runtimes".
    runtime: str = "auto"
    export_dir: str | None = None  # the ONNX export cache; None: $XDG_CACHE_HOME/chartlight/medasr-onnx
    max_audio_bytes: int = 200 * 1024 * 1024
    attachment_allowed_hosts: tuple[str, ...] = ()
    # What one job may hold decoded at once (the attachment, the samples), charged before decoding.
    job_memory_bytes: int = DEFAULT_JOB_MEMORY_BYTES


class SpeechPipeline:
    """Callable job pipeline (plugin.jobs.Pipeline) for PIPELINE = "speech"."""

    def __init__(self, options: SpeechOptions = SpeechOptions(),
                 engine: SpeechEngine | None = None) -> None:
        self.options = options
        if engine is None:
            # Imported here: the engine module imports this package's ctc module.
            from plugin.engines.medasr import MedAsrEngine

            engine = MedAsrEngine(options.medasr_model, chunk_s=options.chunk_s,
                                  stride_s=options.stride_s, batch_size=options.batch_size,
                                  quantize=options.quantize, lm_path=options.lm_path,
                                  beam=BeamOptions(alpha=options.lm_alpha, beta=options.lm_beta),
                                  device=options.device, threads=options.threads,
                                  runtime=options.runtime, export_dir=options.export_dir)
        self.engine = engine

    def unavailable_reason(self) -> str:
        """Why this pipeline cannot transcribe here (the weights are absent); "" when it can."""
        if self.engine.available():
            return ""
        return (f"MedASR is not available on this machine; it needs {self.engine.requirements()}. "
                "No transcript is written without the real model.")

    def __call__(self, context: JobContext) -> PipelineResult:
        reason = self.unavailable_reason()
        if reason:
            raise ConfigError(f"speech pipeline: {reason}")
        source = context.source
        attachment, where = audio_attachment(source)
        context.report_progress(0.05, "fetching audio")
        data = self._fetch(context, attachment, where)
        context.report_progress(0.1, "decoding audio")
        budget = MemoryBudget(where, self.options.job_memory_bytes)
        budget.charge(len(data), "the attachment")
        audio = decode_audio(data, source=where, max_duration_s=self.options.max_duration_s,
                             budget=budget)
        context.report_progress(0.15, f"transcribing {audio.duration_s:.0f} s of audio")
        transcript = self.engine.transcribe(
            audio.samples, progress=lambda f: context.report_progress(0.15 + 0.75 * f, "transcribing"))
        text = format_transcript(transcript.text)
        if not text:
            raise InputError(where, f"no speech was recognised in {audio.duration_s:.0f} s of audio")
        model = self.engine.model_info()
        narrative = Narrative(
            key="transcript", kind="transcript", title=TITLE, text=text, dictated=True,
            details_json=details_json(transcript, model=model, duration_s=audio.duration_s),
            evidence=(AudioEvidence(0.0, round(audio.duration_s, 3)),))
        return PipelineResult(
            pipeline=PIPELINE, pipeline_version=PIPELINE_VERSION,
            source=SourceRef(source["resourceType"], source["id"], source["meta"]["versionId"],
                             hashlib.sha256(data).hexdigest()),
            model=model, items=(narrative,))

    def _fetch(self, context: JobContext, attachment: dict[str, Any], where: str) -> bytes:
        limit = self.options.max_audio_bytes
        declared = attachment.get("size")
        if declared is not None and int(declared) > limit:
            raise InputError(where, f"the audio is {int(declared)} bytes, over the {limit}-byte limit")
        try:
            data = resolve_attachment(context.client, attachment, source=where,
                                      allowed_hosts=self.options.attachment_allowed_hosts)
        except ResponseTooLarge as exc:
            raise InputError(where, f"the audio is larger than the {exc.limit}-byte limit") from None
        if len(data) > limit:
            raise InputError(where, f"the audio is {len(data)} bytes, over the {limit}-byte limit")
        return data


def details_json(transcript: CtcTranscript, *, model: ModelInfo, duration_s: float) -> str:
    """The transcript's machine-readable companion: every word with its time range (seconds)
    and the model's raw text, brace tokens included."""
    return json.dumps({
        "schema": DETAILS_SCHEMA,
        "model": {"name": model.name, "version": model.version, "test_weights": model.test_weights},
        "duration_s": round(duration_s, 3),
        "frame_s": transcript.timing.frame_s,
        "raw_text": transcript.text,
        "words": [{"text": w.text, "start_s": w.start_s, "end_s": w.end_s} for w in transcript.words],
    }, ensure_ascii=False, separators=(",", ":"))
