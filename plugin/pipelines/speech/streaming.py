"""Live dictation's incremental decoder: audio that grows while the clinician speaks, decoded with
the batch engine's own windows, batches and joining, so the final transcript of a recording is
the batch transcript of the same audio, exactly (text, word times and log-probabilities).

The batch path (MedAsrEngine.transcribe) plans overlapping windows over the whole recording and
runs them `batch_size` at a time. A window whose audio is complete (all `window_samples` of it have
arrived) is the same window in the final plan, whatever comes after; a batch whose windows are
all complete is the same batch, padded the same way. Those batches are decoded once, when they
complete, and kept: they are the final result for that stretch. The exact batch matters, not
only the window: int8 dynamic quantisation scales activations over the whole batch, so a window
decoded alone can differ in its last bits from the same window decoded beside others.

A partial transcript also shows what the kept batches do not cover yet: complete windows of an
unfinished batch (each decoded alone once, kept until its batch completes) and the window still
filling, previewed in short windows (PREVIEW_S, complete ones decoded once, the last one again at
each update), so an update decodes a few seconds of audio whatever the window length. Those
tentative decodes are shown, never used in the final transcript.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from plugin.pipelines.speech.ctc import Chunk, ChunkFrames, CtcTranscript, plan_chunks

# The window still filling is previewed in windows this long, with this much context each side.
PREVIEW_S = 5.0
PREVIEW_STRIDE_S = 1.0
SAMPLE_RATE = 16_000


class WindowedEngine(Protocol):
    """The steps of a batch transcription (plugin.engines.medasr.MedAsrEngine)."""

    batch_size: int
    lm_path: str | None

    def window_plan(self, n_samples: int) -> list[Chunk]: ...

    def window_samples(self) -> int: ...

    def frame_samples(self) -> int: ...

    def output_frames(self, n_samples: int) -> int: ...

    def decode_windows(self, pieces: Sequence[np.ndarray], *,
                       keep_log_probs: bool = False) -> tuple[list[np.ndarray], list[np.ndarray]]: ...

    def join_windows(self, decided: Sequence[ChunkFrames], log_probs: Sequence[np.ndarray], *,
                     n_samples: int) -> CtcTranscript: ...


@dataclass(frozen=True)
class Decoded:
    """A transcript with the windows it was joined from (and their log-probs when kept)."""

    transcript: CtcTranscript
    windows: tuple[ChunkFrames, ...]
    log_probs: tuple[np.ndarray, ...]
    samples: int
    kept_windows: int  # windows whose decode is final (decoded in their batch)


@dataclass(frozen=True)
class _Window:
    frames: ChunkFrames
    log_probs: np.ndarray | None


class IncrementalDecoder:
    """One recording's decoder. Call `partial(audio)` as the audio grows (each call with the
    whole recording so far: it only ever grows at the end) and `final(audio)` once at the end.
    Not thread-safe: one recording's updates are serialised by the caller."""

    def __init__(self, engine: WindowedEngine, *, keep_log_probs: bool = False) -> None:
        self.engine = engine
        # Beam search (lm_path) joins log-probabilities, so they are kept whenever it is on.
        self.keep_log_probs = keep_log_probs or engine.lm_path is not None
        self._kept: dict[int, _Window] = {}  # window index -> decoded in its batch
        self._alone: dict[int, _Window] = {}  # window index -> complete, decoded alone
        self._previews: dict[int, _Window] = {}  # first sample -> complete preview window
        self._decoded_samples = 0

    @property
    def kept_windows(self) -> int:
        return len(self._kept)

    def partial(self, audio: np.ndarray) -> Decoded | None:
        """What the recording says so far; None while it is too short for one output frame."""
        audio = self._checked(audio)
        n = len(audio)
        if self.engine.output_frames(n) < 1:
            return None
        plan = self.engine.window_plan(n)
        full = self.engine.window_samples()
        complete = [i for i, c in enumerate(plan) if c.end - c.start == full]
        self._decide_batches(audio, plan, set(complete), final=False)
        for i in complete:
            if i not in self._kept and i not in self._alone:
                self._alone[i] = self._decode(audio, [plan[i]])[0]
        windows = [self._kept.get(i) or self._alone[i] for i in complete]
        # Only the last window can still be filling: it is previewed in short windows of its own
        # (the complete ones kept until it completes), so an update decodes a few seconds of
        # audio, not up to a whole window.
        filling = [c for i, c in enumerate(plan) if i not in self._kept and i not in self._alone]
        start = filling[0].start if filling else n
        self._previews = {at: w for at, w in self._previews.items() if at >= start}
        for chunk in filling:
            windows += self._preview(audio, chunk)
        return self._join(windows, n)

    def final(self, audio: np.ndarray) -> Decoded:
        """The transcript of the whole recording: the kept batches plus the last ones, decoded
        now exactly as the batch path decodes them."""
        audio = self._checked(audio)
        n = len(audio)
        if self.engine.output_frames(n) < 1:
            raise ValueError(f"{n} samples is too short for one output frame")
        plan = self.engine.window_plan(n)
        self._decide_batches(audio, plan, set(range(len(plan))), final=True)
        return self._join([self._kept[i] for i in range(len(plan))], n)

    def _decide_batches(self, audio: np.ndarray, plan: list[Chunk], ready: set[int], *,
                        final: bool) -> None:
        """Decode, as the batch path groups them, every batch whose windows are all `ready`.
        Before the end, only whole batches: a short last batch may still gain windows."""
        size = self.engine.batch_size
        for first in range(0, len(plan), size):
            members = range(first, min(first + size, len(plan)))
            if first in self._kept or not all(i in ready for i in members):
                continue
            if len(members) < size and not final:
                continue
            for i, window in zip(members, self._decode(audio, [plan[i] for i in members]),
                                 strict=True):
                self._kept[i] = window
                self._alone.pop(i, None)

    def _preview(self, audio: np.ndarray, chunk: Chunk) -> list[_Window]:
        """The window still filling, as short overlapping windows from its start."""
        frame_samples = self.engine.frame_samples()
        size = max(frame_samples, round(PREVIEW_S * SAMPLE_RATE / frame_samples) * frame_samples)
        parts = plan_chunks(chunk.end - chunk.start, frame_samples=frame_samples, chunk_samples=size,
                            stride_samples=round(PREVIEW_STRIDE_S * SAMPLE_RATE))
        found: list[_Window] = []
        for part in parts:
            piece = Chunk(chunk.start + part.start, chunk.start + part.end,
                          chunk.first_frame + part.first_frame)
            if self.engine.output_frames(piece.end - piece.start) < 1:
                continue
            if piece.end - piece.start < size:  # still filling: decoded at each update
                found += self._decode(audio, [piece])
                continue
            if piece.start not in self._previews:
                self._previews[piece.start] = self._decode(audio, [piece])[0]
            found.append(self._previews[piece.start])
        return found

    def _decode(self, audio: np.ndarray, chunks: list[Chunk]) -> list[_Window]:
        ids, scores = self.engine.decode_windows([audio[c.start:c.end] for c in chunks],
                                                 keep_log_probs=self.keep_log_probs)
        return [_Window(ChunkFrames(c.first_frame, row), scores[k] if scores else None)
                for k, (c, row) in enumerate(zip(chunks, ids, strict=True))]

    def _join(self, windows: list[_Window], n: int) -> Decoded:
        frames = [w.frames for w in windows]
        log_probs = [w.log_probs for w in windows if w.log_probs is not None]
        transcript = self.engine.join_windows(frames, log_probs, n_samples=n)
        return Decoded(transcript, tuple(frames), tuple(log_probs), n, len(self._kept))

    def _checked(self, audio: np.ndarray) -> np.ndarray:
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise ValueError("the decoder takes mono audio: a 1-D array at 16 kHz")
        if len(audio) < self._decoded_samples:
            raise ValueError(f"the recording shrank from {self._decoded_samples} to {len(audio)} "
                             "samples: live audio only grows")
        self._decoded_samples = len(audio)
        return audio
