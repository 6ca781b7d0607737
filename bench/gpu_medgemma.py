"""The MedGemma model step on a GPU: a full-size MedGemma-1.5-4B-shaped model (Gemma 3 text decoder
+ SigLIP image encoder, random weights, bfloat16) fed the imaging pipeline's prompt shapes.

Measured per prompt (median of --repeats runs after one warm-up):
  ttft     time to first token: image encoder + prefill + the first greedy step, from pixel
           values already on the GPU (the CPU image processor is timed on its own)
  decode   tokens/s of greedy decoding after the first token (--new-tokens, EOS ignored)
  peak     peak GPU memory allocated while answering (weights included)
Prompts:
  ct-85    a CT volume as the pipeline sends it: instruction, 85 slices each followed by
           "SLICE i", the question (85 x 256 image tokens)
  ct-120   the baseline: every slice of the seeded 120-slice CT, unsampled
  cxr-2    a longitudinal chest X-ray comparison: prior then current image, then the question
The ratio row is ct-120 over ct-85: what sampling to at most 85 slices saves at the model step.

Random weights give random text: the numbers are speed and memory only, never output quality.
Text tokens are ids drawn from the vocabulary with the lengths of our prompts (the real tokenizer
cannot be downloaded here); image tokens and the chat-turn markers are the real Gemma 3 ids.

With --engine it measures chartlight's own local engine instead (plugin.engines.medgemma): the
full-size random checkpoint is saved to disk with a Gemma 3 processor (896 px, 256 tokens per
image, a small stand-in vocabulary), loaded through MedGemmaEngine as a deployment would load
MedGemma, and asked through its chat template with the pipeline's interleaved parts (85 slices
each followed by "SLICE i", or prior + current X-ray): checkpoint load time, first answer, and the
engine's time to first token from PIL images (processor included).

Run on a CUDA machine: python3 bench/gpu_medgemma.py [--engine] [--out results.json]
A CPU smoke run of the same code on a tiny config: python3 bench/gpu_medgemma.py --tiny [--engine]
Needs only torch, transformers (Gemma 3), numpy and pillow (and, with --engine, this repository's
plugin package), so it runs on a bare GPU image.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

# MedGemma 1.5 4B = Gemma 3 4B: text decoder and SigLIP-so400m encoder at 896 px, 256 tokens/image.
TEXT_4B = dict(hidden_size=2560, intermediate_size=10240, num_hidden_layers=34, num_attention_heads=8,
               num_key_value_heads=4, head_dim=256, query_pre_attn_scalar=256, vocab_size=262208,
               sliding_window=1024, rope_theta=1_000_000.0, max_position_embeddings=131072)
VISION_SO400M = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
                     image_size=896, patch_size=14, vision_use_head=False)
TEXT_TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=6, num_attention_heads=2,
                 num_key_value_heads=1, head_dim=32, query_pre_attn_scalar=32, vocab_size=262208,
                 sliding_window=64, max_position_embeddings=131072)
VISION_TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                   image_size=896, patch_size=14, vision_use_head=False)
# Gemma 3 special ids (the released tokenizer): <bos>, <start_of_turn>, <end_of_turn>,
# <start_of_image>, <end_of_image>, the image soft token, and a newline.
BOS, START_TURN, END_TURN, BOI, EOI, IMAGE, NEWLINE = 2, 105, 106, 255999, 256000, 262144, 107
# Prompt text lengths in tokens, counted from the imaging pipeline's prompts (about 4 characters
# per token): the volume instruction, a "SLICE i" label, the question, the comparison prompt.
INSTRUCTION_TOKENS, LABEL_TOKENS, QUESTION_TOKENS, COMPARE_TOKENS = 120, 4, 60, 160


@dataclass(frozen=True)
class Prompt:
    name: str
    images: list[Image.Image]
    input_ids: list[int]


def build_model(tiny: bool, device: str, special: dict[str, int] | None = None) -> Any:
    import torch
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    special = special or {"image_token_id": IMAGE, "boi_token_id": BOI, "eoi_token_id": EOI}
    text = dict(TEXT_TINY if tiny else TEXT_4B)
    layers = int(text["num_hidden_layers"])
    # Five sliding-window layers, then one global layer, as Gemma 3 does.
    text["layer_types"] = ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention"
                           for i in range(layers)]
    config = Gemma3Config(text_config=text, vision_config=VISION_TINY if tiny else VISION_SO400M,
                          mm_tokens_per_image=256, **special)
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    torch.manual_seed(0)
    with torch.device(device):
        model = Gemma3ForConditionalGeneration._from_config(config, dtype=dtype, attn_implementation="sdpa")
    return model.eval()


def text_ids(count: int, rng: np.random.Generator) -> list[int]:
    return [int(i) for i in rng.integers(1000, 200_000, size=count)]


def image_ids() -> list[int]:
    return [NEWLINE, BOI, *([IMAGE] * 256), EOI, NEWLINE]


def volume_prompt(name: str, slices: int, rng: np.random.Generator) -> Prompt:
    ids = [BOS, START_TURN, *text_ids(2, rng), NEWLINE, *text_ids(INSTRUCTION_TOKENS, rng)]
    for _ in range(slices):
        ids += image_ids() + text_ids(LABEL_TOKENS, rng)
    ids += text_ids(QUESTION_TOKENS, rng) + [END_TURN, NEWLINE, START_TURN, *text_ids(1, rng), NEWLINE]
    # CT slices after the 3-window RGB packing: 512 x 512 RGB.
    images = [Image.fromarray(rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)) for _ in range(slices)]
    return Prompt(name, images, ids)


def comparison_prompt(rng: np.random.Generator) -> Prompt:
    ids = [BOS, START_TURN, *text_ids(2, rng), NEWLINE, *image_ids(), *image_ids(),
           *text_ids(COMPARE_TOKENS, rng), END_TURN, NEWLINE, START_TURN, *text_ids(1, rng), NEWLINE]
    # Chest X-rays padded to square, at detector resolution.
    images = [Image.fromarray(rng.integers(0, 256, (2048, 2048, 3), dtype=np.uint8)) for _ in range(2)]
    return Prompt("cxr-2", images, ids)


def measure(model: Any, prompt: Prompt, *, new_tokens: int, repeats: int, device: str) -> dict[str, Any]:
    import torch
    from transformers import Gemma3ImageProcessor

    processor = Gemma3ImageProcessor(size={"height": 896, "width": 896})
    started = time.perf_counter()
    pixels = processor(prompt.images, return_tensors="pt")["pixel_values"]
    preprocess_s = time.perf_counter() - started
    inputs = {
        "input_ids": torch.tensor([prompt.input_ids], device=device),
        "attention_mask": torch.ones((1, len(prompt.input_ids)), dtype=torch.long, device=device),
        "pixel_values": pixels.to(device=device, dtype=model.dtype),
    }

    def timed(tokens: int) -> float:
        sync(device)
        start = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
                                 top_p=None, top_k=None)
        sync(device)
        assert out.shape[-1] == len(prompt.input_ids) + tokens
        return time.perf_counter() - start

    timed(2)  # warm-up: kernels, allocator
    if device != "cpu":
        torch.cuda.reset_peak_memory_stats()
    ttfts = [timed(1) for _ in range(repeats)]
    totals = [timed(new_tokens) for _ in range(repeats)]
    ttft = statistics.median(ttfts)
    decode_s = statistics.median(totals) - ttft
    peak = torch.cuda.max_memory_allocated() if device != "cpu" else 0
    return {"prompt": prompt.name, "images": len(prompt.images), "prompt_tokens": len(prompt.input_ids),
            "preprocess_s": round(preprocess_s, 3), "ttft_s": round(ttft, 4),
            "ttft_runs_s": [round(t, 4) for t in ttfts],
            "decode_tokens_per_s": round((new_tokens - 1) / decode_s, 1) if decode_s > 0 else None,
            "new_tokens": new_tokens, "peak_gpu_gib": round(peak / 2**30, 2)}


def import_engine_module() -> Any:
    """plugin.engines.medgemma without running plugin/engines/__init__.py, which also imports the
    speech engine and its audio libraries (absent on a bare GPU image; MedGemma needs none)."""
    import importlib.util
    import sys
    import types
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))
    if "plugin.engines" not in sys.modules:
        package = types.ModuleType("plugin.engines")
        package.__path__ = [str(root / "plugin" / "engines")]
        sys.modules["plugin.engines"] = package
    spec = importlib.util.spec_from_file_location("plugin.engines.medgemma",
                                                  root / "plugin" / "engines" / "medgemma.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["plugin.engines.medgemma"] = module
    spec.loader.exec_module(module)
    return module


def engine_run(tiny: bool, repeats: int) -> dict[str, Any]:
    """Save a checkpoint, load it through chartlight's MedGemmaEngine, time its answers."""
    import tempfile
    from pathlib import Path

    import torch
    from transformers import Gemma3ImageProcessor, Gemma3Processor

    medgemma = import_engine_module()
    from plugin.engines.test_models.tiny_gemma import CHAT_TEMPLATE, tiny_tokenizer

    device = "cpu" if tiny else "cuda"
    tokenizer = tiny_tokenizer()
    special = {"image_token_id": tokenizer.image_token_id, "boi_token_id": tokenizer.boi_token_id,
               "eoi_token_id": tokenizer.eoi_token_id}
    processor = Gemma3Processor(image_processor=Gemma3ImageProcessor(size={"height": 896, "width": 896}),
                                tokenizer=tokenizer, chat_template=CHAT_TEMPLATE, image_seq_length=256)
    folder = Path(tempfile.mkdtemp(prefix="medgemma-shaped-"))
    model = build_model(tiny, device, special)
    model.config.eos_token_id = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<end_of_turn>")]
    model.generation_config.eos_token_id = model.config.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    started = time.perf_counter()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    save_s = time.perf_counter() - started
    checkpoint_gib = sum(f.stat().st_size for f in folder.glob("*.safetensors")) / 2**30
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()

    engine = medgemma.MedGemmaEngine(str(folder), name="bench/random-medgemma-shaped", device=device,
                            dtype="float32" if tiny else "bfloat16", test_weights=True)
    rng = np.random.default_rng(1)
    slices = 6 if tiny else 85
    ct_parts: list[Image.Image | str] = ["You are reading a CT volume. Slices follow in order."]
    for i in range(slices):
        ct_parts += [Image.fromarray(rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)), f"SLICE {i + 1}"]
    ct_parts.append("List the findings as JSON.")
    xrays = [Image.fromarray(rng.integers(0, 256, (2048, 2048, 3), dtype=np.uint8)) for _ in range(2)]
    cxr_parts: list[Image.Image | str] = ["Prior:", xrays[0], "Current:", xrays[1],
                                          "Compare the current chest X-ray with the prior as JSON."]
    started = time.perf_counter()
    engine.generate(cxr_parts, max_new_tokens=1)
    first_s = time.perf_counter() - started
    rows = []
    for name, parts in ((f"ct-{slices}", ct_parts), ("cxr-2", cxr_parts)):
        engine.generate(parts, max_new_tokens=1)  # warm-up at this prompt size
        runs = []
        for _ in range(repeats):
            sync(device)
            begun = time.perf_counter()
            engine.generate(parts, max_new_tokens=1)
            sync(device)
            runs.append(time.perf_counter() - begun)
        rows.append({"prompt": name, "images": sum(not isinstance(p, str) for p in parts),
                     "engine_ttft_s": round(statistics.median(runs), 4),
                     "runs_s": [round(r, 4) for r in runs]})
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else 0.0
    return {"checkpoint_gib": round(checkpoint_gib, 2), "save_s": round(save_s, 1),
            "load_and_first_answer_s": round(first_s, 1), "peak_gpu_gib": round(peak, 2),
            "model_info": str(engine.model_info()), "rows": rows}


def sync(device: str) -> None:
    import torch

    if device != "cpu":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny config on CPU (checks the script)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--engine", action="store_true", help="measure chartlight's MedGemmaEngine")
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args()
    if args.engine:
        result = engine_run(args.tiny, args.repeats)
        print(json.dumps(result, indent=2))
        if args.out:
            with open(args.out, "w") as handle:
                json.dump(result, handle, indent=2)
        return

    import torch
    import transformers

    device = "cpu" if args.tiny or not torch.cuda.is_available() else "cuda"
    if device == "cpu" and not args.tiny:
        raise SystemExit("no CUDA device: run with --tiny for a CPU smoke run, or on a GPU machine")
    started = time.perf_counter()
    model = build_model(args.tiny, device)
    build_s = time.perf_counter() - started
    params = sum(p.numel() for p in model.parameters())
    weights_gib = torch.cuda.memory_allocated() / 2**30 if device == "cuda" else 0.0
    rng = np.random.default_rng(0)
    prompts = [volume_prompt("ct-85", 85, rng), volume_prompt("ct-120", 120, rng), comparison_prompt(rng)]
    if args.tiny:
        prompts = [volume_prompt("ct-6", 6, rng), comparison_prompt(rng)]
    rows = [measure(model, prompt, new_tokens=args.new_tokens, repeats=args.repeats, device=device)
            for prompt in prompts]

    card = torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or "cpu"
    print(f"device: {card}; torch {torch.__version__}, transformers {transformers.__version__}; "
          f"dtype {model.dtype}; {params / 1e9:.2f}B parameters (random weights); "
          f"weights on GPU {weights_gib:.2f} GiB; model built in {build_s:.1f} s")
    print(f"{'prompt':8} {'images':>6} {'tokens':>7} {'preproc s':>9} {'TTFT s':>8} "
          f"{'decode tok/s':>12} {'peak GiB':>8}")
    for r in rows:
        print(f"{r['prompt']:8} {r['images']:>6} {r['prompt_tokens']:>7} {r['preprocess_s']:>9.3f} "
              f"{r['ttft_s']:>8.3f} {r['decode_tokens_per_s'] or 0:>12.1f} {r['peak_gpu_gib']:>8.2f}")
    by_name = {r["prompt"]: r for r in rows}
    if "ct-85" in by_name and "ct-120" in by_name:
        print(f"ratio TTFT ct-120 / ct-85 (every slice vs sampled to 85): "
              f"{by_name['ct-120']['ttft_s'] / by_name['ct-85']['ttft_s']:.2f}x")
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"device": card, "torch": torch.__version__, "transformers": transformers.__version__,
                       "parameters": params, "weights_gib": round(weights_gib, 2),
                       "build_s": round(build_s, 1), "rows": rows}, handle, indent=2)


if __name__ == "__main__":
    main()
