"""The speech pipeline on a job context: attachment -> decode -> engine -> formatted Narrative
with word times; the whole path with the tiny MedASR on the seeded dictation and every format."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import numpy as np
import pytest
import soundfile
import soxr

from plugin.engines.test_models.tiny_medasr import tiny_engine
from plugin.errors import ConfigError, InputError
from plugin.fhir import FhirClient
from plugin.jobs import Job, JobContext, JobState
from plugin.pipelines.speech import PIPELINE, SpeechOptions, SpeechPipeline
from plugin.pipelines.speech.ctc import CtcTranscript, FrameTiming, decode_greedy
from plugin.pipelines.speech.pipeline import DETAILS_SCHEMA
from plugin.results import AudioEvidence, ModelInfo, Narrative
from plugin.sandbox.synthetic import DICTATION_TEXT, espeak_wav, to_flac
from tests.support.audio_formats import FORMATS, container_of, encode

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
MIME = {"wav": "audio/wav", "flac": "audio/flac", "ogg": "audio/ogg", "webm": "audio/webm",
        "mp3": "audio/mpeg"}


def job(resource: dict[str, Any]) -> Job:
    return Job(id=1, pipeline=PIPELINE, source_type=resource["resourceType"], source_id=resource["id"],
               source_version="1", subject="Patient/1", fhir_base_url="http://fhir.invalid/fhir",
               state=JobState.RUNNING, progress=0.0, progress_text="", attempts=1,
               next_attempt_at=NOW, error="", summary={}, created_at=NOW, updated_at=NOW)


def context(resource: dict[str, Any], progress: list[tuple[float, str]] | None = None) -> JobContext:
    seen = progress if progress is not None else []
    # Attachments are inline here, so the client is never called.
    return JobContext(job=job(resource), client=FhirClient("http://fhir.invalid/fhir"),
                      source=resource, report_progress=lambda f, t: seen.append((f, t)))


def media(data: bytes, content_type: str = "audio/wav", **attachment: Any) -> dict[str, Any]:
    return {"resourceType": "Media", "id": "m1", "meta": {"versionId": "3"}, "status": "completed",
            "content": {"contentType": content_type, "data": base64.b64encode(data).decode(),
                        **attachment}}


def document(data: bytes, content_type: str) -> dict[str, Any]:
    return {"resourceType": "DocumentReference", "id": "d1", "meta": {"versionId": "2"},
            "status": "current", "content": [
                {"attachment": {"contentType": "text/plain", "data": "aGk="}},
                {"attachment": {"contentType": content_type,
                                "data": base64.b64encode(data).decode()}}]}


class ScriptedEngine:
    """An engine that 'hears' a fixed CTC frame sequence: known words at known frames."""

    PIECES = ["<pad>", "</s>", "▁exam", "▁{colon}", "▁ct", "▁{period}", "▁{next", "▁line}",
              "▁no", "dule"]

    def __init__(self, emissions: dict[int, int]) -> None:
        self.emissions = emissions
        self.audio: np.ndarray | None = None

    def available(self) -> bool:
        return True

    def requirements(self) -> str:
        return "nothing"

    def model_info(self) -> ModelInfo:
        return ModelInfo("chartlight-test/scripted", "1", ("Deep-Learning-Models",), test_weights=True)

    def transcribe(self, audio_16k: np.ndarray, *,
                   progress: Callable[[float], None] | None = None) -> CtcTranscript:
        self.audio = audio_16k
        ids = np.zeros(len(audio_16k) // 640, dtype=np.int64)
        for frame, token in self.emissions.items():
            ids[frame] = token
        if progress:
            progress(1.0)
        return decode_greedy(ids, blank_id=0, pieces=self.PIECES, timing=FrameTiming(0.04, 0.07),
                             skip_ids=frozenset({1}), duration_s=len(audio_16k) / 16000)


def _tone(seconds: float) -> bytes:
    t = np.arange(int(16000 * seconds)) / 16000
    buffer = io.BytesIO()
    soundfile.write(buffer, 0.3 * np.sin(2 * np.pi * 300 * t), 16000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


@lru_cache(maxsize=1)
def phrase() -> tuple[np.ndarray, int]:
    """A short spoken phrase (espeak-ng's native 22.05 kHz)."""
    samples, rate = soundfile.read(io.BytesIO(espeak_wav("right lower lobe nodule period")),
                                   dtype="float32")
    return samples, rate


def speech(rate: int, channels: int) -> np.ndarray:
    samples, source_rate = phrase()
    resampled = soxr.resample(samples, source_rate, rate)
    return np.repeat(resampled[:, None], channels, axis=1)


def test_result_holds_the_formatted_transcript_with_word_times() -> None:
    # exam {colon} ct {period} {next line} nodule: "no"+"dule" at frames 20-22.
    engine = ScriptedEngine({2: 2, 5: 3, 8: 4, 11: 5, 14: 6, 15: 7, 20: 8, 22: 9})
    data = _tone(2.0)
    progress: list[tuple[float, str]] = []
    result = SpeechPipeline(SpeechOptions(), engine=engine)(context(media(data), progress))
    assert result.pipeline == "speech" and result.pipeline_version
    assert result.source.resource_type == "Media" and result.source.version_id == "3"
    assert result.source.content_sha256 == hashlib.sha256(data).hexdigest()
    assert result.model.test_weights
    (narrative,) = result.items
    assert isinstance(narrative, Narrative)
    assert narrative.kind == "transcript" and narrative.dictated
    assert narrative.text == "Exam: ct.\nNodule"
    assert narrative.evidence == (AudioEvidence(0.0, 2.0),)
    details = json.loads(narrative.details_json)
    assert details["schema"] == DETAILS_SCHEMA and details["duration_s"] == 2.0
    assert details["raw_text"] == "exam {colon} ct {period} {next line} nodule"
    assert details["words"][0] == {"text": "exam", "start_s": 0.13, "end_s": 0.17}
    assert details["words"][-1] == {"text": "nodule", "start_s": 0.85, "end_s": 0.97}
    assert details["model"]["test_weights"] is True
    assert [f for f, _ in progress] == sorted(f for f, _ in progress)
    assert engine.audio is not None and len(engine.audio) == 32000


def test_document_reference_uses_its_audio_attachment() -> None:
    engine = ScriptedEngine({3: 8, 4: 9})
    result = SpeechPipeline(engine=engine)(context(document(_tone(1.0), "audio/wav")))
    assert result.source.resource_type == "DocumentReference"
    assert result.items[0].text == "Nodule"  # type: ignore[union-attr]


def test_nothing_recognised_is_an_input_error_not_an_empty_transcript() -> None:
    with pytest.raises(InputError, match="no speech was recognised"):
        SpeechPipeline(engine=ScriptedEngine({}))(context(media(_tone(1.0))))


@pytest.mark.parametrize("source", ["wav", "flac"])
def test_seeded_dictation_through_the_tiny_medasr(source: str) -> None:
    wav = espeak_wav(DICTATION_TEXT)
    data, resource = (wav, media(wav)) if source == "wav" else (
        to_flac(wav), document(to_flac(wav), "audio/flac"))
    result = SpeechPipeline(engine=tiny_engine())(context(resource))
    (narrative,) = result.items
    assert isinstance(narrative, Narrative) and narrative.text
    details = json.loads(narrative.details_json)
    duration = details["duration_s"]
    assert 50 < duration < 60
    assert narrative.evidence == (AudioEvidence(0.0, duration),)
    words = details["words"]
    assert " ".join(w["text"] for w in words) == details["raw_text"]
    assert all(0 <= w["start_s"] < w["end_s"] <= duration for w in words)
    assert words[-1]["end_s"] > 40  # words from the last chunk too
    assert result.source.content_sha256 == hashlib.sha256(data).hexdigest()
    assert result.model.test_weights


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_format_through_the_tiny_medasr(name: str) -> None:
    resource = media(encode(name, speech), MIME[container_of(name)])
    result = SpeechPipeline(engine=tiny_engine())(context(resource))
    details = json.loads(result.items[0].details_json)  # type: ignore[union-attr]
    samples, rate = phrase()
    assert abs(details["duration_s"] - len(samples) / rate) < 0.03
    assert details["words"]


@pytest.mark.parametrize(("resource", "where", "reason"), [
    (media(b""), "Media/m1 content", "empty"),
    (media(b"RIFF\x10\x00\x00\x00WAVEfmt "), "Media/m1 content", "could not be opened"),
    (media(b"Dictation: patient is well.\n" * 30), "Media/m1 content", "content is text"),
    (media(b"x" * 10, "image/png"), "Media/m1 content", "is not audio"),
    (media(b"x" * 2000, size=2000), "Media/m1 content", "over the 1000-byte limit"),
    (media(b"x" * 2000), "Media/m1 content", "over the 1000-byte limit"),
    (document(b"", "audio/wav") | {"content": []}, "DocumentReference/d1", "no audio attachment"),
], ids=["empty", "truncated", "text", "not-audio", "declared-too-big", "too-big", "no-audio"])
def test_bad_input_is_an_input_error_naming_it(resource: dict[str, Any], where: str,
                                               reason: str) -> None:
    pipeline = SpeechPipeline(SpeechOptions(max_audio_bytes=1000), engine=tiny_engine())
    with pytest.raises(InputError) as caught:
        pipeline(context(resource))
    assert caught.value.source == where and reason in caught.value.reason


def test_without_the_real_weights_it_refuses_rather_than_invents(tmp_path: Any) -> None:
    pipeline = SpeechPipeline(SpeechOptions(medasr_model=str(tmp_path / "no-weights")))
    assert "MedASR is not available" in pipeline.unavailable_reason()
    with pytest.raises(ConfigError, match="No transcript is written without the real model"):
        pipeline(context(media(_tone(1.0))))
    assert SpeechPipeline(engine=tiny_engine()).unavailable_reason() == ""
