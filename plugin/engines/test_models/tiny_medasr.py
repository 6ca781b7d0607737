"""A tiny random-weight MedASR: the real Lasr config, model, feature extractor and tokenizer
classes, built in memory (nothing downloaded) for the tests, or saved as a folder for the demo.
Its output is noise, labelled as test weights."""

from __future__ import annotations

import string
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import LasrCTCConfig, LasrEncoderConfig, LasrFeatureExtractor, LasrForCTC, LasrTokenizer

from plugin.engines.medasr import LoadedMedAsr, MedAsrEngine, _weights_version, prepare_model
from plugin.pipelines.speech.audio import decode_audio
from plugin.results import ModelInfo
from plugin.sandbox.synthetic import espeak_wav

BRACE_PIECES = ("{period}", "{comma}", "{colon}", "{next", "line}", "{new", "paragraph}", "{", "}")
CALIBRATION_TEXT = "no pleural effusion period next line the right lower lobe nodule is stable period"
WORD_PIECES = ("nodule", "lobe", "right", "lower", "the", "no", "effusion", "impression")


def tiny_vocab() -> list[tuple[str, float]]:
    """LASR layout: <pad> (the CTC blank) = 0, </s> = 1, <unk> = 2, then pieces; no duplicates."""
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [("▁" + p, -3.0) for p in (*BRACE_PIECES, *WORD_PIECES)]
    for letter in string.ascii_lowercase:
        vocab += [("▁" + letter, -4.0), (letter, -5.0)]
    return vocab


def tiny_tokenizer() -> LasrTokenizer:
    return LasrTokenizer(vocab=tiny_vocab(), extra_ids=0)


@lru_cache(maxsize=4)
def tiny_loaded(*, layers: int = 2, blank_share: float = 0.6, quantize: bool = False,
                seed: int = 0) -> LoadedMedAsr:
    """`layers=0` leaves only the subsampling convolutions: every output frame then depends on
    0.145 s of audio around it, so chunked and whole-file decoding must agree exactly.
    The CTC head's bias is calibrated on a fixed test signal so that the blank wins on about
    `blank_share` of the frames and the other frames spread over several tokens, as in a
    trained CTC model (raw random weights emit one token everywhere)."""
    tokenizer = tiny_tokenizer()
    config = LasrCTCConfig(
        vocab_size=len(tokenizer),
        encoder_config=LasrEncoderConfig(
            hidden_size=32, num_hidden_layers=layers, num_attention_heads=2, intermediate_size=64,
            subsampling_conv_channels=16, conv_kernel_size=32),  # MedASR's even kernel, on purpose
    )
    torch.manual_seed(seed)
    model = prepare_model(LasrForCTC(config), quantize=False)
    feature_extractor = LasrFeatureExtractor()
    _calibrate_head(model, feature_extractor, blank_share)
    info = ModelInfo(name="chartlight-test/tiny-medasr", version=f"random-{layers}-{seed}",
                     kinds=("Deep-Learning-Models",), display="Tiny random-weight MedASR",
                     test_weights=True)
    return LoadedMedAsr(prepare_model(model, quantize=quantize), feature_extractor, tokenizer, info)


@lru_cache(maxsize=1)
def calibration_speech() -> np.ndarray:
    """A few seconds of synthetic speech at 16 kHz (espeak-ng, as the seeded dictation)."""
    return decode_audio(espeak_wav(CALIBRATION_TEXT), source="calibration",
                        max_duration_s=60).samples


def _calibrate_head(model: Any, feature_extractor: LasrFeatureExtractor,
                    blank_share: float) -> None:
    features = feature_extractor(calibration_speech(), sampling_rate=16_000, return_tensors="pt")
    with torch.no_grad():
        hidden = model.encoder(input_features=features["input_features"]).last_hidden_state[0]
        head = model.ctc_head
        head.weight.normal_(0.0, 1.0)
        head.bias.copy_(-(hidden.mean(0) @ head.weight[:, :, 0].T))  # remove the common part
        logits = head(hidden[None])[0]
        blank = model.config.pad_token_id
        others = logits.clone()
        others[:, blank] = -torch.inf
        margin = others.max(-1).values - logits[:, blank]
        head.bias[blank] += torch.quantile(margin, blank_share)


def tiny_engine(*, layers: int = 2, chunk_s: float = 20.0, stride_s: float = 2.0,
                batch_size: int = 4) -> MedAsrEngine:
    return MedAsrEngine.from_loaded(tiny_loaded(layers=layers), chunk_s=chunk_s,
                                    stride_s=stride_s, batch_size=batch_size)


def save_tiny_medasr(folder: Path) -> Path:
    """The default tiny MedASR (calibrated, float weights) as a folder: config, weights,
    feature extractor and tokenizer."""
    loaded = tiny_loaded()
    loaded.model.save_pretrained(folder)
    loaded.feature_extractor.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    return folder


def load_saved(folder: Path) -> LoadedMedAsr:
    """A folder save_tiny_medasr wrote, ready to transcribe; its results are marked test weights."""
    model = prepare_model(LasrForCTC.from_pretrained(folder), quantize=False)
    info = ModelInfo(name="chartlight-test/tiny-medasr", version=_weights_version(folder),
                     kinds=("Deep-Learning-Models",), display="Tiny random-weight MedASR",
                     test_weights=True)
    return LoadedMedAsr(model, LasrFeatureExtractor.from_pretrained(folder),
                        LasrTokenizer.from_pretrained(folder), info)
