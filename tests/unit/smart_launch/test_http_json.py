"""Bodies from an EHR's discovery and token endpoints are streamed and cut off at the limit: a
huge answer (without Content-Length, so only reading tells its size) is refused after about the
limit was read, never read whole."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import requests

from plugin.config import SmartEhr
from smart_launch.discovery import DiscoveryCache
from smart_launch.errors import LaunchError, TokenError
from smart_launch.http_json import BodyError, request_json
from smart_launch.keys import load_or_create
from smart_launch.tokens import TokenClient
from tests.support.loopback import serving

HUGE = 48 * 1024 * 1024  # what the server offers
CHUNK = 64 * 1024


class Offered:
    """What the endless server managed to send before the client hung up."""

    def __init__(self) -> None:
        self.sent = 0
        self.done = threading.Event()


def _endless(offered: Offered, *, declare_length: bool = False) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            if declare_length:
                self.send_header("Content-Length", str(HUGE))
            else:
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                self._write(b"{\"pad\": \"")
                while offered.sent < HUGE:
                    self._write(b"x" * CHUNK)
            except OSError:
                pass  # the client hung up: what we are checking
            finally:
                offered.done.set()
                self.close_connection = True

        def _write(self, data: bytes) -> None:
            if declare_length:
                self.wfile.write(data)
            else:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            offered.sent += len(data)

        do_GET = do_POST = _answer

    return Handler


@pytest.fixture
def endless() -> Iterator[tuple[Offered, str]]:
    offered = Offered()
    with serving(_endless(offered)) as base:
        yield offered, base


def test_a_body_over_the_limit_is_refused_after_reading_about_the_limit(endless: tuple[Offered, str]) -> None:
    offered, base = endless
    with pytest.raises(BodyError, match="larger than 262144 bytes"):
        request_json(requests.Session(), "GET", f"{base}/x", max_bytes=256 * 1024, timeout_s=30)
    assert offered.done.wait(30)
    # Socket buffers hold a few MB at most; reading the whole 48 MB before checking would send it all.
    assert offered.sent < 16 * 1024 * 1024, offered.sent


def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    offered = Offered()
    with serving(_endless(offered, declare_length=True)) as base:
        with pytest.raises(BodyError, match="larger than"):
            request_json(requests.Session(), "GET", f"{base}/x", max_bytes=1024, timeout_s=30)
        assert offered.done.wait(30)
    assert offered.sent < 16 * 1024 * 1024


def test_discovery_streams_the_smart_configuration(endless: tuple[Offered, str]) -> None:
    offered, base = endless
    cache = DiscoveryCache(requests.Session(), ttl_s=60, timeout_s=30)
    with pytest.raises(LaunchError, match="SMART configuration could not be read: the answer is larger"):
        cache.get(f"{base}/fhir")
    assert offered.done.wait(30) and offered.sent < 16 * 1024 * 1024


def test_the_token_endpoint_answer_is_streamed(endless: tuple[Offered, str], tmp_path: Path) -> None:
    offered, base = endless
    client = TokenClient(requests.Session(), load_or_create(tmp_path / "keys.pem"), timeout_s=30)
    ehr = SmartEhr(name="e", iss=f"{base}/fhir", client_id="c")
    with pytest.raises(TokenError, match="token endpoint could not be read: the answer is larger"):
        client.exchange_code(ehr, f"{base}/token", code="c", redirect_uri="https://app/cb", code_verifier="v")
    assert offered.done.wait(30) and offered.sent < 16 * 1024 * 1024
