"""A chartlight app with the CDS Hooks service trusting one EHR whose JWK Set is served on
127.0.0.1 (tests/support/cds_ehr.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from plugin.app import create_app
from tests.support.cds_ehr import Ehr, cds_settings, ec_key, ehr_with_jwks, rsa_key


@pytest.fixture(scope="module")
def ehr() -> Iterator[Ehr]:
    keys = [rsa_key("ehr-rs384", "RS384"), ec_key("ehr-es384", "ES384"), rsa_key("ehr-rs256", "RS256")]
    with ehr_with_jwks(keys) as served:
        yield served


@pytest.fixture
def app(ehr: Ehr, tmp_path: Path) -> Flask:
    return create_app(cds_settings(ehr, tmp_path))


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
