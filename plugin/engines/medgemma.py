"""MedGemma (or any Gemma 3 image-text-to-text checkpoint) run locally with transformers.

Weights come from a local directory or the Hugging Face cache; `available()` never downloads
(HF_HUB_OFFLINE is honoured, and a download happens only when `allow_download` is set). Each
checkpoint is loaded once per process and shared by every engine that names it.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plugin.engines.devices import check_device, mps_available
from plugin.errors import ConfigError
from plugin.results import AIKind, ModelInfo

if TYPE_CHECKING:
    from PIL.Image import Image

DEFAULT_MODEL = "google/medgemma-1.5-4b-it"
KINDS: tuple[AIKind, ...] = ("Vision-Language-Models", "Large-Language-Models")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
# Where the answer ends; what follows (padding, a second turn) is not the answer.
_END_MARKERS = ("<end_of_turn>", "<eos>")
_TRUE = {"1", "on", "yes", "true"}


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


class MedGemmaEngine:
    """The local transformers backend of the vision-language engine.

    `model` is a Hugging Face id (looked up in `cache_dir`, default the Hugging Face cache) or a
    local directory. `name` overrides the model name written into
    results (e.g. the HF id of a local copy). `device`/`dtype` default to the best the machine has:
    CUDA in bfloat16 (float16 where bf16 is unsupported), Apple MPS in float16, else CPU in float32.
    `attention` names a transformers attention implementation (None: transformers' default);
    `max_new_tokens` caps every answer, whatever length a pipeline asks for.
    `test_weights` marks random-weight test checkpoints, whose output is never clinical.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        name: str | None = None,
        revision: str | None = None,
        cache_dir: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        attention: str | None = None,
        max_new_tokens: int | None = None,
        allow_download: bool = False,
        test_weights: bool = False,
    ) -> None:
        if max_new_tokens is not None and max_new_tokens < 1:
            raise ConfigError("MedGemma max_new_tokens must be positive")
        self.model = model
        self.revision = revision
        self.cache_dir = cache_dir
        self.device = device
        self.dtype = dtype
        self.attention = attention
        self.max_new_tokens = max_new_tokens
        self.allow_download = allow_download
        self.test_weights = test_weights
        self._local = Path(model).expanduser()
        self.name = name or (self._local.name if self._local.is_dir() else model)

    def __repr__(self) -> str:
        return f"MedGemmaEngine({self.model!r})"

    # ---- the engine interface --------------------------------------------------------------

    def available(self) -> bool:
        return self.why_unavailable() is None

    def why_unavailable(self) -> str | None:
        """None when the engine can run, else what it needs, for people to read."""
        for module in ("torch", "transformers"):
            if importlib.util.find_spec(module) is None:
                return f"the Python package {module!r} is not installed"
        if self._weights_dir() is not None:
            return None
        if self._names_a_path():
            return f"no model weights at {self.model}"
        if self.allow_download and not hub_offline():
            return None
        return (f"the weights of {self.model} are not in the Hugging Face cache "
                "(`chartlight models pull medgemma` fetches them, or point medgemma_model at a local copy)")

    def model_info(self) -> ModelInfo:
        display = ("MedGemma 1.5 4B" if self.name == DEFAULT_MODEL else self.name) + \
            " (transformers, local)"
        return ModelInfo(name=self.name, version=self._version(), kinds=KINDS, display=display,
                         test_weights=self.test_weights)

    def generate(self, parts: Sequence[Image | str], *, max_new_tokens: int = 1024) -> str:
        """One user turn (images and texts in the order given) answered with greedy decoding.
        The answer keeps any thought block; callers strip it (plugin.engines.answers)."""
        loaded, max_new_tokens = self._ready(max_new_tokens)
        import torch

        with loaded.lock:
            inputs = _chat_inputs(loaded, parts)
            with torch.inference_mode():
                output = loaded.model.generate(**inputs, max_new_tokens=max_new_tokens,
                                               do_sample=False, top_p=None, top_k=None)
        answer_ids = output[0, inputs["input_ids"].shape[-1]:]
        text: str = loaded.processor.decode(answer_ids, skip_special_tokens=False)
        for marker in _END_MARKERS:
            text = text.split(marker, 1)[0]
        return text.replace("<pad>", "").strip()

    def stream(self, parts: Sequence[Image | str], *, max_new_tokens: int = 1024) -> Iterator[str]:
        """`generate`, yielding the answer's text as it is decoded (transformers'
        TextIteratorStreamer; generation runs on a helper thread). Joined, the chunks are what
        `generate` returns, up to the end-of-turn marker."""
        loaded, max_new_tokens = self._ready(max_new_tokens)
        import torch
        from transformers import TextIteratorStreamer

        with loaded.lock:
            inputs = _chat_inputs(loaded, parts)
            streamer = TextIteratorStreamer(loaded.processor.tokenizer, skip_prompt=True,
                                            skip_special_tokens=False, timeout=600)

            def run() -> None:
                with torch.inference_mode():
                    loaded.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                          top_p=None, top_k=None, streamer=streamer)

            worker = threading.Thread(target=run, name="medgemma-stream", daemon=True)
            worker.start()
            try:
                ended = False
                for piece in streamer:
                    if ended:
                        continue  # drain: the generating thread must finish before the lock is freed
                    for marker in _END_MARKERS:
                        if marker in piece:
                            piece, ended = piece.split(marker, 1)[0], True
                    if piece.replace("<pad>", ""):
                        yield piece.replace("<pad>", "")
            finally:
                worker.join()

    def _ready(self, max_new_tokens: int) -> tuple[_Loaded, int]:
        """The loaded checkpoint and the answer length allowed, or ConfigError saying why not."""
        reason = self.why_unavailable()
        if reason is not None:
            raise ConfigError(f"MedGemma engine unavailable: {reason}")
        if self.max_new_tokens is not None:
            max_new_tokens = min(max_new_tokens, self.max_new_tokens)
        return self._loaded(), max_new_tokens

    # ---- loading -------------------------------------------------------------------------------

    def _loaded(self) -> _Loaded:
        import torch

        device = self.device or _best_device(torch)
        dtype = self.dtype or _best_dtype(torch, device)
        local_only = not self.allow_download or hub_offline()
        with _LOAD_LOCK:
            return _load(self.model, self.revision, self.cache_dir, device, dtype, local_only,
                         self.attention)

    def _names_a_path(self) -> bool:
        # A Hugging Face id is exactly "owner/name"; anything else is a directory.
        return (self._local.is_absolute() or self._local.exists() or self.model.count("/") != 1
                or self.model.startswith((".", "~")))

    def _weights_dir(self) -> Path | None:
        """The directory holding config and weights, when they are on this machine."""
        if self._local.is_dir():
            return self._local if _has_weights(self._local) else None
        if self._names_a_path():
            return None
        try:
            from huggingface_hub import try_to_load_from_cache
        except ImportError:
            return None
        config = try_to_load_from_cache(self.model, "config.json", cache_dir=self.cache_dir,
                                        revision=self.revision)
        if not isinstance(config, str):
            return None
        snapshot = Path(config).parent
        return snapshot if _has_weights(snapshot) else None

    def _version(self) -> str:
        """The snapshot commit for a cached HF checkpoint, else a hash of the local config and
        weight file names and sizes (cheap, and changes when the weights do)."""
        folder = self._weights_dir()
        if folder is None:
            return self.revision or "unresolved"
        if folder.parent.name == "snapshots":
            return folder.name
        digest = hashlib.sha256((folder / "config.json").read_bytes())
        for path in sorted(folder.iterdir()):
            if path.suffix in {".safetensors", ".bin"}:
                digest.update(f"{path.name}:{path.stat().st_size}".encode())
        return "local-" + digest.hexdigest()[:12]


def user_content(parts: Sequence[Image | str]) -> list[dict[str, Any]]:
    """The chat-template content of one user turn: each part in order, images as RGB."""
    if not parts:
        raise ValueError("a user turn needs at least one part")
    content: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, str):
            content.append({"type": "text", "text": part})
        else:
            content.append({"type": "image", "image": part.convert("RGB")})
    return content


def _chat_inputs(loaded: _Loaded, parts: Sequence[Image | str]) -> Any:
    """The tokenized chat turn on the model's device. Gemma 3 has no system role: the whole
    instruction is the user's turn."""
    messages = [{"role": "user", "content": user_content(parts)}]
    inputs = loaded.processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt")
    return inputs.to(loaded.model.device, dtype=loaded.model.dtype)


@dataclass(frozen=True)
class _Loaded:
    model: Any
    processor: Any
    lock: threading.Lock  # one generate at a time per checkpoint: they would only compete


# The weights are a process-wide resource: every engine naming the same checkpoint shares them.
_LOAD_LOCK = threading.Lock()


@functools.cache
def _load(model: str, revision: str | None, cache_dir: str | None, device: str, dtype: str,
          local_only: bool, attention: str | None = None) -> _Loaded:
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    check_device(torch, device, engine="MedGemma")
    where = {"revision": revision, "cache_dir": cache_dir, "local_files_only": local_only}
    processor = AutoProcessor.from_pretrained(model, **where)
    chosen = {} if attention is None else {"attn_implementation": attention}
    try:
        network: Any = AutoModelForImageTextToText.from_pretrained(
            model, dtype=getattr(torch, dtype), **where, **chosen)
    except ImportError as exc:  # e.g. flash_attention_2 without the flash-attn package
        raise ConfigError(f"MedGemma attention {attention!r} cannot be used here: {exc}") from None
    network.to(device).eval()
    return _Loaded(network, processor, threading.Lock())


def _has_weights(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any((folder / f).exists() for f in WEIGHT_FILES)


def _best_device(torch: Any) -> str:
    if torch.cuda.is_available():
        return "cuda"
    if mps_available(torch):
        return "mps"
    return "cpu"


def _best_dtype(torch: Any, device: str) -> str:
    if device.startswith("cuda"):
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    if device == "mps":
        return "float16"
    return "float32"  # bf16 matmuls on most CPUs are emulated and slower

