"""The CDS source scan asks the record before queueing an input its job store does not know: an
input version with results of the same pipeline on the calling EHR's server is counted as
analysed, not queued. The server is scripted here (tests/integration/test_cds_record_sandbox.py
runs the same against HAPI)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from cds_hooks.analysis_status import SourceScanner
from cds_hooks.cards import CardContext, patient_view_cards
from fhir_mappers.systems import SID_RESULT
from plugin.fhir import FhirClient
from plugin.jobs import JobStore
from tests.support.fake_transport import Reply, ScriptedAdapter, session_with

BASE = "https://ehr.example.org/fhir"
LABELS = {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                        "code": "AIAST"}]}


def _doc(doc_id: str, version: str = "1") -> dict[str, Any]:
    return {"resourceType": "DocumentReference", "id": doc_id, "meta": {"versionId": version},
            "status": "current", "subject": {"reference": "Patient/1"}}


def _result(obs_id: str, doc_id: str, status: str = "preliminary") -> dict[str, Any]:
    """An Observation as chartlight writes it (identifier, AI label, derivedFrom the input)."""
    return {"resourceType": "Observation", "id": obs_id, "meta": {"versionId": "1", **LABELS},
            "identifier": [{"system": SID_RESULT, "value": f"hash-{obs_id}"}], "status": status,
            "code": {"text": "Glucose"}, "subject": {"reference": "Patient/1"},
            "derivedFrom": [{"reference": f"DocumentReference/{doc_id}"}], "valueString": "112 mg/dL"}


def _write(obs_id: str, versioned_input: str, pipeline: str = "documents") -> dict[str, Any]:
    return {"resourceType": "Provenance", "id": f"p-{obs_id}",
            "target": [{"reference": f"Observation/{obs_id}/_history/1"}],
            "activity": {"text": f"chartlight {pipeline} pipeline 1.0"},
            "entity": [{"role": "source", "what": {"reference": versioned_input}}]}


@dataclass
class Ehr:
    """Answers result searches from `record` (resource type -> entries), `refused` types with 403."""

    record: dict[str, list[dict[str, Any]]]
    refused: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.searches: list[tuple[str, dict[str, list[str]]]] = []

    def client(self) -> FhirClient:
        return FhirClient(BASE, session=session_with(ScriptedAdapter(self._answer)), max_retries=0)

    def _answer(self, request: requests.PreparedRequest) -> Reply:
        url = urlsplit(request.url or "")
        resource_type = url.path.rstrip("/").split("/")[-1]
        self.searches.append((resource_type, parse_qs(url.query)))
        if resource_type in self.refused:
            return Reply(403, b'{"resourceType": "OperationOutcome"}')
        entries = [{"resource": r} for r in self.record.get(resource_type, [])]
        bundle = {"resourceType": "Bundle", "type": "searchset", "entry": entries}
        return Reply(200, json.dumps(bundle).encode())


@dataclass(frozen=True)
class Inputs:
    sources: tuple[dict[str, Any], ...]
    unavailable_reason: str = ""

    def find_sources(self, client: FhirClient, patient_id: str) -> list[dict[str, Any]]:
        return list(self.sources)


def _scan(store: JobStore, ehr: Ehr, *sources: dict[str, Any], pipeline: str = "documents") -> Any:
    return SourceScanner(wait_s=30).status(store=store, pipelines={pipeline: Inputs(sources)},
                                           fhir_base=BASE, client=ehr.client(), patient_id="1")


def _queued(store: JobStore) -> list[str]:
    return sorted(f"{j.pipeline}:{j.source}" for j in store.list(subject="Patient/1", fhir_base_url=BASE))


def test_an_input_analysed_on_the_record_is_not_queued_by_a_fresh_store(tmp_path: Path) -> None:
    store = JobStore(f"sqlite:///{tmp_path}/jobs.db")
    ehr = Ehr({"Observation": [_result("50", "7"), _write("50", "DocumentReference/7/_history/1")]})
    status = _scan(store, ehr, _doc("7"), _doc("8"))
    assert _queued(store) == ["documents:DocumentReference/8/_history/1"]
    assert (status.newly_queued, status.on_record, status.queued) == (1, 1, 0)
    observation_search = next(q for t, q in ehr.searches if t == "Observation")
    assert observation_search["subject"] == ["Patient/1"]
    assert observation_search["_revinclude"] == ["Provenance:target"]
    assert observation_search["_count"] == ["200"]
    context = CardContext(service_id="chartlight-patient-results", hook_instance="h-1", patient_id="1",
                          user="Practitioner/dr", app_launch_url="https://chartlight.example.org/smart/launch")
    [card] = patient_view_cards([], {}, status, context)
    assert "1 input(s) already analysed: their results are on the record" in (card.detail or "")


def test_a_new_version_or_another_pipelines_results_still_queue(tmp_path: Path) -> None:
    store = JobStore(f"sqlite:///{tmp_path}/jobs.db")
    ehr = Ehr({"Observation": [_result("50", "7"), _write("50", "DocumentReference/7/_history/1"),
                               _result("60", "8"), _write("60", "DocumentReference/8/_history/1", "speech")]})
    status = _scan(store, ehr, _doc("7", "2"), _doc("8"))
    assert _queued(store) == ["documents:DocumentReference/7/_history/2",
                              "documents:DocumentReference/8/_history/1"]
    assert status.on_record == 0


def test_signed_and_rejected_results_are_never_queued_again(tmp_path: Path) -> None:
    store = JobStore(f"sqlite:///{tmp_path}/jobs.db")
    ehr = Ehr({"Observation": [_result("50", "7", "final"), _write("50", "DocumentReference/7/_history/1"),
                               _result("60", "8", "entered-in-error"),
                               _write("60", "DocumentReference/8/_history/1")]})
    status = _scan(store, ehr, _doc("7"), _doc("8"))
    assert _queued(store) == [] and status.on_record == 2


def test_inputs_the_job_store_knows_do_not_read_the_record(tmp_path: Path) -> None:
    store = JobStore(f"sqlite:///{tmp_path}/jobs.db")
    store.submit(pipeline="documents", source_type="DocumentReference", source_id="7", source_version="1",
                 subject="Patient/1", fhir_base_url=BASE)
    ehr = Ehr({})
    status = _scan(store, ehr, _doc("7"))
    assert ehr.searches == [] and (status.newly_queued, status.queued) == (0, 1)


def test_a_record_the_token_may_not_read_queues_as_before(tmp_path: Path) -> None:
    store = JobStore(f"sqlite:///{tmp_path}/jobs.db")
    ehr = Ehr({"Observation": [_result("50", "7"), _write("50", "DocumentReference/7/_history/1")]},
              refused=("Observation", "DiagnosticReport", "DocumentReference"))
    status = _scan(store, ehr, _doc("7"))
    assert _queued(store) == ["documents:DocumentReference/7/_history/1"] and status.on_record == 0


def test_a_result_about_another_servers_patient_does_not_count(tmp_path: Path) -> None:
    """An absolute subject on another server names another person, whatever the id."""
    store = JobStore(f"sqlite:///{tmp_path}/jobs.db")
    elsewhere = {**_result("50", "7"), "subject": {"reference": "https://other.example.net/fhir/Patient/1"}}
    ehr = Ehr({"Observation": [elsewhere, _write("50", "DocumentReference/7/_history/1")]})
    _scan(store, ehr, _doc("7"))
    assert _queued(store) == ["documents:DocumentReference/7/_history/1"]
