"""The remote MedGemma engine against a real HTTP server on loopback that checks each request's
shape (model, one user turn of text and image_url parts in order, temperature 0) and answers with
canned completions; and its errors: refused key, server error, timeout, bad reply, no server."""

from __future__ import annotations

import logging

import pytest
from PIL import Image

from plugin.config import load_settings
from plugin.engines.openai_chat import OpenAIChatEngine, chat_request
from plugin.errors import ConfigError, EngineError
from plugin.pipelines.registry import medgemma_engine
from tests.support.chat_completions import ChatServer, chat_server

MODEL = "google/medgemma-1.5-4b-it"
KEY = "sk-test-5ecret-never-logged"


def test_one_turn_goes_out_in_order_with_images_as_png_data_uris() -> None:
    server = ChatServer(MODEL, answers=['```json\n{"findings": []}\n```'])
    slices = [Image.new("L", (12, 10), 40), Image.new("RGB", (12, 10), (200, 10, 10))]
    with chat_server(server) as url:
        engine = OpenAIChatEngine(url, MODEL, api_key=KEY, timeout_s=10)
        answer = engine.generate(["Read the CT.", slices[0], "SLICE 1", slices[1], "SLICE 2", "Findings?"],
                                 max_new_tokens=77)
    assert answer == '```json\n{"findings": []}\n```'
    assert server.shape_errors == []
    (request,) = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.body["max_tokens"] == 77 and request.body["temperature"] == 0
    assert [p["type"] for p in request.parts] == ["text", "image_url", "text", "image_url", "text", "text"]
    assert [p.get("text") for p in request.parts if p["type"] == "text"] == [
        "Read the CT.", "SLICE 1", "SLICE 2", "Findings?"]
    sent = request.images()
    assert [image.size for image in sent] == [(12, 10), (12, 10)]
    assert sent[0].convert("RGB").getpixel((0, 0)) == (40, 40, 40)  # grey sent as RGB
    assert sent[1].convert("RGB").getpixel((5, 5)) == (200, 10, 10)  # lossless


def test_the_model_info_names_the_served_model_and_marks_test_endpoints() -> None:
    engine = OpenAIChatEngine("http://gpu.example:8000/v1", MODEL, version="rev-1", test_weights=True)
    info = engine.model_info()
    assert (info.name, info.version, info.test_weights) == (MODEL, "rev-1", True)
    assert "gpu.example:8000" in info.display and "Vision-Language-Models" in info.kinds
    assert engine.available()


def test_the_api_key_is_never_in_repr_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server = ChatServer(MODEL, answers=["ok"], api_key="the-right-key")
    with chat_server(server) as url:
        engine = OpenAIChatEngine(url, MODEL, api_key=KEY)
        with pytest.raises(EngineError, match="HTTP 401.*medgemma_remote_api_key.*Invalid API key") as caught:
            engine.generate(["hello"])
    assert KEY not in repr(engine) and KEY not in str(caught.value)
    assert KEY not in caplog.text
    settings = load_settings(environ={}, medgemma_engine="remote", medgemma_remote_url=url,
                             medgemma_remote_api_key=KEY)
    assert KEY not in repr(settings) and KEY not in repr(medgemma_engine(settings))


def test_server_errors_timeouts_and_bad_replies_are_engine_errors() -> None:
    overloaded = ChatServer(MODEL, answers=["x"], status=503)
    with chat_server(overloaded) as url, pytest.raises(EngineError,
                                                       match="HTTP 503: the model is overloaded") as caught:
        OpenAIChatEngine(url, MODEL).generate(["hello"])
    assert caught.value.transient  # the job runner retries it later
    slow = ChatServer(MODEL, answers=["late"], delay_s=1.0)
    with chat_server(slow) as url, pytest.raises(EngineError, match="no answer within 0.2 s") as caught:
        OpenAIChatEngine(url, MODEL, timeout_s=0.2).generate(["hello"])
    assert caught.value.transient
    wrong_model = ChatServer("another/model", answers=["x"])
    with chat_server(wrong_model) as url, \
            pytest.raises(EngineError, match="HTTP 400: model must be") as caught:
        OpenAIChatEngine(url, MODEL).generate(["hello"])
    assert not caught.value.transient  # the same request would fail again
    empty = ChatServer(MODEL, answers=[])
    with chat_server(empty) as url:
        assert OpenAIChatEngine(url, MODEL).generate(["hello"]) == ""
    with chat_server(ChatServer(MODEL)) as url:
        pass  # the server is gone: nothing listens on that port any more
    with pytest.raises(EngineError, match="no connection"):
        OpenAIChatEngine(url, MODEL, timeout_s=2).generate(["hello"])


def test_a_reply_without_a_message_is_an_engine_error() -> None:
    from plugin.engines.openai_chat import answer_text

    with pytest.raises(EngineError, match="no choices"):
        answer_text({"choices": []}, where="x")
    with pytest.raises(EngineError, match="not text"):
        answer_text({"choices": [{"message": {"content": 7}}]}, where="x")
    assert answer_text({"choices": [{"message": {"content": [{"type": "text", "text": "a"},
                                                             {"type": "text", "text": "b"}]}}]},
                       where="x") == "ab"


def test_configuration_chooses_the_engine_and_checks_the_remote_settings() -> None:
    local = medgemma_engine(load_settings(environ={}))
    assert type(local).__name__ == "MedGemmaEngine"
    remote = medgemma_engine(load_settings(environ={}, medgemma_engine="remote",
                                           medgemma_remote_url="http://127.0.0.1:9/v1",
                                           medgemma_remote_timeout_s="12"))
    assert isinstance(remote, OpenAIChatEngine) and remote.timeout_s == 12.0 and remote.model == MODEL
    with pytest.raises(ConfigError, match="set medgemma_remote_url"):
        load_settings(environ={}, medgemma_engine="remote")
    with pytest.raises(ConfigError, match="local or remote"):
        load_settings(environ={}, medgemma_engine="cloud")
    with pytest.raises(ConfigError, match="medgemma_remote_url must be an http"):
        load_settings(environ={}, medgemma_remote_url="ftp://host/v1")
    assert not OpenAIChatEngine("not a url", MODEL).available()
    with pytest.raises(ConfigError, match="unavailable"):
        OpenAIChatEngine("http://127.0.0.1:9/v1", " ").generate(["hello"])
    with pytest.raises(ValueError, match="at least one part"):
        chat_request(MODEL, [], max_new_tokens=1)
