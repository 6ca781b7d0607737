"""A clinician's review of AI results: approve (preliminary -> final) or reject
(entered-in-error), each recorded with a Provenance naming the clinician as verifier."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fhir_mappers import AIAST_CODE, to_review_provenance
from plugin.errors import InputError
from plugin.fhir import FhirClient

Resource = dict[str, Any]
REVIEWABLE_TYPES = ("Observation", "DiagnosticReport", "DocumentReference")


def approve(client: FhirClient, reference: str, *, clinician: str, now: datetime) -> str:
    """Make an AI result final as signed by `clinician` ("Practitioner/7"). Returns the new
    versioned reference."""
    return _review(client, reference, clinician=clinician, now=now, decision="approve", reason=None)


def reject(client: FhirClient, reference: str, *, clinician: str, reason: str,
           now: datetime) -> str:
    """Mark an AI result entered-in-error with the clinician's reason."""
    if not reason.strip():
        raise InputError(reference, "a rejection needs a reason")
    return _review(client, reference, clinician=clinician, now=now, decision="reject",
                   reason=reason)


def _review(client: FhirClient, reference: str, *, clinician: str, now: datetime,
            decision: Literal["approve", "reject"], reason: str | None) -> str:
    resource_type, _, resource_id = reference.partition("/")
    if resource_type not in REVIEWABLE_TYPES or not resource_id or "/" in resource_id:
        raise InputError(reference, f"only {', '.join(REVIEWABLE_TYPES)} results can be reviewed")
    current = client.read(resource_type, resource_id)
    if not any(s.get("code") == AIAST_CODE for s in current.get("meta", {}).get("security", [])):
        raise InputError(reference, "not labelled as AI output; chartlight reviews only its own results")
    if not _is_preliminary(current):
        raise InputError(reference, "already reviewed (not preliminary)")
    changed = _with_decision(current, decision, reason, clinician, now)
    provenance = to_review_provenance(target=reference, clinician=clinician, recorded=now,
                                      decision=decision, reason=reason)
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"{client.base_url}/{reference}", "resource": changed,
         "request": {"method": "PUT", "url": reference,
                     "ifMatch": f'W/"{current["meta"]["versionId"]}"'}},
        {"resource": provenance, "request": {"method": "POST", "url": "Provenance"}},
    ]}
    response = client.transaction(bundle)
    location: str = response["entry"][0]["response"]["location"]
    return location.removeprefix(client.base_url + "/")


def _is_preliminary(resource: Resource) -> bool:
    if resource["resourceType"] == "DocumentReference":
        return resource.get("docStatus") == "preliminary" and resource.get("status") == "current"
    return resource.get("status") in {"preliminary", "registered", "partial"}


def _with_decision(resource: Resource, decision: str, reason: str | None, clinician: str,
                   now: datetime) -> Resource:
    changed = {k: v for k, v in resource.items() if k != "meta"}
    changed["meta"] = {k: v for k, v in resource["meta"].items() if k in ("security", "tag")}
    if resource["resourceType"] == "DocumentReference":
        if decision == "approve":
            changed["docStatus"] = "final"
            changed["authenticator"] = {"reference": clinician}
        else:
            changed["status"] = "entered-in-error"
    else:
        changed["status"] = "final" if decision == "approve" else "entered-in-error"
    if reason and resource["resourceType"] == "Observation":
        changed["note"] = [*resource.get("note", []),
                           {"authorReference": {"reference": clinician}, "time": now.isoformat(),
                            "text": f"Rejected: {reason}"}]
    return changed
