"""Dispatch through a broker, without one: what the store tells the publisher, claims by job id
(a message delivered twice runs its job once), the sweep that publishes lost messages again, and
the job_* dispatch settings reaching what uses them. The real broker is in
tests/integration/test_workers_sandbox.py."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from plugin import cli
from plugin.config import Settings
from plugin.errors import ConfigError
from plugin.jobs import Job, JobRunner, JobState, JobStore
from plugin.jobs.dispatch import CeleryPublisher, make_celery, queue_of
from plugin.worker import WorkerProcess, parse_queues

BASE = "http://127.0.0.1:8091/fhir"
BROKER = "redis://127.0.0.1:1/0"  # nothing listens on port 1: every publish is refused


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    return JobStore(f"sqlite:///{tmp_path}/jobs.db")


def submit(store: JobStore, source_id: str = "7", pipeline: str = "documents") -> Job:
    return store.submit(pipeline=pipeline, source_type="DocumentReference", source_id=source_id,
                        source_version="1", subject="Patient/1", fhir_base_url=BASE)


def test_the_publisher_hears_of_new_and_requeued_jobs_only(store: JobStore) -> None:
    published: list[int] = []
    store.publish = lambda job: published.append(job.id)
    job = submit(store)
    assert published == [job.id]
    submit(store)  # the same job, still queued: its message is on its way already
    assert published == [job.id]
    claimed = store.claim(job.id)
    assert claimed is not None
    store.fail(claimed, "server away", transient=True)
    submit(store)  # a transient failure is queued again by the next submission
    assert published == [job.id, job.id]
    claimed = store.claim(job.id)
    assert claimed is not None
    store.fail(claimed, "server away", transient=True)
    assert store.requeue_transient(subject="Patient/1", fhir_base_url=BASE) == 1
    store.retry(job.id)
    assert published == [job.id] * 4


def test_a_message_delivered_twice_runs_its_job_once(store: JobStore) -> None:
    job = submit(store)
    first = store.claim(job.id)
    assert first is not None and first.state is JobState.RUNNING
    assert store.claim(job.id) is None  # a duplicate or redelivered message
    store.succeed(first, {})
    assert store.claim(job.id) is None  # done
    other = submit(store, "8", pipeline="speech")
    assert store.claim(other.id, runner_scope(store, "documents")) is None  # not this worker's


def runner_scope(store: JobStore, *pipelines: str) -> Any:
    return JobRunner(store, dict.fromkeys(pipelines, lambda context: None), lambda job: None).scope  # type: ignore[arg-type, return-value]


def sweeper(store: JobStore, published: list[int], depth: int = 0, after_s: float = 0.2) -> WorkerProcess:
    runner = JobRunner(store, {"documents": lambda context: None}, lambda job: None)  # type: ignore[arg-type, return-value]
    return WorkerProcess(store, runner, ("documents",), after_s,
                         publish=lambda job, **_: published.append(job.id) or True,
                         depth=lambda queue: depth)


def test_the_sweep_publishes_jobs_left_queued_past_job_republish_after_s(store: JobStore) -> None:
    job = submit(store)
    speech = submit(store, "9", pipeline="speech")
    published: list[int] = []
    process = sweeper(store, published, after_s=0.2)
    assert process.sweep() == 0  # just queued: its message is on its way
    time.sleep(0.3)
    assert process.sweep() == 1 and published == [job.id]  # not speech: not this worker's queue
    assert process.sweep() == 0  # taken by this sweep: not again for another 0.2 s
    time.sleep(0.3)
    assert process.sweep() == 1
    assert speech.id not in published


def test_the_sweep_leaves_a_queue_the_broker_still_holds_messages_for(store: JobStore) -> None:
    submit(store)
    published: list[int] = []
    time.sleep(0.3)
    assert sweeper(store, published, depth=3).sweep() == 0 and published == []


def test_queues_are_the_pipelines() -> None:
    assert [queue_of(p) for p in ("documents", "speech", "imaging", "imaging-question-1f2e")] == [
        "documents", "speech", "imaging", "imaging"]
    # MedGemma over text: every installed pipeline has a queue some worker takes by default
    assert [queue_of(p) for p in ("summary", "dictation-note")] == ["reasoning", "reasoning"]
    assert parse_queues("imaging, speech") == ("imaging", "speech")
    with pytest.raises(ValueError, match="gpu: the queues are documents, speech, imaging, reasoning"):
        parse_queues("gpu")


def test_job_broker_url_chooses_the_embedded_worker_or_the_broker() -> None:
    embedded = cli.gunicorn_command(Settings())
    assert embedded[embedded.index("--config") + 1] == "python:plugin.embedded"
    assert "--config" not in cli.gunicorn_command(Settings(job_broker_url=BROKER))
    assert make_celery(Settings(job_broker_url=BROKER)).conf.broker_url == BROKER
    with pytest.raises(ConfigError, match="job_broker_url must be a redis:// or rediss:// URL"):
        Settings(job_broker_url="amqp://127.0.0.1//")


def test_a_publish_the_broker_refuses_never_fails_the_submission(store: JobStore) -> None:
    publisher = CeleryPublisher(make_celery(Settings(job_broker_url=BROKER)))
    store.publish = publisher
    job = submit(store)  # no exception: the job is in the table, the sweep publishes it later
    assert store.get(job.id).state is JobState.QUEUED
    assert publisher.broker_down()


def test_job_visibility_timeout_s_reaches_the_broker_and_outlasts_every_job() -> None:
    conf = make_celery(Settings(job_broker_url=BROKER, job_visibility_timeout_s=9000)).conf
    assert conf.broker_transport_options["visibility_timeout"] == 9000
    assert (conf.task_acks_late, conf.worker_prefetch_multiplier, conf.task_reject_on_worker_lost) == (
        True, 1, True)
    with pytest.raises(ConfigError, match=r"job_visibility_timeout_s \(3600 s\) must be longer than the "
                                          r"longest job time limit \(3600 s"):
        Settings(job_visibility_timeout_s=3600)
    Settings(job_visibility_timeout_s=3700, job_timeout_imaging_s=3000, job_timeout_documents_s=3000)


def test_worker_concurrency_and_queues_reach_the_worker(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    import plugin.worker

    seen: dict[str, Any] = {}
    monkeypatch.setattr(plugin.worker, "run_celery",
                        lambda settings, queues, concurrency: seen.update(queues=queues,
                                                                          concurrency=concurrency))
    env = {"CHARTLIGHT_JOB_BROKER_URL": BROKER, "CHARTLIGHT_WORKER_CONCURRENCY": "3",
           "CHARTLIGHT_DATABASE_URL": f"sqlite:///{tmp_path}/jobs.db",
           "CHARTLIGHT_SMART_SIGNING_KEY_PATH": str(tmp_path / "keys.pem")}
    result = CliRunner(env=env).invoke(cli.cli, ["worker", "--queues", "imaging,speech"])
    assert result.exit_code == 0, result.output
    assert seen == {"queues": ("imaging", "speech"), "concurrency": 3}
    result = CliRunner(env=env).invoke(cli.cli, ["worker", "--concurrency", "2"])
    assert seen["concurrency"] == 2
    refused = CliRunner(env=env).invoke(cli.cli, ["worker", "--queues", "gpu"])
    assert refused.exit_code == 2 and "gpu" in refused.output


def test_job_republish_after_s_reaches_the_worker_process(tmp_path: Path) -> None:
    from plugin.worker import build_worker_process

    settings = Settings(database_url=f"sqlite:///{tmp_path}/jobs.db", job_republish_after_s=42,
                        smart_signing_key_path=str(tmp_path / "keys.pem"))
    process = build_worker_process(settings, ("documents",))
    assert process.republish_after_s == 42
    assert set(process.runner.pipelines) == {"documents"}
    process.store.engine.dispose()


def test_every_installed_pipeline_goes_to_a_queue_the_default_worker_takes() -> None:
    from plugin.cli import worker
    from plugin.config import Settings
    from plugin.pipelines.registry import installed_pipelines

    default = next(p for p in worker.params if p.name == "queues").default
    assert isinstance(default, str)
    names = installed_pipelines(Settings())
    assert {name: queue_of(name) in parse_queues(default) for name in names} == dict.fromkeys(names, True)


def test_metrics_port_serves_the_workers_metrics(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import socket

    import requests

    import plugin.worker

    monkeypatch.setattr(plugin.worker, "run_celery", lambda settings, queues, concurrency: None)
    with socket.socket() as probe:  # a free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {"CHARTLIGHT_JOB_BROKER_URL": BROKER, "CHARTLIGHT_DATABASE_URL": f"sqlite:///{tmp_path}/jobs.db",
           "CHARTLIGHT_SMART_SIGNING_KEY_PATH": str(tmp_path / "keys.pem")}
    result = CliRunner(env=env).invoke(cli.cli, ["worker", "--metrics-port", str(port)])
    assert result.exit_code == 0, result.output
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    assert "chartlight_job_table_up 1.0" in text
    refused = CliRunner(env=env).invoke(cli.cli, ["worker", "--metrics-port", "0"])
    assert refused.exit_code == 2
