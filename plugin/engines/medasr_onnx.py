"""MedASR on ONNX Runtime: the transformers model exported once to an ONNX graph (optionally
int8, dynamic per-channel quantisation of its MatMuls), cached on disk, and run by ONNX
Runtime's CPU provider with its own thread pool, behind the same call as the torch model.

The export cache is keyed by the model (name, weights revision) and every option that changes
the file (precision, opset, the torch/onnx/onnxruntime versions that wrote it), so a new
checkpoint or a new toolchain exports again and nothing stale is ever run.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plugin.errors import ConfigError

if TYPE_CHECKING:
    import torch

# Bump when the exported graph or its quantisation changes for the same inputs.
EXPORT_VERSION = "1"
OPSET = 18
MODEL_FILE = "model.onnx"
KEY_FILE = "export.json"


@dataclass(frozen=True)
class CtcLogits:
    """What run_batch reads from a model call (transformers' CausalLMOutput has the same field)."""

    logits: torch.Tensor


@dataclass(frozen=True)
class ExportKey:
    """Everything that decides the exported file; its digest names the cache folder."""

    model: str  # HF id or folder, as configured
    revision: str  # the weights' version (HF snapshot commit or a digest of a local copy)
    quantize: bool
    export_version: str = EXPORT_VERSION
    opset: int = OPSET
    toolchain: str = ""  # torch, onnx and onnxruntime versions

    def digest(self) -> str:
        text = json.dumps(self.__dict__, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:20]


def export_key(model: str, revision: str, *, quantize: bool) -> ExportKey:
    import onnx
    import onnxruntime
    import torch

    return ExportKey(model=model, revision=revision, quantize=quantize,
                     toolchain=f"torch {torch.__version__}, onnx {onnx.__version__}, "
                               f"onnxruntime {onnxruntime.__version__}")


def cached_export(key: ExportKey, cache_root: Path,
                  build: Callable[[], torch.nn.Module]) -> Path:
    """The ONNX file for `key` under `cache_root`; when absent, exported from `build()` (an fp32
    LasrForCTC ready for inference), which is not called on a cache hit."""
    folder = cache_root / key.digest()
    if (folder / MODEL_FILE).is_file():
        return folder / MODEL_FILE
    model = build()
    cache_root.mkdir(parents=True, exist_ok=True)
    # Built beside the target and renamed into place: a reader never sees half a file, and two
    # processes exporting at once both end with one complete folder.
    work = Path(tempfile.mkdtemp(prefix=".export-", dir=cache_root))
    try:
        export_onnx(model, work / "fp32.onnx")
        if key.quantize:
            quantize_int8(work / "fp32.onnx", work / MODEL_FILE)
            (work / "fp32.onnx").unlink()
        else:
            (work / "fp32.onnx").rename(work / MODEL_FILE)
        (work / KEY_FILE).write_text(json.dumps(key.__dict__, indent=1, sort_keys=True))
        try:
            work.rename(folder)
        except OSError:  # another process got there first
            if not (folder / MODEL_FILE).is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return folder / MODEL_FILE


def export_onnx(model: torch.nn.Module, path: Path) -> None:
    """Trace the CTC model (features, mask) -> logits, batch and time dynamic."""
    import torch

    class Logits(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return self.inner(input_features=features, attention_mask=mask).logits

    config: Any = model.config
    mel_bins = int(config.encoder_config.num_mel_bins)
    features, mask = torch.zeros(2, 300, mel_bins), torch.ones(2, 300, dtype=torch.bool)
    mask[1, 200:] = False  # a padded row, so the mask's path is traced as it is used
    # The TorchScript exporter: the dynamo one needs every shape guard of the Conformer's
    # masking spelled out, and both give the same graph for this model (tested against torch).
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Logits(model).eval(), (features, mask), str(path), input_names=["features", "mask"],
            output_names=["logits"], opset_version=OPSET, dynamo=False,
            dynamic_axes={"features": {0: "batch", 1: "time"}, "mask": {0: "batch", 1: "time"},
                          "logits": {0: "batch", 1: "frames"}})


def quantize_int8(source: Path, target: Path, *, signed_weights: bool = False) -> None:
    """Dynamic int8: weights quantised per output channel ahead of time, activations per call.
    Unsigned weights (u8 x u8) are exact integer arithmetic on every x86 ISA (u8 x s8 can
    saturate 16-bit sums on AVX2 without VNNI) and were the faster here (bench/speech.py
    measures both)."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The quantiser logs a root-logger warning on every call recommending its optional
    # pre-processing pass; that advice is not a problem with this graph, and the log is the
    # service's.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(source), str(target), per_channel=True, op_types_to_quantize=["MatMul"],
                         weight_type=QuantType.QInt8 if signed_weights else QuantType.QUInt8)
    finally:
        root.setLevel(level)


class OnnxCtcModel:
    """An ONNX Runtime session called like LasrForCTC: model(input_features=..,
    attention_mask=..).logits, with the transformers config beside it for decoding."""

    def __init__(self, path: Path, config: Any, *, threads: int | None = None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        # One pool of `threads` (0: one per physical core) for the operators of one call; the
        # graph is a chain, so a second pool between operators would only compete with it.
        options.intra_op_num_threads = threads or 0
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = onnxruntime.InferenceSession(str(path), options,
                                                        providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ConfigError(f"the exported MedASR graph {path} cannot be loaded ({exc}); delete "
                              "its folder to export it again") from exc
        self.config = config
        self.path = path
        self.threads = threads

    def __call__(self, *, input_features: torch.Tensor, attention_mask: torch.Tensor) -> CtcLogits:
        import torch

        logits = self.session.run(["logits"], {
            "features": input_features.detach().float().cpu().numpy(),
            "mask": attention_mask.detach().bool().cpu().numpy()})[0]
        return CtcLogits(torch.from_numpy(logits))


def default_export_dir() -> Path:
    """$XDG_CACHE_HOME/chartlight/medasr-onnx (setting medasr_onnx_cache_dir)."""
    from plugin.sandbox.places import default_cache_dir

    return default_cache_dir() / "medasr-onnx"


def export_dir_of(configured: str | None) -> Path:
    return Path(configured).expanduser() if configured else default_export_dir()


def require_onnxruntime() -> None:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ConfigError("medasr_runtime onnxruntime needs the onnxruntime package "
                          "(pip install onnxruntime); medasr_runtime = \"torch\" runs MedASR in "
                          "PyTorch") from None
