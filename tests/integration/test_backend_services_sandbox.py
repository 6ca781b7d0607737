"""SMART Backend Services against two real HAPI servers, each behind its own sandbox EHR (Authlib
token endpoint + scope-checking FHIR proxy) with its own backend client and key (made by openssl):
jobs queued the way a CDS hook queues them (no clinician session) run with their own EHR's
service token, which reaches no other server; a refused scope, an expired token and a token the
server keeps refusing each end as they should."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from cds_hooks.blueprint import PIPELINES_EXTENSION
from plugin.analysis import service_client_for
from plugin.app import create_app, job_store_of
from plugin.config import BackendService, Settings, TrustedEhr
from plugin.fhir import FhirClient
from plugin.jobs import Job, JobRunner, JobState, JobStore
from plugin.pipelines.registry import InstalledPipeline
from plugin.sandbox.ehr_server.cds import CDS_CLIENT_ID
from tests.integration.test_jobs_multi_ehr import EXPECTED, NOTHING, put_patient_and_document, results
from tests.support.backend_ehr import BackendEhr, backend_ehr, openssl_key
from tests.support.pipelines import fixed_pipeline
from tests.support.smart_stack import _server

pytestmark = pytest.mark.sandbox
# What the fixed pipeline's job reads and writes (source vread, conditional writes, Provenance,
# Device), as system/ scopes.
SCOPES = ("system/Patient.rs system/DocumentReference.crus system/Observation.crus "
          "system/DiagnosticReport.crus system/Provenance.crs system/Device.crus")


@dataclass
class TwoEhrs:
    a: BackendEhr
    b: BackendEhr
    hapi_a: FhirClient
    hapi_b: FhirClient
    keys: tuple[Path, Path]

    def settings(self, tmp_path: Path, **more: object) -> Settings:
        services = tuple(BackendService(fhir_server=ehr.fhir_base, client_id=ehr.client_id,
                                        private_key_path=str(key), scopes=SCOPES, name=name)
                         for ehr, key, name in ((self.a, self.keys[0], "ehr-a"),
                                                (self.b, self.keys[1], "ehr-b")))
        return Settings(fhir_base_url=self.hapi_a.base_url, database_url=f"sqlite:///{tmp_path}/jobs.db",
                        backend_services=services, **more)  # type: ignore[arg-type]


@pytest.fixture
def ehrs(sandbox_url: str, sandbox2_url: str, tmp_path: Path) -> Iterator[TwoEhrs]:
    keys = (openssl_key(tmp_path / "ehr-a.pem", "RSA"), openssl_key(tmp_path / "ehr-b.pem", "EC"))
    with ExitStack() as stack:
        a = stack.enter_context(backend_ehr(sandbox_url, "chartlight-a", keys[0], set(SCOPES.split())))
        b = stack.enter_context(backend_ehr(sandbox2_url, "chartlight-b", keys[1], set(SCOPES.split())))
        yield TwoEhrs(a, b, FhirClient(sandbox_url, timeout_s=120), FhirClient(sandbox2_url, timeout_s=120),
                      keys)


def _hook_job(store: JobStore, ehr: BackendEhr, patient: str, doc: str) -> Job:
    """A job as a CDS hook queues it: the EHR's FHIR server, no clinician session."""
    return store.submit(pipeline="test-fixed", subject=f"Patient/{patient}", fhir_base_url=ehr.fhir_base,
                        source_type="DocumentReference", source_id=doc, source_version="1")


def _run(store: JobStore, settings: Settings) -> None:
    JobRunner(store, {"test-fixed": fixed_pipeline()}, service_client_for(settings)).run_until_idle()


def test_a_hook_job_for_each_ehr_runs_with_that_ehrs_own_service_token(
        ehrs: TwoEhrs, run_id: str, tmp_path: Path) -> None:
    patient, other, doc = f"bs{run_id[:10]}-1", f"bs{run_id[:10]}-2", f"bs{run_id[:10]}-3"
    put_patient_and_document(ehrs.hapi_a, (patient, other), doc, owner=patient)
    put_patient_and_document(ehrs.hapi_b, (patient, other), doc, owner=patient)
    settings = ehrs.settings(tmp_path)
    store = JobStore(settings.database_url)
    on_b = _hook_job(store, ehrs.b, patient, doc)  # the second EHR's first: not the dev server's token
    _run(store, settings)
    assert store.get(on_b.id).state is JobState.SUCCEEDED, store.get(on_b.id).error
    on_a = _hook_job(store, ehrs.a, patient, doc)
    _run(store, settings)
    assert store.get(on_a.id).state is JobState.SUCCEEDED, store.get(on_a.id).error

    assert results(ehrs.hapi_b, f"Patient/{patient}") == EXPECTED
    assert results(ehrs.hapi_a, f"Patient/{patient}") == EXPECTED
    # One token per EHR, each used only at its own EHR: B's never reached A, nor A's B.
    assert (ehrs.a.tokens_issued(), ehrs.b.tokens_issued()) == (1, 1)
    assert set(ehrs.a.bearers).isdisjoint(ehrs.b.bearers) and ehrs.a.bearers and ehrs.b.bearers
    for ehr in (ehrs.a, ehrs.b):
        with ehr.sandbox.state.lock:
            issued = {t.access_token for t in ehr.sandbox.state.tokens.values()}
        assert set(ehr.bearers) == issued


def test_a_refused_scope_fails_the_job_naming_the_ehr_and_writes_nothing(
        ehrs: TwoEhrs, run_id: str, tmp_path: Path) -> None:
    patient, other, doc = f"br{run_id[:10]}-1", f"br{run_id[:10]}-2", f"br{run_id[:10]}-3"
    put_patient_and_document(ehrs.hapi_b, (patient, other), doc, owner=patient)
    ehrs.b.sandbox.set_policy(ehrs.b.client_id, refused_scopes=frozenset({"system/Observation.crus"}))
    settings = ehrs.settings(tmp_path)
    store = JobStore(settings.database_url)
    job = _hook_job(store, ehrs.b, patient, doc)
    _run(store, settings)
    failed = store.get(job.id)
    assert failed.state is JobState.FAILED
    assert failed.error == ("EHR ehr-b: client chartlight-b was granted fewer scopes than asked; refused: "
                            "system/Observation.crus. Ask the EHR to allow them, or remove them from "
                            "backend_services scopes")
    assert results(ehrs.hapi_b, f"Patient/{patient}") == NOTHING and ehrs.b.bearers == []


def test_an_expired_token_is_replaced_once_and_a_token_refused_again_fails_clearly(
        ehrs: TwoEhrs, run_id: str, tmp_path: Path) -> None:
    patient, other = f"be{run_id[:10]}-1", f"be{run_id[:10]}-2"
    docs = [f"be{run_id[:10]}-d{n}" for n in range(3)]
    for doc in docs:
        put_patient_and_document(ehrs.hapi_b, (patient, other), doc, owner=patient)
    settings = ehrs.settings(tmp_path)
    store = JobStore(settings.database_url)
    client_for = service_client_for(settings)  # one token cache, as one worker process has
    runner = JobRunner(store, {"test-fixed": fixed_pipeline()}, client_for)
    first = _hook_job(store, ehrs.b, patient, docs[0])
    runner.run_until_idle()
    assert store.get(first.id).state is JobState.SUCCEEDED and ehrs.b.tokens_issued() == 1

    # The EHR ends the token early (our cache still thinks it good): the 401 gets a new one.
    ehrs.b.sandbox.expire_access_tokens(ehrs.b.client_id)
    second = _hook_job(store, ehrs.b, patient, docs[1])
    runner.run_until_idle()
    assert store.get(second.id).state is JobState.SUCCEEDED, store.get(second.id).error
    assert ehrs.b.tokens_issued() == 2

    # An EHR that refuses every token it issued: one new token, then a clear failure.
    ehrs.b.on_request.append(lambda path: path.startswith("/fhir/")
                             and ehrs.b.sandbox.expire_access_tokens(ehrs.b.client_id))
    third = _hook_job(store, ehrs.b, patient, docs[2])
    runner.run_until_idle()
    failed = store.get(third.id)
    assert failed.state is JobState.FAILED
    assert failed.error == ("EHR ehr-b: the FHIR server refused a newly issued service token of client "
                            f"chartlight-b (HTTP 401 to GET /fhir/DocumentReference/{docs[2]}/_history/1)")
    assert ehrs.b.tokens_issued() == 3  # the cached one refused, then exactly one more
    assert ehrs.a.bearers == []


def test_a_real_patient_view_hook_from_the_second_ehr_queues_a_job_that_runs_with_its_credentials(
        sandbox2_url: str, run_id: str, tmp_path: Path) -> None:
    """EHR B (the sandbox EHR as a CDS client: signed JWT, fhirAuthorization with a read-only,
    patient-bound token) opens a patient; the hook queues the patient's document; the job, which
    must write, runs with B's backend-services token, not the hook's read-only one."""
    hapi_b = FhirClient(sandbox2_url, timeout_s=120)
    patient, other, doc = f"bh{run_id[:10]}-1", f"bh{run_id[:10]}-2", f"bh{run_id[:10]}-3"
    put_patient_and_document(hapi_b, (patient, other), doc, owner=patient)
    key = openssl_key(tmp_path / "ehr-b.pem", "RSA")

    def documents_of(client: FhirClient, patient_id: str) -> list[dict[str, object]]:
        return list(client.search("DocumentReference", {"subject": f"Patient/{patient_id}", "_id": doc}))

    with _server() as app_server:
        app_base = f"http://127.0.0.1:{app_server.server_port}"
        with backend_ehr(sandbox2_url, "chartlight-b", key, set(SCOPES.split()), cds_base=app_base) as ehr_b:
            settings = Settings(
                database_url=f"sqlite:///{tmp_path}/jobs.db", cds_public_base_url=app_base,
                cds_source_check_wait_s=60.0,
                cds_trusted_ehrs=(TrustedEhr(iss=ehr_b.base, jwks_url=f"{ehr_b.base}/ehr/cds-jwks.json",
                                             fhir_servers=(ehr_b.fhir_base,), name="ehr-b"),),
                backend_services=(BackendService(fhir_server=ehr_b.fhir_base, client_id="chartlight-b",
                                                 private_key_path=str(key), scopes=SCOPES, name="ehr-b"),))
            app = create_app(settings)
            app.extensions[PIPELINES_EXTENSION] = {"test-fixed": InstalledPipeline(
                "test-fixed", "fixed test results", documents_of, fixed_pipeline())}
            app_server.app = app
            assert ehr_b.sandbox.cds is not None
            calls = ehr_b.sandbox.cds.patient_view(patient, "Practitioner/sandbox-clinician")
            assert calls and [c.problem for c in calls] == [None] * len(calls)
            store = job_store_of(app)
            [job] = store.list(limit=10)
            assert (job.fhir_base_url, job.subject, job.session_id) == (
                ehr_b.fhir_base, f"Patient/{patient}", "")
            JobRunner(store, {"test-fixed": fixed_pipeline()}, service_client_for(settings)).run_until_idle()
            assert store.get(job.id).state is JobState.SUCCEEDED, store.get(job.id).error
            with ehr_b.sandbox.state.lock:
                client_of = {t.access_token: t.client_id for t in ehr_b.sandbox.state.tokens.values()}
            assert {client_of[b] for b in ehr_b.bearers} == {CDS_CLIENT_ID, "chartlight-b"}
            assert ehr_b.tokens_issued() == 1
    assert results(hapi_b, f"Patient/{patient}") == EXPECTED
