"""CORS for browser-based EHRs: configured origins only, preflight without a JWT."""

from __future__ import annotations

from pathlib import Path

from plugin.app import create_app
from tests.support.cds_ehr import PATIENT_VIEW, Ehr, cds_settings

EHR_ORIGIN = "https://ehr.example.org"


def test_preflight_and_responses_carry_cors_headers_for_allowed_origins(ehr: Ehr, tmp_path: Path) -> None:
    client = create_app(cds_settings(ehr, tmp_path, cds_allowed_origins=(EHR_ORIGIN,))).test_client()
    preflight = client.options(
        PATIENT_VIEW,
        headers={
            "Origin": EHR_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == EHR_ORIGIN
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    # Even a refusal is readable by the EHR's page, so it can tell the user.
    refused = client.post(PATIENT_VIEW, json={}, headers={"Origin": EHR_ORIGIN})
    assert refused.status_code == 401 and refused.headers["Access-Control-Allow-Origin"] == EHR_ORIGIN
    assert "Origin" in refused.headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in refused.headers


def test_other_origins_get_no_cors_headers(ehr: Ehr, tmp_path: Path) -> None:
    client = create_app(cds_settings(ehr, tmp_path, cds_allowed_origins=(EHR_ORIGIN,))).test_client()
    for method in (client.options, client.get):
        response = method(
            "/cds-services",
            headers={"Origin": "https://evil.example.org", "Access-Control-Request-Method": "GET"},
        )
        assert "Access-Control-Allow-Origin" not in response.headers
        assert "Access-Control-Allow-Methods" not in response.headers


def test_any_origin_when_configured(ehr: Ehr, tmp_path: Path) -> None:
    client = create_app(cds_settings(ehr, tmp_path, cds_allowed_origins=("*",))).test_client()
    response = client.get("/cds-services", headers={"Origin": "https://anywhere.example.org"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"
