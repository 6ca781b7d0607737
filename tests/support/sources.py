"""A patient with one source document on a FHIR server, for tests that write results for it."""

from __future__ import annotations

import base64
from typing import Any

from plugin.fhir import FhirClient


def create_patient_with_document(fhir: FhirClient, run_id: str, family: str) -> tuple[str, dict[str, Any]]:
    """Returns the subject reference ("Patient/1") and the stored source DocumentReference."""
    patient = fhir.create({"resourceType": "Patient", "name": [{"family": f"{family}-{run_id[:8]}"}]})
    doc = fhir.create({
        "resourceType": "DocumentReference", "status": "current",
        "subject": {"reference": f"Patient/{patient['id']}"},
        "content": [{"attachment": {"contentType": "application/pdf",
                                    "data": base64.b64encode(f"%PDF {run_id}".encode()).decode()}}],
    })
    return f"Patient/{patient['id']}", doc
