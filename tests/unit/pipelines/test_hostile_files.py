"""Every hostile PDF, image and audio file of the corpus through the real documents or speech
pipeline, in this process, with a small memory budget: each fails (or succeeds) as the corpus
says, a failure is an InputError that names the input and says why (never an internal error),
and none runs away with the time."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from plugin.engines.test_models.tiny_medasr import tiny_engine
from plugin.errors import InputError
from plugin.fhir import FhirClient
from plugin.jobs import Job, JobContext, JobState
from plugin.pipelines.documents import DocumentsOptions, DocumentsPipeline
from plugin.pipelines.speech import SpeechOptions, SpeechPipeline
from plugin.results import PipelineResult
from tests.corpus.hostile import HostileInput, audio, images, pdf
from tests.support.hostile_runs import JOB_MEMORY_BYTES

CASES = (*pdf.CASES, *images.CASES, *audio.CASES)
# Small enough that the bombs meet it, large enough for a real scan (a 300 dpi page is 8 MiB).
JOB_MEMORY = JOB_MEMORY_BYTES
# Not a speed claim (bench/ makes those): a bound no case comes near unless it runs away, as the
# repeated-word PDF once did (40 minutes a page).
GENEROUS_S = 120.0
NOW = datetime(2026, 12, 4, tzinfo=UTC)


def test_the_corpus_is_large_and_its_names_unique() -> None:
    names = [case.name for case in CASES]
    assert len(names) >= 40 and len(set(names)) == len(names)
    assert {case.pipeline for case in CASES} == {"documents", "speech"}


def resource_for(case: HostileInput, data: bytes) -> dict[str, Any]:
    attachment = {"contentType": case.content_type, "data": base64.b64encode(data).decode()}
    if case.pipeline == "speech":
        return {"resourceType": "Media", "id": "hostile", "meta": {"versionId": "1"},
                "status": "completed", "content": attachment}
    return {"resourceType": "DocumentReference", "id": "hostile", "meta": {"versionId": "1"},
            "status": "current", "content": [{"attachment": attachment}]}


def context_for(case: HostileInput, resource: dict[str, Any]) -> JobContext:
    job = Job(id=1, pipeline=case.pipeline, source_type=resource["resourceType"],
              source_id=resource["id"], source_version="1", subject="Patient/1",
              fhir_base_url="http://fhir.invalid/fhir", state=JobState.RUNNING, progress=0.0,
              progress_text="", attempts=1, next_attempt_at=NOW, error="", summary={},
              created_at=NOW, updated_at=NOW)
    # Attachments are inline: the client is never called.
    return JobContext(job=job, client=FhirClient(job.fhir_base_url), source=resource,
                      report_progress=lambda fraction, text: None)


def run(case: HostileInput, data: bytes) -> PipelineResult:
    context = context_for(case, resource_for(case, data))
    if case.pipeline == "speech":
        return SpeechPipeline(SpeechOptions(job_memory_bytes=JOB_MEMORY), engine=tiny_engine())(context)
    return DocumentsPipeline(DocumentsOptions(engine="layout", job_memory_bytes=JOB_MEMORY))(context)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_a_hostile_file_fails_with_its_name_and_reason_or_is_read(case: HostileInput) -> None:
    data = case.make()
    where = "Media/hostile content" if case.pipeline == "speech" \
        else "DocumentReference/hostile content[0]"
    started = time.monotonic()
    try:
        result: PipelineResult | InputError = run(case, data)
    except InputError as error:  # anything else is an internal error and fails the test
        result = error
    elapsed = time.monotonic() - started
    assert elapsed < GENEROUS_S, f"{case.name} took {elapsed:.0f} s"
    if isinstance(result, InputError):
        assert case.expect != "succeeds", f"{case.name} failed: {result}"
        assert result.source == where and str(result).startswith(f"{where}: ")
        assert case.reason in result.reason.lower(), result.reason
        assert "internal error" not in str(result).lower()
    else:
        assert case.expect != "fails", f"{case.name} was read: {result.items}"
        assert result.source.reference == "DocumentReference/hostile" \
            if case.pipeline == "documents" else result.source.reference == "Media/hostile"
