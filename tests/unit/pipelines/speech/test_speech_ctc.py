"""Greedy CTC decoding, frame times and chunk seams on CTC outputs built by hand, so the expected
words and times are known exactly."""

from __future__ import annotations

import numpy as np
import pytest

from plugin.pipelines.speech.ctc import (
    ChunkFrames,
    FrameTiming,
    choose_seam,
    decode_greedy,
    greedy_tokens,
    plan_chunks,
    stitch,
)

BLANK = 0
# id -> SentencePiece piece; "▁" starts a word.
PIECES = ["<pad>", "</s>", "▁the", "▁no", "dule", "▁lobe", "▁{period}", "▁r", "ight", "▁a", "a"]
SPECIAL = frozenset({1})
# 40 ms frames as MedASR's (test_medasr.py checks its real 72.5 ms offset); 70 ms keeps the
# expected times free of half-millisecond rounding.
TIMING = FrameTiming(frame_s=0.04, offset_s=0.07)


def frames(length: int, emissions: dict[int, int]) -> np.ndarray:
    """A frame sequence of blanks with token `id` at each given frame."""
    ids = np.zeros(length, dtype=np.int64)
    for frame, token in emissions.items():
        ids[frame] = token
    return ids


def decode(ids: np.ndarray, seams: tuple[int, ...] = ()) -> list[tuple[str, float, float]]:
    transcript = decode_greedy(ids, blank_id=BLANK, pieces=PIECES, timing=TIMING, skip_ids=SPECIAL,
                               seams=seams)
    return [(w.text, w.start_s, w.end_s) for w in transcript.words]


def test_greedy_collapses_repeats_drops_blanks_and_specials() -> None:
    ids = np.array([0, 2, 2, 0, 3, 4, 4, 0, 1, 0, 10, 0, 10, 10, 9])
    tokens = greedy_tokens(ids, blank_id=BLANK, pieces=PIECES, skip_ids=SPECIAL)
    assert [(t.piece, t.first_frame, t.last_frame) for t in tokens] == [
        ("▁the", 1, 2), ("▁no", 4, 4), ("dule", 5, 6), ("a", 10, 10), ("a", 12, 13), ("▁a", 14, 14)]


def test_words_get_times_from_their_first_and_last_frames() -> None:
    # "the" at frames 1-2, "nodule" from frame 4 to 6, "{period}" at 9, "aa" (a blank between
    # two a's keeps both) at 12-15: frame j is centred at 70 ms + 40 ms * j, +-20 ms.
    ids = frames(20, {1: 2, 2: 2, 4: 3, 5: 4, 6: 4, 9: 6, 12: 9, 13: 0, 15: 10})
    assert decode(ids) == [
        ("the", 0.09, 0.17),
        ("nodule", 0.21, 0.33),
        ("{period}", 0.41, 0.45),
        ("aa", 0.53, 0.69),
    ]


def test_frame_zero_starts_at_zero_not_before() -> None:
    assert decode(frames(3, {0: 2})) == [("the", 0.05, 0.09)]
    assert FrameTiming(0.04, 0.0).start_s(0) == 0.0


def test_plan_chunks_tiles_the_audio_on_the_frame_grid() -> None:
    # 50 s at 16 kHz, 20 s chunks with 2 s context each side: a new chunk every 16 s.
    chunks = plan_chunks(800_000, frame_samples=640, chunk_samples=320_000, stride_samples=32_000)
    assert [(c.start, c.end, c.first_frame) for c in chunks] == [
        (0, 320_000, 0), (256_000, 576_000, 400), (512_000, 800_000, 800)]
    assert plan_chunks(100_000, frame_samples=640, chunk_samples=320_000,
                       stride_samples=32_000)[0].end == 100_000
    # A step that is not a whole number of frames is rounded down to one.
    odd = plan_chunks(50_000, frame_samples=640, chunk_samples=20_000, stride_samples=3_000)
    assert all(c.start % 640 == 0 for c in odd) and odd[-1].end == 50_000
    with pytest.raises(ValueError, match="twice its stride"):
        plan_chunks(10, frame_samples=640, chunk_samples=1000, stride_samples=500)


# Two chunks of a 900-frame recording: A holds frames 0..499, B frames 400..899 (an overlap of
# 100 frames, seams searched in 425..475, middle 450). Words: "the" at 100, "no"+"dule" near the
# seam, "lobe" at 700.
TRUTH = {100: 2, 448: 3, 452: 4, 700: 5}


def two_chunks(a_shift: dict[int, int], b_shift: dict[int, int]) -> tuple[ChunkFrames, ChunkFrames]:
    """Both chunks see TRUTH, except that each places some tokens a few frames off
    ({frame: new frame}), as two windows with different context do."""
    def place(shift: dict[int, int]) -> np.ndarray:
        return frames(900, {shift.get(f, f): t for f, t in TRUTH.items()})
    return ChunkFrames(0, place(a_shift)[:500]), ChunkFrames(400, place(b_shift)[400:])


@pytest.mark.parametrize(("a_shift", "b_shift"), [
    ({}, {}),                                   # they agree
    ({448: 449}, {448: 451}),                   # "no" seen left of the middle by A, right by B
    ({452: 447, 448: 446}, {452: 455}),         # A early, B late: naive middle cut doubles
    ({452: 455}, {452: 446, 448: 445}),         # A late, B early: naive middle cut loses
], ids=["agree", "shifted", "would-double", "would-lose"])
def test_seam_keeps_every_word_exactly_once(a_shift: dict[int, int],
                                            b_shift: dict[int, int]) -> None:
    a, b = two_chunks(a_shift, b_shift)
    ids, seams = stitch([a, b], blank_id=BLANK)
    assert len(ids) == 900 and len(seams) == 1
    assert [w for w, _, _ in decode(ids)] == ["the", "nodule", "lobe"]


def test_seam_times_come_from_the_chunk_that_kept_the_word() -> None:
    a, b = two_chunks({448: 440, 452: 443}, {})  # A hears "nodule" early, B where it was
    ids, (seam,) = stitch([a, b], blank_id=BLANK)
    words = decode(ids)
    assert [w for w, _, _ in words] == ["the", "nodule", "lobe"]
    start, end = words[1][1], words[1][2]
    if seam <= 440:  # B's frames 448..452
        assert (start, end) == (round(TIMING.start_s(448), 3), round(TIMING.end_s(452), 3))
    else:  # A's frames 440..443
        assert (start, end) == (round(TIMING.start_s(440), 3), round(TIMING.end_s(443), 3))
    assert 425 <= seam <= 475


def test_seam_prefers_the_middle_when_chunks_agree() -> None:
    a, b = two_chunks({}, {})
    assert choose_seam(a, b, blank_id=BLANK) == 450


def test_seam_is_never_inside_a_token_run() -> None:
    # A long token run across the middle in both chunks: the seam goes to a blank frame.
    run = {f: 7 for f in range(440, 461)}
    ids = frames(900, run)
    a, b = ChunkFrames(0, ids[:500]), ChunkFrames(400, ids[400:])
    seam = choose_seam(a, b, blank_id=BLANK)
    assert not 440 <= seam <= 460
    stitched, _ = stitch([a, b], blank_id=BLANK)
    assert (stitched == ids).all()


def test_word_spanning_a_seam_is_one_word() -> None:
    # "right" = "▁r" + "ight" with the pieces 6 frames apart around the middle of the overlap.
    ids = frames(900, {447: 7, 453: 8})
    a, b = ChunkFrames(0, ids[:500]), ChunkFrames(400, ids[400:])
    stitched, _ = stitch([a, b], blank_id=BLANK)
    assert decode(stitched) == [("right", round(TIMING.start_s(447), 3), round(TIMING.end_s(453), 3))]


def test_many_chunks_with_disagreeing_edges_reassemble_the_truth() -> None:
    rng = np.random.default_rng(3)
    length, chunk, step = 2400, 500, 400
    truth = {int(f): int(rng.integers(2, 10)) for f in rng.choice(np.arange(2, length - 2, 4),
                                                                    size=180, replace=False)}
    expected = decode(frames(length, truth))
    parts = []
    for first in range(0, length - chunk + step, step):
        # Each chunk garbles its outer 20 frames (poor context), as a real window does.
        local = {f: t for f, t in truth.items() if first + 20 <= f < first + chunk - 20 or
                 (first == 0 and f < 20) or f >= length - 20}
        noisy = {f + 1 if f % 3 == 0 else f: t for f, t in truth.items()
                 if f not in local and first <= f < first + chunk}
        ids = frames(length + 2, {**noisy, **local})[first:min(first + chunk, length)]
        parts.append(ChunkFrames(first, ids))
    stitched, seams = stitch(parts, blank_id=BLANK)
    assert len(seams) == len(parts) - 1
    assert [w for w, _, _ in decode(stitched)] == [w for w, _, _ in expected]


def test_stitch_refuses_chunks_that_do_not_overlap() -> None:
    with pytest.raises(ValueError, match="do not overlap"):
        stitch([ChunkFrames(0, np.zeros(10, dtype=np.int64)),
                ChunkFrames(12, np.zeros(10, dtype=np.int64))], blank_id=BLANK)
    with pytest.raises(ValueError, match="frame 0"):
        stitch([ChunkFrames(5, np.zeros(10, dtype=np.int64))], blank_id=BLANK)
