"""CTC prefix beam search with a KenLM language model: on log-probabilities built by hand, where
greedy decoding misspells a word and a tiny ARPA model knows better; against greedy decoding when
the LM has no say; and through the MedASR engine on a tiny random-weight model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from plugin.engines.medasr import KenLmScorer, MedAsrEngine, load_language_model
from plugin.errors import ConfigError
from plugin.pipelines.speech.beam_search import BeamOptions, beam_search, decode_beam
from plugin.pipelines.speech.ctc import FrameTiming, decode_greedy, greedy_tokens

try:
    import kenlm  # noqa: F401

    HAS_KENLM = True
except ImportError:
    HAS_KENLM = False

needs_kenlm = pytest.mark.skipif(
    not HAS_KENLM, reason="the kenlm package is not installed (pip install kenlm==0.3.0 builds it)")

BLANK = 0
PIECES = ["<pad>", "</s>", "▁the", "▁l", "o", "b", "v", "e", "▁{period}", "▁r", "ight", "▁a"]
SPECIAL = frozenset({1})
TIMING = FrameTiming(frame_s=0.04, offset_s=0.07)
THE, EL, OH, BEE, VEE, EE, PERIOD = 2, 3, 4, 5, 6, 7, 8

# log10 probabilities and backoffs. "love" is the likelier word alone, "lobe" after "the".
ARPA = """\\data\\
ngram 1=7
ngram 2=3

\\1-grams:
-1.0\t</s>
-99\t<s>\t-0.5
-2.0\t<unk>\t0
-1.0\tthe\t-0.3
-1.5\tlobe\t-0.3
-1.2\tlove\t-0.3
-1.3\t{period}\t-0.3

\\2-grams:
-0.3\t<s> the
-0.2\tthe lobe
-0.3\t{period} </s>

\\end\\
"""


class NoLanguageModel:
    def score(self, prev_words: tuple[str, ...], word: str) -> float:
        return 0.0

    def end_score(self, prev_words: tuple[str, ...]) -> float:
        return 0.0


def log_probs(frames: list[dict[int, float]], vocab: int = len(PIECES)) -> np.ndarray:
    """Per frame: the given probabilities (blank when none), the rest spread over the others."""
    rows = []
    for given in frames:
        given = given or {BLANK: 0.97}
        rest = (1.0 - sum(given.values())) / (vocab - len(given))
        rows.append([given.get(i, rest) for i in range(vocab)])
    return np.log(np.array(rows))


# "the l o {b|v} e e _ {period}": the acoustics lean to "v" (0.53 against 0.44).
THE_LOBE = log_probs([{THE: 0.97}, {}, {EL: 0.97}, {}, {OH: 0.97}, {VEE: 0.53, BEE: 0.44},
                      {EE: 0.97}, {EE: 0.97}, {}, {PERIOD: 0.97}, {}])
LOBE_ALONE = THE_LOBE[2:]


@pytest.fixture
def arpa(tmp_path: Path) -> str:
    path = tmp_path / "tiny.arpa"
    path.write_text(ARPA)
    return str(path)


def words(transcript_log_probs: np.ndarray, scorer: object, **options: float) -> list[str]:
    transcript = decode_beam(transcript_log_probs, pieces=PIECES, scorer=scorer,  # type: ignore[arg-type]
                             timing=TIMING, options=BeamOptions(**options),  # type: ignore[arg-type]
                             skip_ids=SPECIAL)
    return transcript.text.split()


def greedy_words(matrix: np.ndarray) -> list[str]:
    return decode_greedy(matrix.argmax(1), blank_id=BLANK, pieces=PIECES, timing=TIMING,
                         skip_ids=SPECIAL).text.split()


@needs_kenlm
def test_the_language_model_corrects_what_greedy_decoding_misspells(arpa: str) -> None:
    scorer = load_language_model(arpa)
    assert greedy_words(THE_LOBE) == ["the", "love", "{period}"]
    assert words(THE_LOBE, scorer, alpha=0.0, beta=0.0) == ["the", "love", "{period}"]
    assert words(THE_LOBE, scorer, alpha=0.5, beta=1.0) == ["the", "lobe", "{period}"]


@needs_kenlm
def test_the_language_model_uses_the_previous_word(arpa: str) -> None:
    # Without "the" before it, the bigram does not apply and the unigram prefers "love".
    assert words(LOBE_ALONE, load_language_model(arpa), alpha=0.5, beta=1.0) == ["love", "{period}"]


@needs_kenlm
def test_kenlm_scores_become_natural_logs_with_backoff_and_unknown_words(arpa: str) -> None:
    scorer = load_language_model(arpa)
    ln10 = np.log(10.0)
    assert scorer.score((), "the") == pytest.approx(-0.3 * ln10)  # <s> the
    assert scorer.score(("the",), "lobe") == pytest.approx(-0.2 * ln10)
    assert scorer.score(("the",), "love") == pytest.approx((-0.3 - 1.2) * ln10)  # backed off
    assert scorer.score(("the",), "nodule") == pytest.approx((-0.3 - 2.0) * ln10)  # <unk>
    assert scorer.end_score(("lobe", "{period}")) == pytest.approx(-0.3 * ln10)
    # Context longer than the model's order starts from no context, not from <s>.
    assert scorer.score(("lobe", "the"), "lobe") == scorer.score(("the",), "lobe")
    assert isinstance(scorer, KenLmScorer)


def test_word_frames_and_times_come_from_the_emitting_frames() -> None:
    transcript = decode_beam(THE_LOBE, pieces=PIECES, scorer=NoLanguageModel(), timing=TIMING,
                             skip_ids=SPECIAL, duration_s=0.5)
    spans = [(w.text, w.first_frame, w.last_frame, w.start_s, w.end_s) for w in transcript.words]
    # "love" runs from its "l" (frame 2) to the end of its "e" run (frame 7).
    assert spans == [("the", 0, 0, 0.05, 0.09), ("love", 2, 7, 0.13, 0.37),
                     ("{period}", 9, 9, 0.41, 0.45)]
    assert [(t.piece, t.first_frame, t.last_frame) for t in transcript.tokens][3:5] == [
        ("v", 5, 5), ("e", 6, 7)]


@pytest.mark.parametrize("seed", range(6))
def test_width_one_without_a_language_model_is_greedy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(80):
        token = BLANK if rng.random() < 0.5 else int(rng.integers(2, len(PIECES)))  # no </s>
        frames.append({token: 0.9})
    matrix = log_probs(frames)
    expected = greedy_tokens(matrix.argmax(1), blank_id=BLANK, pieces=PIECES, skip_ids=SPECIAL)
    found = beam_search(matrix, pieces=PIECES, scorer=NoLanguageModel(), skip_ids=SPECIAL,
                        options=BeamOptions(alpha=0.0, beta=0.0, beam_width=1))
    assert len(expected) > 10 and list(found) == expected


def test_repeated_letters_need_a_blank_between_them_and_specials_are_never_emitted() -> None:
    matrix = log_probs([{EL: 0.97}, {OH: 0.97}, {}, {OH: 0.97}, {OH: 0.97}, {1: 0.6, BLANK: 0.38},
                        {BEE: 0.97}])
    found = beam_search(matrix, pieces=PIECES, scorer=NoLanguageModel(), skip_ids=SPECIAL)
    assert [(t.piece, t.first_frame, t.last_frame) for t in found] == [
        ("▁l", 0, 0), ("o", 1, 1), ("o", 3, 4), ("b", 6, 6)]


# ---- through the engine -----------------------------------------------------------------------

ENGINE_ARPA = ARPA.replace("ngram 1=7", "ngram 1=9").replace(
    "-1.3\t{period}\t-0.3\n", "-1.3\t{period}\t-0.3\n-1.1\tno\t-0.3\n-1.4\tnodule\t-0.3\n")


@needs_kenlm
def test_engine_decodes_with_a_kenlm_model_and_gives_every_word_a_time(tmp_path: Path) -> None:
    from plugin.engines.test_models.tiny_medasr import calibration_speech, tiny_loaded

    path = tmp_path / "lm.arpa"
    path.write_text(ENGINE_ARPA)
    audio = calibration_speech()
    loaded = tiny_loaded(layers=0)
    engine = MedAsrEngine.from_loaded(loaded, lm_path=str(path), chunk_s=3.0, stride_s=0.5,
                                      beam=BeamOptions(beam_width=16))
    transcript = engine.transcribe(audio)
    duration = len(audio) / 16000
    assert transcript.words and len(transcript.seams) >= 1
    assert transcript.text == " ".join(w.text for w in transcript.words)
    assert all(0 <= w.start_s < w.end_s <= duration for w in transcript.words)
    assert [w.first_frame for w in transcript.words] == sorted(w.first_frame for w in transcript.words)
    assert transcript.frames == loaded.output_frames(len(audio))
    assert {t.id for t in transcript.tokens}.isdisjoint({0, 1, 2})  # blank, </s>, <unk>


@needs_kenlm
def test_engine_language_model_errors_are_config_errors(tmp_path: Path) -> None:
    from plugin.engines.test_models.tiny_medasr import tiny_loaded

    (tmp_path / "broken.arpa").write_text("\\data\\\n")
    with pytest.raises(ConfigError, match="is not a KenLM model"):
        MedAsrEngine.from_loaded(tiny_loaded(layers=0), lm_path=str(tmp_path / "broken.arpa")).load()
    with pytest.raises(ConfigError, match="is not a file"):
        MedAsrEngine.from_loaded(tiny_loaded(layers=0), lm_path=str(tmp_path / "none.arpa")).load()
