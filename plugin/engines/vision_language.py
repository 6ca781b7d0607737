"""The vision-language engine interface: what every backend (local transformers, a remote
OpenAI-compatible endpoint) offers the pipelines that send it images and a prompt."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from plugin.results import ModelInfo

if TYPE_CHECKING:
    from PIL.Image import Image


@runtime_checkable
class VisionLanguageEngine(Protocol):
    """A model that reads images and text and answers in text.

    `available()` must be cheap and never download or load weights, nor call a remote endpoint:
    pipelines call it to choose an engine. `generate()` decodes greedily, so the same inputs give
    the same answer.
    """

    def available(self) -> bool:
        """True when the engine can run here (weights present, libraries importable)."""
        ...

    def model_info(self) -> ModelInfo:
        """The model this engine runs, as written into every result it produces."""
        ...

    def generate(self, parts: Sequence[Image | str], *, max_new_tokens: int = 1024) -> str:
        """The model's answer to one user turn made of `parts` in order: images and texts
        interleaved as given (a CT volume is each slice followed by its label, the question
        last). The answer keeps any thought block; callers strip it (plugin.engines.answers)."""
        ...
