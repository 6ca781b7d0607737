"""The write-back core against the real HAPI FHIR sandbox (request validation on)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest

from fhir_mappers import AIAST_CODE, device_identifier, item_identifier
from fhir_mappers.systems import SID_RESULT as RESULT_IDENTIFIER_SYSTEM
from plugin.errors import FhirError, FhirResponseError, InputError
from plugin.fhir import FhirClient
from plugin.results import SourceRef
from plugin.review import approve, reject
from plugin.writeback import write_result
from tests.support.loopback import ServerState, loopback_server
from tests.support.pipelines import fixed_result
from tests.support.sources import create_patient_with_document

pytestmark = pytest.mark.sandbox

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.fixture
def source(fhir: FhirClient, run_id: str) -> tuple[str, SourceRef]:
    subject, doc = create_patient_with_document(fhir, run_id, "Writeback")
    return subject, SourceRef("DocumentReference", doc["id"], doc["meta"]["versionId"])


@pytest.fixture
def clinician(fhir: FhirClient) -> str:
    practitioner = fhir.create({"resourceType": "Practitioner", "name": [{"family": "Reviewer"}]})
    return f"Practitioner/{practitioner['id']}"


def ours(fhir: FhirClient, resource_type: str, subject: str) -> list[dict]:
    return [r for r in fhir.search(resource_type, {"subject": subject})
            if any(i.get("system") == RESULT_IDENTIFIER_SYSTEM for i in r.get("identifier", []))]


def provenances_for(fhir: FhirClient, reference: str) -> list[dict]:
    return list(fhir.search("Provenance", {"target": reference}))


def test_one_transaction_and_five_runs_leave_one_copy(fhir: FhirClient, source) -> None:  # type: ignore[no-untyped-def]
    subject, ref = source
    first = write_result(fhir, fixed_result(ref), subject=subject, now=NOW)
    assert first.path == "observations"
    assert len(first.created) == 3 + 1 + 1  # 3 Observations, 1 DocumentReference, 1 DiagnosticReport
    assert first.provenance is not None
    for _ in range(4):
        again = write_result(fhir, fixed_result(ref), subject=subject, now=NOW)
        assert again.written == [] and again.provenance is None
        assert len(again.unchanged) == 5
    assert len(ours(fhir, "Observation", subject)) == 3
    assert len(ours(fhir, "DiagnosticReport", subject)) == 1
    assert len(ours(fhir, "DocumentReference", subject)) == 1
    # Every written resource: AI label, and a target of a Provenance naming the input's version.
    for location in first.created:
        resource_type, resource_id = location.split("/")[:2]
        resource = fhir.read(resource_type, resource_id)
        assert any(s["code"] == AIAST_CODE for s in resource["meta"]["security"])
        provenances = provenances_for(fhir, f"{resource_type}/{resource_id}")
        assert len(provenances) == 1
        entities = [e["what"]["reference"] for e in provenances[0]["entity"]]
        assert f"DocumentReference/{ref.id}/_history/{ref.version_id}" in entities
    # One Device for the model, found again rather than duplicated.
    device = device_identifier(fixed_result(ref).model)
    devices = list(fhir.search("Device", {"identifier": f"{device['system']}|{device['value']}"}))
    assert len(devices) == 1


def test_new_model_version_updates_the_same_resources(fhir: FhirClient, source) -> None:  # type: ignore[no-untyped-def]
    subject, ref = source
    first = write_result(fhir, fixed_result(ref, model_version="1"), subject=subject, now=NOW)
    second = write_result(fhir, fixed_result(ref, model_version="2"), subject=subject, now=NOW)
    assert second.created == []
    assert sorted(u.split("/_history/")[0] for u in second.updated) == sorted(
        c.split("/_history/")[0] for c in first.created)
    assert all(u.endswith("/_history/2") for u in second.updated)
    assert len(ours(fhir, "Observation", subject)) == 3


def test_approved_result_survives_a_rerun(fhir: FhirClient, source, clinician: str) -> None:  # type: ignore[no-untyped-def]
    subject, ref = source
    first = write_result(fhir, fixed_result(ref), subject=subject, now=NOW)
    glucose = next(c for c in first.created if c.startswith("Observation/")).split("/_history/")[0]
    signed = approve(fhir, glucose, clinician=clinician, now=NOW)
    assert signed.endswith("/_history/2")
    final = fhir.read(*glucose.split("/"))
    assert final["status"] == "final"
    verifier = [p for p in provenances_for(fhir, glucose)
                if any(a["type"]["coding"][0]["code"] == "verifier" for a in p["agent"])]
    assert len(verifier) == 1 and verifier[0]["agent"][0]["who"]["reference"] == clinician

    rerun = write_result(fhir, fixed_result(ref, model_version="9"), subject=subject, now=NOW)
    assert any(k.startswith(glucose + "/") for k in rerun.kept_signed)
    assert fhir.read(*glucose.split("/")) == final  # untouched: same version, same content
    with pytest.raises(InputError, match="already reviewed"):
        approve(fhir, glucose, clinician=clinician, now=NOW)


def test_reject_marks_entered_in_error_and_rerun_keeps_it(fhir: FhirClient, source, clinician: str) -> None:  # type: ignore[no-untyped-def]
    subject, ref = source
    first = write_result(fhir, fixed_result(ref), subject=subject, now=NOW)
    doc = next(c for c in first.created if c.startswith("DocumentReference/")).split("/_history/")[0]
    reject(fhir, doc, clinician=clinician, reason="summary does not match the report", now=NOW)
    assert fhir.read(*doc.split("/"))["status"] == "entered-in-error"
    rerun = write_result(fhir, fixed_result(ref, model_version="2"), subject=subject, now=NOW)
    assert any(k.startswith(doc + "/") for k in rerun.kept_signed)
    with pytest.raises(InputError, match="reason"):
        reject(fhir, doc, clinician=clinician, reason=" ", now=NOW)


def test_scopes_without_observation_write_degrade_to_document(fhir: FhirClient, source) -> None:  # type: ignore[no-untyped-def]
    subject, ref = source
    outcome = write_result(fhir, fixed_result(ref), subject=subject, now=NOW,
                           observations_allowed=False)
    assert outcome.path == "document-only" and "scopes" in outcome.reason
    assert ours(fhir, "Observation", subject) == []
    docs = ours(fhir, "DocumentReference", subject)
    assert len(docs) == 2  # the narrative and the structured results
    json_parts = [c["attachment"] for d in docs for c in d["content"]
                  if c["attachment"]["contentType"].startswith("application/json")]
    assert json_parts and b"Glucose" in base64.b64decode(json_parts[0]["data"])


def test_server_refusing_observations_degrades_to_document(sandbox_url: str, fhir: FhirClient,
                                                           source) -> None:  # type: ignore[no-untyped-def]
    """An EHR that answers 403 to any transaction with an Observation in it."""
    subject, ref = source
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(sandbox_url))
    state = ServerState(upstream=origin, refuse_body_containing=b'"Observation"', fail_status=403)
    with loopback_server(state) as proxy:
        client = FhirClient(proxy + "/fhir")
        outcome = write_result(client, fixed_result(ref), subject=subject, now=NOW)
    assert outcome.path == "document-only" and "HTTP 403" in outcome.reason
    assert ours(fhir, "Observation", subject) == []
    assert len(ours(fhir, "DocumentReference", subject)) == 2


def test_writes_refused_entirely_write_nothing(fhir: FhirClient, source) -> None:  # type: ignore[no-untyped-def]
    subject, ref = source
    outcome = write_result(fhir, fixed_result(ref), subject=subject, now=NOW, writes_allowed=False)
    assert outcome.path == "not-written" and outcome.written == []
    assert ours(fhir, "DocumentReference", subject) == []


def test_two_resources_with_one_identifier_stop_the_write(fhir: FhirClient, source) -> None:  # type: ignore[no-untyped-def]
    subject, ref = source
    result = fixed_result(ref)
    identifier = item_identifier(result, "glucose")
    for _ in range(2):
        fhir.create({"resourceType": "Observation", "status": "preliminary", "identifier": [identifier],
                     "code": {"text": "Glucose"}, "subject": {"reference": subject}})
    with pytest.raises(FhirError, match="two Observation resources carry identifier") as err:
        write_result(fhir, result, subject=subject, now=NOW)
    assert not isinstance(err.value, FhirResponseError)  # a data problem, not a (transient) HTTP one
    assert ours(fhir, "DiagnosticReport", subject) == []
