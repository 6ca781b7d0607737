"""Reading a patient's chart from the FHIR server for the digest: one search per resource type,
newest first where the type has a clinical date, within the client's page cap (fhir_max_pages).

A search that reaches the cap stops there and says so (the oldest resources of that type are
left out, which the digest's recency rule would drop first anyway); it does not fail the job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from plugin.errors import FhirResponseError
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
    capped: tuple[str, ...]  # "Observation: ..." for each search stopped short (page cap, refused)


def read_chart(client: FhirClient, patient_id: str, *,
               readable: Callable[[str], bool] = lambda resource_type: True) -> Chart:
    """Every resource of the digest's types for `patient_id` on `client`'s server. Types that
    `readable` (the granted scopes) excludes, or that the server refuses (401/403), are left out
    and named in `capped`."""
    found: list[Resource] = []
    capped: list[str] = []
    for resource_type, extra in SEARCHES:
        if not readable(resource_type):
            capped.append(f"{resource_type}: not read (the granted scopes do not include it)")
            continue
        try:
            found += _search(client, resource_type, patient_id, extra, capped)
        except FhirResponseError as exc:
            if exc.status not in (401, 403):
                raise
            capped.append(f"{resource_type}: not read (the server refused: HTTP {exc.status})")
    return Chart(tuple(found), tuple(capped))


def _search(client: FhirClient, resource_type: str, patient_id: str, extra: dict[str, str],
            capped: list[str]) -> list[Resource]:
    found: list[Resource] = []
    params: dict[str, str | int] = {"patient": patient_id, "_count": PAGE_SIZE, **extra}
    for pages, page in enumerate(client.search_pages(resource_type, params), start=1):
        found += [e["resource"] for e in page.get("entry", [])
                  if e.get("search", {}).get("mode", "match") == "match"
                  and e.get("resource", {}).get("resourceType") == resource_type]
        if pages >= client.max_pages and any(x.get("relation") == "next" for x in page.get("link", [])):
            capped.append(f"{resource_type}: more than {client.max_pages} page(s) of {PAGE_SIZE}; "
                          "the oldest were not read (fhir_max_pages)")
            break
    return found
