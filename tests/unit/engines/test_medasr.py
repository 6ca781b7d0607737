"""The MedASR engine on tiny random-weight models built from the real Lasr classes: frame timing
from the config, chunked decoding against whole-file decoding, batching, loading from a folder."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import LasrCTCConfig, LasrFeatureExtractor, LasrForCTC, LasrProcessor

from plugin.engines.medasr import (
    LoadedMedAsr,
    MedAsrEngine,
    frame_timing,
    output_frames,
    prepare_model,
    run_batch,
)
from plugin.engines.test_models.tiny_medasr import tiny_engine, tiny_loaded
from plugin.errors import ConfigError
from plugin.pipelines.speech.audio import decode_audio
from plugin.pipelines.speech.ctc import decode_greedy
from plugin.sandbox.synthetic import DICTATION_TEXT, espeak_wav


@pytest.fixture(scope="module")
def dictation() -> np.ndarray:
    """The seeded dictation (about 55 s) at 16 kHz."""
    return decode_audio(espeak_wav(DICTATION_TEXT), source="dictation", max_duration_s=600).samples


def whole_file(loaded: LoadedMedAsr, audio: np.ndarray) -> tuple[torch.Tensor, str]:
    """Transformers' own path in one pass: feature extractor, generate(), tokenizer decode."""
    features = loaded.feature_extractor(audio, sampling_rate=16000, return_attention_mask=True,
                                        return_tensors="pt")
    with torch.inference_mode():
        ids = loaded.model.generate(features["input_features"],
                                    attention_mask=features["attention_mask"])
    text = loaded.tokenizer.batch_decode(ids, skip_special_tokens=True)[0]
    return ids[0], " ".join(text.split())


def test_medasr_frames_are_40_ms_as_the_config_says() -> None:
    config, features = LasrCTCConfig(), LasrFeatureExtractor()
    assert config.inputs_to_logits_ratio == 4  # two stride-2 convolutions over 10 ms frames
    timing = frame_timing(config, features)
    assert timing.frame_s == pytest.approx(0.04)
    assert timing.offset_s == pytest.approx(0.0725)  # receptive field 13 mel frames, centred
    # 20 s of audio: 1998 mel frames -> 997 -> 497 output frames.
    assert output_frames(320_000, config, features) == 497


@pytest.mark.parametrize("n_samples", [3200, 16000, 16640, 33333, 160000])
def test_output_frame_count_matches_the_real_model(n_samples: int) -> None:
    loaded = tiny_loaded(layers=0)
    ids, _ = run_batch(loaded, [np.random.default_rng(1).standard_normal(n_samples).astype(np.float32)])
    features = loaded.feature_extractor(np.zeros(n_samples, dtype=np.float32), sampling_rate=16000,
                                        return_tensors="pt")
    with torch.inference_mode():
        logits = loaded.model(input_features=features["input_features"]).logits
    assert logits.shape[1] == loaded.output_frames(n_samples) == len(ids[0])


def test_explicit_padding_is_the_same_maths_as_same_padding() -> None:
    torch.manual_seed(5)
    config = tiny_loaded(layers=1).model.config
    reference = LasrForCTC(config).eval()
    prepared = prepare_model(LasrForCTC(config).eval(), quantize=False)
    prepared.load_state_dict(reference.state_dict())
    features = torch.randn(2, 300, 128)
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the even-kernel warning the engine avoids
        expected = reference(input_features=features).logits
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("error")
        actual = prepared(input_features=features).logits
    assert torch.allclose(actual, expected, atol=1e-6)


def test_int8_keeps_the_log_probabilities_close(dictation: np.ndarray) -> None:
    exact, quantised = tiny_loaded(layers=2), tiny_loaded(layers=2, quantize=True)
    modules = list(quantised.model.modules())
    assert any(type(m).__name__ == "PointwiseLinear" for m in modules)
    assert any(type(m).__module__.startswith("torch.ao.nn.quantized.dynamic") for m in modules)
    assert not any(type(m) is torch.nn.Conv1d and m.kernel_size == (1,)
                   for m in quantised.model.encoder.modules())
    features = exact.feature_extractor(dictation[:16000 * 10], sampling_rate=16000,
                                       return_tensors="pt")
    with torch.inference_mode():
        a = exact.model(**features).logits.log_softmax(-1).flatten()
        b = quantised.model(**features).logits.log_softmax(-1).flatten()
    assert torch.nn.functional.cosine_similarity(a, b, dim=0) > 0.995


def test_short_audio_equals_transformers_generate_and_decode(dictation: np.ndarray) -> None:
    engine = tiny_engine(layers=2)
    audio = dictation[:16000 * 12]
    transcript = engine.transcribe(audio)
    frame_ids, text = whole_file(engine.load(), audio)
    assert transcript.text == text and transcript.words
    assert transcript.frames == len(frame_ids) and transcript.seams == ()


@pytest.mark.parametrize(("chunk_s", "stride_s"), [(20.0, 2.0), (6.0, 1.0), (3.0, 0.5)])
def test_chunked_decoding_matches_one_pass_when_context_is_local(
        dictation: np.ndarray, chunk_s: float, stride_s: float) -> None:
    # With no Conformer layers each frame sees only 0.145 s of audio, so any correct joining of
    # chunks must reproduce the one-pass transcript exactly: same words, same times.
    engine = tiny_engine(layers=0, chunk_s=chunk_s, stride_s=stride_s)
    loaded = engine.load()
    transcript = engine.transcribe(dictation)
    frame_ids, text = whole_file(loaded, dictation)
    one_pass = decode_greedy(frame_ids.numpy(), blank_id=0, pieces=transcript_pieces(loaded),
                             timing=loaded.timing, skip_ids=frozenset({1, 2}),
                             duration_s=len(dictation) / 16000)
    assert len(transcript.seams) >= 2
    assert transcript.text == text == one_pass.text
    assert transcript.words == one_pass.words
    times = [(w.start_s, w.end_s) for w in transcript.words]
    assert all(0 <= s < e <= len(dictation) / 16000 for s, e in times)
    assert [s for s, _ in times] == sorted(s for s, _ in times)


def transcript_pieces(loaded: LoadedMedAsr) -> list[str]:
    return loaded.tokenizer.convert_ids_to_tokens(list(range(len(loaded.tokenizer))))


def test_batching_and_padding_do_not_change_the_result(dictation: np.ndarray) -> None:
    audio = dictation[: 16000 * 41]  # 3 chunks, the last one short (padded in a batch)
    one_by_one = tiny_engine(layers=2, batch_size=1).transcribe(audio)
    batched = tiny_engine(layers=2, batch_size=4).transcribe(audio)
    assert batched == one_by_one


def test_progress_is_reported_per_batch(dictation: np.ndarray) -> None:
    seen: list[float] = []
    tiny_engine(layers=0, batch_size=2).transcribe(dictation, progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) == 2


def test_rejects_audio_shorter_than_one_frame() -> None:
    with pytest.raises(ValueError, match="too short"):
        tiny_engine().transcribe(np.zeros(1000, dtype=np.float32))


def save_tiny(folder: Path) -> None:
    loaded = tiny_loaded(layers=1)
    LasrForCTC(loaded.model.config).save_pretrained(folder)
    LasrProcessor(loaded.feature_extractor, loaded.tokenizer).save_pretrained(folder)


@pytest.mark.parametrize("quantize", [False, True])
def test_loads_from_a_local_folder_once_per_process(tmp_path: Path, dictation: np.ndarray,
                                                    quantize: bool) -> None:
    save_tiny(tmp_path / "medasr")
    engine = MedAsrEngine(str(tmp_path / "medasr"), quantize=quantize)
    assert engine.available()
    info = engine.model_info()
    assert info.name == str(tmp_path / "medasr") and info.version.startswith("sha256:")
    assert not info.test_weights
    assert ("int8" in info.display) is quantize
    transcript = engine.transcribe(dictation[: 16000 * 5])
    assert transcript.frames == engine.load().output_frames(16000 * 5)
    again = MedAsrEngine(str(tmp_path / "medasr"), quantize=quantize)
    assert again.load() is engine.load()  # the process-wide cache


def test_missing_weights_are_a_clear_config_error(tmp_path: Path) -> None:
    for engine in (MedAsrEngine(str(tmp_path / "nothing-here")),
                   MedAsrEngine("google/medasr", cache_dir=str(tmp_path / "empty-cache"))):
        assert not engine.available()
        with pytest.raises(ConfigError, match="MedASR is not available"):
            engine.model_info()


def test_language_model_file_must_be_a_kenlm_model(tmp_path: Path) -> None:
    pytest.importorskip("kenlm", reason="kenlm (KenLM's Python module) is not installed")
    save_tiny(tmp_path / "medasr")
    (tmp_path / "lm.arpa").write_text("\\data\\\n")
    with pytest.raises(ConfigError, match="is not a KenLM model"):
        MedAsrEngine(str(tmp_path / "medasr"), lm_path=str(tmp_path / "lm.arpa")).load()
    with pytest.raises(ConfigError, match="is not a file"):
        MedAsrEngine(str(tmp_path / "medasr"), lm_path=str(tmp_path / "missing.arpa")).load()


def test_chunk_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="twice stride_s"):
        MedAsrEngine(chunk_s=4.0, stride_s=2.0)
