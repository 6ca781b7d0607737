"""A clinician's review of AI results: approve (preliminary -> final), edit (the clinician's
value or text replaces the model's: final, or amended once already signed) or reject
(entered-in-error), each recorded with a Provenance naming the clinician as verifier.

An edit keeps the AI original twice over: the previous version stays in the server's history
(the review Provenance names it as the `revision` entity), and the resource itself carries the
model's first value in the `ai-original` extension (docs/fhir-profile.md)."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from fhir_mappers import AIAST_CODE, to_review_provenance
from fhir_mappers.datatypes import json_number
from fhir_mappers.systems import CS_REVIEW_DECISION, NAMESPACE
from plugin.errors import InputError
from plugin.fhir import FhirClient

Resource = dict[str, Any]
REVIEWABLE_TYPES = ("Observation", "DiagnosticReport", "DocumentReference")
# The model's own value, kept on a resource a clinician edited: value[x] of the type the model
# wrote (Quantity, string) or, for a document, the text of its first attachment.
EXT_AI_ORIGINAL = f"{NAMESPACE}/StructureDefinition/ai-original"
EDIT_DISPLAY = "Edited by clinician"
MAX_EDIT_CHARS = 100_000
_SIGNED = frozenset({"final", "amended", "corrected", "appended"})  # an edit of these amends


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


def edit(client: FhirClient, reference: str, new_value: str, *, clinician: str, now: datetime,
         comment: str = "") -> str:
    """Replace the model's value (Observation: the number of a Quantity, or the text of a
    string result; DiagnosticReport: the conclusion; DocumentReference: the text) with the
    clinician's. A preliminary result becomes final, a signed one amended. Returns the new
    versioned reference."""
    if not new_value.strip():
        raise InputError(reference, "an edit needs the new value")
    if len(new_value) > MAX_EDIT_CHARS:
        raise InputError(reference, f"the edited text is over {MAX_EDIT_CHARS} characters")
    current = _read_ours(client, reference)
    if _is_rejected(current):
        raise InputError(reference, "was rejected (entered-in-error); it cannot be edited")
    changed = _with_edit(current, reference, new_value.strip(), clinician, now, comment.strip())
    provenance = to_review_provenance(target=reference, clinician=clinician, recorded=now,
                                      decision="approve", reason=comment or None)
    provenance["activity"] = {"coding": [{"system": CS_REVIEW_DECISION, "code": "edit",
                                          "display": EDIT_DISPLAY}], "text": EDIT_DISPLAY}
    previous = f"{reference}/_history/{current['meta']['versionId']}"
    provenance["entity"] = [{"role": "revision", "what": {"reference": previous}}]
    return _commit(client, reference, current, changed, provenance)


def _read_ours(client: FhirClient, reference: str) -> Resource:
    resource_type, _, resource_id = reference.partition("/")
    if resource_type not in REVIEWABLE_TYPES or not resource_id or "/" in resource_id:
        raise InputError(reference, f"only {', '.join(REVIEWABLE_TYPES)} results can be reviewed")
    current = client.read(resource_type, resource_id)
    if not any(s.get("code") == AIAST_CODE for s in current.get("meta", {}).get("security", [])):
        raise InputError(reference, "not labelled as AI output; chartlight reviews only its own results")
    return current


def _review(client: FhirClient, reference: str, *, clinician: str, now: datetime,
            decision: Literal["approve", "reject"], reason: str | None) -> str:
    current = _read_ours(client, reference)
    if not _is_preliminary(current):
        raise InputError(reference, "already reviewed (not preliminary)")
    changed = _with_decision(current, decision, reason, clinician, now)
    provenance = to_review_provenance(target=reference, clinician=clinician, recorded=now,
                                      decision=decision, reason=reason)
    return _commit(client, reference, current, changed, provenance)


def _commit(client: FhirClient, reference: str, current: Resource, changed: Resource,
            provenance: Resource) -> str:
    """The changed resource (only if nobody changed it since it was read) and the review
    Provenance, in one transaction."""
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


def _is_rejected(resource: Resource) -> bool:
    return resource.get("status") in {"entered-in-error", "cancelled"}


def _with_edit(resource: Resource, reference: str, new_value: str, clinician: str, now: datetime,
               comment: str) -> Resource:
    changed = _unversioned(resource)
    resource_type = resource["resourceType"]
    if resource_type == "Observation":
        original, changed = _edited_observation(changed, reference, new_value)
        changed["status"] = "amended" if resource.get("status") in _SIGNED else "final"
        note = f"Edited by clinician (AI read: {_value_words(original)})"
        changed["note"] = [*resource.get("note", []),
                           {"authorReference": {"reference": clinician}, "time": now.isoformat(),
                            "text": f"{note}. {comment}" if comment else note}]
    elif resource_type == "DiagnosticReport":
        original = {"valueString": resource.get("conclusion", "")}
        changed["conclusion"] = new_value
        changed.pop("_conclusion", None)  # the inline AI label: the text is the clinician's now
        changed["status"] = "amended" if resource.get("status") in _SIGNED else "final"
    else:
        original = {"valueString": document_text(resource)}
        content = list(resource.get("content", []))
        if not content:
            raise InputError(reference, "the document has no text to edit")
        first = dict(content[0].get("attachment", {}))
        body = new_value.encode("utf-8")
        first.update(data=base64.b64encode(body).decode("ascii"), size=len(body),
                     hash=base64.b64encode(hashlib.sha1(body, usedforsecurity=False).digest())
                     .decode("ascii"))
        first.pop("url", None)
        changed["content"] = [{**content[0], "attachment": first}, *content[1:]]
        changed["docStatus"] = "amended" if resource.get("docStatus") in {"final", "amended"} \
            else "final"
        changed["authenticator"] = {"reference": clinician}
    kept = [e for e in resource.get("extension", []) if e.get("url") == EXT_AI_ORIGINAL]
    if not kept and any(v not in ("", None) for v in original.values()):
        changed["extension"] = [*resource.get("extension", []), {"url": EXT_AI_ORIGINAL, **original}]
    return changed


def _edited_observation(changed: Resource, reference: str,
                        new_value: str) -> tuple[Resource, Resource]:
    if "valueQuantity" in changed:
        try:
            number = Decimal(new_value.replace(",", ""))
        except InvalidOperation:
            raise InputError(reference, f"{new_value!r} is not a number (the result is a "
                                        "quantity)") from None
        if not number.is_finite():
            raise InputError(reference, f"{new_value!r} is not a finite number")
        original = {"valueQuantity": changed["valueQuantity"]}
        quantity = {k: v for k, v in changed["valueQuantity"].items() if k != "comparator"}
        changed["valueQuantity"] = {**quantity, "value": json_number(number)}
        # The model's flag and range check describe its own value, not the clinician's.
        changed.pop("interpretation", None)
        return original, changed
    if "valueString" in changed or "valueCodeableConcept" not in changed:
        original = {"valueString": changed.get("valueString", "")}
        changed["valueString"] = new_value
        return original, changed
    raise InputError(reference, "a coded result cannot be edited as text")


def _value_words(original: Resource) -> str:
    if "valueQuantity" in original:
        q = original["valueQuantity"]
        return f"{q.get('comparator', '')}{q.get('value', '')} {q.get('unit', '')}".strip()
    return str(original.get("valueString", ""))[:200]


def document_text(resource: Resource) -> str:
    """The text of a DocumentReference's first attachment, when it is inline."""
    for content in resource.get("content", [])[:1]:
        data = content.get("attachment", {}).get("data")
        if data:
            return base64.b64decode(data).decode("utf-8", errors="replace")
    return ""


def _unversioned(resource: Resource) -> Resource:
    """The resource without server-managed meta (keeping its labels), ready for a PUT."""
    changed = {k: v for k, v in resource.items() if k != "meta"}
    changed["meta"] = {k: v for k, v in resource["meta"].items() if k in ("security", "tag")}
    return changed


def _with_decision(resource: Resource, decision: str, reason: str | None, clinician: str,
                   now: datetime) -> Resource:
    changed = _unversioned(resource)
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
