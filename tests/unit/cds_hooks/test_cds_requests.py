"""Hook request handling before any data is read: body limits, JSON, validation errors that
never echo the access token."""

from __future__ import annotations

from pathlib import Path

from plugin.app import create_app
from tests.support.cds_ehr import (
    PATIENT_VIEW,
    PUBLIC_BASE,
    Ehr,
    bearer,
    cds_settings,
    diagnostics,
    patient_view_body,
)

URL = PUBLIC_BASE + PATIENT_VIEW


def test_oversized_and_non_json_bodies(ehr: Ehr, tmp_path: Path) -> None:
    client = create_app(cds_settings(ehr, tmp_path, cds_max_request_bytes=1000)).test_client()
    headers = {**bearer(ehr.token(URL)), "Content-Type": "application/json"}
    too_large = client.post(PATIENT_VIEW, data=b"{" + b" " * 5000 + b"}", headers=headers)
    assert too_large.status_code == 413 and too_large.get_json()["issue"][0]["code"] == "too-long"
    headers = {**bearer(ehr.token(URL)), "Content-Type": "application/json"}
    response = client.post(PATIENT_VIEW, data=b"{nope", headers=headers)
    assert response.status_code == 400 and diagnostics(response) == "the body is not JSON"


def test_validation_errors_name_fields_but_never_echo_the_token(ehr: Ehr, tmp_path: Path) -> None:
    client = create_app(cds_settings(ehr, tmp_path)).test_client()
    secret = "secret-access-token-123"
    body = patient_view_body(fhirAuthorization={"access_token": secret, "token_type": "Bearer",
                                                "expires_in": "soon", "scope": "x", "subject": "y"})
    response = client.post(PATIENT_VIEW, json=body, headers=bearer(ehr.token(URL)))
    assert response.status_code == 400
    detail = diagnostics(response)
    assert "fhirAuthorization.expires_in" in detail
    assert secret not in response.get_data(as_text=True)


def test_a_hook_not_served_here_is_400(ehr: Ehr, tmp_path: Path) -> None:
    client = create_app(cds_settings(ehr, tmp_path)).test_client()
    response = client.post(PATIENT_VIEW, json={**patient_view_body(), "hook": "order-sign"},
                           headers=bearer(ehr.token(URL)))
    assert response.status_code == 400 and "answers patient-view" in diagnostics(response)


def test_discovery_lists_the_three_services(ehr: Ehr, tmp_path: Path) -> None:
    client = create_app(cds_settings(ehr, tmp_path)).test_client()
    response = client.get("/cds-services", headers=bearer(ehr.token(PUBLIC_BASE + "/cds-services")))
    services = {s["id"]: s for s in response.get_json()["services"]}
    assert {(i, s["hook"]) for i, s in services.items()} == {
        ("chartlight-patient-results", "patient-view"), ("chartlight-imaging-order-select", "order-select"),
        ("chartlight-imaging-order-sign", "order-sign")}
    assert services["chartlight-patient-results"]["prefetch"]["chartlightObservations"].startswith(
        "Observation?patient={{context.patientId}}&identifier=https://chartlight.dev/fhir/sid/result%7C")
    assert all(s["description"] and s["title"] for s in services.values())
