"""The example Bundles of docs/fhir-profile.md are current and accepted by the sandbox."""

from __future__ import annotations

import pytest

from plugin.fhir import FhirClient
from plugin.sandbox.profile_examples import EXAMPLES, EXAMPLES_DIR, example_bundle, render

PATIENT = {"resourceType": "Patient", "id": "example-patient", "name": [{"family": "Example"}]}
SUBJECT = {"reference": "Patient/example-patient"}
ATTACHMENT = {"contentType": "application/pdf", "data": "JVBERi0xLjQ="}
SOURCES = [
    {"resourceType": "Practitioner", "id": "example-clinician", "name": [{"family": "Clinician"}]},
    {"resourceType": "DocumentReference", "id": "example-lab-pdf", "status": "current",
     "subject": SUBJECT, "content": [{"attachment": ATTACHMENT}]},
    {"resourceType": "Media", "id": "example-dictation", "status": "completed", "subject": SUBJECT,
     "content": {"contentType": "audio/wav", "data": "UklGRg=="}},
    {"resourceType": "ImagingStudy", "id": "example-cxr-current", "status": "available", "subject": SUBJECT},
    {"resourceType": "ImagingStudy", "id": "example-cxr-prior", "status": "available", "subject": SUBJECT},
    {"resourceType": "ImagingStudy", "id": "example-breast-slide", "status": "available", "subject": SUBJECT},
]


@pytest.mark.parametrize("pipeline", sorted(EXAMPLES))
def test_example_files_are_current(pipeline: str) -> None:
    on_disk = (EXAMPLES_DIR / f"{pipeline}-bundle.json").read_text(encoding="utf-8")
    assert on_disk == render(pipeline), "run: python -m plugin.sandbox.profile_examples"


@pytest.mark.sandbox
@pytest.mark.parametrize("pipeline", sorted(EXAMPLES))
def test_example_bundle_is_accepted_by_the_sandbox(fhir: FhirClient, pipeline: str) -> None:
    for resource in (PATIENT, *SOURCES):
        fhir.update(resource)
    response = fhir.transaction(example_bundle(pipeline))
    statuses = [entry["response"]["status"] for entry in response["entry"]]
    assert statuses and all(s.startswith(("200", "201")) for s in statuses)
    provenance = response["entry"][-1]["response"]["location"]
    assert provenance.startswith("Provenance/")
