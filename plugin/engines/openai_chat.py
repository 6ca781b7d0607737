"""MedGemma served behind an OpenAI-compatible chat endpoint (vLLM, TGI, Vertex AI Model Garden):
the remote backend of the vision-language engine.

One user turn goes out as `POST {base_url}/chat/completions` with the parts in order (texts as
`text` parts, images as PNG `data:` URIs in `image_url` parts), temperature 0 (greedy, as the
local engine decodes). Gemma 3 has no system role, so there is no system message. The API key is a
secret: it goes only to `base_url`, never into logs, reprs or error messages.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests

from plugin.errors import ConfigError, EngineError
from plugin.results import AIKind, ModelInfo

if TYPE_CHECKING:
    from PIL.Image import Image

KINDS: tuple[AIKind, ...] = ("Vision-Language-Models", "Large-Language-Models")
MAX_RESPONSE_BYTES = 4 * 1024 * 1024  # an answer of 8192 tokens is well under this
_EXCERPT = 300  # characters of an error body quoted back


class OpenAIChatEngine:
    """A vision-language engine answered by a remote OpenAI-compatible chat completions API.

    `base_url` is the API root that `/chat/completions` hangs off (for vLLM
    `http://host:8000/v1`); `model` the served model name sent in each request. `name` and
    `version` are what results record as the model (default: `model`, and "remote": the
    endpoint does not say which weights' revision it serves). `test_weights` marks an endpoint
    serving random-weight or canned test output, whose answers are never clinical.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 300.0,
        name: str | None = None,
        version: str = "remote",
        test_weights: bool = False,
        session: requests.Session | None = None,
    ) -> None:
        if timeout_s <= 0:
            raise ConfigError("the remote MedGemma timeout must be positive")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout_s = timeout_s
        self.name = name or model
        self.version = version
        self.test_weights = test_weights
        self._api_key = api_key or None
        self._session = session or requests.Session()

    def __repr__(self) -> str:
        return f"OpenAIChatEngine({self.base_url!r}, {self.model!r})"

    # ---- the engine interface --------------------------------------------------------------

    def available(self) -> bool:
        return self.why_unavailable() is None

    def why_unavailable(self) -> str | None:
        """None when the endpoint is configured; it is not called (availability must be cheap)."""
        parts = urlsplit(self.base_url)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            return f"the remote MedGemma URL must be an http(s) URL, got {self.base_url!r}"
        if not self.model.strip():
            return "no remote model name is configured (medgemma_remote_model)"
        return None

    def model_info(self) -> ModelInfo:
        host = urlsplit(self.base_url).netloc
        return ModelInfo(name=self.name, version=self.version, kinds=KINDS,
                         display=f"{self.name} (OpenAI-compatible endpoint at {host})",
                         test_weights=self.test_weights)

    def generate(self, parts: Sequence[Image | str], *, max_new_tokens: int = 1024) -> str:
        """The endpoint's answer to one user turn made of `parts` in order."""
        reason = self.why_unavailable()
        if reason is not None:
            raise ConfigError(f"remote MedGemma engine unavailable: {reason}")
        payload = chat_request(self.model, parts, max_new_tokens=max_new_tokens)
        reply = self._post(payload)
        return answer_text(reply, where=self._url)

    def stream(self, parts: Sequence[Image | str], *, max_new_tokens: int = 1024) -> Iterator[str]:
        """The answer's text as the endpoint streams it (`"stream": true`: server-sent events of
        `choices[0].delta.content`, ended by `data: [DONE]`), within MAX_RESPONSE_BYTES."""
        reason = self.why_unavailable()
        if reason is not None:
            raise ConfigError(f"remote MedGemma engine unavailable: {reason}")
        payload = {**chat_request(self.model, parts, max_new_tokens=max_new_tokens), "stream": True}
        response = self._send(payload, accept="text/event-stream")
        with response:
            if response.status_code != 200:
                body = _read_limited(response, self._url)
                raise EngineError(self._refusal(response.status_code, body),
                                  transient=response.status_code in RETRY_LATER_STATUSES)
            size = 0
            try:
                for line in response.iter_lines():
                    size += len(line) + 1
                    if size > MAX_RESPONSE_BYTES:
                        raise EngineError(f"POST {self._url}: the reply is larger than "
                                          f"{MAX_RESPONSE_BYTES} bytes")
                    if not line.startswith(b"data:"):
                        continue  # comments, event names, keep-alives
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        return
                    delta = _delta_text(data, where=self._url)
                    if delta:
                        yield delta
            except requests.RequestException as exc:
                raise EngineError(f"POST {self._url}: the stream broke off ({type(exc).__name__})",
                                  transient=True) from None

    # ---- HTTP ----------------------------------------------------------------------------------

    @property
    def _url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def _send(self, payload: dict[str, Any], *, accept: str) -> requests.Response:
        headers = {"Content-Type": "application/json", "Accept": accept}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        try:
            # No redirects: the key must reach the configured host only.
            return self._session.post(self._url, data=json.dumps(payload), headers=headers,
                                      timeout=self.timeout_s, allow_redirects=False, stream=True)
        except requests.Timeout:
            raise EngineError(f"POST {self._url}: no answer within {self.timeout_s:g} s",
                              transient=True) from None
        except requests.RequestException as exc:
            raise EngineError(f"POST {self._url}: no connection ({type(exc).__name__})",
                              transient=True) from None

    def _post(self, payload: dict[str, Any]) -> Any:
        response = self._send(payload, accept="application/json")
        with response:
            body = _read_limited(response, self._url)
        if response.status_code != 200:
            raise EngineError(self._refusal(response.status_code, body),
                              transient=response.status_code in RETRY_LATER_STATUSES)
        try:
            return json.loads(body)
        except ValueError:
            raise EngineError(f"POST {self._url}: the reply is not JSON") from None

    def _refusal(self, status: int, body: bytes) -> str:
        message = f"POST {self._url} -> HTTP {status}"
        if status in (401, 403):
            message += " (the endpoint refused the credentials: check medgemma_remote_api_key)"
        elif 300 <= status < 400:
            message += " (redirects are not followed: configure the endpoint's final URL)"
        detail = _error_detail(body)
        if self._api_key:
            detail = detail.replace(self._api_key, "[redacted]")
        return f"{message}: {detail}" if detail else message


# Statuses after which the same request may well succeed later: the job is retried with backoff.
RETRY_LATER_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def chat_request(model: str, parts: Sequence[Image | str], *, max_new_tokens: int) -> dict[str, Any]:
    """The chat completions request body for one user turn (greedy decoding)."""
    if not parts:
        raise ValueError("a user turn needs at least one part")
    content: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, str):
            content.append({"type": "text", "text": part})
        else:
            content.append({"type": "image_url", "image_url": {"url": image_data_uri(part)}})
    return {
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "temperature": 0,
        "max_tokens": max_new_tokens,
    }


def image_data_uri(image: Image) -> str:
    """The image as a lossless PNG `data:` URI (RGB, as the local engine feeds it)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def answer_text(reply: Any, *, where: str) -> str:
    """The first choice's message text from a chat completions reply."""
    try:
        content = reply["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise EngineError(f"{where}: the reply has no choices[0].message.content") from None
    if isinstance(content, list):  # some servers answer in content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not isinstance(content, str):
        raise EngineError(f"{where}: the reply's message content is not text")
    return content.strip()


def _delta_text(data: bytes, *, where: str) -> str:
    """The text of one streamed chunk (`choices[0].delta.content`; "" for a chunk without)."""
    try:
        event = json.loads(data)
        choices = event.get("choices") or [{}]
        content = (choices[0].get("delta") or {}).get("content") or ""
    except (ValueError, AttributeError, TypeError):
        raise EngineError(f"{where}: a streamed chunk is not a chat completion chunk") from None
    if not isinstance(content, str):
        raise EngineError(f"{where}: a streamed chunk's content is not text")
    return content


def _read_limited(response: requests.Response, url: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_content(64 * 1024):
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                raise EngineError(f"POST {url}: the reply is larger than {MAX_RESPONSE_BYTES} bytes")
            chunks.append(chunk)
    except requests.RequestException as exc:  # the connection broke off mid-reply: try again later
        raise EngineError(f"POST {url}: reading the reply failed ({type(exc).__name__})",
                          transient=True) from None
    return b"".join(chunks)


def _error_detail(body: bytes) -> str:
    """The server's own error message (OpenAI's {"error": {"message": ...}}), else an excerpt."""
    text = body.decode("utf-8", "replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        error = parsed.get("error", parsed.get("detail", parsed.get("message")))
        if isinstance(error, dict):
            error = error.get("message")
        if isinstance(error, str):
            text = error
    text = " ".join(text.split())
    return text if len(text) <= _EXCERPT else text[:_EXCERPT - 1] + "…"
