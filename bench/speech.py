"""Speech-to-text speed on CPU: a full-size MedASR-shaped model (random weights, ~105M params)
over 10 minutes of audio, a naive baseline against the engine, measured in the same run.

Variants:
  naive   fp32, 20 s chunks one at a time through transformers' generate()
  fp32    the engine, exact fp32: 4 chunks per forward pass, inference_mode, forward + argmax
  int8    the engine's CPU default: the same plus int8 dynamic quantisation (Linear layers and
          the Conformer's pointwise convolutions)
The machine is shared and noisy, so speed is measured with the variants interleaved batch by
batch in one process and reported as medians; load time, first call and peak memory come from
one fresh process per variant. Fidelity of int8 is shown on log-probabilities against fp32
(random weights make argmax ties meaningless: cosine similarity and largest difference count).

Run: .venv/bin/python bench/speech.py [--minutes 10] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from plugin.engines.medasr import LoadedMedAsr, MedAsrEngine, prepare_model, run_batch
from plugin.pipelines.speech.ctc import ChunkFrames, decode_greedy, plan_chunks, stitch
from plugin.results import ModelInfo

SAMPLE_RATE = 16_000
CHUNK_S, STRIDE_S, BATCH = 20.0, 2.0, 4
VARIANTS = ("naive", "fp32", "int8")


def build(variant: str) -> LoadedMedAsr:
    """MedASR's architecture from the Lasr config defaults (as google/medasr: 17 Conformer
    blocks, hidden 512, 8 heads, feed-forward 2048, conv kernel 32, 128 mel bins, 512 tokens)."""
    import torch
    from transformers import LasrCTCConfig, LasrFeatureExtractor, LasrForCTC, LasrTokenizer

    torch.manual_seed(0)
    model = LasrForCTC(LasrCTCConfig())
    model = model.eval() if variant == "naive" else prepare_model(model, quantize=variant == "int8")
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [(f"\u2581w{i}" if i % 2 else f"p{i}", -1.0) for i in range(3, 512)]
    info = ModelInfo("bench/random-medasr", variant, ("Deep-Learning-Models",), test_weights=True)
    return LoadedMedAsr(model, LasrFeatureExtractor(), LasrTokenizer(vocab=vocab, extra_ids=0), info)


def naive_chunk(loaded: LoadedMedAsr, samples: np.ndarray) -> np.ndarray:
    inputs = loaded.feature_extractor(samples, sampling_rate=SAMPLE_RATE, return_attention_mask=True,
                                      return_tensors="pt")
    ids = loaded.model.generate(inputs["input_features"], attention_mask=inputs["attention_mask"])
    return np.asarray(ids[0])


def bench_audio(minutes: float) -> np.ndarray:
    """The seeded dictation repeated to `minutes` (noise when espeak-ng is missing)."""
    try:
        from plugin.pipelines.speech.audio import decode_audio
        from plugin.sandbox.synthetic import DICTATION_TEXT, espeak_wav

        one = decode_audio(espeak_wav(DICTATION_TEXT), source="bench", max_duration_s=600).samples
    except Exception:  # any failure: fall back to noise, timing does not care what is said
        one = (0.1 * np.random.default_rng(0).standard_normal(SAMPLE_RATE * 60)).astype(np.float32)
    need = int(minutes * 60 * SAMPLE_RATE)
    return np.tile(one, need // len(one) + 1)[:need]


def first_call(variant: str, audio_path: str) -> dict[str, float]:
    """In a fresh process: build/prepare time, the first call, peak memory over two batches."""
    audio = np.load(audio_path)[: int(2 * BATCH * (CHUNK_S - 2 * STRIDE_S) * SAMPLE_RATE)]
    started = time.perf_counter()
    loaded = build(variant)
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    if variant == "naive":
        naive_chunk(loaded, audio[: int(CHUNK_S * SAMPLE_RATE)])
    else:
        run_batch(loaded, [audio[: int(CHUNK_S * SAMPLE_RATE)]])
    first_s = time.perf_counter() - started
    if variant == "naive":
        for start in range(0, len(audio), int(16 * SAMPLE_RATE)):
            naive_chunk(loaded, audio[start:start + int(CHUNK_S * SAMPLE_RATE)])
    else:
        MedAsrEngine.from_loaded(loaded, chunk_s=CHUNK_S, stride_s=STRIDE_S,
                                 batch_size=BATCH).transcribe(audio)
    return {"load_s": load_s, "first_call_s": first_s,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def interleaved(audio: np.ndarray, threads: int) -> dict[str, Any]:
    """Every variant over the whole audio, taking turns batch by batch."""
    import torch

    torch.set_num_threads(threads)
    models = {variant: build(variant) for variant in VARIANTS}
    any_loaded = models["fp32"]
    chunks = plan_chunks(len(audio), frame_samples=any_loaded.frame_samples,
                         chunk_samples=int(CHUNK_S * SAMPLE_RATE),
                         stride_samples=int(STRIDE_S * SAMPLE_RATE))
    per_chunk: dict[str, list[float]] = {v: [] for v in VARIANTS}
    totals = dict.fromkeys(VARIANTS, 0.0)
    cpu = dict.fromkeys(VARIANTS, 0.0)  # CPU seconds of this process: less swayed by neighbours
    decided: dict[str, list[ChunkFrames]] = {v: [] for v in VARIANTS}
    for start in range(0, len(chunks), BATCH):
        batch = chunks[start:start + BATCH]
        pieces = [audio[c.start:c.end] for c in batch]
        for variant in VARIANTS:
            began, began_cpu = time.perf_counter(), time.process_time()
            if variant == "naive":
                rows = [naive_chunk(models[variant], p) for p in pieces]
            else:
                rows, _ = run_batch(models[variant], pieces)
            spent = time.perf_counter() - began
            cpu[variant] += time.process_time() - began_cpu
            totals[variant] += spent
            per_chunk[variant].append(spent / len(batch))
            decided[variant] += [ChunkFrames(c.first_frame, r) for c, r in zip(batch, rows, strict=True)]
    began = time.perf_counter()
    frame_ids, seams = stitch(decided["int8"], blank_id=0)
    decode_greedy(frame_ids, blank_id=0, pieces=[""] * 512, timing=any_loaded.timing, seams=seams)
    return {"chunks": len(chunks), "per_chunk": per_chunk, "totals": totals, "cpu": cpu,
            "stitch_decode_s": time.perf_counter() - began,
            "params_m": sum(p.numel() for p in models["naive"].model.parameters()) / 1e6}


def fidelity(audio: np.ndarray) -> dict[str, float]:
    """int8 against exact fp32 on three 20 s chunks, log-probabilities compared."""
    import torch

    exact, quantised = build("fp32"), build("int8")
    pieces = [audio[i * 320_000:(i + 1) * 320_000] for i in range(3)]
    inputs = exact.feature_extractor(pieces, sampling_rate=SAMPLE_RATE, return_attention_mask=True,
                                     return_tensors="pt")
    with torch.inference_mode():
        a = exact.model(**inputs).logits.log_softmax(-1)
        b = quantised.model(**inputs).logits.log_softmax(-1)
        one = exact.model(input_features=inputs["input_features"][:1]).logits.log_softmax(-1)
    return {
        "cosine": torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0).item(),
        "max_abs": (a - b).abs().max().item(),
        "mean_abs": (a - b).abs().mean().item(),
        "argmax_agree": (a.argmax(-1) == b.argmax(-1)).float().mean().item(),
        "batched_vs_single": (a[:1] - one).abs().max().item(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--first-call", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--audio", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import torch

    # The naive baseline runs the stock model, whose even-kernel "same" padding warns once.
    warnings.filterwarnings("ignore", message="Using padding='same'")

    torch.set_num_threads(args.threads)
    if args.first_call:
        print(json.dumps(first_call(args.first_call, args.audio)))
        return

    started = time.perf_counter()
    audio = bench_audio(args.minutes)
    cold: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        audio_path = str(Path(folder) / "audio.npy")
        np.save(audio_path, audio)
        for variant in VARIANTS:
            out = subprocess.run(
                [sys.executable, __file__, "--first-call", variant, "--audio", audio_path,
                 "--threads", str(args.threads)], capture_output=True, text=True, check=True)
            cold[variant] = json.loads(out.stdout.strip().splitlines()[-1])
    warm = interleaved(audio, args.threads)
    quality = fidelity(audio)

    seconds = len(audio) / SAMPLE_RATE
    medians = {v: statistics.median(t) for v, t in warm["per_chunk"].items()}
    print(f"MedASR-shaped Conformer CTC, random weights, {warm['params_m']:.1f}M parameters; "
          f"{seconds / 60:.0f} min of audio = {warm['chunks']} chunks of {CHUNK_S:.0f} s "
          f"(+-{STRIDE_S:.0f} s context); torch {torch.__version__}, {args.threads} threads; "
          f"load average {os.getloadavg()[0]:.1f}")
    header = (f"{'variant':<8}{'batch':>6}{'xRT med':>9}{'xRT total':>11}{'CPU s/s':>9}{'speed-up':>10}"
              f"{'load s':>8}{'1st call s':>11}{'peak MB':>9}")
    print(header)
    print("-" * len(header))
    for variant in VARIANTS:
        rtf_median = medians[variant] * warm["chunks"] / seconds
        rtf_total = warm["totals"][variant] / seconds
        print(f"{variant:<8}{1 if variant == 'naive' else BATCH:>6}{rtf_median:>9.4f}{rtf_total:>11.4f}"
              f"{warm['cpu'][variant] / seconds:>9.4f}{medians['naive'] / medians[variant]:>9.2f}x"
              f"{cold[variant]['load_s']:>8.1f}{cold[variant]['first_call_s']:>11.2f}{cold[variant]['peak_rss_mb']:>9.0f}")
    print("xRT = seconds of compute per second of audio (wall clock; med = median chunk x chunks); "
          "CPU s/s = process CPU seconds per second of audio; speed-up = naive median / median")
    print(f"stitching + greedy decoding of all {warm['chunks']} chunks: {warm['stitch_decode_s']:.3f} s")
    print(f"int8 vs fp32 log-probs (3 chunks x 497 frames x 512): cosine {quality['cosine']:.6f}, "
          f"max |diff| {quality['max_abs']:.4f}, mean |diff| {quality['mean_abs']:.5f}, argmax "
          f"agreement {quality['argmax_agree']:.3f}; fp32 batched vs alone max |diff| "
          f"{quality['batched_vs_single']:.1e}")
    print(f"ratio (median per chunk): int8 engine {medians['naive'] / medians['int8']:.2f}x and "
          f"exact fp32 engine {medians['naive'] / medians['fp32']:.2f}x faster than naive; "
          f"bench took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
