"""What the granted scopes let a write do (plugin.writeback.write_grant), and that write_result
follows the client's grant without being told: no Observation is even tried without its scope."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from plugin.fhir import FhirClient
from plugin.results import SourceRef
from plugin.scopes import parse_scopes
from plugin.writeback import WriteGrant, write_grant, write_result
from tests.support.pipelines import fixed_result

RESULT = fixed_result(SourceRef("DocumentReference", "5", "1"))  # values, a narrative and a report
DOCS = "patient/DocumentReference.cru user/Provenance.c"


@pytest.mark.parametrize(("scopes", "grant"), [
    (None, WriteGrant(writes=True, observations=True)),  # not known: the server decides
    ("patient/*.cruds", WriteGrant(writes=True, observations=True)),
    (f"{DOCS} patient/Observation.crus patient/DiagnosticReport.cu", WriteGrant(True, True)),
    (f"{DOCS} patient/Observation.write patient/DiagnosticReport.write", WriteGrant(True, True)),  # v1
    (f"{DOCS} patient/Observation.rs patient/DiagnosticReport.crus", WriteGrant(True, False)),
    (f"{DOCS} patient/Observation.crus", WriteGrant(True, False)),  # the report cannot be written
    ("patient/Observation.crus patient/DiagnosticReport.crus patient/DocumentReference.crus",
     WriteGrant(False, False)),  # no Provenance: nothing can be written as chartlight writes
    ("patient/*.rs openid fhirUser", WriteGrant(False, False)),
])
def test_write_grant(scopes: str | None, grant: WriteGrant) -> None:
    assert write_grant(parse_scopes(scopes) if scopes is not None else None, RESULT) == grant


def test_a_result_without_reports_needs_no_diagnostic_report_scope() -> None:
    no_reports = dataclasses.replace(RESULT, reports=())
    assert write_grant(parse_scopes(f"{DOCS} patient/Observation.c"), no_reports).observations


class NoServer(FhirClient):
    """Fails any request: a write the grant rules out must not reach the server at all."""

    def _request(self, *args: object, **kwargs: object) -> object:  # type: ignore[override]
        raise AssertionError(f"no request expected, got {args[:2]}")


def test_write_result_follows_the_clients_grant() -> None:
    now = datetime(2026, 11, 28, tzinfo=UTC)
    client = NoServer("https://ehr.example.org/fhir", granted_scopes=parse_scopes("patient/*.rs"))
    outcome = write_result(client, RESULT, subject="Patient/1", now=now)
    assert outcome.path == "not-written" and "scopes" in outcome.reason
