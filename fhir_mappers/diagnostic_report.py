"""Report groups -> FHIR R4 DiagnosticReport: a lab panel, an imaging or a pathology read that collects the
Observations of its items. A conclusion the model wrote is labelled inline as AI-asserted.
"""

from __future__ import annotations

from datetime import datetime

from plugin.results import ModelInfo, ReportGroup, SourceRef

from .datatypes import JsonDict, coding, concept, fhir_datetime
from .evidence import derived_from_extension
from .labels import ai_meta, inline_ai_label, with_test_marker
from .systems import EXT_GENERATED_BY, V2_0074

CATEGORY_DISPLAYS = {"LAB": "Laboratory", "RAD": "Radiology",
                     "PAT": "Pathology (gross & histopath, not surgical)"}


def to_diagnostic_report(
    group: ReportGroup,
    *,
    subject: str,
    source: SourceRef,
    identifier: JsonDict,
    model: ModelInfo,
    result_refs: list[str],
    status: str = "preliminary",
    effective: datetime | None = None,
    device: str | None = None,
) -> JsonDict:
    """One DiagnosticReport. `result_refs` are the references of the group's Observations as
    the caller writes them ("urn:uuid:..." in a transaction, "Observation/1" once stored), in
    the group's order. R4 DiagnosticReport has no derivedFrom, so the source is named by
    chartlight's derived-from extension."""
    model_conclusion = group.conclusion.strip()
    resource: JsonDict = {
        "resourceType": "DiagnosticReport",
        "meta": ai_meta(model, inline_labels=bool(model_conclusion)),
        "extension": [derived_from_extension(source), *_generated_by(device)],
        "identifier": [identifier, *_sr_identifier(group)],
        "status": status,
        "category": [concept(coding(V2_0074, group.category, CATEGORY_DISPLAYS[group.category]))],
        "code": concept(coding(group.code.system, group.code.code, group.code.display),
                        text=group.code.display),
        "subject": {"reference": subject},
    }
    when = group.effective or effective
    if when is not None:
        resource["effectiveDateTime"] = fhir_datetime(when)
    if result_refs:
        resource["result"] = [{"reference": ref} for ref in result_refs]
    conclusion = with_test_marker(model, model_conclusion)
    if conclusion:
        resource["conclusion"] = conclusion
        if model_conclusion:
            resource["_conclusion"] = {"extension": [inline_ai_label()]}
    return resource


def _sr_identifier(group: ReportGroup) -> list[JsonDict]:
    # The DICOM SR of this report in the PACS (plugin.pipelines.imaging.stow), named the way
    # ImagingStudy names DICOM UIDs. Ours comes first, so conditional writes still match on it.
    if not group.dicom_sr_uid:
        return []
    return [{"use": "secondary", "system": "urn:dicom:uid", "value": f"urn:oid:{group.dicom_sr_uid}",
             "type": {"text": "DICOM SR SOP Instance UID"}}]


def _generated_by(device: str | None) -> list[JsonDict]:
    # R4 DiagnosticReport has no element for the device that wrote it.
    return [] if device is None else [{"url": EXT_GENERATED_BY, "valueReference": {"reference": device}}]
