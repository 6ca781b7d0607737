"""The demo's per-input summary: counts per resource type, the first of each with its URL, test
output marked; failures keep their error; what is printed keeps every URL whole."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.console import Console

from plugin.analysis import AnalysisRun
from plugin.demo import input_summary, print_inputs
from plugin.jobs import Job, JobState

NOW = datetime(2026, 12, 4, tzinfo=UTC)
BASE = "http://127.0.0.1:18184/fhir"


def job(state: JobState, summary: dict[str, Any], error: str = "") -> Job:
    return Job(id=7, pipeline="speech", source_type="Media", source_id="1008", source_version="1",
               subject="Patient/1000", fhir_base_url=BASE, state=state, progress=1.0, progress_text="",
               attempts=1, next_attempt_at=NOW, error=error, summary=summary, created_at=NOW, updated_at=NOW)


def test_counts_first_urls_and_the_test_marker() -> None:
    done = job(JobState.SUCCEEDED, {
        "created": ["DocumentReference/1131/_history/1", "Provenance/1132/_history/1",
                    "Observation/1140/_history/1", "Observation/1141/_history/1"],
        "updated": ["Device/1130/_history/2"], "unchanged": ["Observation/1139/_history/3"],
        "model": {"name": "chartlight-test/tiny-medasr", "test_weights": True}})
    item = input_summary(done, BASE + "/")
    assert item["input"] == "Media/1008/_history/1" and item["test_output"] is True
    assert item["written"] == {"DocumentReference": 1, "Provenance": 1, "Observation": 2, "Device": 1}
    assert item["unchanged"] == {"Observation": 1} and item["kept_signed"] == {}
    assert item["open"]["Observation"] == f"{BASE}/Observation/1140"
    assert item["open"]["DocumentReference"] == f"{BASE}/DocumentReference/1131"

    console = Console(width=60, record=True)
    failed = input_summary(job(JobState.FAILED, {}, "the FLAC is truncated"), BASE)
    print_inputs(AnalysisRun("speech", ()), [item, failed], console)
    text = console.export_text()
    written = "1 DocumentReference, 1 Provenance, 2 Observation, 1 Device written"
    assert f"TEST OUTPUT, not clinical — {written}" in text
    assert f"open {BASE}/Observation/1140" in text  # whole, though wider than the terminal
    assert "failed: the FLAC is truncated" in text and failed["error"] == "the FLAC is truncated"


def test_real_model_output_is_not_marked() -> None:
    item = input_summary(job(JobState.SUCCEEDED, {"created": ["Observation/1/_history/1"],
                                                  "model": {"name": "google/medasr"}}), BASE)
    assert item["test_output"] is False
