"""Which input versions the record holds results of: a result's derivedFrom names the input, the
write's Provenance names its version. Resources come from the write-back planner (fhir_mappers);
the Provenances are written here by hand as a FHIR server returns them."""

from __future__ import annotations

from typing import Any

from plugin.results import SourceRef
from plugin.writeback import plan_resources
from smart_launch.views.record import Recorded, analysed_versions
from smart_launch.views.results import review_items
from tests.support.pipelines import fixed_result

PATIENT = "7"


def _written(source: SourceRef, first_id: int) -> list[dict[str, Any]]:
    planned = plan_resources(fixed_result(source), subject=f"Patient/{PATIENT}")
    return [{**p.resource, "id": str(first_id + n), "meta": {**p.resource.get("meta", {}), "versionId": "1"}}
            for n, p in enumerate(planned)]


def _provenance(targets: list[dict[str, Any]], *entities: str) -> dict[str, Any]:
    return {"resourceType": "Provenance",
            "target": [{"reference": f"{r['resourceType']}/{r['id']}/_history/1"} for r in targets],
            "entity": [{"role": "source", "what": {"reference": e}} for e in entities]}


def test_results_count_for_the_version_their_write_names() -> None:
    resources = _written(SourceRef("DocumentReference", "5", "2"), 100)
    items = review_items(resources, [], PATIENT)
    found = analysed_versions(items, [_provenance(resources, "DocumentReference/5/_history/2")])
    assert found == {("DocumentReference/5", "2"): Recorded(len(items), 0, len(items))}


def test_a_prior_study_named_by_the_write_is_not_counted_as_analysed() -> None:
    resources = _written(SourceRef("ImagingStudy", "9", "1"), 200)
    items = review_items(resources, [], PATIENT)
    provenance = _provenance(resources, "ImagingStudy/9/_history/1", "ImagingStudy/4/_history/3")
    assert set(analysed_versions(items, [provenance])) == {("ImagingStudy/9", "1")}


def test_results_without_their_write_provenance_say_nothing() -> None:
    resources = _written(SourceRef("DocumentReference", "5", "2"), 300)
    items = review_items(resources, [], PATIENT)
    result = f"Observation/{resources[0]['id']}"
    review = {"resourceType": "Provenance", "target": [{"reference": result}],
              "entity": [{"role": "revision", "what": {"reference": f"{result}/_history/1"}}]}
    assert analysed_versions(items, [review]) == {}
