"""The machinery that runs the hostile-input corpus (tests/corpus/hostile/) for real, shared by
tests/integration/test_hostile_corpus_sandbox.py and bench/hostile_inputs.py.

Each case is stored on the FHIR server the way EHRs hold such files: a Binary plus a
DocumentReference (documents; DICOM, whose DocumentReference names an ImagingStudy in
context.related, the study being the job's source) or a Media (audio). One job per case runs in
one long-lived worker process (tests/support/hostile_worker.py) that reports its peak RSS per
job; the job's state and error are read back from the job table.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from pydicom.uid import ExplicitVRLittleEndian

import tests.corpus.hostile as corpus
from plugin.fhir import FhirClient
from plugin.jobs import JobState, JobStore
from plugin.sandbox.synthetic.dicom_file import part10_bytes
from tests.corpus.hostile import HostileInput
from tests.support.dicom_builders import radiograph_dataset

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_NAME = "google/medgemma-1.5-4b-it"
# The memory budget of every job the hostile worker runs: the corpus's "over budget" cases are
# sized against it (tests/unit/pipelines/test_hostile_files.py uses the same).
JOB_MEMORY_BYTES = 256 * 1024 * 1024
MEDIA_TYPE = "http://terminology.hl7.org/CodeSystem/media-type"
Resource = dict[str, Any]


def load_cases() -> list[HostileInput]:
    """Every case of every module present in tests/corpus/hostile/ (pdf, images, audio, dicom:
    whichever exist), in module then case order."""
    cases: list[HostileInput] = []
    for module in sorted(m.name for m in pkgutil.iter_modules(corpus.__path__)):
        cases.extend(importlib.import_module(f"{corpus.__name__}.{module}").CASES)
    names = [c.name for c in cases]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"hostile cases share names: {duplicates}")
    return cases


def baseline_case() -> HostileInput:
    """A normal input through the same machinery: a 512 x 512 12-bit chest radiograph."""
    ramp = (np.add.outer(np.arange(512), np.arange(512)) * 4 % 4096).astype(np.uint16)
    return HostileInput("baseline-normal-dx-512", "imaging", "application/dicom",
                        lambda: part10_bytes(radiograph_dataset(ramp), ExplicitVRLittleEndian),
                        expect="succeeds")


@dataclass(frozen=True)
class Stored:
    """Where a case lives on the server: the job's source and every resource made for it."""

    source_type: str
    source_id: str
    source_version: str
    made: tuple[str, ...]  # "Binary/1", "DocumentReference/2", ...

    @property
    def reference(self) -> str:
        return f"{self.source_type}/{self.source_id}"


def store_case(fhir: FhirClient, subject: str, case: HostileInput, data: bytes) -> Stored:
    binary = fhir.create_binary(data, case.content_type)
    attachment = {"contentType": case.content_type, "url": f"Binary/{binary['id']}", "title": case.name}
    made = [f"Binary/{binary['id']}"]
    if case.pipeline == "imaging":
        study = fhir.create({"resourceType": "ImagingStudy", "status": "available",
                             "subject": {"reference": subject}, "description": case.name})
        document = fhir.create({"resourceType": "DocumentReference", "status": "current",
                                "subject": {"reference": subject}, "description": case.name,
                                "context": {"related": [{"reference": f"ImagingStudy/{study['id']}"}]},
                                "content": [{"attachment": attachment}]})
        made += [f"ImagingStudy/{study['id']}", f"DocumentReference/{document['id']}"]
        source = study
    elif case.pipeline == "speech":
        source = fhir.create({"resourceType": "Media", "status": "completed",
                              "subject": {"reference": subject},
                              "type": {"coding": [{"system": MEDIA_TYPE, "code": "audio"}]},
                              "content": attachment})
        made.append(f"Media/{source['id']}")
    else:
        source = fhir.create({"resourceType": "DocumentReference", "status": "current",
                              "subject": {"reference": subject}, "description": case.name,
                              "content": [{"attachment": attachment}]})
        made.append(f"DocumentReference/{source['id']}")
    return Stored(source["resourceType"], source["id"], source["meta"]["versionId"], tuple(made))


@dataclass(frozen=True)
class Run:
    """One case run as a job: its outcome, the worker's peak RSS and the time taken."""

    case: HostileInput
    stored: Stored
    state: str
    error: str
    peak_bytes: int
    rss_before_bytes: int
    seconds: float


class HostileWorker:
    """The worker process; `run()` runs the queued jobs and returns its measurements."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        ready = self._answer()
        self.idle_rss_bytes = int(ready["rss_kib"]) * 1024

    def run(self) -> dict[str, Any]:
        stdin: IO[str] | None = self.process.stdin
        assert stdin is not None
        stdin.write("run\n")
        stdin.flush()
        return self._answer()

    def alive(self) -> bool:
        return self.process.poll() is None

    def _answer(self) -> dict[str, Any]:
        stdout = self.process.stdout
        assert stdout is not None
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"the hostile worker exited ({self.process.poll()})")
        answer: dict[str, Any] = json.loads(line)
        return answer


@contextmanager
def hostile_worker(db_url: str, chat_url: str, *, with_speech: bool) -> Iterator[HostileWorker]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.hostile_worker", db_url, chat_url, "1" if with_speech else "0"],
        cwd=REPO_ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        yield HostileWorker(process)
    finally:
        if process.stdin:
            process.stdin.close()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()


def run_case(fhir: FhirClient, store: JobStore, worker: HostileWorker, subject: str,
             case: HostileInput) -> Run:
    stored = store_case(fhir, subject, case, case.make())
    job = store.submit(pipeline=case.pipeline, source_type=stored.source_type, source_id=stored.source_id,
                       source_version=stored.source_version, subject=subject, fhir_base_url=fhir.base_url)
    measured = worker.run()
    done = store.get(job.id)
    return Run(case, stored, str(done.state), done.error, int(measured["peak_kib"]) * 1024,
               int(measured["rss_before_kib"]) * 1024, float(measured["seconds"]))


def problems_of(run: Run, *, rss_bound_bytes: int) -> list[str]:
    """What is wrong with one run, against its case's expectations ([] when all is well)."""
    found = []
    name, expect, error = run.case.name, run.case.expect, run.error
    if run.state not in (JobState.SUCCEEDED, JobState.FAILED):
        found.append(f"{name}: the job ended {run.state} ({error!r})")
    if expect == "fails" and run.state != JobState.FAILED:
        found.append(f"{name}: expected to fail, ended {run.state}")
    if expect == "succeeds" and run.state != JobState.SUCCEEDED:
        found.append(f"{name}: expected to succeed, ended {run.state}: {error}")
    if "internal error" in error.lower():
        found.append(f"{name}: {error}")
    if run.state == JobState.FAILED:
        if not _names(error, run.stored):
            found.append(f"{name}: the error does not name the input ({run.stored.reference}): {error}")
        if run.case.reason and run.case.reason.lower() not in error.lower():
            found.append(f"{name}: the error does not say {run.case.reason!r}: {error}")
    if run.peak_bytes > rss_bound_bytes:
        found.append(f"{name}: peak RSS {run.peak_bytes >> 20} MiB over the "
                     f"{rss_bound_bytes >> 20} MiB bound")
    return found


def _names(error: str, stored: Stored) -> bool:
    """The error starts by naming the job's source, or one of the resources made for the case."""
    return any(error.startswith(ref + " ") or error.startswith(ref + ":") for ref in
               (stored.reference, *stored.made))


def written_from(fhir: FhirClient, subject: str, runs: list[Run]) -> list[str]:
    """Results on the server for `subject` (Observation, DocumentReference, DiagnosticReport)
    and Provenance that point at the source of any of `runs`, besides the resources stored for
    the cases themselves."""
    sources = {run.stored.reference for run in runs}
    ours = {ref for run in runs for ref in run.stored.made}
    hits = []
    for resource_type in ("Observation", "DocumentReference", "DiagnosticReport"):
        for resource in fhir.search(resource_type, {"subject": subject, "_count": 200}):
            here = f"{resource_type}/{resource.get('id')}"
            pointed = {r.split("/_history/")[0] for r in _references(resource)} & sources
            if here not in ours and pointed:
                hits.append(f"{here} -> {sorted(pointed)}")
    for source in sorted(sources):
        for provenance in fhir.search("Provenance", {"entity": source, "_count": 50}):
            hits.append(f"Provenance/{provenance['id']} -> {source}")
    return hits


def _references(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "reference" and isinstance(item, str):
                yield item
            else:
                yield from _references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)
