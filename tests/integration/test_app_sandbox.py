"""The service's health endpoint against the real sandbox."""

from __future__ import annotations

import pytest

from plugin.app import create_app
from plugin.config import Settings

pytestmark = pytest.mark.sandbox


def test_health_sees_the_fhir_sandbox(sandbox_url: str) -> None:
    app = create_app(Settings(fhir_base_url=sandbox_url))
    body = app.test_client().get("/health").get_json()
    assert body["fhir"] == {"reachable": True, "fhirVersion": "4.0.1"}
