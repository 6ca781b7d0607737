"""Small real HTTP servers on 127.0.0.1 for tests: a recorder and a fault-injecting proxy."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class ServerState:
    seen: list[Seen] = field(default_factory=list)
    body: bytes = b"recorded"
    # Proxy mode: forward to this base after answering `fail_first` requests with `fail_status`.
    upstream: str | None = None
    fail_first: int = 0
    fail_status: int = 503
    # Proxy mode: answer `fail_status` with an OperationOutcome to requests whose body has this.
    refuse_body_containing: bytes | None = None
    # Proxy mode: called with each request body just before it is forwarded.
    before_forward: Callable[[bytes], None] | None = None


def _handler(state: ServerState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
            pass

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            state.seen.append(Seen(self.command, self.path, dict(self.headers.items())))
            if len(state.seen) <= state.fail_first:
                self._reply(state.fail_status, b"", "text/plain")
                return
            if state.refuse_body_containing and state.refuse_body_containing in body:
                outcome = (b'{"resourceType":"OperationOutcome","issue":[{"severity":"error",'
                           b'"code":"forbidden","diagnostics":"writes of this type are not allowed"}]}')
                self._reply(state.fail_status, outcome, "application/fhir+json")
                return
            if state.upstream is None:
                self._reply(200, state.body, "application/octet-stream")
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in {"host"}}
            if state.before_forward is not None:
                state.before_forward(body)
            try:
                upstream = requests.request(self.command, state.upstream + self.path, data=body,
                                            headers=headers, timeout=60)
            except requests.RequestException:
                self.close_connection = True  # the upstream died: the client gets no answer
                return
            self._reply(upstream.status_code, upstream.content,
                        upstream.headers.get("Content-Type", "application/octet-stream"),
                        location=upstream.headers.get("Location"))

        def _reply(self, status: int, body: bytes, content_type: str,
                   location: str | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            if location:
                self.send_header("Location", location)
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = _handle

    return Handler


@contextmanager
def loopback_server(state: ServerState) -> Iterator[str]:
    """Serve `state` on 127.0.0.1 at a free port; yields the base url."""
    with serving(_handler(state)) as base:
        yield base


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Run `handler` on 127.0.0.1 at a free port in a background thread; yields the base url."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
