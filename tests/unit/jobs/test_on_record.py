"""Whether the record already holds an analysis: a result's derivedFrom names the input, its write's
Provenance names the input's version and the pipeline (activity text). The results come from the
write-back planner; the Provenances are written by hand, as a FHIR server returns them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fhir_mappers import activity_pipeline
from plugin.jobs import JobRunner, JobStore, Recorded, ResultOnRecord, analysed_by, analysed_versions
from plugin.results import SourceRef
from plugin.writeback import WriteOutcome, build_transaction, plan_resources
from tests.support.pipelines import fixed_pipeline, fixed_result
from tests.unit.jobs.fake_ehr import FakeEhr

PATIENT = "7"
SOURCE = {"resourceType": "DocumentReference", "id": "5", "meta": {"versionId": "2"}}


def _results(first_id: int, source: str = "DocumentReference/5", *, signed: int = 0) -> list[ResultOnRecord]:
    return [ResultOnRecord(f"Observation/{first_id + n}", source, n < signed, n >= signed) for n in range(3)]


def _write(results: list[ResultOnRecord], activity: str, *entities: str) -> dict[str, Any]:
    return {"resourceType": "Provenance",
            "target": [{"reference": f"{r.reference}/_history/1"} for r in results],
            "activity": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                                     "code": "CREATE"}], "text": activity},
            "entity": [{"role": "source", "what": {"reference": e}} for e in entities]}


def test_results_of_the_same_pipeline_for_the_current_version_are_an_analysis() -> None:
    results = _results(100, signed=1)
    recorded = analysed_versions(results, [_write(results, "chartlight documents pipeline 1.0",
                                                  "DocumentReference/5/_history/2")])
    assert recorded == {("DocumentReference/5", "2"): Recorded(3, 1, 2, frozenset({"documents"}))}
    assert analysed_by(recorded, "documents", SOURCE)


def test_another_pipelines_results_do_not_count() -> None:
    results = _results(100)
    recorded = analysed_versions(results, [_write(results, "chartlight speech pipeline 1",
                                                  "DocumentReference/5/_history/2")])
    assert not analysed_by(recorded, "documents", SOURCE)


def test_results_of_an_older_version_say_nothing_about_the_new_one() -> None:
    results = _results(100)
    recorded = analysed_versions(results, [_write(results, "chartlight documents pipeline 1.0",
                                                  "DocumentReference/5/_history/1")])
    assert not analysed_by(recorded, "documents", SOURCE)
    assert analysed_by(recorded, "documents", {**SOURCE, "meta": {"versionId": "1"}})


def test_a_new_pipeline_version_is_the_same_pipeline() -> None:
    """A job's key leaves the pipeline version out; so does the record's answer."""
    results = _results(100)
    recorded = analysed_versions(results, [_write(results, "chartlight documents pipeline 0.9+prompt.abc; "
                                                  "page 2 rotated", "DocumentReference/5/_history/2")])
    assert analysed_by(recorded, "documents", SOURCE)


def test_a_review_provenance_names_no_pipeline_and_a_rerun_counts_each_result_once() -> None:
    results = _results(100)
    first = _write(results, "chartlight documents pipeline 1.0", "DocumentReference/5/_history/2")
    rerun = _write(results[:1], "chartlight documents pipeline 1.1", "DocumentReference/5/_history/2")
    review = {"resourceType": "Provenance", "target": [{"reference": "Observation/100/_history/2"}],
              "activity": {"text": "Approved by clinician"},
              "entity": [{"role": "revision", "what": {"reference": "Observation/100/_history/1"}}]}
    recorded = analysed_versions(results, [first, rerun, review])
    assert recorded[("DocumentReference/5", "2")].results == 3


def test_a_results_provenance_without_pipeline_text_does_not_stop_an_analysis() -> None:
    """Results another system wrote, or a Provenance whose text is not chartlight's: shown by the
    app as on the record, but no pipeline's analysis is skipped for them."""
    results = _results(100)
    recorded = analysed_versions(results, [_write(results, "imported", "DocumentReference/5/_history/2")])
    assert recorded[("DocumentReference/5", "2")].results == 3
    assert not analysed_by(recorded, "documents", SOURCE)


def test_the_write_back_names_its_pipeline_as_the_record_reads_it() -> None:
    result = fixed_result(SourceRef("DocumentReference", "5", "2"))
    planned = plan_resources(result, subject=f"Patient/{PATIENT}")
    bundle = build_transaction(result, planned, {}, WriteOutcome(path="observations"),
                               base_url="https://ehr.example.org/fhir", now=datetime(2026, 12, 5, tzinfo=UTC))
    assert bundle is not None
    [provenance] = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Provenance"]
    assert activity_pipeline(provenance) == result.pipeline == "test-fixed"


def test_the_provenance_names_the_jobs_pipeline_so_imaging_tasks_stay_apart(tmp_path: Path) -> None:
    """Every imaging task writes results of pipeline "imaging"; its job's name (imaging-question-…)
    is what the write's Provenance names, so a question's answer on the record never stands for the
    findings read of the same study."""
    ehr = FakeEhr("http://ehr-a.test/fhir")
    ehr.add_source("7", "Patient/1")
    store = JobStore(f"sqlite:///{tmp_path}/jobs.db")
    store.submit(pipeline="imaging-question-0123456789", source_type="DocumentReference", source_id="7",
                 source_version="1", subject="Patient/1", fhir_base_url=ehr.base)
    JobRunner(store, {"imaging-question-0123456789": fixed_pipeline()},
              lambda job: ehr.client()).run_until_idle()
    [transaction] = ehr.transactions
    [provenance] = [e["resource"] for e in transaction["entry"]
                    if e["resource"]["resourceType"] == "Provenance"]
    assert activity_pipeline(provenance) == "imaging-question-0123456789"
