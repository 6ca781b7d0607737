"""Counting prompt tokens the way MedGemma will: with the Gemma 3 tokenizer of the configured
checkpoint when its files are on this machine, else with a stated, conservative estimate.

Gemma 3's tokenizer (a 262k-piece SentencePiece vocabulary) ships with the gated weights; nothing
here downloads it. Without it, `EstimatedCounter` charges one token per 3 UTF-8 bytes: English
prose runs about 4 bytes per Gemma token, and the digest's dates, codes and references tokenise
worse, so the estimate errs toward keeping the prompt inside its budget. Which counter measured a
digest is recorded with it.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)
BYTES_PER_TOKEN = 3


class TokenCounter(Protocol):
    @property
    def name(self) -> str: ...

    def __call__(self, text: str) -> int: ...


@dataclass(frozen=True)
class EstimatedCounter:
    name: str = f"estimate (1 token per {BYTES_PER_TOKEN} UTF-8 bytes; Gemma 3 tokenizer not on this machine)"

    def __call__(self, text: str) -> int:
        return math.ceil(len(text.encode("utf-8")) / BYTES_PER_TOKEN)


@dataclass(frozen=True)
class TokenizerCounter:
    """A transformers tokenizer's count, without special tokens (the chat template adds those)."""

    tokenizer: Any
    name: str

    def __call__(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])


class ModelTokenCounter:
    """The tokenizer of `model` (an HF id in the local cache or a folder), loaded without any
    download on first use — building the pipelines stays cheap — and the estimate when it is
    not here or cannot be loaded."""

    def __init__(self, model: str) -> None:
        self.model = model

    @functools.cached_property
    def _counter(self) -> TokenCounter:
        try:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(self.model, local_files_only=True)
        except Exception as exc:  # absent, gated, or a folder without tokenizer files
            log.info("no tokenizer for %s on this machine (%s); estimating token counts", self.model,
                     type(exc).__name__)
            return EstimatedCounter()
        return TokenizerCounter(tokenizer, f"{type(tokenizer).__name__} of {self.model}")

    @property
    def name(self) -> str:
        return self._counter.name

    def __call__(self, text: str) -> int:
        return self._counter(text)


def token_counter(model: str) -> TokenCounter:
    return ModelTokenCounter(model)
