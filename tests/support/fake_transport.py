"""A requests transport adapter that answers from a script, for unit tests of the FHIR client."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict


@dataclass
class Reply:
    status: int = 200
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/fhir+json"})


class ScriptedAdapter(BaseAdapter):
    """Answers each request with the next Reply (or by calling a function of the request)."""

    def __init__(self, replies: list[Reply | Exception] | Callable[[requests.PreparedRequest], Reply]):
        super().__init__()
        self.replies = replies
        self.requests: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, **kwargs: object) -> requests.Response:
        self.requests.append(request)
        if callable(self.replies):
            reply: Reply | Exception = self.replies(request)
        else:
            reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        response = requests.Response()
        response.status_code = reply.status
        response.headers = CaseInsensitiveDict(reply.headers)
        response.raw = io.BytesIO(reply.body)
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        pass


def session_with(adapter: ScriptedAdapter) -> requests.Session:
    session = requests.Session()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
