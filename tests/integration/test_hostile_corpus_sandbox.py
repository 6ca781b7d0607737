"""Every hostile input of tests/corpus/hostile/ (whichever modules exist: pdf, images, audio,
dicom) stored on the real HAPI sandbox and run through the real pipeline as a job, in one worker
process that measures its own peak RSS per job.

For each case: the job ends as the case expects, a failure names the input and says why (never
"internal error"), the worker's peak RSS stays within RSS_GROWTH_BOUND_BYTES of its idle RSS, and
nothing is written for a failed input. Afterwards the worker still runs a normal input and the
FHIR server still answers. The same machinery prints the table in bench/hostile_inputs.py
(docs/benchmarks.md)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from plugin.fhir import FhirClient
from plugin.jobs import JobState, JobStore
from tests.support.chat_completions import ChatServer, chat_server
from tests.support.hostile_runs import (
    JOB_MEMORY_BYTES,
    MODEL_NAME,
    baseline_case,
    hostile_worker,
    load_cases,
    problems_of,
    run_case,
    written_from,
)

pytestmark = pytest.mark.sandbox

MIB = 1024 * 1024
# How far the worker's peak RSS may rise above its idle RSS (pipelines loaded: ~120 MiB, more
# with torch when speech cases exist) while it runs any one case: the jobs' memory budget
# (JOB_MEMORY_BYTES, 256 MiB) plus what is not charged to it (the interpreter's own working
# memory, library buffers). Before the fixes the DICOM deflate bomb alone went past 3 GiB.
RSS_GROWTH_BOUND_BYTES = JOB_MEMORY_BYTES + 512 * MIB


def test_every_hostile_input_fails_cleanly_within_the_memory_bound(fhir: FhirClient, tmp_path: Path) -> None:
    cases = load_cases()
    assert len([c for c in cases if c.pipeline == "imaging"]) >= 15
    family = f"Hostile-{uuid.uuid4().hex[:8]}"
    patient = fhir.create({"resourceType": "Patient", "name": [{"family": family}]})
    subject = f"Patient/{patient['id']}"
    db = f"sqlite:///{tmp_path}/jobs.db"
    store = JobStore(db)
    chat = ChatServer(model=MODEL_NAME, answers=["No acute cardiopulmonary findings."])
    with chat_server(chat) as chat_url, hostile_worker(
            db, chat_url, with_speech=any(c.pipeline == "speech" for c in cases)) as worker:
        rss_bound = worker.idle_rss_bytes + RSS_GROWTH_BOUND_BYTES
        runs = [run_case(fhir, store, worker, subject, case) for case in cases]
        assert worker.alive(), "the worker died on a hostile input"
        after = run_case(fhir, store, worker, subject, baseline_case())

    problems = [p for run in runs for p in problems_of(run, rss_bound_bytes=rss_bound)]
    assert problems == [], "\n".join(problems)
    failed = [run for run in runs if run.state == JobState.FAILED]
    assert written_from(fhir, subject, failed) == []
    assert after.state == JobState.SUCCEEDED, after.error  # the worker still works
    assert fhir.capabilities()["resourceType"] == "CapabilityStatement"
    assert chat.shape_errors == []
