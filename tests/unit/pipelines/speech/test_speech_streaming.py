"""Live dictation's incremental decoder against the batch engine: an espeak-ng dictation streamed
in random-size pieces gives partial transcripts along the way and, at the end, the batch
transcript of the same audio exactly (text, words, every window's log-probabilities)."""

from __future__ import annotations

import statistics
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from plugin.engines.medasr import MedAsrEngine
from plugin.engines.test_models.tiny_medasr import tiny_loaded
from plugin.pipelines.speech.audio import decode_audio
from plugin.pipelines.speech.ctc import ChunkFrames
from plugin.pipelines.speech.streaming import PREVIEW_S, IncrementalDecoder
from plugin.sandbox.synthetic import DICTATION_TEXT, espeak_wav


@lru_cache(maxsize=1)
def dictation() -> np.ndarray:
    """The seeded dictation as espeak-ng speaks it (made by espeak, not by the code under test)."""
    return decode_audio(espeak_wav(DICTATION_TEXT), source="test", max_duration_s=600).samples


def engine(*, quantize: bool, batch_size: int = 3, runtime: str = "torch",
           export_dir: str | None = None) -> MedAsrEngine:
    # Short windows so that the dictation spans many windows and several batches.
    if runtime == "onnxruntime":  # ONNX Runtime quantises the fp32 graph it exports itself
        return MedAsrEngine.from_loaded(tiny_loaded(), quantize=quantize, runtime=runtime,
                                        export_dir=export_dir, chunk_s=4.0, stride_s=0.8,
                                        batch_size=batch_size)
    return MedAsrEngine.from_loaded(tiny_loaded(quantize=quantize), chunk_s=4.0, stride_s=0.8,
                                    batch_size=batch_size)


def batch_windows(asr: MedAsrEngine, audio: np.ndarray) -> tuple[list[ChunkFrames], list[np.ndarray]]:
    """What transcribe() decodes, batch by batch, with the log-probabilities kept."""
    plan = asr.window_plan(len(audio))
    frames: list[ChunkFrames] = []
    scores: list[np.ndarray] = []
    for first in range(0, len(plan), asr.batch_size):
        batch = plan[first:first + asr.batch_size]
        ids, log_probs = asr.decode_windows([audio[c.start:c.end] for c in batch], keep_log_probs=True)
        frames += [ChunkFrames(c.first_frame, row) for c, row in zip(batch, ids, strict=True)]
        scores += log_probs
    return frames, scores


@pytest.mark.parametrize(("quantize", "seed", "runtime"), [
    (False, 1, "torch"), (True, 2, "torch"), (True, 3, "onnxruntime"),  # the CPU default
], ids=["fp32", "int8", "onnxruntime-int8"])
def test_streamed_in_random_pieces_the_final_is_the_batch_transcript_exactly(
        quantize: bool, seed: int, runtime: str, tmp_path: Path) -> None:
    audio = dictation()
    asr = engine(quantize=quantize, runtime=runtime, export_dir=str(tmp_path / "onnx"))
    assert len(asr.window_plan(len(audio))) > 2 * asr.batch_size  # several batches, one short
    batch = asr.transcribe(audio)
    windows, log_probs = batch_windows(asr, audio)
    assert batch.text  # the calibrated tiny model emits tokens

    decoder = IncrementalDecoder(asr, keep_log_probs=True)
    rng = np.random.default_rng(seed)
    received, partials = 0, []
    while received < len(audio):
        received = min(len(audio), received + int(rng.integers(200, 24_000)))
        partial = decoder.partial(audio[:received])
        if partial is not None:
            partials.append(partial)
    final = decoder.final(audio)

    assert final.transcript == batch
    assert [w.first_frame for w in final.windows] == [w.first_frame for w in windows]
    for ours, theirs in zip(final.windows, windows, strict=True):
        assert np.array_equal(ours.ids, theirs.ids)
    for ours_lp, theirs_lp in zip(final.log_probs, log_probs, strict=True):
        assert np.array_equal(ours_lp, theirs_lp)
    # Partials came all along, and batches were kept while the audio was still arriving.
    assert len(partials) > 10 and any(p.transcript.text for p in partials[: len(partials) // 2])
    assert any(p.kept_windows >= asr.batch_size for p in partials)
    assert all(p.samples <= q.samples for p, q in zip(partials, partials[1:], strict=False))


def test_a_window_decoded_alone_is_not_exact_under_int8_so_batches_are_kept_whole() -> None:
    """Why the decoder keeps the batch path's batches: with dynamic int8 the activation scale is
    the whole batch's, so the same window alone gives other log-probabilities."""
    audio = dictation()
    asr = engine(quantize=True)
    plan = asr.window_plan(len(audio))
    _, together = asr.decode_windows([audio[c.start:c.end] for c in plan[:3]], keep_log_probs=True)
    _, alone = asr.decode_windows([audio[plan[1].start:plan[1].end]], keep_log_probs=True)
    assert not np.array_equal(together[1], alone[0])


def test_partial_covers_the_audio_so_far_and_final_refuses_too_little() -> None:
    asr = engine(quantize=False, batch_size=1)
    decoder = IncrementalDecoder(asr)
    audio = dictation()
    assert decoder.partial(audio[:100]) is None  # under one output frame
    part = decoder.partial(audio[:40_000])
    assert part is not None and part.samples == 40_000
    assert part.transcript.frames == asr.output_frames(40_000)  # up to the last sample received
    with pytest.raises(ValueError, match="shrank"):
        decoder.partial(audio[:20_000])
    with pytest.raises(ValueError, match="too short"):
        IncrementalDecoder(asr).final(audio[:100])


class Counting:
    """The engine, counting the audio each forward pass decodes."""

    def __init__(self, asr: MedAsrEngine) -> None:
        self.asr = asr
        self.batch_size, self.lm_path = asr.batch_size, asr.lm_path
        self.passes: list[list[int]] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.asr, name)

    def decode_windows(self, pieces: list[np.ndarray], *, keep_log_probs: bool = False) -> object:
        self.passes.append([len(p) for p in pieces])
        return self.asr.decode_windows(pieces, keep_log_probs=keep_log_probs)


def test_an_update_decodes_seconds_of_audio_not_the_recording() -> None:
    """At the product's windows (20 s, 2 s stride, 4 per batch) over a 55 s dictation streamed
    in 1 s pieces: most updates decode one short preview window; each 20 s window is decoded
    at most twice (alone while its batch is unfinished, then in its batch)."""
    audio = dictation()
    asr = Counting(MedAsrEngine.from_loaded(tiny_loaded()))
    decoder = IncrementalDecoder(asr)  # type: ignore[arg-type]
    per_update = []
    for end in range(16_000, len(audio) + 16_000, 16_000):
        before = len(asr.passes)
        decoder.partial(audio[:min(end, len(audio))])
        per_update.append(sum(sum(p) for p in asr.passes[before:]))
    assert statistics.median(per_update) <= PREVIEW_S * 16_000
    full = [n for p in asr.passes for n in p if n == asr.window_samples()]
    assert 0 < len(full) <= 2 * len(asr.window_plan(len(audio)))
