"""CTC output -> tokens and words with times: chunk planning, seam choice, greedy decoding. Pure.

Long audio is cut into overlapping chunks whose start is a whole number of output frames, so
frame j of a chunk starting at output frame F is global frame F + j. Each chunk decodes with its
own context; where two chunks overlap, one seam frame decides which chunk's frames are kept.
The seam is put where both chunks are silent (blank) and agree on the tokens just before and just
after it, as near the middle of the overlap as possible: a token that one chunk places a frame
or two earlier than the other is then taken from exactly one of them, never both or neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# How far either side of a candidate seam the two chunks' tokens are compared (frames).
AGREEMENT_FRAMES = 12


@dataclass(frozen=True)
class FrameTiming:
    """Where output frames sit in the audio: frame j is centred at offset_s + j * frame_s."""

    frame_s: float
    offset_s: float

    def start_s(self, frame: int) -> float:
        return max(0.0, self.offset_s + (frame - 0.5) * self.frame_s)

    def end_s(self, frame: int) -> float:
        return self.offset_s + (frame + 0.5) * self.frame_s


@dataclass(frozen=True)
class Chunk:
    """One window of audio: samples [start, end) whose output frame 0 is global frame
    `first_frame`."""

    start: int
    end: int
    first_frame: int


@dataclass(frozen=True)
class ChunkFrames:
    """A chunk's per-frame decision (best token id, blank included), valid frames only."""

    first_frame: int
    ids: np.ndarray

    @property
    def end_frame(self) -> int:
        return self.first_frame + len(self.ids)


@dataclass(frozen=True)
class CtcToken:
    id: int
    piece: str
    first_frame: int
    last_frame: int


@dataclass(frozen=True)
class CtcWord:
    text: str
    start_s: float
    end_s: float
    first_frame: int
    last_frame: int


@dataclass(frozen=True)
class CtcTranscript:
    """What the acoustic model heard: the raw text (words joined by spaces, brace tokens and
    all), its words with times, the tokens they were built from, and where chunks were joined."""

    text: str
    words: tuple[CtcWord, ...]
    tokens: tuple[CtcToken, ...]
    frames: int
    timing: FrameTiming
    seams: tuple[int, ...] = ()


def plan_chunks(n_samples: int, *, frame_samples: int, chunk_samples: int,
                stride_samples: int) -> list[Chunk]:
    """Windows of `chunk_samples` that advance by chunk - 2 * stride, each start on the frame
    grid; the last one ends at the audio's end. `stride_samples` is the context each window has
    beyond the part it is most trusted for, on each side."""
    step = (chunk_samples - 2 * stride_samples) // frame_samples * frame_samples
    if step <= 0:
        raise ValueError("a chunk must be longer than twice its stride (and one output frame)")
    chunks = []
    start = 0
    while True:
        end = min(start + chunk_samples, n_samples)
        chunks.append(Chunk(start, end, start // frame_samples))
        if end >= n_samples:
            return chunks
        start += step


def choose_seam(left: ChunkFrames, right: ChunkFrames, *, blank_id: int) -> int:
    """The global frame where `right` takes over from `left` (see the module docstring)."""
    lo, hi = right.first_frame, min(left.end_frame, right.end_frame)
    if hi <= lo:
        raise ValueError(f"chunks do not overlap: left ends at {left.end_frame}, "
                         f"right starts at {right.first_frame}")
    # Neither chunk is trusted in the quarter of the overlap nearest its own edge.
    quarter = (hi - lo) // 4
    window_lo, window_hi = lo + quarter, hi - quarter
    middle = (lo + hi) // 2
    best: tuple[int, int, int] | None = None  # (disagreement, distance from middle, frame)
    for frame in range(window_lo, window_hi + 1):
        if frame < hi and (_at(left, frame) != blank_id or _at(right, frame) != blank_id):
            continue
        disagreement = sum(
            _emissions(left, a, b, blank_id) != _emissions(right, a, b, blank_id)
            for a, b in ((frame - AGREEMENT_FRAMES, frame), (frame, frame + AGREEMENT_FRAMES)))
        candidate = (disagreement, abs(frame - middle), frame)
        if best is None or candidate < best:
            best = candidate
    return middle if best is None else best[2]


def stitch(chunks: Sequence[ChunkFrames], *, blank_id: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """One global frame sequence from overlapping chunks (in order), and the seams used."""
    if not chunks:
        return np.zeros(0, dtype=np.int64), ()
    if chunks[0].first_frame != 0:
        raise ValueError("the first chunk must start at frame 0")
    seams = tuple(choose_seam(a, b, blank_id=blank_id) for a, b in zip(chunks, chunks[1:],
                                                                      strict=False))
    bounds = (0, *seams, chunks[-1].end_frame)
    parts = [chunk.ids[lo - chunk.first_frame:hi - chunk.first_frame]
             for chunk, lo, hi in zip(chunks, bounds[:-1], bounds[1:], strict=True)]
    return np.concatenate(parts).astype(np.int64, copy=False), seams


def greedy_tokens(frame_ids: np.ndarray, *, blank_id: int, pieces: Sequence[str],
                  skip_ids: frozenset[int] = frozenset()) -> list[CtcToken]:
    """Collapse runs of the same id, drop blanks and `skip_ids` (special tokens)."""
    tokens: list[CtcToken] = []
    if len(frame_ids) == 0:
        return tokens
    ids = np.asarray(frame_ids)
    run_starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    run_ends = np.r_[run_starts[1:], len(ids)] - 1
    for first, last in zip(run_starts.tolist(), run_ends.tolist(), strict=True):
        token_id = int(ids[first])
        if token_id == blank_id or token_id in skip_ids or token_id >= len(pieces):
            continue
        tokens.append(CtcToken(token_id, pieces[token_id], first, last))
    return tokens


def words_from_tokens(tokens: Sequence[CtcToken], timing: FrameTiming, *,
                      duration_s: float | None = None) -> list[CtcWord]:
    """SentencePiece pieces -> words: a piece starting with "▁" begins a new word."""
    words: list[CtcWord] = []
    text, first, last = "", -1, -1

    def flush() -> None:
        if text:
            end = timing.end_s(last)
            words.append(CtcWord(text, round(timing.start_s(first), 3),
                                 round(end if duration_s is None else min(end, duration_s), 3),
                                 first, last))

    for token in tokens:
        piece = token.piece
        if piece.startswith("▁"):
            flush()
            text, first = "", -1
        body = piece.replace("▁", "")
        if not body:
            continue
        if first < 0:
            first = token.first_frame
        text += body
        last = token.last_frame
    flush()
    return words


def decode_greedy(frame_ids: np.ndarray, *, blank_id: int, pieces: Sequence[str],
                  timing: FrameTiming, skip_ids: frozenset[int] = frozenset(),
                  duration_s: float | None = None, seams: tuple[int, ...] = ()) -> CtcTranscript:
    tokens = greedy_tokens(frame_ids, blank_id=blank_id, pieces=pieces, skip_ids=skip_ids)
    words = words_from_tokens(tokens, timing, duration_s=duration_s)
    return CtcTranscript(text=" ".join(w.text for w in words), words=tuple(words),
                         tokens=tuple(tokens), frames=len(frame_ids), timing=timing, seams=seams)


def _at(chunk: ChunkFrames, frame: int) -> int:
    return int(chunk.ids[frame - chunk.first_frame])


def _emissions(chunk: ChunkFrames, lo: int, hi: int, blank_id: int) -> tuple[int, ...]:
    """Token ids that start (a new run, not blank) within global frames [lo, hi) of the chunk."""
    lo, hi = max(lo, chunk.first_frame), min(hi, chunk.end_frame)
    found = []
    for frame in range(lo, hi):
        token = _at(chunk, frame)
        previous = _at(chunk, frame - 1) if frame > chunk.first_frame else blank_id
        if token != blank_id and token != previous:
            found.append(token)
    return tuple(found)
