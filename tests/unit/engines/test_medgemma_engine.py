"""The local MedGemma engine on a tiny random-weight Gemma 3 (real config, processor, tokenizer
and chat template classes): loading from a folder, the chat turn it builds, greedy generation,
and what it says when weights are absent."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from plugin.engines.medgemma import MedGemmaEngine, user_content
from plugin.engines.test_models.tiny_gemma import TOKENS_PER_IMAGE, save_tiny_medgemma, tiny_engine
from plugin.errors import ConfigError


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_medgemma(tmp_path_factory.mktemp("tiny-medgemma"))


def test_a_checkpoint_folder_is_available_and_marked_as_test_weights(checkpoint: Path) -> None:
    engine = tiny_engine(checkpoint)
    assert engine.available() and engine.why_unavailable() is None
    info = engine.model_info()
    assert info.test_weights is True
    assert info.name == "chartlight-test/tiny-medgemma"
    assert info.version.startswith("local-") and info.version == tiny_engine(checkpoint).model_info().version
    assert "Vision-Language-Models" in info.kinds


def test_generate_builds_one_user_turn_with_the_images_first(checkpoint: Path) -> None:
    engine = tiny_engine(checkpoint)
    page = Image.new("L", (85, 110), 255)
    first = engine.generate([page, "List the tests as JSON."], max_new_tokens=12)
    again = engine.generate([page, "List the tests as JSON."], max_new_tokens=12)
    assert isinstance(first, str) and first == again  # greedy: the same answer every time

    loaded = engine._loaded()
    messages = [{"role": "user", "content": [{"type": "image", "image": page.convert("RGB")},
                                             {"type": "text", "text": "List the tests as JSON."}]}]
    prompt = loaded.processor.apply_chat_template(messages, add_generation_prompt=True,
                                                  tokenize=False)
    assert prompt.startswith("<bos><start_of_turn>user\n<start_of_image>")
    assert prompt.endswith("List the tests as JSON.<end_of_turn>\n<start_of_turn>model\n")
    ids = loaded.processor(text=prompt, images=[page.convert("RGB")])["input_ids"][0]
    assert list(ids).count(loaded.processor.tokenizer.image_token_id) == TOKENS_PER_IMAGE


def test_images_and_texts_keep_their_order_in_the_turn(checkpoint: Path) -> None:
    """A volume's turn: instruction, then each slice followed by its label, the question last."""
    engine = tiny_engine(checkpoint)
    slices = [Image.new("L", (16, 16), shade) for shade in (0, 128)]
    parts = ["Read the CT.", slices[0], "SLICE 1", slices[1], "SLICE 2", "Any findings?"]
    content = user_content(parts)
    assert [c["type"] for c in content] == ["text", "image", "text", "image", "text", "text"]
    prompt = engine._loaded().processor.apply_chat_template(
        [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False)
    assert prompt.startswith("<bos><start_of_turn>user\nRead the CT.<start_of_image>SLICE 1"
                             "<start_of_image>SLICE 2Any findings?<end_of_turn>")
    answer = engine.generate(parts, max_new_tokens=6)
    assert answer == engine.generate(parts, max_new_tokens=6)
    with pytest.raises(ValueError, match="at least one part"):
        user_content([])


def test_the_checkpoint_is_loaded_once_per_process(checkpoint: Path) -> None:
    assert tiny_engine(checkpoint)._loaded() is tiny_engine(checkpoint)._loaded()


def test_missing_weights_are_reported_not_downloaded(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    absent = MedGemmaEngine(str(tmp_path / "no-such-folder"))
    assert not absent.available()
    assert "no model weights" in (absent.why_unavailable() or "")
    uncached = MedGemmaEngine("google/medgemma-1.5-4b-it", cache_dir=str(tmp_path / "cache"),
                              allow_download=True)
    assert not uncached.available()  # offline: a download is never attempted
    with pytest.raises(ConfigError, match="unavailable"):
        uncached.generate([Image.new("RGB", (8, 8)), "hello"])
