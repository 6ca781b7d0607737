"""Prometheus metrics of the job table on the web tier (/metrics) and on a worker's port: queue depth
per pipeline, state and FHIR server, the oldest queued job's age, finished jobs, failures per error
kind (failures made by the job runner itself), labels free of tokens and patients, and the access
rules (allowed networks, bearer token) with each setting changing what is answered."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, update

from plugin.app import create_app, job_store_of
from plugin.config import Settings
from plugin.errors import ConfigError
from plugin.jobs import JobRunner, JobState, JobStore
from plugin.jobs.schema import JobRow
from plugin.metrics import JobTableCollector, failure_reason, start_worker_metrics
from tests.support.pipelines import fixed_pipeline
from tests.unit.jobs.fake_ehr import FakeEhr

A = "http://ehr-a.example.org/fhir"
B = "https://EHR-B.example.org/r4/"
SECRET = "tok-3f9a8c1e77d2"  # a query a stored base must never carry into a label


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return (name, tuple(sorted(labels.items())))


def _filled_store(url: str) -> JobStore:
    """Jobs on two servers in every state; the failures are the job runner's own."""
    store = JobStore(url)
    ehr = FakeEhr(A)
    for n in range(3):
        ehr.add_source(f"d{n}", "Patient/p-secret-7")

    def broken(context):  # type: ignore[no-untyped-def]
        raise RuntimeError("pipeline bug")

    runner = JobRunner(store, {"documents": fixed_pipeline(), "speech": broken}, lambda job: ehr.client())
    submit = dict(source_type="DocumentReference", source_version="1", subject="Patient/p-secret-7")
    store.submit(pipeline="documents", source_id="d0", fhir_base_url=A, **submit)
    store.submit(pipeline="speech", source_id="d1", fhir_base_url=A, **submit)
    runner.run_until_idle()  # documents/d0 succeeds, speech/d1 fails: internal error
    store.submit(pipeline="imaging", source_id="d2", fhir_base_url=A, **submit)  # not installed
    JobRunner(store, {}, lambda job: ehr.client()).execute(
        store.claim_next())  # type: ignore[arg-type]
    store.submit(pipeline="documents", source_id="x1", fhir_base_url=B, **submit)
    store.submit(pipeline="documents", source_id="x2", fhir_base_url=B, **submit)
    store.submit(pipeline="documents", source_id="x3", fhir_base_url=f"{A}?access_token={SECRET}", **submit)
    running = store.claim_next()
    assert running is not None and running.source_id == "x1"
    with store.engine.begin() as connection:  # x2 has waited two minutes
        connection.execute(update(JobRow).where(JobRow.source_id == "x2")
                           .values(created_at=datetime.now(UTC) - timedelta(seconds=120)))
    return store


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.sandbox)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/jobs.db"
    from tests.support.postgres import new_database
    return new_database(request.getfixturevalue("postgres_url"))


def test_metrics_report_queue_depth_age_finished_jobs_and_failures_per_server(database_url: str) -> None:
    store = _filled_store(database_url)
    app = create_app(Settings(database_url=database_url))
    response = app.test_client().get("/metrics")
    assert response.status_code == 200 and response.content_type.startswith("text/plain")
    text = response.get_data(as_text=True)
    samples = _samples(text)
    b = "https://ehr-b.example.org/r4"  # the plain form: one series however the base was spelled
    assert samples[_key("chartlight_jobs", pipeline="documents", state="running", fhir_server=b)] == 1
    assert samples[_key("chartlight_jobs", pipeline="documents", state="queued", fhir_server=b)] == 1
    assert samples[_key("chartlight_jobs", pipeline="documents", state="queued", fhir_server="invalid")] == 1
    age = samples[_key("chartlight_oldest_queued_job_age_seconds", pipeline="documents", fhir_server=b)]
    assert 120 <= age < 180
    assert samples[_key("chartlight_jobs_finished_total", pipeline="documents", outcome="succeeded",
                        fhir_server=A)] == 1
    assert samples[_key("chartlight_job_failures_total", pipeline="speech", reason="internal_error",
                        fhir_server=A)] == 1
    [imaging] = [j for j in store.list(limit=10) if j.pipeline == "imaging"]
    assert imaging.state is JobState.FAILED
    assert samples[_key("chartlight_job_failures_total", pipeline="imaging", reason="no_pipeline",
                        fhir_server=A)] == 1
    assert samples[_key("chartlight_job_table_up")] == 1
    assert SECRET not in text and "p-secret-7" not in text and "d0" not in text
    store.engine.dispose()
    job_store_of(app).engine.dispose()


def test_failure_reasons_name_the_error_kinds_the_service_records() -> None:
    cases = {
        "gave up after 5 attempt(s) over 1800 s (job_retry_horizon_s 1800 s); ...":
            (True, "transient_gave_up"),
        "internal error: KeyError: 'x'": (False, "internal_error"),
        "documents took longer than its time limit of 3600 s; stopped (job_timeout_documents_s)":
            (False, "time_limit"),
        "EHR ehr-b: client chartlight-b was granted fewer scopes than asked; refused: "
        "system/Observation.crus. Ask the EHR to allow them, or remove them from backend_services scopes":
            (False, "service_credentials"),
        "the clinician's session ended before the analysis ran; start it again from the app":
            (False, "session_ended"),
        "DocumentReference/3 names Patient/2 as its subject, not Patient/1: nothing was written for it":
            (False, "wrong_subject"),
        "GET http://h/fhir/DocumentReference/1/_history/1 -> HTTP 404: not found": (False, "fhir_refused"),
        "DocumentReference/1: the PDF is encrypted": (False, "input_or_other"),
    }
    assert {error: failure_reason(error, transient) for error, (transient, _) in cases.items()} == {
        error: reason for error, (_, reason) in cases.items()}


def test_a_scrape_while_the_job_database_is_away_says_so(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/missing-folder/jobs.db")
    families = list(JobTableCollector(engine).collect())
    assert [(f.name, [s.value for s in f.samples]) for f in families] == [("chartlight_job_table_up", [0])]


def test_metrics_answer_only_allowed_networks_and_the_configured_token(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path}/jobs.db"
    default = create_app(Settings(database_url=database)).test_client()
    assert default.get("/metrics").status_code == 200  # loopback
    assert default.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 403
    widened = create_app(Settings(database_url=database,
                                  metrics_allowed_networks=("10.0.0.0/8",))).test_client()
    assert widened.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 200
    assert widened.get("/metrics").status_code == 403  # 127.0.0.1 is no longer listed
    token = "metrics-" + "9" * 24
    guarded = create_app(Settings(database_url=database, metrics_token=token)).test_client()
    assert guarded.get("/metrics").status_code == 403
    wrong = {"Authorization": "Bearer wrong-token-xxxxxxxx"}
    assert guarded.get("/metrics", headers=wrong).status_code == 403
    answer = guarded.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200 and b"chartlight_job_table_up 1.0" in answer.data
    with pytest.raises(ConfigError, match="metrics_allowed_networks"):
        Settings(metrics_allowed_networks=("not-a-network",))
    with pytest.raises(ConfigError, match="at least 16"):
        Settings(metrics_token="short")


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def test_a_worker_serves_the_same_metrics_on_its_own_port_and_host(tmp_path: Path) -> None:
    _filled_store(f"sqlite:///{tmp_path}/jobs.db")
    token = "worker-metrics-token-1234"
    settings = Settings(database_url=f"sqlite:///{tmp_path}/jobs.db", metrics_worker_host="127.0.0.2",
                        metrics_token=token)
    port = _free_port("127.0.0.2")
    start_worker_metrics(settings, port)
    url = f"http://127.0.0.2:{port}/metrics"
    assert requests.get(url, timeout=10).status_code == 403
    answer = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert answer.status_code == 200
    samples = _samples(answer.text)
    assert samples[_key("chartlight_jobs", pipeline="documents", state="running",
                        fhir_server="https://ehr-b.example.org/r4")] == 1
    with pytest.raises(requests.ConnectionError):  # bound to metrics_worker_host only
        requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
