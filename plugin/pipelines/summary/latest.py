"""The latest patient summary on the FHIR server, whether the chart changed since it was made, and
queueing a summary job (a refresh when it did). Cheap enough for a CDS hook: one search for the
summary, then one count per chart resource type of what changed after the chart it was made from.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from fhir_mappers.systems import CS_DOCUMENT_KIND
from plugin.fhir import FhirClient
from plugin.jobs import Job, JobState, JobStore
from plugin.pipelines.summary.chart import SEARCHES
from plugin.pipelines.summary.digest import is_excluded
from plugin.pipelines.summary.pipeline import PIPELINE

Resource = dict[str, Any]


@dataclass(frozen=True)
class LatestSummary:
    document: Resource  # the DocumentReference as the server has it
    markdown: str
    details: dict[str, Any]
    changed_since: tuple[str, ...]  # resource types with resources newer than the summarised chart

    @property
    def stale(self) -> bool:
        return bool(self.changed_since)

    @property
    def reference(self) -> str:
        return f"DocumentReference/{self.document['id']}"

    @property
    def test_output(self) -> bool:
        return any(t.get("code") == "test-weights" for t in (self.document.get("meta") or {}).get("tag", []))


def latest_summary(client: FhirClient, patient_id: str) -> LatestSummary | None:
    """The newest patient-summary DocumentReference of `patient_id`, or None."""
    found = next(client.search("DocumentReference", {
        "patient": patient_id, "type": f"{CS_DOCUMENT_KIND}|patient-summary",
        "_sort": "-_lastUpdated", "_count": 1}), None)
    if found is None:
        return None
    markdown, details = "", {}
    for content in found.get("content", []):
        attachment = content.get("attachment") or {}
        data = base64.b64decode(attachment.get("data", "")) if attachment.get("data") else b""
        if attachment.get("contentType", "").startswith("text/markdown"):
            markdown = data.decode("utf-8", "replace")
        elif attachment.get("contentType") == "application/json":
            details = json.loads(data or b"{}")
    since = str((details.get("digest") or {}).get("chart_last_updated") or "")
    return LatestSummary(found, markdown, details, changed_types(client, patient_id, since))


def changed_types(client: FhirClient, patient_id: str, since: str) -> tuple[str, ...]:
    """The chart resource types of `patient_id` with a resource updated after `since` (every
    type when `since` is empty). chartlight's own summaries and saved answers do not count."""
    if not since:
        return tuple(t for t, _ in SEARCHES)
    changed = []
    for resource_type, _ in SEARCHES:
        params: dict[str, str | int] = {"patient": patient_id, "_lastUpdated": f"gt{since}"}
        if resource_type == "DocumentReference":  # our own writes are DocumentReferences too
            page = next(client.search_pages(resource_type, {**params, "_count": 50}))
            newer = [e["resource"] for e in page.get("entry", []) if not is_excluded(e["resource"])]
            if newer or any(x.get("relation") == "next" for x in page.get("link", [])):
                changed.append(resource_type)
        elif int(next(client.search_pages(resource_type, {**params, "_summary": "count"})).get("total", 0)):
            changed.append(resource_type)
    return tuple(changed)


def queue_summary(store: JobStore, client: FhirClient, patient_id: str, *, refresh: bool = False,
                  session_id: str = "", on_behalf_of: str = "") -> Job:
    """The summary job of the patient's current version on `client`'s server: submitted, and
    with `refresh` queued again when it has already run (the chart changed since)."""
    patient = client.read("Patient", patient_id)
    job = store.submit(pipeline=PIPELINE, source_type="Patient", source_id=patient_id,
                       source_version=str((patient.get("meta") or {}).get("versionId") or ""),
                       subject=f"Patient/{patient_id}", fhir_base_url=client.base_url,
                       session_id=session_id, on_behalf_of=on_behalf_of)
    if refresh and job.state in (JobState.SUCCEEDED, JobState.FAILED):
        job = store.retry(job.id)
    return job


def refresh_if_changed(store: JobStore, client: FhirClient, patient_id: str) -> int:
    """Queue the summary again when the chart changed since the latest summary was made;
    returns 1 when it did (a patient without a summary gets one through the usual intake)."""
    latest = latest_summary(client, patient_id)
    if latest is None or not latest.stale:
        return 0
    job = queue_summary(store, client, patient_id, refresh=True)
    return 1 if job.state is JobState.QUEUED else 0
