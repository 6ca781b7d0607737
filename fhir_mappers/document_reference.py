"""Narratives (transcripts, report drafts, summaries) -> FHIR R4 DocumentReference with the text
inline; the DocumentReference shape shared with the structured-results document.

A DocumentReference points at its source with `context.related` (any resource type) and, when the
source is itself a DocumentReference, also `relatesTo` code `transforms` (R4 allows relatesTo only
between DocumentReferences).
"""

from __future__ import annotations

from datetime import datetime

from plugin.results import ModelInfo, Narrative, NarrativeKind, SourceRef

from .datatypes import JsonDict, attachment, coding, concept, fhir_instant
from .evidence import evidence_extensions
from .labels import ai_meta, with_test_marker
from .systems import CS_DOCUMENT_KIND, LOINC, US_CORE_DOCUMENTREFERENCE_CATEGORY

# DocumentReference.type: a LOINC document code plus chartlight's own kind.
NOTE = ("34109-9", "Note")
IMAGING_REPORT = ("18748-4", "Diagnostic imaging study")
LAB_REPORT = ("11502-2", "Laboratory report")  # used by the structured-results document
PROGRESS_NOTE = ("11506-3", "Progress note")
PATIENT_SUMMARY = ("60591-5", "Patient summary Document")
NARRATIVE_TYPES: dict[NarrativeKind, tuple[str, str]] = {
    "transcript": NOTE,
    "report-draft": IMAGING_REPORT,
    "summary": NOTE,
    "radiology-note": IMAGING_REPORT,
    "clinic-note": PROGRESS_NOTE,
    "patient-summary": PATIENT_SUMMARY,
    "chart-answer": NOTE,
}
DOCUMENT_KIND_DISPLAYS = {
    "transcript": "Transcript of dictation",
    "report-draft": "Report draft",
    "summary": "Summary",
    "radiology-note": "Structured radiology note from dictation",
    "clinic-note": "Structured clinic note (SOAP) from dictation",
    "structured-results": "Structured results",
    "patient-summary": "Patient summary (cited)",
    "chart-answer": "Answer to a question about the chart",
}


def to_document_reference(
    narrative: Narrative,
    *,
    subject: str,
    source: SourceRef,
    identifier: JsonDict,
    model: ModelInfo,
    date: datetime | None,
    doc_status: str = "preliminary",
    device: str | None = None,
) -> JsonDict:
    """One DocumentReference holding the narrative's text (and its JSON companion, if any).
    `date` (an aware datetime) must be stable across re-runs, or omitted: a changing date
    makes every re-run a new version."""
    body = narrative.text.encode("utf-8")
    content = [{"attachment": attachment(body, f"{narrative.media_type}; charset=utf-8",
                                         title=narrative.title)}]
    if narrative.details_json:
        content.append({"attachment": attachment(
            narrative.details_json.encode("utf-8"), "application/json",
            title=f"{narrative.title} (details)".strip())})
    loinc_code, loinc_display = NARRATIVE_TYPES[narrative.kind]
    return build_document(
        meta=ai_meta(model, dictated=narrative.dictated),
        extensions=evidence_extensions(narrative.evidence),
        identifier=identifier,
        doc_status=doc_status,
        type_=document_type(loinc_code, loinc_display, narrative.kind),
        subject=subject,
        date=date,
        description=with_test_marker(model, narrative.title),
        content=content,
        sources=[source],
        device=device,
    )


def build_document(
    *,
    meta: JsonDict,
    extensions: list[JsonDict],
    identifier: JsonDict,
    doc_status: str,
    type_: JsonDict,
    subject: str,
    date: datetime | None,
    description: str,
    content: list[JsonDict],
    sources: list[SourceRef],
    device: str | None = None,
) -> JsonDict:
    resource: JsonDict = {"resourceType": "DocumentReference", "meta": meta}
    if extensions:
        resource["extension"] = extensions
    resource["identifier"] = [identifier]
    resource["status"] = "current"
    resource["docStatus"] = doc_status
    resource["type"] = type_
    resource["category"] = [concept(
        coding(US_CORE_DOCUMENTREFERENCE_CATEGORY, "clinical-note", "Clinical Note"))]
    resource["subject"] = {"reference": subject}
    if date is not None:
        resource["date"] = fhir_instant(date)
    if device is not None:
        resource["author"] = [{"reference": device}]
    relates_to = [{"code": "transforms", "target": {"reference": s.reference}}
                  for s in sources[:1] if s.resource_type == "DocumentReference"]
    if relates_to:
        resource["relatesTo"] = relates_to
    if description.strip():
        resource["description"] = description.strip()
    resource["content"] = content
    resource["context"] = {"related": [{"reference": s.reference} for s in sources]}
    return resource


def document_type(loinc_code: str, loinc_display: str, kind: str) -> JsonDict:
    return concept(coding(LOINC, loinc_code, loinc_display),
                   coding(CS_DOCUMENT_KIND, kind, DOCUMENT_KIND_DISPLAYS[kind]))
