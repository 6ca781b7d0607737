"""Queue a patient's inputs as jobs, one per source version and pipeline. An input that cannot
be queued (no id or meta.versionId) is skipped with a WARNING naming it and counted, never
dropped silently; a job another process submits at the same instant is shared, not an error."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from plugin.jobs.store import Job, JobStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Intake:
    jobs: tuple[Job, ...]
    skipped: tuple[str, ...]  # "DocumentReference/7: no meta.versionId", one per input not queued


def queue_sources(store: JobStore, pipeline: str, sources: Iterable[dict[str, Any]], *, subject: str,
                  fhir_base_url: str) -> Intake:
    """Submit a job for each source (a FHIR resource found for `subject` on `fhir_base_url`)."""
    jobs, skipped = [], []
    for source in sources:
        reference = f"{source.get('resourceType', '?')}/{source.get('id') or '?'}"
        version = str((source.get("meta") or {}).get("versionId") or "")
        if not source.get("id") or not version:
            reason = f"{reference}: no {'id' if not source.get('id') else 'meta.versionId'}"
            log.warning("pipeline %s: %s on %s; not analysed (a job needs the exact version)",
                        pipeline, reason, fhir_base_url)
            skipped.append(reason)
            continue
        jobs.append(store.submit(pipeline=pipeline, source_type=source["resourceType"],
                                 source_id=source["id"], source_version=version, subject=subject,
                                 fhir_base_url=fhir_base_url))
    return Intake(tuple(jobs), tuple(skipped))
