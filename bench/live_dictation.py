"""Live dictation's server work per update on CPU: a full-size MedASR-shaped model (random
weights, as bench/speech.py builds it) over a recording that arrives in pieces, the incremental
decoder against a baseline measured in the same run.

Variants, both giving the transcript so far after each piece:
  rerun        transcribe() of the whole recording so far at each update (the simple way)
  incremental  plugin.pipelines.speech.streaming.IncrementalDecoder.partial(): kept batches,
               complete windows decoded once, the window still filling previewed in 5 s windows
The two run interleaved update by update in one process (the machine is shared and noisy) and
are reported as medians and 95th percentiles of the seconds one update takes; the ratio is of
the medians. What a clinician waits for is this plus the piece interval and the request.

Run: .venv/bin/python bench/live_dictation.py [--seconds 60] [--piece 1] [--threads 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import time
from pathlib import Path

from plugin.engines.medasr import MedAsrEngine
from plugin.pipelines.speech.streaming import IncrementalDecoder

SAMPLE_RATE = 16_000


def _speech_bench() -> object:
    """bench/speech.py, for its full-size model and its audio (one definition of each)."""
    spec = importlib.util.spec_from_file_location("bench_speech", Path(__file__).with_name("speech.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the recording")
    parser.add_argument("--piece", type=float, default=1.0, help="seconds of audio per update")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    bench = _speech_bench()
    audio = bench.bench_audio(args.seconds / 60)  # type: ignore[attr-defined]
    engine = MedAsrEngine.from_loaded(bench.build("int8"))  # type: ignore[attr-defined]
    decoder = IncrementalDecoder(engine)
    step = int(args.piece * SAMPLE_RATE)
    times: dict[str, list[float]] = {"rerun": [], "incremental": []}
    engine.decode_windows([audio[:step]])  # first call: allocations, not an update
    for end in range(step, len(audio) + 1, step):
        so_far = audio[:end]
        started = time.perf_counter()
        decoder.partial(so_far)
        times["incremental"].append(time.perf_counter() - started)
        started = time.perf_counter()
        engine.transcribe(so_far)
        times["rerun"].append(time.perf_counter() - started)
    started = time.perf_counter()
    final = decoder.final(audio)
    finish_s = time.perf_counter() - started
    assert final.transcript == engine.transcribe(audio)  # the final is the batch transcript

    print(f"MedASR-shaped Conformer CTC, random weights, int8, windows of {engine.chunk_s:.0f} s "
          f"(+-{engine.stride_s:.0f} s), {engine.batch_size} per batch; a {args.seconds:.0f} s recording "
          f"in {args.piece:g} s pieces ({len(times['rerun'])} updates); torch {torch.__version__}, "
          f"{args.threads} threads; load average {os.getloadavg()[0]:.1f}")
    header = f"{'variant':<13}{'update s med':>14}{'update s p95':>14}{'update s max':>14}"
    print(header)
    print("-" * len(header))
    for name, values in times.items():
        print(f"{name:<13}{statistics.median(values):>14.3f}{p95(values):>14.3f}{max(values):>14.3f}")
    ratio = statistics.median(times["rerun"]) / statistics.median(times["incremental"])
    print(f"incremental vs rerun (median update): {ratio:.1f}x less time; stop (final transcript): "
          f"{finish_s:.2f} s")


if __name__ == "__main__":
    main()
