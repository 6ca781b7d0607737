"""MedASR (google/medasr, a Conformer CTC model) behind the speech engine shape: available(),
model_info(), transcribe(16 kHz mono audio) -> CtcTranscript with word times.

Weights come from a local directory or the Hugging Face cache, never the network at run time
(gated weights are fetched once, ahead of time, with `chartlight models pull medasr`);
a model is loaded once per process and shared by every job. Long audio is decoded in overlapping
chunks batched together; chunk outputs are joined by plugin.pipelines.speech.ctc.
"""

from __future__ import annotations

import copy
import hashlib
import math
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from plugin.engines.devices import check_device
from plugin.engines.medasr_onnx import (
    OnnxCtcModel,
    cached_export,
    export_dir_of,
    export_key,
    require_onnxruntime,
)
from plugin.errors import ConfigError
from plugin.pipelines.speech.beam_search import BeamOptions, decode_beam
from plugin.pipelines.speech.ctc import (
    Chunk,
    ChunkFrames,
    CtcTranscript,
    FrameTiming,
    decode_greedy,
    plan_chunks,
    stitch,
)
from plugin.results import AIKind, ModelInfo

if TYPE_CHECKING:
    import torch

DEFAULT_MODEL = "google/medasr"
SAMPLE_RATE = 16_000
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
KINDS: tuple[AIKind, ...] = ("Deep-Learning-Models",)
# Where the forward pass runs: transformers in PyTorch, the exported graph in ONNX Runtime (CPU
# only), or auto: ONNX Runtime on the CPU and PyTorch on a GPU (bench/speech.py compares them).
RUNTIMES = ("auto", "torch", "onnxruntime")


@dataclass(frozen=True)
class LoadedMedAsr:
    """A ready model with its feature extractor, tokenizer and the facts decoding needs."""

    model: Any  # transformers LasrForCTC (or a dynamically quantised copy), or an OnnxCtcModel
    feature_extractor: Any  # LasrFeatureExtractor
    tokenizer: Any  # LasrTokenizer
    info: ModelInfo
    device: str = "cpu"
    dtype: str = "float32"

    @property
    def blank_id(self) -> int:
        return int(self.model.config.pad_token_id)

    @property
    def frame_samples(self) -> int:
        """Audio samples per output frame: the feature hop times the encoder's subsampling."""
        return int(self.feature_extractor.hop_length) * int(self.model.config.inputs_to_logits_ratio)

    @property
    def timing(self) -> FrameTiming:
        return frame_timing(self.model.config, self.feature_extractor)

    def output_frames(self, n_samples: int) -> int:
        return output_frames(n_samples, self.model.config, self.feature_extractor)


def frame_timing(config: Any, feature_extractor: Any) -> FrameTiming:
    """Output frame j covers log-mel frames 4j .. 4j+12 (two valid convolutions of kernel k,
    stride s: a receptive field of k + (k-1)s frames); its centre, in seconds, is the centre of
    that span. With MedASR's config (hop 10 ms, window 25 ms, k=5, s=2): 40 ms frames, frame 0
    centred at 72.5 ms."""
    encoder = config.encoder_config
    k, s = encoder.subsampling_conv_kernel_size, encoder.subsampling_conv_stride
    hop, win = feature_extractor.hop_length, feature_extractor.win_length
    sr = feature_extractor.sampling_rate
    centre_feature = (k - 1) * (1 + s) / 2
    return FrameTiming(frame_s=hop * config.inputs_to_logits_ratio / sr,
                       offset_s=(centre_feature * hop + win / 2) / sr)


def output_frames(n_samples: int, config: Any, feature_extractor: Any) -> int:
    """How many CTC frames the model gives for `n_samples` of audio (0 when too short)."""
    win, hop = feature_extractor.win_length, feature_extractor.hop_length
    if n_samples < win:
        return 0
    length = (n_samples - win) // hop + 1
    encoder = config.encoder_config
    for _ in range(2):  # LasrEncoderSubsampling: two unpadded strided convolutions
        length = (length - encoder.subsampling_conv_kernel_size) // encoder.subsampling_conv_stride + 1
    return max(length, 0)


class MedAsrEngine:
    """Speech-to-text with MedASR. `model` is an HF id or a local directory."""

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        chunk_s: float = 20.0,
        stride_s: float = 2.0,
        batch_size: int = 4,
        quantize: bool = True,
        lm_path: str | None = None,
        beam: BeamOptions | None = None,
        device: str | None = None,
        threads: int | None = None,
        cache_dir: str | None = None,
        runtime: str = "torch",
        export_dir: str | None = None,
        loaded: LoadedMedAsr | None = None,
    ) -> None:
        if chunk_s <= 2 * stride_s or stride_s < 0:
            raise ConfigError(f"speech chunk_s ({chunk_s}) must exceed twice stride_s ({stride_s})")
        if batch_size < 1:
            raise ConfigError("speech batch_size must be at least 1")
        if threads is not None and threads < 1:
            raise ConfigError("speech threads must be at least 1 (or None for torch's default)")
        if runtime not in RUNTIMES:
            raise ConfigError(f"speech runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
        self.model = model
        self.chunk_s, self.stride_s, self.batch_size = chunk_s, stride_s, batch_size
        self.quantize, self.lm_path = quantize, lm_path
        self.beam = beam or BeamOptions()  # alpha, beta, width: used only with lm_path
        self.device, self.threads, self.cache_dir = device, threads, cache_dir
        # The exported graphs' cache (None: $XDG_CACHE_HOME/chartlight/medasr-onnx).
        self.runtime, self.export_dir = runtime, export_dir
        self._loaded = loaded

    @classmethod
    def from_loaded(cls, loaded: LoadedMedAsr, **options: Any) -> MedAsrEngine:
        """An engine around a model built elsewhere (tests build tiny random-weight ones)."""
        return cls(loaded.info.name, loaded=loaded, **options)

    # ---- the engine shape --------------------------------------------------------------------

    def available(self) -> bool:
        """True when the weights are on this machine (local directory or HF cache)."""
        return self._loaded is not None or _weights_dir(self.model, self.cache_dir) is not None

    def requirements(self) -> str:
        return (f"MedASR weights for {self.model!r}: a local directory with config.json and "
                f"model.safetensors, or the Hugging Face cache filled ahead of time "
                "(`chartlight models pull medasr` after accepting its terms)")

    def model_info(self) -> ModelInfo:
        return self.load().info

    def transcribe(self, audio_16k: np.ndarray, *,
                   progress: Callable[[float], None] | None = None) -> CtcTranscript:
        """Greedy CTC (or KenLM beam search when `lm_path` is set) over overlapping chunks."""
        audio = np.ascontiguousarray(audio_16k, dtype=np.float32)
        if audio.ndim != 1:
            raise ValueError("transcribe() takes mono audio: a 1-D array at 16 kHz")
        if self.load().output_frames(len(audio)) < 1:
            raise ValueError(f"{len(audio)} samples is too short for one output frame")
        chunks = self.window_plan(len(audio))
        decided: list[ChunkFrames] = []
        log_probs: list[np.ndarray] = []
        for start in range(0, len(chunks), self.batch_size):
            batch = chunks[start:start + self.batch_size]
            ids, scores = self.decode_windows([audio[c.start:c.end] for c in batch],
                                              keep_log_probs=self.lm_path is not None)
            decided += [ChunkFrames(c.first_frame, row) for c, row in zip(batch, ids, strict=True)]
            log_probs += scores
            if progress is not None:
                progress(min(1.0, (start + len(batch)) / len(chunks)))
        return self.join_windows(decided, log_probs, n_samples=len(audio))

    # ---- the steps of transcribe(), also taken one by one by live dictation ------------------
    # (plugin.pipelines.speech.streaming: the same windows, batches and joining, so a live
    # recording's final transcript is the batch transcript of the same audio, exactly)

    def window_plan(self, n_samples: int) -> list[Chunk]:
        """The overlapping windows that `n_samples` of audio is decoded in, in order; forward
        passes take them `batch_size` at a time."""
        return plan_chunks(n_samples, frame_samples=self.load().frame_samples,
                           chunk_samples=self.window_samples(),
                           stride_samples=round(self.stride_s * SAMPLE_RATE))

    def window_samples(self) -> int:
        """The length of every window but a recording's last (which ends with the audio)."""
        frame = self.load().frame_samples
        return max(frame, round(self.chunk_s * SAMPLE_RATE / frame) * frame)

    def frame_samples(self) -> int:
        return self.load().frame_samples

    def output_frames(self, n_samples: int) -> int:
        return self.load().output_frames(n_samples)

    def windowed(self) -> MedAsrEngine:
        """The engine whose transcribe() steps live dictation takes one by one (itself)."""
        return self

    def decode_windows(self, pieces: Sequence[np.ndarray], *,
                       keep_log_probs: bool = False) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """One forward pass over windows of audio (run_batch)."""
        return run_batch(self.load(), pieces, keep_log_probs=keep_log_probs)

    def join_windows(self, decided: Sequence[ChunkFrames], log_probs: Sequence[np.ndarray], *,
                     n_samples: int) -> CtcTranscript:
        """The transcript of decoded windows: stitched at their seams, then greedy CTC (or beam
        search over the stitched log-probabilities when `lm_path` is set)."""
        loaded = self.load()
        frame_ids, seams = stitch(decided, blank_id=loaded.blank_id)
        duration_s = n_samples / SAMPLE_RATE
        if self.lm_path is not None:
            bounds = (0, *seams, decided[-1].end_frame)
            global_log_probs = np.concatenate([
                lp[lo - c.first_frame:hi - c.first_frame]
                for c, lp, lo, hi in zip(decided, log_probs, bounds[:-1], bounds[1:], strict=True)])
            return decode_beam(global_log_probs, pieces=_pieces(loaded),
                               scorer=load_language_model(self.lm_path), timing=loaded.timing,
                               options=self.beam, blank_id=loaded.blank_id,
                               skip_ids=_special_ids(loaded), duration_s=duration_s, seams=seams)
        return decode_greedy(frame_ids, blank_id=loaded.blank_id, pieces=_pieces(loaded),
                             timing=loaded.timing, skip_ids=_special_ids(loaded),
                             duration_s=duration_s, seams=seams)

    # ---- loading -----------------------------------------------------------------------------

    def load(self) -> LoadedMedAsr:
        import torch

        if self.lm_path is not None:
            load_language_model(self.lm_path)
        # torch has one intra-op pool per process: the setting is the speech worker's.
        if self.threads is not None and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        if self._loaded is None:
            weights = _weights_dir(self.model, self.cache_dir)
            if weights is None:
                raise ConfigError(f"MedASR is not available on this machine: {self.requirements()}")
            device = self.device or ("cpu" if self.runtime == "onnxruntime" else _default_device())
            check_device(torch, device, engine="speech")
            onnx = self._onnx_on(device)
            with _LOAD_LOCK:
                if onnx:
                    _check_onnx_device(device)
                    self._loaded = _load_onnx(str(weights), self.model, self.quantize,
                                              str(export_dir_of(self.export_dir)), self.threads)
                else:
                    self._loaded = _load_pretrained(str(weights), self.model, device, self.quantize)
        elif self._onnx_on(self._loaded.device) and not isinstance(self._loaded.model, OnnxCtcModel):
            with _LOAD_LOCK:  # a model built elsewhere (the tests' tiny ones): export it
                self._loaded = onnx_of_loaded(self._loaded, quantize=self.quantize,
                                              export_dir=export_dir_of(self.export_dir),
                                              threads=self.threads)
        return self._loaded

    def _onnx_on(self, device: str) -> bool:
        onnx = self.runtime == "onnxruntime" or (self.runtime == "auto" and device == "cpu")
        if onnx:
            require_onnxruntime()
        return onnx


def run_batch(loaded: LoadedMedAsr, pieces: Sequence[np.ndarray], *,
              keep_log_probs: bool = False) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """One forward pass over several audio chunks: per chunk, the best id of each valid frame
    (and, when asked, the log-probabilities of every frame)."""
    import torch

    features = loaded.feature_extractor(
        list(pieces), sampling_rate=SAMPLE_RATE, return_attention_mask=True, padding="longest",
        return_tensors="pt")
    dtype = getattr(torch, loaded.dtype)
    with torch.inference_mode():
        logits = loaded.model(
            input_features=features["input_features"].to(loaded.device, dtype),
            attention_mask=features["attention_mask"].to(loaded.device)).logits.float()
        ids = logits.argmax(dim=-1).cpu().numpy()
        scores = logits.log_softmax(dim=-1).cpu().numpy() if keep_log_probs else None
    lengths = [loaded.output_frames(len(p)) for p in pieces]
    return ([ids[i, :n] for i, n in enumerate(lengths)],
            [] if scores is None else [scores[i, :n] for i, n in enumerate(lengths)])


def prepare_model(model: torch.nn.Module, *, quantize: bool) -> torch.nn.Module:
    """Ready a LasrForCTC for inference: eval mode, explicit padding for its even-kernel
    depthwise convolutions, and optionally int8 dynamic quantisation of the Linear layers and
    of the Conformer's pointwise (kernel 1) convolutions, which are Linear layers in disguise."""
    import torch

    model.eval()
    _explicit_same_padding(model)
    if quantize:
        _pointwise_as_linear(model)
        # torch.ao's dynamic quantisation is deprecated in favour of torchao, which is not a
        # dependency; the eager API still works and is what was measured (bench/speech.py).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear},
                                                           dtype=torch.qint8, inplace=True)
    return model


def _explicit_same_padding(model: torch.nn.Module) -> None:
    """padding="same" with an even kernel (MedASR's is 32) makes torch pad asymmetrically and
    warn on every process's first call; doing the same padding explicitly is identical maths
    without the warning (which the test suite turns into an error)."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Conv1d) and module.padding == "same":
            total = module.dilation[0] * (module.kernel_size[0] - 1)
            if total % 2 == 0:
                continue
            left, right = total // 2, total - total // 2
            module.padding = (0,)
            module.register_forward_pre_hook(
                lambda _module, args, pad=(left, right): (torch.nn.functional.pad(args[0], pad),))


def _pointwise_as_linear(model: torch.nn.Module) -> None:
    """Swap each plain kernel-1 Conv1d for the same weights in a Linear (over the time-major
    layout), so dynamic quantisation covers them: about 13% of the encoder's multiply-adds. The
    CTC head (a Conv1d subclass) stays in float, which keeps the output layer exact."""
    import torch

    class PointwiseLinear(torch.nn.Module):
        def __init__(self, conv: torch.nn.Conv1d) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(conv.in_channels, conv.out_channels,
                                          bias=conv.bias is not None)
            with torch.no_grad():
                self.linear.weight.copy_(conv.weight[:, :, 0])
                if conv.bias is not None:
                    self.linear.bias.copy_(conv.bias)

        def forward(self, hidden: torch.Tensor) -> torch.Tensor:  # (batch, channels, time)
            return self.linear(hidden.transpose(1, 2)).transpose(1, 2)

    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if (type(child) is torch.nn.Conv1d and child.kernel_size == (1,) and child.groups == 1
                    and child.stride == (1,) and child.padding in ((0,), "valid")):
                setattr(parent, name, PointwiseLinear(child))


_LOAD_LOCK = threading.Lock()


@lru_cache(maxsize=2)
def _load_pretrained(path: str, name: str, device: str, quantize: bool) -> LoadedMedAsr:
    """Load once per process (the cache key is the weights folder, device and precision)."""
    import torch
    from transformers import AutoModelForCTC, AutoProcessor

    processor = AutoProcessor.from_pretrained(path, local_files_only=True)
    dtype = torch.float32 if device == "cpu" else (
        torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    model = AutoModelForCTC.from_pretrained(path, dtype=dtype, local_files_only=True).to(device)
    model = prepare_model(model, quantize=quantize and device == "cpu")
    precision = "int8" if quantize and device == "cpu" else str(dtype).removeprefix("torch.")
    info = ModelInfo(name=name, version=_weights_version(Path(path)), kinds=KINDS,
                     display=f"MedASR speech recognition ({precision}, {device})")
    return LoadedMedAsr(model, processor.feature_extractor, processor.tokenizer, info,
                        device=device, dtype=str(dtype).removeprefix("torch."))


@lru_cache(maxsize=2)
def _load_onnx(path: str, name: str, quantize: bool, export_dir: str,
               threads: int | None) -> LoadedMedAsr:
    """The checkpoint's ONNX graph (exported on first use, then read from the cache) in an ONNX
    Runtime session; the torch weights are loaded only to export."""
    import torch
    from transformers import AutoConfig, AutoModelForCTC, AutoProcessor

    processor = AutoProcessor.from_pretrained(path, local_files_only=True)
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    version = _weights_version(Path(path))

    def build() -> torch.nn.Module:
        model = AutoModelForCTC.from_pretrained(path, dtype=torch.float32, local_files_only=True)
        return exportable(prepare_model(model, quantize=False), quantize=quantize)

    onnx_path = cached_export(export_key(name, version, quantize=quantize), Path(export_dir), build)
    info = ModelInfo(name=name, version=version, kinds=KINDS,
                     display=f"MedASR speech recognition ({'int8' if quantize else 'float32'}, "
                             "cpu, ONNX Runtime)")
    return LoadedMedAsr(OnnxCtcModel(onnx_path, config, threads=threads),
                        processor.feature_extractor, processor.tokenizer, info)


def onnx_of_loaded(loaded: LoadedMedAsr, *, quantize: bool, export_dir: Path,
                   threads: int | None = None) -> LoadedMedAsr:
    """A torch-loaded MedASR (fp32, on the CPU) as its ONNX Runtime twin, cached under its
    name and version like a checkpoint."""
    model = loaded.model
    if loaded.device != "cpu" or any(
            type(m).__module__.startswith("torch.ao.nn") for m in model.modules()):
        raise ConfigError("the ONNX export needs the fp32 model on the CPU, not a quantised or "
                          "GPU copy")
    key = export_key(loaded.info.name, loaded.info.version, quantize=quantize)
    onnx_path = cached_export(key, export_dir, lambda: exportable(model, quantize=quantize))
    return replace(loaded, model=OnnxCtcModel(onnx_path, model.config, threads=threads))


def exportable(model: torch.nn.Module, *, quantize: bool) -> torch.nn.Module:
    """The prepared fp32 model as it is exported: for int8, a copy whose pointwise convolutions
    are Linear layers, so they export as MatMul and are quantised like the torch int8 path's."""
    if not quantize:
        return model
    model = copy.deepcopy(model)
    _pointwise_as_linear(model)
    return model


def _check_onnx_device(device: str) -> None:
    if device != "cpu":
        raise ConfigError(f"medasr_runtime onnxruntime runs on the CPU, not {device!r}: set "
                          "medasr_device = \"cpu\" or medasr_runtime = \"torch\"")


def _weights_dir(model: str, cache_dir: str | None) -> Path | None:
    """The folder holding config.json and the weights, when they are on this machine."""
    local = Path(model).expanduser()
    if local.is_dir():
        return local if _complete(local) else None
    if model.count("/") != 1 or model.startswith((".", "/", "~")):
        return None
    try:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(model, local_files_only=True, cache_dir=cache_dir))
    except Exception:  # not cached (LocalEntryNotFoundError) or an unusable cache: not here
        return None
    return folder if _complete(folder) else None


def _complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any((folder / f).is_file() for f in WEIGHT_FILES)


def _weights_version(folder: Path) -> str:
    """An HF snapshot's commit hash, else a digest of config and weights (a local copy)."""
    if folder.parent.name == "snapshots":
        return folder.name
    digest = hashlib.sha256((folder / "config.json").read_bytes())
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            with (folder / name).open("rb") as f:
                while block := f.read(1 << 22):
                    digest.update(block)
    return "sha256:" + digest.hexdigest()[:16]


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _pieces(loaded: LoadedMedAsr) -> list[str]:
    tokenizer = loaded.tokenizer
    known = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    return [p or "" for p in known] + [""] * max(0, int(loaded.model.config.vocab_size) - len(known))


def _special_ids(loaded: LoadedMedAsr) -> frozenset[int]:
    return frozenset(int(i) for i in loaded.tokenizer.all_special_ids) - {loaded.blank_id}


# ---- KenLM beam search (optional) ------------------------------------------------------------

# KenLM scores are log10; the beam search adds natural logs.
_LN_10 = math.log(10.0)


class KenLmScorer:
    """A KenLM n-gram model (ARPA or binary) as beam_search's WordScorer. Words the model does
    not know, brace tokens included, get its <unk> score."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self._context = int(model.order) - 1

    def score(self, prev_words: tuple[str, ...], word: str) -> float:
        state, out = self._state(prev_words), _kenlm().State()
        return self.model.BaseScore(state, word, out) * _LN_10

    def end_score(self, prev_words: tuple[str, ...]) -> float:
        return self.score(prev_words, "</s>")

    def _state(self, prev_words: tuple[str, ...]) -> Any:
        """The model's state after the sentence so far: from <s> when the whole sentence fits
        the n-gram order, else from no context with the last order-1 words."""
        kenlm = _kenlm()
        state = kenlm.State()
        if len(prev_words) < self._context:
            self.model.BeginSentenceWrite(state)
        else:
            self.model.NullContextWrite(state)
            prev_words = prev_words[len(prev_words) - self._context:]
        for word in prev_words:
            out = kenlm.State()
            self.model.BaseScore(state, word, out)
            state = out
        return state


def _kenlm() -> Any:
    try:
        import kenlm
    except ImportError:
        raise ConfigError(
            "speech lm_path is set but KenLM beam search needs the kenlm package (pip install "
            "kenlm==0.3.0, a C++ build), which is not installed; unset lm_path to use greedy "
            "decoding") from None
    return kenlm


@lru_cache(maxsize=2)
def load_language_model(lm_path: str) -> KenLmScorer:
    """Load a KenLM model once per process (a 6-gram binary takes seconds and much memory)."""
    if not Path(lm_path).is_file():
        raise ConfigError(f"speech lm_path {lm_path!r} is not a file")
    kenlm = _kenlm()
    config = kenlm.Config()
    config.show_progress = False  # its progress bar on stderr is noise in a server's log
    try:
        model = kenlm.Model(lm_path, config)
    except (OSError, RuntimeError) as exc:
        raise ConfigError(f"speech lm_path {lm_path!r} is not a KenLM model (ARPA or binary): "
                          f"{exc}") from exc
    return KenLmScorer(model)
