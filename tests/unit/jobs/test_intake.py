"""Queueing a patient's inputs: what cannot be queued is named in a WARNING and counted."""

from __future__ import annotations

from pathlib import Path

import pytest

from plugin.jobs import JobStore, queue_sources

EHR_A = "http://ehr-a.test/fhir"


def test_an_input_without_a_version_is_skipped_with_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = JobStore(f"sqlite:///{tmp_path}/jobs.db")
    sources = [{"resourceType": "DocumentReference", "id": "1", "meta": {"versionId": "3"}},
               {"resourceType": "DocumentReference", "id": "2", "meta": {}},
               {"resourceType": "Media", "meta": {"versionId": "1"}}]
    intake = queue_sources(store, "documents", sources, subject="Patient/1", fhir_base_url=EHR_A)
    assert [j.source for j in intake.jobs] == ["DocumentReference/1/_history/3"]
    assert intake.skipped == ("DocumentReference/2: no meta.versionId", "Media/?: no id")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("DocumentReference/2: no meta.versionId" in w for w in warnings)
