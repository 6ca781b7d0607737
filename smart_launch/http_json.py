"""Small JSON documents from an EHR's own endpoints (SMART discovery, token endpoint, id_token
keys, style): requested with a timeout and no redirects, and streamed so that a body over the
limit is refused after at most `max_bytes` have been read, whatever Content-Length says."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import requests

CHUNK = 8192


class BodyError(Exception):
    """The answer could not be read as the JSON asked for; `reason` says why, in words."""

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class JsonAnswer:
    status: int
    body: Any  # the parsed JSON, or None when the body was not JSON


def request_json(session: requests.Session, method: str, url: str, *, max_bytes: int, timeout_s: float,
                 data: dict[str, str] | None = None) -> JsonAnswer:
    """The status and parsed JSON body of one request. No answer, or a body over `max_bytes`, is a
    BodyError; a body that is not JSON gives `body=None` (callers say what they expected)."""
    try:
        response = session.request(method, url, data=data, headers={"Accept": "application/json"},
                                   timeout=timeout_s, allow_redirects=False, stream=True)
    except requests.RequestException as exc:
        raise BodyError(f"no answer ({_cause(exc)})") from None
    with response:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise BodyError(f"the answer is larger than {max_bytes} bytes", status=response.status_code)
        body = bytearray()
        try:
            for chunk in response.iter_content(CHUNK):
                body.extend(chunk)
                if len(body) > max_bytes:
                    raise BodyError(f"the answer is larger than {max_bytes} bytes",
                                    status=response.status_code)
        except requests.RequestException as exc:
            raise BodyError(f"the answer broke off ({_cause(exc)})", status=response.status_code) from None
    try:
        parsed = json.loads(bytes(body)) if body else None
    except ValueError:
        parsed = None
    return JsonAnswer(response.status_code, parsed)


def _cause(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed"
    return "request failed"
