"""chartlight's AI results as a card needs them, read back from the FHIR resources that
fhir_mappers wrote (docs/fhir-profile.md): what was found, how it was flagged, where the evidence
is, which model wrote it, whether a clinician has signed it. Pure: resources in, values out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from fhir_mappers import AIAST_CODE, TEST_WEIGHTS_CODE
from fhir_mappers.systems import (
    CS_CHANGE_FROM_PRIOR,
    CS_DOCUMENT_KIND,
    CS_RUN_KIND,
    EXT_DERIVED_FROM,
    EXT_EVIDENCE_AUDIO,
    EXT_EVIDENCE_IMAGE,
    EXT_EVIDENCE_TEXT,
    EXT_GENERATED_BY,
    OBSERVATION_CATEGORY,
    SID_RESULT,
    V2_0074,
)

Resource = dict[str, Any]
Severity = Literal["critical", "abnormal", "normal"]
CRITICAL_FLAGS = frozenset({"HH", "LL", "AA"})
ABNORMAL_FLAGS = frozenset({"H", "L", "A"})
# Decisions a clinician made: results in these states are not shown as awaiting review.
REJECTED = frozenset({"entered-in-error", "cancelled"})


@dataclass(frozen=True)
class Evidence:
    """Where in the source a result was read, heard or seen, in words."""

    where: str
    quote: str = ""


@dataclass(frozen=True)
class Model:
    name: str
    version: str
    display: str = ""
    test_weights: bool = False

    @property
    def label(self) -> str:
        return f"{self.display or self.name} {self.version}".strip()


@dataclass(frozen=True)
class AiResult:
    reference: str  # "Observation/12"
    resource: Resource  # as the server holds it
    kind: Literal["value", "finding", "report", "document"]
    name: str
    value: str = ""
    flags: tuple[str, ...] = ()
    reference_range: str = ""
    evidence: tuple[Evidence, ...] = ()
    source: str = ""  # the analysed input, "DocumentReference/5"
    device: str = ""  # "Device/3"
    test_weights: bool = False
    effective: str = ""  # FHIR dateTime
    category: str = ""  # laboratory, imaging, ... (Observation); LAB, RAD (DiagnosticReport)
    body_site: str = ""
    change: str = ""  # change from the prior study: new, improved, stable, worsened, resolved
    members: tuple[str, ...] = ()  # a report's result references

    @property
    def status(self) -> str:
        status: str = self.resource.get("docStatus" if self.kind == "document" else "status", "")
        return status

    @property
    def preliminary(self) -> bool:
        if self.kind == "document":
            return (self.resource.get("docStatus") == "preliminary"
                    and self.resource.get("status") == "current")
        return self.status in {"preliminary", "registered", "partial"}

    @property
    def severity(self) -> Severity:
        if CRITICAL_FLAGS & set(self.flags):
            return "critical"
        if ABNORMAL_FLAGS & set(self.flags):
            return "abnormal"
        return "normal"


def is_chartlight_result(resource: Resource, patient_id: str, fhir_base: str | None = None) -> bool:
    """Written by chartlight (our identifier and the AI label) about this patient, and not
    rejected by a clinician. With `fhir_base` given (a hook: the caller's allow-listed server, ""
    when unknown), an absolute subject counts only when it is that server's patient: the same id
    on another server is another person."""
    ours = any(i.get("system") == SID_RESULT for i in resource.get("identifier", []))
    labelled = any(s.get("code") == AIAST_CODE for s in resource.get("meta", {}).get("security", []))
    subject = str(resource.get("subject", {}).get("reference", ""))
    if fhir_base is None:
        about = subject == f"Patient/{patient_id}" or subject.endswith(f"/Patient/{patient_id}")
    else:
        about = subject == f"Patient/{patient_id}" or (
            bool(fhir_base) and subject == f"{fhir_base.rstrip('/')}/Patient/{patient_id}")
    return ours and labelled and about and resource.get("status") not in REJECTED


def read_results(resources: list[Resource], patient_id: str, *,
                 fhir_base: str | None = None) -> list[AiResult]:
    """The chartlight results among `resources`, in a stable order (by reference)."""
    parsed = [_parse(r) for r in resources if is_chartlight_result(r, patient_id, fhir_base) and r.get("id")]
    unique = {result.reference: result for result in parsed if result is not None}
    return [unique[ref] for ref in sorted(unique)]


def read_models(devices: list[Resource]) -> dict[str, Model]:
    """The AI Devices by reference ("Device/3")."""
    models = {}
    for device in devices:
        names = {n.get("type"): n.get("name", "") for n in device.get("deviceName", [])}
        versions = [v.get("value", "") for v in device.get("version", [])]
        models[f"Device/{device.get('id')}"] = Model(
            name=names.get("model-name") or device.get("modelNumber", "") or "unnamed model",
            version=versions[0] if versions else "",
            display=names.get("user-friendly-name", ""),
            test_weights=_has_test_tag(device))
    return models


def local_reference(reference: str) -> str:
    """"Device/3" from "Device/3", "https://ehr/fhir/Device/3" or "Device/3/_history/2"."""
    parts = [p for p in reference.split("/_history/")[0].split("/") if p]
    return "/".join(parts[-2:]) if len(parts) >= 2 else reference


def _parse(resource: Resource) -> AiResult | None:
    resource_type = resource.get("resourceType")
    reference = f"{resource_type}/{resource['id']}"
    test = _has_test_tag(resource)
    if resource_type == "Observation":
        return _observation(resource, reference, test)
    if resource_type == "DiagnosticReport":
        return AiResult(
            reference=reference, resource=resource, test_weights=test, kind="report",
            name=_concept_text(resource.get("code")) or "AI report", value=resource.get("conclusion", ""),
            source=_extension_reference(resource, EXT_DERIVED_FROM),
            device=_extension_reference(resource, EXT_GENERATED_BY),
            effective=resource.get("effectiveDateTime", ""),
            category=_first_code(resource.get("category"), V2_0074),
            members=tuple(local_reference(r.get("reference", "")) for r in resource.get("result", [])))
    if resource_type == "DocumentReference":
        related = resource.get("context", {}).get("related", [])
        authors = [local_reference(a.get("reference", "")) for a in resource.get("author", [])]
        return AiResult(
            reference=reference, resource=resource, test_weights=test, kind="document",
            name=resource.get("description", "") or _concept_text(resource.get("type")),
            value=_first_code([resource.get("type", {})], CS_DOCUMENT_KIND),
            source=local_reference(related[0].get("reference", "")) if related else "",
            device=next((a for a in authors if a.startswith("Device/")), ""),
            effective=resource.get("date", ""))
    return None


def _observation(resource: Resource, reference: str, test: bool) -> AiResult:
    derived = [local_reference(d.get("reference", "")) for d in resource.get("derivedFrom", [])]
    category = _first_code(resource.get("category"), OBSERVATION_CATEGORY)
    flags = tuple(c.get("code", "") for concept in resource.get("interpretation", [])
                  for c in concept.get("coding", []) if c.get("code"))
    change = ""
    for component in resource.get("component", []):
        change = change or _first_code([component.get("valueCodeableConcept", {})], CS_CHANGE_FROM_PRIOR)
    return AiResult(
        reference=reference, resource=resource, test_weights=test,
        kind="finding" if category in {"imaging", "exam"} and "valueString" in resource
        and "referenceRange" not in resource else "value",
        name=_concept_text(resource.get("code")) or "AI result", value=_value_text(resource), flags=flags,
        reference_range=_range_text(resource.get("referenceRange", [])),
        evidence=tuple(e for e in (_evidence(x) for x in resource.get("extension", [])) if e is not None),
        source=derived[0] if derived else _extension_reference(resource, EXT_DERIVED_FROM),
        device=local_reference(resource.get("device", {}).get("reference", "")),
        effective=resource.get("effectiveDateTime", ""), category=category,
        body_site=_concept_text(resource.get("bodySite")), change=change)


def _value_text(resource: Resource) -> str:
    if "valueQuantity" in resource:
        quantity = resource["valueQuantity"]
        number = f"{quantity.get('comparator', '')}{quantity.get('value', '')}"
        unit = quantity.get("unit") or quantity.get("code") or ""
        return f"{number} {unit}".strip()
    if "valueString" in resource:
        return str(resource["valueString"])
    if "valueCodeableConcept" in resource:
        return _concept_text(resource["valueCodeableConcept"])
    return ""


def _range_text(ranges: list[Resource]) -> str:
    if not ranges:
        return ""
    first = ranges[0]
    if first.get("text"):
        return str(first["text"])
    low, high = first.get("low", {}).get("value"), first.get("high", {}).get("value")
    return f"{'' if low is None else low}-{'' if high is None else high}".strip("-")


def _evidence(extension: Resource) -> Evidence | None:
    url = extension.get("url")
    if url not in (EXT_EVIDENCE_TEXT, EXT_EVIDENCE_AUDIO, EXT_EVIDENCE_IMAGE):
        return None
    parts = {p.get("url"): next((v for k, v in p.items() if k.startswith("value")), None)
             for p in extension.get("extension", [])}
    quote = str(parts.get("quote") or "")
    if url == EXT_EVIDENCE_TEXT:
        where = f"page {parts.get('page')}"
    elif url == EXT_EVIDENCE_AUDIO:
        where = f"audio {_clock(parts.get('start'))}–{_clock(parts.get('end'))}"
    else:
        bits = [f"instance …{str(parts.get('instance', ''))[-12:]}"]
        if parts.get("frame") is not None:
            bits.append(f"frame {parts['frame']}")
        if parts.get("slice") is not None:
            bits.append(f"slice {parts['slice']}")
        if parts.get("box"):
            bits.append(f"box {parts['box']} px")
        where = ", ".join(bits)
    return Evidence(where=where, quote=quote)


def _clock(seconds: Any) -> str:
    try:
        total = float(seconds)
    except (TypeError, ValueError):
        return "?"
    return f"{int(total // 60)}:{total % 60:04.1f}"


def _has_test_tag(resource: Resource) -> bool:
    return any(t.get("system") == CS_RUN_KIND and t.get("code") == TEST_WEIGHTS_CODE
               for t in resource.get("meta", {}).get("tag", []))


def _concept_text(concept: Resource | None) -> str:
    if not concept:
        return ""
    if concept.get("text"):
        return str(concept["text"])
    for coding in concept.get("coding", []):
        if coding.get("display") or coding.get("code"):
            return str(coding.get("display") or coding.get("code"))
    return ""


def _first_code(concepts: list[Resource] | None, system: str) -> str:
    for concept in concepts or []:
        for coding in concept.get("coding", []):
            if coding.get("system") == system and coding.get("code"):
                return str(coding["code"])
    return ""


def _extension_reference(resource: Resource, url: str) -> str:
    for extension in resource.get("extension", []):
        if extension.get("url") == url:
            return local_reference(extension.get("valueReference", {}).get("reference", ""))
    return ""
