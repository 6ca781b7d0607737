"""A small OpenAI-compatible chat completions server on 127.0.0.1 for tests: it checks each
request has the shape vLLM and Vertex AI Model Garden expect from the remote MedGemma engine
(model, one user message of text and image_url parts with PNG data URIs, temperature 0, no system
role), records it, and answers with canned completions."""

from __future__ import annotations

import base64
import binascii
import io
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from PIL import Image

from tests.support.loopback import serving

PNG_PREFIX = "data:image/png;base64,"


@dataclass
class ChatRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def parts(self) -> list[dict[str, Any]]:
        content: list[dict[str, Any]] = self.body["messages"][0]["content"]
        return content

    def images(self) -> list[Image.Image]:
        return [Image.open(io.BytesIO(base64.b64decode(p["image_url"]["url"][len(PNG_PREFIX):])))
                for p in self.parts if p["type"] == "image_url"]


@dataclass
class ChatServer:
    model: str
    answers: list[str] = field(default_factory=list)  # served in order; the last one repeats
    api_key: str | None = None  # when set, requests without this bearer token get 401
    status: int = 200  # anything else: answer with an OpenAI-style error body
    delay_s: float = 0.0
    requests: list[ChatRequest] = field(default_factory=list)
    shape_errors: list[str] = field(default_factory=list)

    def check(self, body: Any) -> str:
        """What is wrong with a request body, or ""."""
        if not isinstance(body, dict) or body.get("model") != self.model:
            return f"model must be {self.model!r}"
        if body.get("temperature") != 0:
            return "temperature must be 0 (greedy)"
        messages = body.get("messages")
        if not isinstance(messages, list) or len(messages) != 1 or messages[0].get("role") != "user":
            return "messages must be one user turn (Gemma 3 has no system role)"
        content = messages[0].get("content")
        if not isinstance(content, list) or not content:
            return "the user turn must be a list of parts"
        for part in content:
            if part.get("type") == "text" and isinstance(part.get("text"), str):
                continue
            url = (part.get("image_url") or {}).get("url", "") if part.get("type") == "image_url" else ""
            if not url.startswith(PNG_PREFIX):
                return f"unexpected part {str(part)[:60]}"
            try:
                Image.open(io.BytesIO(base64.b64decode(url[len(PNG_PREFIX):], validate=True))).verify()
            except (binascii.Error, OSError, SyntaxError):
                return "an image_url is not a PNG data URI"
        if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] <= 0:
            return "max_tokens must be a positive integer"
        return ""

    def reply(self) -> str:
        index = min(len(self.requests) - 1, len(self.answers) - 1)
        return self.answers[index] if self.answers else ""


def _handler(server: ChatServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802 -- the http.server name
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            server.requests.append(ChatRequest(self.path, dict(self.headers.items()), body or {}))
            if server.delay_s:
                time.sleep(server.delay_s)
            if server.api_key and self.headers.get("Authorization") != f"Bearer {server.api_key}":
                self._json(401, {"error": {"message": "Invalid API key", "type": "auth"}})
                return
            if self.path != "/v1/chat/completions":
                self._json(404, {"error": {"message": f"no route {self.path}"}})
                return
            problem = server.check(body)
            if problem:
                server.shape_errors.append(problem)
                self._json(400, {"error": {"message": problem}})
                return
            if server.status != 200:
                self._json(server.status, {"error": {"message": "the model is overloaded"}})
                return
            if body.get("stream") is True:
                self._events(server.reply())
                return
            self._json(200, {"id": "chatcmpl-test", "object": "chat.completion", "model": server.model,
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": server.reply()}}]})

        def _events(self, answer: str) -> None:
            """The answer as server-sent events of 8 characters each, as vLLM streams."""
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            chunks = [{"choices": [{"index": 0, "delta": {"role": "assistant"}}]}]
            chunks += [{"choices": [{"index": 0, "delta": {"content": answer[i:i + 8]}}]}
                       for i in range(0, len(answer), 8)]
            for chunk in chunks:
                self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")

        def _json(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@contextmanager
def chat_server(server: ChatServer) -> Iterator[str]:
    """Serve `server` on a free loopback port; yields the API root (".../v1")."""
    with serving(_handler(server)) as base:
        yield f"{base}/v1"
