"""CTC prefix beam search with a word-level language model (KenLM in production). Pure: the
log-probabilities, vocabulary and scorer come in, tokens with their frames go out.

Words are SentencePiece pieces joined at "▁", as in greedy decoding (ctc.words_from_tokens): a
word is scored by the LM when the next word starts or the audio ends. Scores are natural logs;
a hypothesis scores log P(audio | tokens) + alpha * log P_LM(words) + beta * words.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np

from plugin.pipelines.speech.ctc import CtcToken, CtcTranscript, FrameTiming, words_from_tokens

# pyctcdecode's defaults (MedASR's published LM results used pyctcdecode); not tuned here.
DEFAULT_ALPHA = 0.5
DEFAULT_BETA = 1.5
DEFAULT_BEAM_WIDTH = 100
# Tokens below this log-probability in a frame are not tried there (the frame's best always is).
DEFAULT_TOKEN_MIN_LOGP = -5.0
# Hypotheses this far (natural log) below the best one are dropped even when the beam has room.
DEFAULT_BEAM_PRUNE_LOGP = -10.0
# The LM sees at most this many previous words: more than any n-gram order in use (MedASR's is 6).
CONTEXT_WORDS = 8


class WordScorer(Protocol):
    """A word-level language model; scores are natural logs."""

    def score(self, prev_words: tuple[str, ...], word: str) -> float:
        """log P(word | prev_words); prev_words are the sentence so far (possibly cut short)."""
        ...

    def end_score(self, prev_words: tuple[str, ...]) -> float:
        """log P(end of sentence | prev_words)."""
        ...


@dataclass(frozen=True)
class BeamOptions:
    alpha: float = DEFAULT_ALPHA  # LM weight
    beta: float = DEFAULT_BETA  # bonus per word, against the LM's bias towards fewer words
    beam_width: int = DEFAULT_BEAM_WIDTH
    token_min_logp: float = DEFAULT_TOKEN_MIN_LOGP
    beam_prune_logp: float = DEFAULT_BEAM_PRUNE_LOGP


class _Prefix(NamedTuple):
    """A node of the prefix tree: its last token, the frame that token was emitted at, and the
    LM state after it. Prefixes are compared by identity: the search never builds one twice."""

    parent: _Prefix | None
    token: int
    frame: int
    context: tuple[str, ...]  # completed words the LM conditions on (the last CONTEXT_WORDS)
    partial: str  # the word being spelt
    lm: float  # alpha * LM + beta * words, for completed words


# A beam entry: a prefix and the log-probabilities of the CTC paths that spell it, ending in a
# blank and ending in its last token.
_Entry = tuple[_Prefix, float, float]


def beam_search(log_probs: np.ndarray, *, pieces: Sequence[str], scorer: WordScorer,
                options: BeamOptions = BeamOptions(), blank_id: int = 0,
                skip_ids: frozenset[int] = frozenset()) -> tuple[CtcToken, ...]:
    """The best hypothesis's tokens over `log_probs` [frames, vocab] (log-softmax output), each
    with the frame it was emitted at and the last frame of its run. `skip_ids` (special tokens)
    are never emitted."""
    if options.beam_width < 1:
        raise ValueError("beam_width must be at least 1")
    scores = np.asarray(log_probs, dtype=np.float64).reshape(len(log_probs), -1)
    allowed = np.zeros(scores.shape[1], dtype=bool)
    allowed[:min(scores.shape[1], len(pieces))] = True
    allowed[[i for i in (blank_id, *skip_ids) if i < len(allowed)]] = False
    word_scores: dict[tuple[tuple[str, ...], str], float] = {}

    def lm_word(context: tuple[str, ...], word: str) -> float:
        key = (context, word)
        if key not in word_scores:
            word_scores[key] = options.alpha * scorer.score(context, word) + options.beta
        return word_scores[key]

    def extend(prefix: _Prefix, token: int, frame: int) -> _Prefix:
        piece = pieces[token]
        body = piece.replace("▁", "")
        context, partial, lm = prefix.context, prefix.partial, prefix.lm
        if piece.startswith("▁"):
            if partial:
                lm += lm_word(context, partial)
                context = (*context, partial)[-CONTEXT_WORDS:]
            partial = body
        else:
            partial += body
        return _Prefix(prefix, token, frame, context, partial, lm)

    def rank(entry: _Entry) -> float:
        return _logaddexp(entry[1], entry[2]) + entry[0].lm

    beams: list[_Entry] = [(_Prefix(None, -1, -1, (), "", 0.0), 0.0, -math.inf)]
    for frame, row in enumerate(scores):
        candidates = np.flatnonzero(allowed & (row >= options.token_min_logp)).tolist()
        if allowed.any():
            best_token = int(np.argmax(np.where(allowed, row, -np.inf)))
            if best_token not in candidates:
                candidates.append(best_token)
        logp = row.tolist()
        merged: dict[int, list[Any]] = {}  # id(prefix) -> [prefix, p_blank, p_token]
        # A prefix in the beam may also be reached by extending its parent: it is that node.
        children = {(id(p.parent), p.token): p for p, _, _ in beams if p.parent is not None}
        for prefix, p_blank, p_token in beams:
            total = _logaddexp(p_blank, p_token)
            # Staying on this prefix: a blank, or its last token's run going on.
            _merge(merged, prefix, total + logp[blank_id],
                   p_token + logp[prefix.token] if prefix.parent is not None else -math.inf)
            for token in candidates:
                # A repeated token is a new emission only after a blank.
                p = (p_blank if token == prefix.token else total) + logp[token]
                if p == -math.inf:
                    continue
                child = children.get((id(prefix), token)) or extend(prefix, token, frame)
                _merge(merged, child, -math.inf, p)
        kept = heapq.nlargest(options.beam_width, (tuple(e) for e in merged.values()), key=rank)
        floor = rank(kept[0]) + options.beam_prune_logp
        beams = [e for e in kept if rank(e) >= floor]

    def final_score(entry: _Entry) -> float:
        prefix = entry[0]
        lm, context = prefix.lm, prefix.context
        if prefix.partial:
            lm += lm_word(context, prefix.partial)
            context = (*context, prefix.partial)[-CONTEXT_WORDS:]
        return _logaddexp(entry[1], entry[2]) + lm + options.alpha * scorer.end_score(context)

    return _with_run_ends(max(beams, key=final_score)[0], scores, pieces)


def decode_beam(log_probs: np.ndarray, *, pieces: Sequence[str], scorer: WordScorer,
                timing: FrameTiming, options: BeamOptions = BeamOptions(), blank_id: int = 0,
                skip_ids: frozenset[int] = frozenset(), duration_s: float | None = None,
                seams: tuple[int, ...] = ()) -> CtcTranscript:
    """Beam search's counterpart of ctc.decode_greedy: the same words-with-times transcript."""
    tokens = beam_search(log_probs, pieces=pieces, scorer=scorer, options=options,
                         blank_id=blank_id, skip_ids=skip_ids)
    words = words_from_tokens(tokens, timing, duration_s=duration_s)
    return CtcTranscript(text=" ".join(w.text for w in words), words=tuple(words), tokens=tokens,
                         frames=len(log_probs), timing=timing, seams=seams)


def _merge(merged: dict[int, list[Any]], prefix: _Prefix, p_blank: float,
           p_token: float) -> None:
    entry = merged.get(id(prefix))
    if entry is None:
        merged[id(prefix)] = [prefix, p_blank, p_token]
    else:
        entry[1] = _logaddexp(entry[1], p_blank)
        entry[2] = _logaddexp(entry[2], p_token)


def _logaddexp(a: float, b: float) -> float:
    """log(exp(a) + exp(b)) on Python floats (numpy's costs more than the search per call)."""
    if a < b:
        a, b = b, a
    return a if b == -math.inf else a + math.log1p(math.exp(b - a))


def _with_run_ends(prefix: _Prefix, scores: np.ndarray,
                   pieces: Sequence[str]) -> tuple[CtcToken, ...]:
    """Tokens with frames: a token's run lasts while it stays the frame's most likely id, up to
    the next token's emission (a word's end time comes from its last token's last frame)."""
    emitted: list[tuple[int, int]] = []
    node: _Prefix | None = prefix
    while node is not None and node.parent is not None:
        emitted.append((node.token, node.frame))
        node = node.parent
    emitted.reverse()
    best = scores.argmax(axis=1) if len(scores) else np.zeros(0, dtype=np.int64)
    tokens = []
    for i, (token, first) in enumerate(emitted):
        limit = emitted[i + 1][1] if i + 1 < len(emitted) else len(scores)
        last = first
        while last + 1 < limit and best[last + 1] == token:
            last += 1
        tokens.append(CtcToken(token, pieces[token], first, last))
    return tuple(tokens)
