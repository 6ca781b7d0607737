"""Speech-to-text speed on CPU: a full-size MedASR-shaped model (random weights, ~105M params)
over 10 minutes of audio, a naive baseline against the engine, measured in the same run.

Variants:
  naive        fp32, 20 s chunks one at a time through transformers' generate()
  fp32         the engine in PyTorch, exact fp32: --batch chunks per forward pass
               (inference_mode, forward + argmax)
  int8         the same plus torch's int8 dynamic quantisation (Linear layers and the
               Conformer's pointwise convolutions)
  ort-fp32     the engine on ONNX Runtime (medasr_runtime = "onnxruntime", exported graph, its
               own thread pool), fp32
  ort-int8     the same, int8: MatMuls quantised per channel, u8 weights (the engine's choice)
  ort-int8-s8  the same with s8 weights (u8 x s8), measured for the choice
The machine is shared and noisy, so speed is measured with the variants interleaved batch by
batch in one process and reported as medians; load time, first call and peak memory come from
one fresh process per variant (ONNX graphs exported beforehand, as the engine's cache would
hold them). Fidelity is shown on log-probabilities against the fp32 torch model: cosine
similarity, largest difference, argmax agreement.

--isa avx2 caps what PyTorch's kernels may use (ATEN_CPU_CAPABILITY, FBGEMM, oneDNN, MKL) to
emulate an AVX2-only CPU on a newer one; ONNX Runtime's MLAS has no such switch, so its rows
still use what the CPU has: only a real AVX2 machine measures those.

Run: .venv/bin/python bench/speech.py [--minutes 10] [--threads 2] [--batch 4] [--isa avx2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from plugin.engines.medasr import LoadedMedAsr, MedAsrEngine, exportable, prepare_model, run_batch
from plugin.engines.medasr_onnx import OnnxCtcModel, cached_export, export_key, quantize_int8
from plugin.pipelines.speech.ctc import ChunkFrames, decode_greedy, plan_chunks, stitch
from plugin.results import ModelInfo

SAMPLE_RATE = 16_000
CHUNK_S, STRIDE_S = 20.0, 2.0
BATCH = 4  # --batch
VARIANTS = ("naive", "fp32", "int8", "ort-fp32", "ort-int8", "ort-int8-s8")
# Environment that caps PyTorch's CPU kernels at AVX2 (read when torch loads).
AVX2_ONLY = {"ATEN_CPU_CAPABILITY": "avx2", "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2",
             "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")


def build(variant: str, onnx_dir: Path | None = None) -> LoadedMedAsr:
    """MedASR's architecture from the Lasr config defaults (as google/medasr: 17 Conformer
    blocks, hidden 512, 8 heads, feed-forward 2048, conv kernel 32, 128 mel bins, 512 tokens).
    ONNX variants read their graph from `onnx_dir`, exporting it there when absent."""
    import torch
    from transformers import LasrCTCConfig, LasrFeatureExtractor, LasrForCTC, LasrTokenizer

    def torch_model(quantize: bool) -> torch.nn.Module:
        torch.manual_seed(0)
        model = LasrForCTC(LasrCTCConfig())
        return model.eval() if variant == "naive" else prepare_model(model, quantize=quantize)

    if variant.startswith("ort-"):
        assert onnx_dir is not None
        model: Any = OnnxCtcModel(onnx_file(variant, onnx_dir, lambda: torch_model(False)),
                                  LasrCTCConfig(), threads=torch.get_num_threads())
    else:
        model = torch_model(variant == "int8")
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [(f"\u2581w{i}" if i % 2 else f"p{i}", -1.0) for i in range(3, 512)]
    info = ModelInfo("bench/random-medasr", variant, ("Deep-Learning-Models",), test_weights=True)
    return LoadedMedAsr(model, LasrFeatureExtractor(), LasrTokenizer(vocab=vocab, extra_ids=0), info)


def onnx_file(variant: str, folder: Path, fp32_model: Any) -> Path:
    """The variant's graph as the engine's export cache builds it (plugin.engines.medasr_onnx)."""
    if variant == "ort-int8-s8":
        path = folder / "int8-s8.onnx"
        if not path.is_file():
            quantize_int8(onnx_file("ort-fp32", folder, fp32_model), path, signed_weights=True)
        return path
    quantize = variant == "ort-int8"
    key = export_key("bench/random-medasr", "seed-0", quantize=quantize)
    return cached_export(key, folder, lambda: exportable(fp32_model(), quantize=quantize))


def cpu_flags() -> str:
    """The SIMD flags of this CPU that the kernels choose between (from /proc/cpuinfo)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                  if line.startswith("flags")), [])
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines()
                  if line.startswith("model name")), "?")
    return f"{model}: " + " ".join(f for f in SIMD_FLAGS if f in flags)


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


def first_call(variant: str, audio_path: str, onnx_dir: Path) -> dict[str, float]:
    """In a fresh process: build/prepare time, the first call, peak memory over two batches."""
    audio = np.load(audio_path)[: int(2 * BATCH * (CHUNK_S - 2 * STRIDE_S) * SAMPLE_RATE)]
    started = time.perf_counter()
    loaded = build(variant, onnx_dir)
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
    return {"load_s": load_s, "first_call_s": first_s, "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's own peak resident memory. VmHWM, not getrusage: ru_maxrss carries the
    parent's peak over fork and exec, and the parent holds every model."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def interleaved(audio: np.ndarray, threads: int, onnx_dir: Path) -> dict[str, Any]:
    """Every variant over the whole audio, taking turns batch by batch."""
    import torch

    torch.set_num_threads(threads)
    models = {variant: build(variant, onnx_dir) for variant in VARIANTS}
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
    frame_ids, seams = stitch(decided["ort-int8"], blank_id=0)
    decode_greedy(frame_ids, blank_id=0, pieces=[""] * 512, timing=any_loaded.timing, seams=seams)
    return {"chunks": len(chunks), "per_chunk": per_chunk, "totals": totals, "cpu": cpu,
            "stitch_decode_s": time.perf_counter() - began,
            "params_m": sum(p.numel() for p in models["naive"].model.parameters()) / 1e6}


def fidelity(audio: np.ndarray, onnx_dir: Path) -> dict[str, dict[str, float]]:
    """Every engine variant against exact fp32 torch on three 20 s chunks (the last one 14 s,
    padded and masked in the batch), log-probabilities compared."""
    import torch

    exact = build("fp32")
    pieces = [audio[:320_000], audio[320_000:640_000], audio[640_000:864_000]]
    inputs = exact.feature_extractor(pieces, sampling_rate=SAMPLE_RATE, return_attention_mask=True,
                                     padding="longest", return_tensors="pt")
    valid = torch.tensor([[j < exact.output_frames(len(p)) for j in range(500)] for p in pieces])
    with torch.inference_mode():
        a = exact.model(**inputs).logits.log_softmax(-1)
        one = exact.model(input_features=inputs["input_features"][:1]).logits.log_softmax(-1)
    valid = valid[:, :a.shape[1]]
    found = {"fp32": {"batched_vs_single": (a[:1] - one).abs().max().item()}}
    for variant in VARIANTS[2:]:
        with torch.inference_mode():
            b = build(variant, onnx_dir).model(**inputs).logits.float().log_softmax(-1)
        x, y = a[valid], b[valid]
        found[variant] = {
            "cosine": torch.nn.functional.cosine_similarity(x.flatten(), y.flatten(), dim=0).item(),
            "max_abs": (x - y).abs().max().item(), "mean_abs": (x - y).abs().mean().item(),
            "argmax_agree": (x.argmax(-1) == y.argmax(-1)).float().mean().item()}
    return found


def main() -> None:
    global BATCH
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=BATCH, help="chunks per forward pass")
    parser.add_argument("--isa", choices=("native", "avx2"), default="native",
                        help="avx2: cap PyTorch's kernels at AVX2 (ONNX Runtime cannot be capped)")
    parser.add_argument("--onnx-cache", help="keep exported graphs in this folder and reuse them "
                        "(default: a temporary folder, exported in the run)")
    parser.add_argument("--first-call", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--audio", help=argparse.SUPPRESS)
    parser.add_argument("--onnx-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    BATCH = args.batch
    if args.isa == "avx2" and any(os.environ.get(k) != v for k, v in AVX2_ONLY.items()):
        # The caps are read when the libraries load: run again with them in the environment.
        sys.exit(subprocess.run([sys.executable, *sys.argv], env={**os.environ, **AVX2_ONLY},
                                check=False).returncode)
    import onnxruntime
    import torch

    # The naive baseline runs the stock model, whose even-kernel "same" padding warns once.
    warnings.filterwarnings("ignore", message="Using padding='same'")

    torch.set_num_threads(args.threads)
    if args.first_call:
        print(json.dumps(first_call(args.first_call, args.audio, Path(args.onnx_dir))))
        return

    started = time.perf_counter()
    audio = bench_audio(args.minutes)
    cold: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        onnx_dir = Path(args.onnx_cache) if args.onnx_cache else Path(folder) / "onnx"
        export_s = {}
        for variant in VARIANTS:
            if variant.startswith("ort-"):
                began = time.perf_counter()
                build(variant, onnx_dir)
                export_s[variant] = time.perf_counter() - began
        audio_path = str(Path(folder) / "audio.npy")
        np.save(audio_path, audio)
        for variant in VARIANTS:
            out = subprocess.run(
                [sys.executable, __file__, "--first-call", variant, "--audio", audio_path,
                 "--threads", str(args.threads), "--batch", str(BATCH), "--onnx-dir", str(onnx_dir)],
                capture_output=True, text=True, check=True)
            cold[variant] = json.loads(out.stdout.strip().splitlines()[-1])
        warm = interleaved(audio, args.threads, onnx_dir)
        quality = fidelity(audio, onnx_dir)

    seconds = len(audio) / SAMPLE_RATE
    medians = {v: statistics.median(t) for v, t in warm["per_chunk"].items()}
    isa = "PyTorch capped at AVX2 (" + ", ".join(AVX2_ONLY) + ")" if args.isa == "avx2" else "native"
    print(f"MedASR-shaped Conformer CTC, random weights, {warm['params_m']:.1f}M parameters; "
          f"{seconds / 60:.0f} min of audio = {warm['chunks']} chunks of {CHUNK_S:.0f} s "
          f"(+-{STRIDE_S:.0f} s context); torch {torch.__version__}, onnxruntime "
          f"{onnxruntime.__version__}, {args.threads} threads; load average "
          f"{os.getloadavg()[0]:.1f} at the end")
    print(f"CPU: {cpu_flags()}; ISA: {isa}")
    header = (f"{'variant':<12}{'batch':>6}{'RTF med':>9}{'RTF total':>11}{'CPU s/s':>9}{'speed-up':>10}"
              f"{'load s':>8}{'1st call s':>11}{'peak MB':>9}{'cosine':>10}{'argmax':>8}{'max|d|':>8}")
    print(header)
    print("-" * len(header))
    for variant in VARIANTS:
        rtf_median = medians[variant] * warm["chunks"] / seconds
        rtf_total = warm["totals"][variant] / seconds
        q = quality.get(variant, {})
        fid = (f"{q['cosine']:>10.6f}{q['argmax_agree']:>8.3f}{q['max_abs']:>8.3f}" if "cosine" in q
               else f"{'(ref)' if variant == 'fp32' else '':>10}{'':>8}{'':>8}")
        print(f"{variant:<12}{1 if variant == 'naive' else BATCH:>6}{rtf_median:>9.4f}{rtf_total:>11.4f}"
              f"{warm['cpu'][variant] / seconds:>9.4f}{medians['naive'] / medians[variant]:>9.2f}x"
              f"{cold[variant]['load_s']:>8.1f}{cold[variant]['first_call_s']:>11.2f}"
              f"{cold[variant]['peak_rss_mb']:>9.0f}{fid}")
    print("RTF = seconds of compute per second of audio (wall clock; med = median chunk x chunks); "
          "CPU s/s = process CPU seconds per second of audio; speed-up = naive median / median; "
          "cosine, argmax (agreement), max|d| = log-probs against fp32 torch over the valid frames "
          "of 3 chunks")
    print("ONNX variants ready (export + quantisation, once per model revision, unless reused "
          "from --onnx-cache; then the session's start): "
          + ", ".join(f"{v} {t:.0f} s" for v, t in export_s.items()))
    print(f"stitching + greedy decoding of all {warm['chunks']} chunks: {warm['stitch_decode_s']:.3f} s; "
          f"fp32 batched vs alone max |diff| {quality['fp32']['batched_vs_single']:.1e}")
    print("ratio vs naive fp32 (median per chunk): "
          + ", ".join(f"{v} {medians['naive'] / medians[v]:.2f}x" for v in VARIANTS[1:])
          + f"; bench took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
