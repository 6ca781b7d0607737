"""The patient's inputs as the app lists them (documents, imaging studies, recordings), each with
the pipeline that analyses it and where its analysis stands."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from plugin.errors import FhirError, FhirResponseError
from plugin.fhir import FhirClient
from plugin.jobs import Job, JobState
from plugin.pipelines.registry import InstalledPipeline

from .record import Recorded

Resource = dict[str, Any]
InputKind = Literal["document", "imaging", "recording"]
# Whole-slide (SM) studies are imaging studies to the user; the pathology pipeline analyses them.
KIND_OF_PIPELINE: dict[str, InputKind] = {"documents": "document", "imaging": "imaging",
                                          "speech": "recording", "pathology": "imaging"}
KIND_TITLES: dict[InputKind, str] = {"document": "Documents", "imaging": "Imaging studies",
                                     "recording": "Recordings"}
StatusState = Literal["not analysed", "queued", "running", "done", "signed", "failed", "unavailable"]


@dataclass(frozen=True)
class Status:
    state: StatusState
    progress: float = 0.0  # 0..1
    text: str = ""  # what the job is doing, or why it failed / cannot run

    def as_json(self) -> dict[str, Any]:
        return {"state": self.state, "progress": round(self.progress, 3), "text": self.text}


@dataclass(frozen=True)
class InputRow:
    kind: InputKind
    reference: str  # "DocumentReference/5"
    version: str
    title: str
    date: str
    pipeline: str  # "" when no installed pipeline reads it
    unavailable: str  # why that pipeline cannot run here ("" when it can)

    @property
    def key(self) -> str:
        """The row's id on the page and in status JSON: resource ids only, no PHI."""
        return f"{self.pipeline or 'none'}:{self.reference}"


def patient_inputs(client: FhirClient, pipelines: Mapping[str, InstalledPipeline],
                   patient_id: str) -> list[InputRow]:
    """Every input an installed pipeline would analyse, plus the patient's imaging studies when no
    imaging pipeline is installed (listed, marked as such). Ordered by kind, then newest first."""
    rows: list[InputRow] = []
    for name, pipeline in pipelines.items():
        kind = KIND_OF_PIPELINE.get(name)
        if kind is None:
            continue
        try:
            found = list(pipeline.find_sources(client, patient_id))
        except FhirResponseError as exc:
            if exc.status not in (401, 403):
                raise
            found = []  # the granted scopes do not reach these inputs: the page says so (limitations)
        rows += [_row(resource, kind, name, pipeline.unavailable_reason) for resource in found]
    if "imaging" not in pipelines:
        try:
            studies = list(client.search("ImagingStudy", {"subject": f"Patient/{patient_id}",
                                                          "_count": 100}))
        except FhirError:  # the granted scopes may not include imaging: nothing to list
            studies = []
        listed = {r.reference for r in rows}  # slide studies the pathology pipeline already lists
        rows += [_row(s, "imaging", "", "no imaging pipeline is installed here") for s in studies
                 if f"ImagingStudy/{s.get('id')}" not in listed]
    order = {"document": 0, "imaging": 1, "recording": 2}
    rows.sort(key=lambda r: (order[r.kind], _negated(r.date), r.reference))
    return rows


def statuses(rows: Iterable[InputRow], jobs: Iterable[Job], previews: Mapping[str, Status],
             recorded: Mapping[tuple[str, str], Recorded] | None = None) -> dict[str, Status]:
    """Each row's status by key: a preview run (no-write sessions) wins, then a queued or running
    job for the source's current version, then the record (chartlight's results on the FHIR server
    for that version: "done", or "signed" when a clinician signed every one), then the newest job.
    Older versions' jobs and results say nothing about this one."""
    newest: dict[tuple[str, str, str, str], Job] = {}
    for job in jobs:
        key = (job.pipeline, job.source_type, job.source_id, job.source_version)
        if key not in newest or job.id > newest[key].id:
            newest[key] = job
    result = {}
    for row in rows:
        if row.key in previews:
            result[row.key] = previews[row.key]
            continue
        resource_type, resource_id = row.reference.split("/", 1)
        current = newest.get((row.pipeline, resource_type, resource_id, row.version))
        on_record = (recorded or {}).get((row.reference, row.version))
        if current is not None and current.state in (JobState.QUEUED, JobState.RUNNING):
            result[row.key] = job_status(current)
        elif on_record is not None:
            state: StatusState = "signed" if on_record.signed and not on_record.awaiting else "done"
            result[row.key] = Status(state, 1.0, on_record.text)
        elif row.unavailable:
            result[row.key] = Status("unavailable", text=row.unavailable)
        else:
            result[row.key] = job_status(current)
    return result


def job_statuses(jobs: Iterable[Job]) -> dict[str, Status]:
    """The newest job's status for each source, by input row key (whatever version it ran on)."""
    newest: dict[str, Job] = {}
    for job in jobs:
        key = f"{job.pipeline}:{job.source_type}/{job.source_id}"
        if key not in newest or job.id > newest[key].id:
            newest[key] = job
    return {key: job_status(job) for key, job in newest.items()}


def job_status(job: Job | None) -> Status:
    if job is None:
        return Status("not analysed")
    if job.state is JobState.SUCCEEDED:
        return Status("done", 1.0, _summary_text(job.summary))
    if job.state is JobState.FAILED:
        return Status("failed", job.progress, job.error)
    if job.state is JobState.RUNNING:
        return Status("running", job.progress, job.progress_text)
    return Status("queued", 0.0, job.progress_text or "waiting for a worker")


def _summary_text(summary: dict[str, Any]) -> str:
    written = len(summary.get("created", [])) + len(summary.get("updated", []))
    kept = len(summary.get("unchanged", [])) + len(summary.get("kept_signed", []))
    text = f"{written} result(s) written" + (f", {kept} already there" if kept else "")
    if summary.get("reason"):
        text += f" ({summary['reason']})"
    if (summary.get("model") or {}).get("test_weights"):
        text += " — TEST OUTPUT, not clinical (random test weights)"
    return text


def _row(resource: Resource, kind: InputKind, pipeline: str, unavailable: str) -> InputRow:
    return InputRow(kind=kind, reference=f"{resource['resourceType']}/{resource['id']}",
                    version=str(resource.get("meta", {}).get("versionId", "")),
                    title=_title(resource), date=_date(resource), pipeline=pipeline,
                    unavailable=unavailable)


def _title(resource: Resource) -> str:
    resource_type = resource.get("resourceType")
    if resource_type == "DocumentReference":
        return str(resource.get("description") or _concept(resource.get("type")) or "Document")
    if resource_type == "DiagnosticReport":
        return _concept(resource.get("code")) or "Report"
    if resource_type == "Media":
        content = resource.get("content", {})
        return str(content.get("title") or _concept(resource.get("modality")) or "Recording")
    if resource_type == "ImagingStudy":
        modalities = ", ".join(m.get("code", "") for m in resource.get("modality", []) if m.get("code"))
        return str(resource.get("description") or modalities or "Imaging study")
    return str(resource_type)


def _date(resource: Resource) -> str:
    for key in ("date", "effectiveDateTime", "createdDateTime", "started", "issued"):
        if resource.get(key):
            return str(resource[key])[:16].replace("T", " ")
    return ""


def _concept(concept: Resource | None) -> str:
    if not concept:
        return ""
    if concept.get("text"):
        return str(concept["text"])
    return next((str(c.get("display") or c.get("code")) for c in concept.get("coding", [])
                 if c.get("display") or c.get("code")), "")


def _negated(date: str) -> tuple[int, ...]:
    return tuple(-ord(c) for c in date)
