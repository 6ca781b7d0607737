"""Write one pipeline result back to the FHIR server: one transaction, idempotent, reviewable.

Every resource carries a deterministic identifier (fhir_mappers.identifiers). Before writing, the
server is asked what already exists under those identifiers, and each planned resource is:
- created (conditional create on its identifier) when absent,
- updated (PUT with If-Match on the version it was compared with) when its content differs — a
  new model or prompt version becomes a new version of the same resource,
- left alone when identical — so a re-run writes nothing, not even a Provenance,
- left alone when a clinician has signed or rejected it: a re-run never changes their decision.
What is written goes in one transaction with the model's Device and one Provenance.

Results are written only under the patient the source resource itself names: given the source
as read at the analysed version, a source whose `subject` is not the target patient on this
server fails the write (WrongPatient) before anything is sent.

When the server or the granted scopes refuse Observation writes, the structured results travel
as a JSON attachment of a DocumentReference instead ("document-only"); when writes are refused
entirely nothing is written ("not-written") and the reason is returned for the app to show. The
granted scopes travel with the client (`FhirClient.granted_scopes`: a SMART session's, the hook's,
or the service's `fhir_token_scopes`); `write_grant` reads what they allow.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from fhir_mappers import (
    STRUCTURED_RESULTS_KEY,
    identifier_query,
    item_identifier,
    pipeline_activity,
    report_identifier,
    structured_results_identifier,
    to_device,
    to_diagnostic_report,
    to_document_reference,
    to_observation,
    to_provenance,
    to_structured_results_document,
)
from plugin.errors import ChartlightError, FhirError, FhirResponseError
from plugin.fhir import FhirClient
from plugin.results import Finding, MeasuredValue, Narrative, PipelineResult
from plugin.scopes import GrantedScopes

log = logging.getLogger(__name__)

Resource = dict[str, Any]
WritePath = Literal["observations", "document-only", "not-written"]
REFUSAL_STATUSES = frozenset({403, 405, 422})
DEVICE_KEY = "device"  # mappers name the model's Device "@device"; resolved like other refs

# Statuses that mean a person decided: never overwritten by a re-run.
SIGNED_STATUS = {
    "Observation": {"final", "amended", "corrected", "cancelled", "entered-in-error"},
    "DiagnosticReport": {"final", "amended", "corrected", "appended", "cancelled",
                         "entered-in-error"},
}
SIGNED_DOC_STATUS = {"final", "amended", "entered-in-error"}


class WrongPatient(ChartlightError):
    """The source resource does not name the patient the results were to be written for."""


@dataclass(frozen=True)
class Planned:
    """One resource we want on the server, before we know what the server already has."""

    key: str
    resource: Resource

    @property
    def identifier(self) -> Resource:
        ident: Resource = self.resource["identifier"][0]
        return ident

    @property
    def full_url(self) -> str:
        return _urn(_ident_key(self.identifier))


@dataclass
class WriteOutcome:
    path: WritePath
    created: list[str] = field(default_factory=list)  # "Type/id/_history/v"
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    kept_signed: list[str] = field(default_factory=list)
    provenance: str | None = None
    reason: str = ""

    @property
    def written(self) -> list[str]:
        return self.created + self.updated


@dataclass(frozen=True)
class WriteGrant:
    """What the granted scopes let a write of one result do."""

    writes: bool = True  # the documents and their Provenance
    observations: bool = True  # the Observations (and DiagnosticReports) as well


def write_grant(scopes: GrantedScopes | None, result: PipelineResult) -> WriteGrant:
    """Unknown scopes (None) allow everything: the server decides, and a refusal degrades.
    Every write creates a Provenance and our writes start as creates, so `c` decides."""
    if scopes is None:
        return WriteGrant()
    writes = scopes.can_create("DocumentReference") and scopes.can_create("Provenance")
    observations = (writes and scopes.can_create("Observation")
                    and (not result.reports or scopes.can_create("DiagnosticReport")))
    return WriteGrant(writes=writes, observations=observations)


def write_result(
    client: FhirClient,
    result: PipelineResult,
    *,
    subject: str,
    now: datetime,
    on_behalf_of: str | None = None,
    observations_allowed: bool | None = None,
    writes_allowed: bool | None = None,
    source: Resource | None = None,
    job_pipeline: str = "",
) -> WriteOutcome:
    """Write `result` for patient `subject` ("Patient/1"). `observations_allowed` and
    `writes_allowed` default to what the client's granted scopes allow (`write_grant`); the
    server may refuse more. `source`, the analysed resource as read from the server at its
    version, must name `subject`. `job_pipeline`, the job's pipeline name, is the one the
    Provenance names (default `result.pipeline`; they differ for an imaging task other than
    findings), so the record tells which analysis ran (plugin.jobs.on_record)."""
    if source is not None:
        check_source_subject(source, subject=subject, base_url=client.base_url)
    grant = write_grant(client.granted_scopes, result)
    writes_allowed = grant.writes if writes_allowed is None else writes_allowed
    observations_allowed = grant.observations if observations_allowed is None else observations_allowed
    if not writes_allowed:
        return WriteOutcome(path="not-written", reason="the granted scopes allow no writes")
    if observations_allowed:
        try:
            return _write(client, result, plan_resources(result, subject=subject), subject=subject,
                          now=now, on_behalf_of=on_behalf_of, path="observations",
                          job_pipeline=job_pipeline)
        except FhirResponseError as exc:
            if exc.status not in REFUSAL_STATUSES:
                raise
            log.warning("server refused the Observation write (HTTP %s); writing the document only",
                        exc.status)
            refusal = f"the server refused Observation writes (HTTP {exc.status}: {exc.diagnostics})"
    else:
        refusal = "the granted scopes do not allow Observation writes"
    try:
        outcome = _write(client, result, plan_document_only(result, subject=subject),
                         subject=subject, now=now, on_behalf_of=on_behalf_of, path="document-only",
                         job_pipeline=job_pipeline)
    except FhirResponseError as exc:
        if exc.status not in REFUSAL_STATUSES:
            raise
        return WriteOutcome(path="not-written", reason=f"{refusal}; the document write was refused "
                                                       f"too (HTTP {exc.status}: {exc.diagnostics})")
    outcome.reason = refusal
    return outcome


def check_source_subject(source: Resource, *, subject: str, base_url: str) -> None:
    """Raise WrongPatient unless `source.subject` is `subject` on the server at `base_url` (a
    relative reference, or an absolute one on that server; a version suffix is ignored). Pure."""
    where = f"{source.get('resourceType', '?')}/{source.get('id', '?')}"
    # A Patient is its own subject (the summary pipeline's source is the patient's record).
    named = where if source.get("resourceType") == "Patient" else subject_of(source, base_url=base_url)
    if named != subject:
        raise WrongPatient(f"{where} names {named or 'no patient on this server'} as its subject, "
                           f"not {subject}: nothing was written for it")


def subject_of(resource: Resource, *, base_url: str) -> str | None:
    """The "Type/id" a resource's `subject` references on the server at `base_url`; None when
    it has no literal reference or points at another server. Pure."""
    reference = (resource.get("subject") or {}).get("reference")
    if not isinstance(reference, str) or not reference:
        return None
    if "://" in reference:
        prefix = base_url.rstrip("/") + "/"
        if not reference.startswith(prefix):
            return None
        reference = reference[len(prefix):]
    parts = reference.split("/")
    if len(parts) not in (2, 4) or not all(parts) or (len(parts) == 4 and parts[2] != "_history"):
        return None
    return f"{parts[0]}/{parts[1]}"


def plan_resources(result: PipelineResult, *, subject: str) -> list[Planned]:
    """Observations for values and findings, DiagnosticReports for report groups,
    DocumentReferences for narratives. Pure."""
    planned: list[Planned] = []
    device = "@" + DEVICE_KEY
    for item in result.items:
        identifier = item_identifier(result, item.key)
        if isinstance(item, MeasuredValue | Finding):
            planned.append(Planned(item.key, to_observation(
                item, subject=subject, source=result.source, identifier=identifier,
                model=result.model, device=device)))
        elif isinstance(item, Narrative):
            planned.append(Planned(item.key, to_document_reference(
                item, subject=subject, source=result.source, identifier=identifier,
                model=result.model, date=None, device=device)))
    for group in result.reports:
        planned.append(Planned("report/" + group.key, to_diagnostic_report(
            group, subject=subject, source=result.source, identifier=report_identifier(result, group),
            model=result.model, result_refs=[f"@{key}" for key in group.item_keys],
            device=device)))
    return planned


def plan_document_only(result: PipelineResult, *, subject: str) -> list[Planned]:
    """The degraded plan: narratives plus one DocumentReference carrying every structured item."""
    planned = [p for p in plan_resources(result, subject=subject)
               if p.resource["resourceType"] == "DocumentReference"]
    if any(not isinstance(item, Narrative) for item in result.items):
        planned.append(Planned(STRUCTURED_RESULTS_KEY, to_structured_results_document(
            result, subject=subject, identifier=structured_results_identifier(result), date=None,
            device="@" + DEVICE_KEY)))
    return planned


def _write(
    client: FhirClient,
    result: PipelineResult,
    planned: list[Planned],
    *,
    subject: str,
    now: datetime,
    on_behalf_of: str | None,
    path: WritePath,
    job_pipeline: str = "",
) -> WriteOutcome:
    device = Planned(DEVICE_KEY, to_device(result.model))
    existing = _existing_by_identifier(client, [device, *planned])
    outcome = WriteOutcome(path=path)
    bundle = build_transaction(result, planned, existing, outcome, base_url=client.base_url,
                               now=now, on_behalf_of=on_behalf_of, job_pipeline=job_pipeline)
    if bundle is None:
        return outcome
    response = client.transaction(bundle)
    locations = [e.get("response", {}).get("location", "") for e in response.get("entry", [])]
    for entry, location in zip(bundle["entry"], locations, strict=True):
        location = _strip_base(location, client.base_url)
        method, resource_type = entry["request"]["method"], entry["resource"]["resourceType"]
        if resource_type == "Provenance":
            outcome.provenance = location
        elif resource_type != "Device":
            (outcome.created if method == "POST" else outcome.updated).append(location)
    return outcome


def build_transaction(
    result: PipelineResult,
    planned: list[Planned],
    existing: dict[str, Resource],
    outcome: WriteOutcome,
    *,
    base_url: str,
    now: datetime,
    on_behalf_of: str | None = None,
    job_pipeline: str = "",
) -> Resource | None:
    """The transaction that brings the server from `existing` (resources found by identifier)
    to `planned`; None when nothing needs writing. Records unchanged and signed resources in
    `outcome`. Pure."""
    device = Planned(DEVICE_KEY, to_device(result.model))
    refs = {p.key: _ref_for(p, existing) for p in [device, *planned]}
    entries: list[Resource] = []
    for p in planned:
        resource = _resolve_internal_refs(p.resource, refs)
        current = existing.get(_ident_key(p.identifier))
        if current is None:
            entries.append(_entry(p.full_url, resource, "POST", resource["resourceType"],
                                  if_none_exist=identifier_query(p.identifier)))
        elif _is_signed(current):
            outcome.kept_signed.append(_versioned(current))
        elif _same_content(resource, current):
            outcome.unchanged.append(_versioned(current))
        else:
            resource = {**resource, "id": current["id"]}
            entries.append(_entry(f"{base_url}/{resource['resourceType']}/{current['id']}",
                                  resource, "PUT", f"{resource['resourceType']}/{current['id']}",
                                  if_match=current["meta"]["versionId"]))
    if not entries:
        return None
    targets = [e["fullUrl"] if e["request"]["method"] == "POST" else e["request"]["url"]
               for e in entries]
    provenance = to_provenance(
        targets=targets, device=refs[DEVICE_KEY], sources=[result.source, *result.other_sources],
        instances=list(result.instances_used), frames=dict(result.frames_used), recorded=now,
        on_behalf_of=on_behalf_of,
        activity_text=pipeline_activity(job_pipeline or result.pipeline, result.pipeline_version,
                                        result.preparation),
    )
    entries.append(_entry(_urn("provenance", now.isoformat(), *targets), provenance, "POST",
                          "Provenance"))
    if _ident_key(device.identifier) not in existing:  # first use of this model version
        entries.insert(0, _entry(device.full_url, device.resource, "POST", "Device",
                                 if_none_exist=identifier_query(device.identifier)))
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _existing_by_identifier(client: FhirClient, planned: Iterable[Planned]) -> dict[str, Resource]:
    by_type: dict[str, list[Resource]] = {}
    for p in planned:
        by_type.setdefault(p.resource["resourceType"], []).append(p.identifier)
    found: dict[str, Resource] = {}
    for resource_type, identifiers in by_type.items():
        for start in range(0, len(identifiers), 40):  # keep the query string short
            chunk = identifiers[start:start + 40]
            query = ",".join(identifier_query(i).removeprefix("identifier=") for i in chunk)
            wanted = {_ident_key(i) for i in chunk}
            for resource in client.search(resource_type, {"identifier": query, "_count": 100}):
                for ident in resource.get("identifier", []):
                    key = _ident_key(ident)
                    if key in wanted:
                        if key in found:
                            # Not an HTTP failure and not transient: the job fails with this.
                            raise FhirError(f"two {resource_type} resources carry identifier {key}; "
                                            "fix the data before re-running", method="GET",
                                            url=f"{client.base_url}/{resource_type}")
                        found[key] = resource
    return found


def _ref_for(p: Planned, existing: dict[str, Resource]) -> str:
    current = existing.get(_ident_key(p.identifier))
    return f"{p.resource['resourceType']}/{current['id']}" if current else p.full_url


def _resolve_internal_refs(resource: Resource, refs: dict[str, str]) -> Resource:
    """Mappers name other planned resources as "@key"; replace with their real reference."""
    text = json.dumps(resource)
    if '"@' not in text:
        return resource
    resolved: Resource = json.loads(text, object_hook=lambda obj: (
        {**obj, "reference": refs[obj["reference"][1:]]}
        if isinstance(obj.get("reference"), str) and obj["reference"].startswith("@") else obj))
    return resolved


def _is_signed(resource: Resource) -> bool:
    if resource["resourceType"] == "DocumentReference":
        return (resource.get("docStatus") in SIGNED_DOC_STATUS
                or resource.get("status") == "entered-in-error")
    return resource.get("status") in SIGNED_STATUS.get(resource["resourceType"], set())


def _same_content(planned: Resource, current: Resource) -> bool:
    return _comparable(planned) == _comparable(current)


def _comparable(resource: Resource) -> Any:
    """Content that matters: no id, and of meta only the labels (security and tags)."""
    clean = {k: v for k, v in resource.items() if k not in {"id", "meta"}}
    meta = resource.get("meta", {})
    clean["meta"] = {k: meta[k] for k in ("security", "tag") if k in meta}
    return json.loads(json.dumps(clean, sort_keys=True))


def _entry(full_url: str, resource: Resource, method: str, url: str, *,
           if_none_exist: str | None = None, if_match: str | None = None) -> Resource:
    request: Resource = {"method": method, "url": url}
    if if_none_exist:
        request["ifNoneExist"] = if_none_exist
    if if_match:
        request["ifMatch"] = f'W/"{if_match}"'
    return {"fullUrl": full_url, "resource": resource, "request": request}


def _urn(*parts: str) -> str:
    """A deterministic urn:uuid for a transaction entry's fullUrl."""
    return "urn:uuid:" + str(uuid.uuid5(uuid.NAMESPACE_URL, "|".join(parts)))


def _ident_key(identifier: Resource) -> str:
    return f"{identifier.get('system', '')}|{identifier.get('value', '')}"


def _versioned(resource: Resource) -> str:
    return f"{resource['resourceType']}/{resource['id']}/_history/{resource['meta']['versionId']}"


def _strip_base(location: str, base_url: str) -> str:
    return location.removeprefix(base_url + "/")
