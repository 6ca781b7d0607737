"""SMART discovery: what the app requires of an EHR's configuration, and the cache."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from smart_launch.discovery import DiscoveryCache, parse_configuration
from smart_launch.errors import LaunchError
from tests.support.loopback import ServerState, loopback_server

GOOD: dict[str, Any] = {
    "issuer": "https://ehr.example.org",
    "jwks_uri": "https://ehr.example.org/jwks",
    "authorization_endpoint": "https://ehr.example.org/authorize",
    "token_endpoint": "https://ehr.example.org/token",
    "code_challenge_methods_supported": ["S256"],
    "token_endpoint_auth_methods_supported": ["private_key_jwt"],
    "capabilities": ["launch-ehr", "permission-v2"],
}


def test_a_good_configuration() -> None:
    config = parse_configuration(GOOD)
    assert config.token_endpoint == "https://ehr.example.org/token"
    assert "launch-ehr" in config.capabilities and "private_key_jwt" in config.token_endpoint_auth_methods


@pytest.mark.parametrize(("change", "message"), [
    ({"code_challenge_methods_supported": ["plain"]}, "S256"),
    ({"code_challenge_methods_supported": None}, "S256"),
    ({"token_endpoint": "http://ehr.example.org/token"}, "token_endpoint"),
    ({"authorization_endpoint": None}, "authorization_endpoint"),
])
def test_configurations_the_app_cannot_use(change: dict[str, Any], message: str) -> None:
    with pytest.raises(LaunchError, match=message):
        parse_configuration({**GOOD, **change})


def test_discovery_is_cached_per_iss() -> None:
    state = ServerState(body=json.dumps(GOOD).encode())
    clock = [0.0]
    with loopback_server(state) as base:
        cache = DiscoveryCache(requests.Session(), ttl_s=60, timeout_s=5, clock=lambda: clock[0])
        assert cache.get(f"{base}/fhir").token_endpoint == GOOD["token_endpoint"]
        assert cache.get(f"{base}/fhir/").token_endpoint == GOOD["token_endpoint"]
        assert [s.path for s in state.seen] == ["/fhir/.well-known/smart-configuration"]
        clock[0] = 61
        cache.get(f"{base}/fhir")
        assert len(state.seen) == 2


def test_an_ehr_that_does_not_answer_is_a_launch_error() -> None:
    state = ServerState(fail_first=5, fail_status=500)
    with loopback_server(state) as base:
        cache = DiscoveryCache(requests.Session(), ttl_s=60, timeout_s=5)
        with pytest.raises(LaunchError, match="HTTP 500"):
            cache.get(f"{base}/fhir")
