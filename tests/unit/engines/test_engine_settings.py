"""The medasr_* and medgemma_* settings (docs/configuration.md, "Model engines") reach the engines
installed_pipelines builds, and each changes what the engine does: on tiny random-weight models
saved as folders from the real config classes, loaded the way real weights are."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import LasrProcessor

from plugin.config import Settings
from plugin.engines.medasr import MedAsrEngine
from plugin.engines.medgemma import MedGemmaEngine
from plugin.engines.test_models.tiny_gemma import save_tiny_medgemma
from plugin.engines.test_models.tiny_medasr import calibration_speech, tiny_loaded
from plugin.errors import ConfigError
from plugin.pipelines.registry import installed_pipelines, medgemma_engine

# A bigram KenLM model in ARPA format (log10 probabilities, backoffs); the test writes it.
ARPA = """\\data\\
ngram 1=6
ngram 2=2

\\1-grams:
-1.0\t<unk>
-99\t<s>\t-0.3
-0.7\t</s>
-0.5\tthe\t-0.3
-0.6\tnodule
-0.6\tlobe

\\2-grams:
-0.2\t<s> the
-0.1\tthe nodule

\\end\\
"""


@pytest.fixture(scope="module")
def medasr_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("settings-medasr")
    loaded = tiny_loaded()
    # The calibrated head, so that greedy decoding gives words rather than one token everywhere.
    loaded.model.save_pretrained(folder)
    LasrProcessor(loaded.feature_extractor, loaded.tokenizer).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def medgemma_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_medgemma(tmp_path_factory.mktemp("settings-medgemma"))


@pytest.fixture
def audio() -> np.ndarray:
    """About 12 s: the calibration speech repeated (long enough for several 5 s windows)."""
    speech = calibration_speech()
    return np.tile(speech, int(np.ceil(12 * 16000 / len(speech))))[: 12 * 16000]


@pytest.fixture
def restore_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _speech_engine(folder: Path, **settings: Any) -> MedAsrEngine:
    # The PyTorch runtime, whose modules these tests inspect (test_medasr_onnx.py: the other).
    settings.setdefault("medasr_runtime", "torch")
    engine = installed_pipelines(Settings(medasr_model=str(folder), **settings))["speech"].run.engine  # type: ignore[attr-defined]
    assert isinstance(engine, MedAsrEngine)
    return engine


def _forward_rows(engine: MedAsrEngine, audio: np.ndarray) -> list[int]:
    """The batch size of each forward pass the engine makes over `audio`."""
    rows: list[int] = []
    hook = engine.load().model.register_forward_hook(
        lambda _m, _args, kwargs, _out: rows.append(int(kwargs["input_features"].shape[0])),
        with_kwargs=True)
    try:
        engine.transcribe(audio)
    finally:
        hook.remove()
    return rows


def test_medasr_model_names_the_folder_loaded(medasr_folder: Path) -> None:
    engine = _speech_engine(medasr_folder, medasr_quantize=False)
    assert engine.available() and engine.model_info().name == str(medasr_folder)
    assert not _speech_engine(medasr_folder.parent / "elsewhere").available()


def test_batch_size_changes_the_forward_passes(medasr_folder: Path, audio: np.ndarray) -> None:
    windows = {"medasr_chunk_s": 5.0, "medasr_stride_s": 1.0, "medasr_quantize": False}
    assert _forward_rows(_speech_engine(medasr_folder, medasr_batch_size=1, **windows), audio) == [1, 1, 1, 1]
    assert _forward_rows(_speech_engine(medasr_folder, medasr_batch_size=3, **windows), audio) == [3, 1]


def test_chunk_and_stride_change_the_windows(medasr_folder: Path, audio: np.ndarray) -> None:
    # 20 s windows by default: 12 s of audio is one window.
    assert sum(_forward_rows(_speech_engine(medasr_folder, medasr_quantize=False), audio)) == 1
    assert sum(_forward_rows(_speech_engine(medasr_folder, medasr_chunk_s=5.0, medasr_stride_s=1.0,
                                            medasr_quantize=False), audio)) == 4
    assert sum(_forward_rows(_speech_engine(medasr_folder, medasr_chunk_s=5.0, medasr_stride_s=2.0,
                                            medasr_quantize=False), audio)) > 4  # more context: more windows


def test_quantize_changes_the_module_types(medasr_folder: Path) -> None:
    def linear_types(engine: MedAsrEngine) -> set[type]:
        kinds = (torch.nn.Linear, torch.ao.nn.quantized.dynamic.Linear)
        return {type(m) for m in engine.load().model.modules() if isinstance(m, kinds)}

    assert linear_types(_speech_engine(medasr_folder, medasr_quantize=False)) == {torch.nn.Linear}
    quantized = _speech_engine(medasr_folder, medasr_quantize=True)
    assert "int8" in quantized.model_info().display
    assert linear_types(quantized) == {torch.ao.nn.quantized.dynamic.Linear}


def test_lm_path_switches_to_kenlm_beam_search_and_alpha_beta_weigh_it(
        medasr_folder: Path, audio: np.ndarray, tmp_path: Path) -> None:
    lm = tmp_path / "tiny.arpa"
    lm.write_text(ARPA)
    greedy = _speech_engine(medasr_folder, medasr_quantize=False)
    assert greedy.lm_path is None
    greedy_words = len(greedy.transcribe(audio).words)

    def beam_words(alpha: float, beta: float) -> int:
        engine = _speech_engine(medasr_folder, medasr_quantize=False, medasr_lm_path=str(lm),
                                medasr_lm_alpha=alpha, medasr_lm_beta=beta)
        assert (engine.lm_path, engine.beam.alpha, engine.beam.beta) == (str(lm), alpha, beta)
        return len(engine.transcribe(audio).words)

    # A large penalty per word (beta) with a strong LM (alpha) makes the beam search join or drop
    # words that greedy decoding keeps; a large bonus keeps at least as many.
    fewer, more = beam_words(5.0, -20.0), beam_words(0.5, 20.0)
    assert fewer < greedy_words <= more


def test_a_bad_lm_path_is_refused_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="medasr_lm_path"):
        Settings(medasr_lm_path=str(tmp_path / "missing.arpa"))


def test_threads_set_torch_threads(medasr_folder: Path, audio: np.ndarray, restore_threads: None) -> None:
    torch.set_num_threads(2)
    _speech_engine(medasr_folder, medasr_quantize=False, medasr_threads=1).transcribe(audio[:16000])
    assert torch.get_num_threads() == 1
    torch.set_num_threads(2)
    _speech_engine(medasr_folder, medasr_quantize=False).transcribe(audio[:16000])  # 0: left alone
    assert torch.get_num_threads() == 2


def test_device_reaches_the_speech_loader(medasr_folder: Path) -> None:
    assert _speech_engine(medasr_folder, medasr_device="cpu", medasr_quantize=False).load().device == "cpu"
    if torch.cuda.is_available():
        loaded = _speech_engine(medasr_folder, medasr_device="cuda", medasr_quantize=False).load()
        assert next(loaded.model.parameters()).device.type == "cuda"
    else:
        with pytest.raises(ConfigError, match="speech device 'cuda'"):
            _speech_engine(medasr_folder, medasr_device="cuda").load()


def _medgemma(folder: Path, **settings: Any) -> MedGemmaEngine:
    engine = medgemma_engine(Settings(medgemma_model=str(folder), **settings))
    assert isinstance(engine, MedGemmaEngine)
    return engine


def test_medgemma_dtype_and_attention_reach_the_loaded_model(medgemma_folder: Path) -> None:
    default = _medgemma(medgemma_folder)._loaded().model
    assert default.dtype == torch.float32 and default.config._attn_implementation == "sdpa"
    chosen = _medgemma(medgemma_folder, medgemma_dtype="bfloat16", medgemma_attention="eager")._loaded().model
    assert chosen.dtype == torch.bfloat16 and chosen.config._attn_implementation == "eager"
    assert chosen.device.type == "cpu"


def test_medgemma_device_reaches_the_loader(medgemma_folder: Path) -> None:
    if torch.cuda.is_available():
        model = _medgemma(medgemma_folder, medgemma_device="cuda")._loaded().model
        assert model.device.type == "cuda"
    else:
        with pytest.raises(ConfigError, match="MedGemma device 'cuda'"):
            _medgemma(medgemma_folder, medgemma_device="cuda").generate(["hello"], max_new_tokens=2)


def test_medgemma_max_new_tokens_bounds_every_answer(medgemma_folder: Path) -> None:
    new_tokens: list[int] = []

    def lengths(engine: MedGemmaEngine) -> int:
        model = engine._loaded().model
        real = model.generate

        def counting(**inputs: Any) -> Any:
            output = real(**inputs)
            new_tokens.append(int(output.shape[-1] - inputs["input_ids"].shape[-1]))
            return output
        model.generate = counting
        try:
            engine.generate([Image.new("L", (32, 32), 200), "Describe."], max_new_tokens=24)
        finally:
            del model.generate
        return new_tokens[-1]

    assert lengths(_medgemma(medgemma_folder)) > 3  # random weights run on to the pipeline's limit
    assert lengths(_medgemma(medgemma_folder, medgemma_max_new_tokens=3)) <= 3


@pytest.mark.parametrize(("setting", "value"), [
    ("medasr_device", "gpu"), ("medgemma_device", "cuda0"), ("medgemma_dtype", "fp16"),
    ("medgemma_attention", "flash"), ("medasr_batch_size", 0), ("medasr_chunk_s", -1.0),
    ("medasr_stride_s", -0.5), ("medasr_threads", -1), ("medgemma_max_new_tokens", 0),
    ("medasr_model", " ")])
def test_bad_engine_settings_are_refused_naming_the_setting(setting: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=setting):
        Settings(**{setting: value})


def test_chunk_must_exceed_twice_the_stride() -> None:
    with pytest.raises(ConfigError, match="medasr_chunk_s .* medasr_stride_s"):
        Settings(medasr_chunk_s=4.0, medasr_stride_s=2.0)
