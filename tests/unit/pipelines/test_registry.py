"""The pipelines `installed_pipelines` builds honour the settings docs/configuration.md documents
for them: `attachment_allowed_hosts` decides whether the documents and speech pipelines fetch an
attachment from a host other than the FHIR server (never with the token), and the imaging
pipeline's preparation carries the imaging and FHIR settings."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from plugin.config import Settings
from plugin.engines.test_models.tiny_medasr import tiny_engine
from plugin.errors import AttachmentRefused, InputError
from plugin.fhir import FhirClient
from plugin.jobs import Job, JobContext, JobState
from plugin.pipelines.registry import InstalledPipeline, installed_pipelines
from tests.support.loopback import ServerState, loopback_server

TOKEN = "fhir-token-for-the-ehr-only"
NOW = datetime(2026, 11, 28, tzinfo=UTC)


@pytest.fixture
def foreign_host() -> Iterator[tuple[str, ServerState]]:
    """A host that is not the FHIR server, serving bytes that are neither a document nor audio."""
    state = ServerState(body=b"not a document and not audio")
    with loopback_server(state) as base:
        yield base, state


def _context(source: dict[str, Any]) -> JobContext:
    job = Job(id=1, pipeline="p", source_type=source["resourceType"], source_id=source["id"],
              source_version="1", subject="Patient/1", fhir_base_url="https://ehr.example.org/fhir",
              state=JobState.RUNNING, progress=0.0, progress_text="", attempts=1, next_attempt_at=NOW,
              error="", summary={}, created_at=NOW, updated_at=NOW)
    client = FhirClient("https://ehr.example.org/fhir", token=TOKEN, max_retries=0)
    return JobContext(job=job, client=client, source=source, report_progress=lambda f, t: None)


def _source(url: str, content_type: str) -> dict[str, Any]:
    return {"resourceType": "DocumentReference", "id": "7", "meta": {"versionId": "1"}, "status": "current",
            "subject": {"reference": "Patient/1"},
            "content": [{"attachment": {"contentType": content_type, "url": url}}]}


def _pipelines(**settings: Any) -> dict[str, InstalledPipeline]:
    pipelines = installed_pipelines(Settings(**settings))
    # The real MedASR engine class with tiny random weights (the real ones are not here).
    pipelines["speech"].run.engine = tiny_engine()  # type: ignore[attr-defined]
    return pipelines


@pytest.mark.parametrize(("name", "content_type"),
                         [("documents", "application/pdf"), ("speech", "audio/wav")])
def test_attachment_allowed_hosts_reaches_documents_and_speech(
        name: str, content_type: str, foreign_host: tuple[str, ServerState]) -> None:
    base, state = foreign_host
    host = base.removeprefix("http://")
    source = _source(f"{base}/files/7", content_type)

    with pytest.raises(AttachmentRefused):  # not allow-listed: not even contacted
        _pipelines()[name].run(_context(source))
    assert state.seen == []

    with pytest.raises(InputError) as unreadable:  # allow-listed: fetched, then found unreadable
        _pipelines(attachment_allowed_hosts=(host,))[name].run(_context(source))
    assert not isinstance(unreadable.value, AttachmentRefused)
    [fetched] = state.seen
    assert fetched.path == "/files/7" and "Authorization" not in fetched.headers  # never the token


def test_imaging_preparation_carries_its_settings() -> None:
    settings = Settings(imaging_max_slices=12, imaging_trusted_endpoints=("https://pacs.example.org/dicom-web",),
                        imaging_allowed_endpoints=("https://open.example.org/dicom-web",),
                        attachment_allowed_hosts=("files.example.org",), fhir_timeout_s=7.0,
                        imaging_max_instance_bytes=1000, imaging_max_study_bytes=5000)
    imaging = installed_pipelines(settings)["imaging"].run
    options = imaging.preparation  # type: ignore[attr-defined]
    assert (options.max_slices, options.trusted_endpoints, options.allowed_endpoints,
            options.attachment_allowed_hosts, options.timeout_s, options.max_instance_bytes,
            options.max_metadata_bytes, options.max_study_bytes) == (
        12, ("https://pacs.example.org/dicom-web",), ("https://open.example.org/dicom-web",),
        ("files.example.org",), 7.0, 1000, 1000, 5000)
