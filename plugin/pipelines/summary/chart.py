"""Reading a patient's chart from the FHIR server for the digest: one search per resource type,
newest first where the type has a clinical date, within the client's page cap (fhir_max_pages).

A search that reaches the cap stops there and says so (the oldest resources of that type are
left out, which the digest's recency rule would drop first anyway); it does not fail the job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from plugin.fhir import FhirClient

Resource = dict[str, Any]
PAGE_SIZE = 100
# (resource type, extra search parameters): newest first where a date orders them.
SEARCHES: tuple[tuple[str, dict[str, str]], ...] = (
    ("Condition", {}),
    ("AllergyIntolerance", {}),
    ("MedicationRequest", {}),
    ("MedicationStatement", {}),
    ("Observation", {"_sort": "-date"}),
    ("DiagnosticReport", {"_sort": "-date"}),
    ("DocumentReference", {"_sort": "-date"}),
)


@dataclass(frozen=True)
class Chart:
    resources: tuple[Resource, ...]
    capped: tuple[str, ...]  # "Observation: ..." for each search stopped at the page cap


def read_chart(client: FhirClient, patient_id: str) -> Chart:
    """Every resource of the digest's types for `patient_id` on `client`'s server."""
    found: list[Resource] = []
    capped: list[str] = []
    for resource_type, extra in SEARCHES:
        params: dict[str, str | int] = {"patient": patient_id, "_count": PAGE_SIZE, **extra}
        for pages, page in enumerate(client.search_pages(resource_type, params), start=1):
            found += [e["resource"] for e in page.get("entry", [])
                      if e.get("search", {}).get("mode", "match") == "match"
                      and e.get("resource", {}).get("resourceType") == resource_type]
            if pages >= client.max_pages and any(x.get("relation") == "next" for x in page.get("link", [])):
                capped.append(f"{resource_type}: more than {client.max_pages} page(s) of {PAGE_SIZE}; "
                              "the oldest were not read (fhir_max_pages)")
                break
    return Chart(tuple(found), tuple(capped))
