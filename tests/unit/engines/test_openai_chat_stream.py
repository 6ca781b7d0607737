"""The remote MedGemma engine streaming ("stream": true, server-sent events) from a real HTTP
server on loopback: the chunks join to the whole answer, a refusal is an error naming the status,
and a reply over the size limit is cut off."""

from __future__ import annotations

import pytest

from plugin.engines import openai_chat
from plugin.engines.openai_chat import OpenAIChatEngine
from plugin.errors import EngineError
from tests.support.chat_completions import ChatServer, chat_server

MODEL = "google/medgemma-1.5-4b-it"
ANSWER = '[{"problem": "Answer", "text": "HbA1c fell to 7.1 %.", "cites": ["L5"]}]'


def test_the_answer_streams_in_pieces_that_join_to_the_whole() -> None:
    server = ChatServer(MODEL, answers=[ANSWER])
    with chat_server(server) as url:
        pieces = list(OpenAIChatEngine(url, MODEL, timeout_s=10).stream(["Question?"], max_new_tokens=50))
    assert len(pieces) > 1 and "".join(pieces) == ANSWER
    (request,) = server.requests
    assert request.body["stream"] is True and request.headers["Accept"] == "text/event-stream"
    assert server.shape_errors == []


def test_a_refused_stream_names_the_status() -> None:
    server = ChatServer(MODEL, answers=[ANSWER], status=503)
    with chat_server(server) as url, pytest.raises(EngineError, match="HTTP 503") as caught:
        list(OpenAIChatEngine(url, MODEL, timeout_s=10).stream(["Question?"]))
    assert caught.value.transient


def test_a_stream_over_the_size_limit_is_cut_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openai_chat, "MAX_RESPONSE_BYTES", 100)
    server = ChatServer(MODEL, answers=[ANSWER * 4])
    with chat_server(server) as url, pytest.raises(EngineError, match="larger than 100 bytes"):
        list(OpenAIChatEngine(url, MODEL, timeout_s=10).stream(["Question?"]))
