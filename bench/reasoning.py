"""The chart digest for a large chart, and (on a GPU only) MedGemma-sized generation speed.

    python bench/reasoning.py [--resources 2000] [--runs 7] [--budget 6000]

The chart: the synthetic patient's chart (plugin.sandbox.synthetic.chart: problems, medications,
allergies, encounters, a year of vitals and labs) plus weekly lab Observations up to
`--resources`, generated here and served from memory (no FHIR server: what is timed is the
digest, not HAPI's paging). Prints medians over `--runs`:

- the baseline prompt — every resource as JSON, which is what a prompt without a digest would
  carry — against the digest before and after trimming to the budget: build time and tokens;
- the ratio of prompt tokens before/after trimming.

Tokens are counted with the Gemma 3 tokenizer when its files are on this machine
(`--tokenizer`, default google/medgemma-1.5-4b-it in the Hugging Face cache), else with the stated
estimate (plugin.pipelines.summary.tokens). Time to first token and tokens/s through the local
engine are measured only on a CUDA GPU, with a full-size random-weight Gemma 3 4B text decoder;
without one the table says so.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import date
from typing import Any

from plugin.pipelines.summary import build_digest, token_counter
from plugin.pipelines.summary.digest import digest_lines
from plugin.sandbox.synthetic import chart_resources, scaled_observations

TODAY = date(2026, 12, 1)


def chart(size: int) -> list[dict[str, Any]]:
    base = []
    for n, (_, resource) in enumerate(chart_resources("bench")):
        base.append({**resource, "id": f"c{n}", "meta": {"versionId": "1",
                                                          "lastUpdated": "2026-11-14T09:00:00+00:00"}})
    return base + scaled_observations("bench", max(0, size - len(base)))


def median_s(work: Any, runs: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def gpu_generation(prompt_tokens: int, new_tokens: int = 128) -> tuple[str, str]:
    """(time to first token, tokens/s) of a random-weight Gemma 3 4B-sized decoder, or why not."""
    try:
        import torch
    except ImportError:
        return "not measured", "torch is not installed"
    if not torch.cuda.is_available():
        return "not measured", "no CUDA GPU here (none was lent to this run)"
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    # Gemma 3 4B's text decoder dimensions (the published config); random weights, bf16.
    config = Gemma3TextConfig(vocab_size=262_208, hidden_size=2560, intermediate_size=10_240,
                              num_hidden_layers=34, num_attention_heads=8, num_key_value_heads=4,
                              head_dim=256, sliding_window=1024)
    model = Gemma3ForCausalLM(config).to("cuda", dtype=torch.bfloat16).eval()
    ids = torch.randint(10, 1000, (1, prompt_tokens), device="cuda")
    with torch.inference_mode():
        model.generate(ids, max_new_tokens=2, do_sample=False)  # warm-up
        torch.cuda.synchronize()
        start = time.perf_counter()
        model.generate(ids, max_new_tokens=1, min_new_tokens=1, do_sample=False)
        torch.cuda.synchronize()
        first = time.perf_counter() - start
        start = time.perf_counter()
        model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
        torch.cuda.synchronize()
        total = time.perf_counter() - start
    return f"{first:.3f} s", f"{new_tokens / total:.1f} tokens/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resources", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--budget", type=int, action="append",
                        help="token budget(s) to trim to (repeat; default 6000, 1000 and 400)")
    parser.add_argument("--tokenizer", default="google/medgemma-1.5-4b-it")
    args = parser.parse_args()
    resources = chart(args.resources)
    count = token_counter(args.tokenizer)
    raw_s, raw = median_s(lambda: "\n".join(json.dumps(r, separators=(",", ":")) for r in resources),
                          args.runs)
    raw_tokens = count(raw)
    lines_s, lines = median_s(lambda: digest_lines(resources), args.runs)
    budgets = args.budget or [6000, 1000, 400]
    built = [(budget, *median_s(lambda b=budget: build_digest(resources, budget=b, count_tokens=count,
                                                              counter=count.name, today=TODAY), args.runs))
             for budget in budgets]
    digest = built[0][2]
    print(f"chart: {len(resources)} resources generated in memory (no FHIR server); "
          f"{args.runs} runs, medians")
    print(f"tokens counted with: {count.name}")
    print(f"{'prompt':52} {'median s':>9} {'tokens':>9} {'lines':>6}")
    print(f"{'every resource as JSON (baseline)':52} {raw_s:9.4f} {raw_tokens:9d} {'':>6}")
    print(f"{'digest lines, untrimmed':52} {lines_s:9.4f} {digest.total_tokens:9d} {len(lines):6d}")
    for budget, seconds, trimmed_digest in built:
        print(f"{f'digest trimmed to {budget} tokens (build_digest)':52} {seconds:9.4f} "
              f"{trimmed_digest.tokens:9d} {len(trimmed_digest.lines):6d}   "
              f"untrimmed/trimmed tokens {trimmed_digest.total_tokens / max(1, trimmed_digest.tokens):.2f}")
    trimmed = max(1, digest.tokens)
    print(f"ratio of prompt tokens, JSON baseline / digest trimmed to {budgets[0]}: "
          f"{raw_tokens / trimmed:.1f}")
    first, speed = gpu_generation(digest.tokens)
    print(f"time to first token: {first}; generation speed: {speed}")


if __name__ == "__main__":
    main()
