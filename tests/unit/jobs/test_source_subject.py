"""Which patient a source names, as the write path checks it before writing anything."""

from __future__ import annotations

import pytest

from plugin.writeback import WrongPatient, check_source_subject, subject_of

BASE = "http://ehr-a.test/fhir"


@pytest.mark.parametrize(("reference", "named"), [
    ("Patient/1", "Patient/1"),
    ("Patient/1/_history/3", "Patient/1"),
    (f"{BASE}/Patient/1", "Patient/1"),
    ("http://ehr-b.test/fhir/Patient/1", None),  # the same id on another server is another patient
    (f"{BASE}-other/Patient/1", None),
    ("#contained", None),
    ("Patient/1/extra", None),
    ("", None),
])
def test_subject_of(reference: str, named: str | None) -> None:
    assert subject_of({"subject": {"reference": reference}}, base_url=BASE + "/") == named


def test_a_source_without_a_literal_subject_names_no_patient() -> None:
    assert subject_of({"subject": {"identifier": {"value": "MRN-1"}}}, base_url=BASE) is None
    with pytest.raises(WrongPatient, match="Media/4 names no patient on this server as its subject, "
                                           "not Patient/1: nothing was written for it"):
        check_source_subject({"resourceType": "Media", "id": "4"}, subject="Patient/1", base_url=BASE)


def test_the_jobs_patient_passes() -> None:
    check_source_subject({"resourceType": "DocumentReference", "id": "7",
                          "subject": {"reference": "Patient/1"}}, subject="Patient/1", base_url=BASE)


def test_write_result_checks_the_source_before_sending_anything() -> None:
    from datetime import UTC, datetime

    from plugin.results import SourceRef
    from plugin.writeback import write_result
    from tests.support.pipelines import fixed_result
    from tests.unit.jobs.fake_ehr import FakeEhr

    ehr = FakeEhr(BASE)
    ehr.add_source("8", "Patient/2")
    adapter_client = ehr.client()
    with pytest.raises(WrongPatient, match="DocumentReference/8 names Patient/2"):
        write_result(adapter_client, fixed_result(SourceRef("DocumentReference", "8", "1")),
                     subject="Patient/1", now=datetime.now(UTC), source=ehr.sources["DocumentReference/8"])
    assert ehr.transactions == []


def test_a_patient_source_names_itself() -> None:
    """The summary pipeline's source is the Patient: it is its own subject, and no other's."""
    check_source_subject({"resourceType": "Patient", "id": "1"}, subject="Patient/1", base_url=BASE)
    with pytest.raises(WrongPatient, match="Patient/2 names Patient/2 as its subject, not Patient/1"):
        check_source_subject({"resourceType": "Patient", "id": "2"}, subject="Patient/1", base_url=BASE)
