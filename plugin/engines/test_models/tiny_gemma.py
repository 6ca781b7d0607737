"""A tiny random-weight MedGemma: the real Gemma 3 config, model, processor and tokenizer
classes (SigLIP vision tower, Gemma 3 text decoder), built in memory on the CPU and saved as a
checkpoint folder (the tests' model, and the demo's with --test-models). Nothing is downloaded;
its output is noise, labelled as test weights."""

from __future__ import annotations

import string
from pathlib import Path

import torch
from transformers import (
    Gemma3Config,
    Gemma3ForConditionalGeneration,
    Gemma3Processor,
    Gemma3TextConfig,
    GemmaTokenizer,
    SiglipVisionConfig,
)
from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

from plugin.engines.medgemma import MedGemmaEngine

IMAGE_SIZE = 32
PATCH = 8
TOKENS_PER_IMAGE = 4  # (32 / 8)^2 = 16 patches pooled to 4: a perfect square, as Gemma 3 needs
SPECIAL = ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>",
           "<start_of_image>", "<end_of_image>", "<image_soft_token>", "<unused94>", "<unused95>")

# Gemma 3's chat template as published with the model: no system role (a system message becomes
# the start of the first user turn), user/model turns, an image as <start_of_image>.
CHAT_TEMPLATE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- set role = "model" if message['role'] == 'assistant' else message['role'] -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- else -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{ '<start_of_turn>model\n' }}
{%- endif -%}
"""


def tiny_tokenizer() -> GemmaTokenizer:
    """A byte-fallback BPE vocabulary of single characters, with the tokens Gemma 3's processor
    looks for declared as named special tokens."""
    vocab: dict[str, int] = {}
    for token in (*SPECIAL, *(c if c != " " else "▁" for c in string.printable if c not in "\t\r\x0b\x0c")):
        vocab.setdefault(token, len(vocab))
    for byte in range(256):
        vocab[f"<0x{byte:02X}>"] = len(vocab)
    return GemmaTokenizer(vocab=vocab, merges=[], extra_special_tokens={
        "boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
        "image_token": "<image_soft_token>"})


def tiny_processor() -> Gemma3Processor:
    images = Gemma3ImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
                                     image_mean=[0.5] * 3, image_std=[0.5] * 3)
    return Gemma3Processor(image_processor=images, tokenizer=tiny_tokenizer(),
                           chat_template=CHAT_TEMPLATE, image_seq_length=TOKENS_PER_IMAGE)


def tiny_model(tokenizer: GemmaTokenizer, seed: int = 0) -> Gemma3ForConditionalGeneration:
    vision = SiglipVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                num_attention_heads=2, image_size=IMAGE_SIZE, patch_size=PATCH)
    text = Gemma3TextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                            num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                            head_dim=16, max_position_embeddings=4096, sliding_window=64)
    config = Gemma3Config(text_config=text, vision_config=vision,
                          mm_tokens_per_image=TOKENS_PER_IMAGE,
                          boi_token_index=tokenizer.boi_token_id,
                          eoi_token_index=tokenizer.eoi_token_id,
                          image_token_index=tokenizer.image_token_id)
    config.eos_token_id = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<end_of_turn>")]
    config.pad_token_id = tokenizer.pad_token_id
    config.bos_token_id = tokenizer.bos_token_id
    torch.manual_seed(seed)
    return Gemma3ForConditionalGeneration(config).eval()


def save_tiny_medgemma(folder: Path, seed: int = 0) -> Path:
    """A checkpoint folder (config, weights, processor, tokenizer, chat template)."""
    processor = tiny_processor()
    model = tiny_model(processor.tokenizer, seed)
    model.generation_config.eos_token_id = model.config.eos_token_id
    model.generation_config.pad_token_id = model.config.pad_token_id
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def tiny_engine(folder: Path) -> MedGemmaEngine:
    return MedGemmaEngine(str(folder), name="chartlight-test/tiny-medgemma", test_weights=True)
