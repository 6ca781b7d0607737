"""CDS Hooks 3.0 (as balloted) beside 2.0.1: discovery's `version` and `hookVersion`, every error
as an OperationOutcome, SMART App Launch 2 scopes in `fhirAuthorization.scope` (1.0 scopes still
read), tokens bound to another patient left unused. The facts checked are the 3.0 specification's
(HL7/cds-hooks input/pagecontent/index.md: Discovery, Returning OperationOutcome, Passing the
Access Token; the hook definitions' metadata tables in HL7/cds-hooks-library)."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from plugin.app import create_app
from plugin.config import TrustedEhr
from tests.support.cds_ehr import (
    EMPTY_BUNDLE,
    PATIENT_VIEW,
    PUBLIC_BASE,
    Ehr,
    bearer,
    cds_settings,
    diagnostics,
    patient_view_body,
)
from tests.support.loopback import ServerState, loopback_server

SEMVER = re.compile(r"^\d+\.\d+\.\d+$")
# IssueType codes (FHIR R4 value set issue-type) an error body may carry.
ISSUE_TYPES = {"invalid", "structure", "required", "value", "invariant", "security", "login", "unknown",
               "expired", "forbidden", "suppressed", "processing", "not-supported", "duplicate",
               "multiple-matches", "not-found", "deleted", "too-long", "code-invalid", "extension",
               "too-costly", "business-rule", "conflict", "transient", "lock-error", "no-store",
               "exception", "timeout", "incomplete", "throttled", "informational"}


@pytest.fixture
def fhir_server() -> Iterator[tuple[str, ServerState]]:
    """A FHIR server that records what reaches it (it should not be reached in these tests)."""
    state = ServerState()
    with loopback_server(state) as base:
        yield base + "/fhir", state


@pytest.fixture
def hooks(ehr: Ehr, tmp_path: Path, fhir_server: tuple[str, ServerState]) -> FlaskClient:
    trusted = TrustedEhr(iss=ehr.iss, jwks_url=ehr.jwks_url, fhir_servers=(fhir_server[0],))
    return create_app(cds_settings(ehr, tmp_path, cds_trusted_ehrs=(trusted,))).test_client()


def _post(client: FlaskClient, ehr: Ehr, path: str, body: Any) -> Any:
    return client.post(path, json=body, headers=bearer(ehr.token(PUBLIC_BASE + path)))


def test_discovery_says_which_cds_hooks_and_hook_versions(client: FlaskClient, ehr: Ehr) -> None:
    response = client.get("/cds-services", headers=bearer(ehr.token(PUBLIC_BASE + "/cds-services")))
    services = response.get_json()["services"]
    assert len(services) == 3
    for service in services:
        # 3.0: `version` a semantic version of the specification; `hookVersion` the version in the
        # hook definition's metadata table (1.0 for patient-view, order-select and order-sign).
        assert SEMVER.match(service["version"]) and service["version"].startswith("3.")
        assert service["hookVersion"] == "1.0"
        # Fields both 2.0.1 and 3.0 require, as strings.
        assert all(isinstance(service[k], str) and service[k].strip() for k in ("hook", "description", "id"))
        assert set(service) <= {"hook", "title", "description", "id", "prefetch", "usageRequirements",
                                "version", "hookVersion"}


def _is_operation_outcome(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body: dict[str, Any] = response.get_json()
    assert body["resourceType"] == "OperationOutcome" and len(body["issue"]) == 1
    issue: dict[str, Any] = body["issue"][0]
    assert issue["severity"] == "error" and issue["code"] == code and code in ISSUE_TYPES
    assert issue["details"]["text"].strip()
    return issue


def test_every_error_is_an_operation_outcome(hooks: FlaskClient, ehr: Ehr) -> None:
    # 401: no detail beyond the word.
    issue = _is_operation_outcome(hooks.post(PATIENT_VIEW, json=patient_view_body()), 401, "login")
    assert set(issue) == {"severity", "code", "details"}
    # 400, 404, 412 with the reason for the integrator.
    assert "hook" in _is_operation_outcome(
        _post(hooks, ehr, PATIENT_VIEW, {"hookInstance": "x", "context": {}}), 400, "invalid")["diagnostics"]
    missing = "/cds-services/no-such-service"
    assert "no-such-service" in _is_operation_outcome(
        _post(hooks, ehr, missing, patient_view_body()), 404, "not-found")["diagnostics"]
    body = patient_view_body()
    del body["prefetch"]["chartlightDevices"]
    issue = _is_operation_outcome(_post(hooks, ehr, PATIENT_VIEW, body), 412, "processing")
    assert "chartlightDevices" in issue["diagnostics"]
    assert issue["expression"] == ["prefetch.chartlightDevices"]


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("GET", PATIENT_VIEW, "POST"), ("DELETE", PATIENT_VIEW, "POST"),
    ("GET", PATIENT_VIEW + "/feedback", "POST"),
    ("POST", "/cds-services", "GET"), ("PUT", "/cds-services", "GET")])
def test_a_method_a_url_does_not_answer_is_405(hooks: FlaskClient, ehr: Ehr, method: str, path: str,
                                               allowed: str) -> None:
    response = hooks.open(path, method=method, headers=bearer(ehr.token(PUBLIC_BASE + path)))
    _is_operation_outcome(response, 405, "not-supported")
    assert response.headers["Allow"].split(", ")[0] == allowed


def test_an_unknown_path_under_a_service_is_404_and_needs_a_token(hooks: FlaskClient, ehr: Ehr) -> None:
    path = PATIENT_VIEW + "/something/else"
    _is_operation_outcome(hooks.get(path), 401, "login")
    _is_operation_outcome(hooks.get(path, headers=bearer(ehr.token(PUBLIC_BASE + path))), 404, "not-found")


def _authorization(scope: str, **extra: str) -> dict[str, Any]:
    return {"access_token": "opaque-token-for-the-test", "token_type": "Bearer", "expires_in": 300,
            "scope": scope, "subject": "chartlight", **extra}


READ_ALL_V1 = "user/Observation.read user/DiagnosticReport.read user/DocumentReference.read user/Device.read"
READ_ALL_V2 = "patient/Observation.rs patient/DiagnosticReport.rs patient/DocumentReference.rs user/Device.rs"


@pytest.mark.parametrize(("scope", "patient"), [(READ_ALL_V1, None), (READ_ALL_V2, "1288992")])
def test_2_0_1_and_3_0_requests_get_the_same_answer(hooks: FlaskClient, ehr: Ehr, scope: str,
                                                    patient: str | None,
                                                    fhir_server: tuple[str, ServerState]) -> None:
    extra = {"patient": patient} if patient else {}
    body = patient_view_body(fhirServer=fhir_server[0], fhirAuthorization=_authorization(scope, **extra))
    response = _post(hooks, ehr, PATIENT_VIEW, body)
    assert response.status_code == 200, response.get_json()
    plain = _post(hooks, ehr, PATIENT_VIEW, patient_view_body())
    assert response.get_json() == plain.get_json()
    assert fhir_server[1].seen == []  # everything was prefetched


def test_a_read_the_scopes_do_not_grant_is_not_sent(hooks: FlaskClient, ehr: Ehr,
                                                    fhir_server: tuple[str, ServerState]) -> None:
    url, state = fhir_server
    body = patient_view_body(fhirServer=url, fhirAuthorization=_authorization(
        "patient/Observation.rs patient/DiagnosticReport.cud launch openid", patient="1288992"))
    del body["prefetch"]["chartlightReports"]
    response = _post(hooks, ehr, PATIENT_VIEW, body)
    assert "grant no read of DiagnosticReport" in diagnostics(response) and response.status_code == 412
    assert state.seen == []


def test_scopes_in_no_smart_syntax_leave_the_decision_to_the_server(
        hooks: FlaskClient, ehr: Ehr, fhir_server: tuple[str, ServerState]) -> None:
    url, state = fhir_server
    body = patient_view_body(fhirServer=url, fhirAuthorization=_authorization("read-everything"))
    del body["prefetch"]["chartlightReports"]
    response = _post(hooks, ehr, PATIENT_VIEW, body)
    assert response.status_code == 412  # the recorder's answer is not FHIR JSON
    assert [s.path.split("?")[0] for s in state.seen] == ["/fhir/DiagnosticReport"]
    assert state.seen[0].headers["Authorization"] == "Bearer opaque-token-for-the-test"


def test_a_token_bound_to_another_patient_is_not_used(hooks: FlaskClient, ehr: Ehr,
                                                      fhir_server: tuple[str, ServerState]) -> None:
    url, state = fhir_server
    body = patient_view_body(fhirServer=url, fhirAuthorization=_authorization(READ_ALL_V2, patient="other"))
    del body["prefetch"]["chartlightReports"]
    response = _post(hooks, ehr, PATIENT_VIEW, body)
    assert response.status_code == 412 and "no usable fhirServer" in diagnostics(response)
    assert state.seen == []
    # Bound to the hook's patient (as an id, or as a reference): used.
    for patient in ("1288992", "Patient/1288992"):
        body["fhirAuthorization"]["patient"] = patient
        _post(hooks, ehr, PATIENT_VIEW, body)
    assert [s.path.split("?")[0] for s in state.seen] == ["/fhir/DiagnosticReport"] * 2


def test_the_2_0_1_example_request_shape_still_validates(hooks: FlaskClient, ehr: Ehr) -> None:
    """A 2.0.1 client's request: v1 scopes, no `patient`, extension fields of its own."""
    body = copy.deepcopy(patient_view_body())
    body["fhirAuthorization"] = _authorization("user/Patient.read user/Observation.read")
    body["fhirServer"] = "https://ehr.example.org/fhir"
    body["extension"] = {"com.example.ehr": {"tab": "summary"}}
    body["prefetch"]["chartlightDevices"] = EMPTY_BUNDLE
    assert _post(hooks, ehr, PATIENT_VIEW, body).status_code == 200
