"""FHIR R4 Provenance: one per AI write (AI Transparency AI-Provenance: the model Device as
author, the inputs at their exact versions, reason AIAST), and one per clinician review (the
clinician as verifier, the decision and its reason).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Literal

from plugin.results import SourceRef

from .datatypes import JsonDict, coding, concept, fhir_datetime, fhir_instant
from .evidence import frames_text
from .labels import aiast
from .systems import (
    AI_DEVICE_TYPE_CS,
    CS_REVIEW_DECISION,
    DICOM_UID,
    EXT_DICOM_FRAMES,
    PROVENANCE_PARTICIPANT_TYPE,
    V3_DATA_OPERATION,
)

REVIEW_DISPLAYS = {"approve": "Approved by clinician", "reject": "Rejected by clinician"}
# A write's activity text starts "chartlight <pipeline> pipeline <version>" (notes follow after
# "; "): written by pipeline_activity, read back by activity_pipeline.
_ACTIVITY = re.compile(r"chartlight (\S+) pipeline (\S+)")
AGENT_TYPE_DISPLAYS = {"author": "Author", "verifier": "Verifier"}


def _agent_type(code: str) -> JsonDict:
    return concept(coding(PROVENANCE_PARTICIPANT_TYPE, code, AGENT_TYPE_DISPLAYS[code]))


def to_provenance(
    *,
    targets: list[str],
    device: str,
    sources: list[SourceRef],
    recorded: datetime,
    on_behalf_of: str | None,
    activity_text: str,
    occurred: datetime | None = None,
    instances: list[str] | None = None,
    frames: dict[str, tuple[int, ...]] | None = None,
) -> JsonDict:
    """The Provenance of one write: `targets` are every resource written (references or
    urn:uuid fullUrls of the same transaction), `device` the model's Device, `sources` the inputs
    (written as versioned references), `on_behalf_of` the user who ran it when known.
    `occurred` (when the model ran) defaults to `recorded`. `instances` are the DICOM SOP
    Instance UIDs the model was shown: each is a source entity named by its identifier
    (system urn:dicom:uid, value urn:oid:<uid>), as ImagingStudy names its study. `frames`
    names, per instance, the 1-based frames the model was shown when only some were (a whole
    slide's tiles): that entity then says them in its display ("DICOM SOP Instance, frames 3,4,9")
    and in the dicom-frames extension (valueString "3,4,9")."""
    if not targets:
        raise ValueError("a Provenance needs at least one target")
    agent: JsonDict = {
        "type": _agent_type("author"),
        "role": [concept(coding(AI_DEVICE_TYPE_CS, "Artificial-Intelligence",
                                "All kinds of Artificial Intelligence"))],
        "who": {"reference": device},
    }
    if on_behalf_of:
        agent["onBehalfOf"] = {"reference": on_behalf_of}
    resource: JsonDict = {
        "resourceType": "Provenance",
        "target": [{"reference": t} for t in targets],
        "occurredDateTime": fhir_datetime(occurred or recorded),
        "recorded": fhir_instant(recorded),
        "reason": [concept(aiast())],
    }
    # The model created this content, whether the REST write is a create or an update.
    resource["activity"] = concept(coding(V3_DATA_OPERATION, "CREATE", "create"),
                                   text=activity_text)
    resource["agent"] = [agent]
    entities = [{"role": "source", "what": {"reference": s.versioned_reference}} for s in sources]
    entities += [_instance_entity(uid, (frames or {}).get(uid, ()))
                 for uid in dict.fromkeys(instances or ())]
    if entities:
        resource["entity"] = entities
    return resource


def pipeline_activity(pipeline: str, version: str, notes: Iterable[str] = ()) -> str:
    """The `activity.text` of a write: the pipeline and its version, then the notes."""
    return "; ".join((f"chartlight {pipeline} pipeline {version}", *notes))


def activity_pipeline(provenance: JsonDict) -> str:
    """The pipeline a write Provenance names in its activity text (pipeline_activity); "" for
    any other Provenance (a clinician's review, another system's)."""
    text = str((provenance.get("activity") or {}).get("text") or "")
    found = _ACTIVITY.fullmatch(text.split("; ", 1)[0])
    return found.group(1) if found else ""


def _instance_entity(uid: str, frames: tuple[int, ...]) -> JsonDict:
    entity: JsonDict = {"role": "source", "what": dicom_instance_reference(uid)}
    if frames:
        listed = frames_text(frames)
        entity["extension"] = [{"url": EXT_DICOM_FRAMES, "valueString": listed}]
        entity["what"]["display"] = f"DICOM SOP Instance, frames {listed}"
    return entity


def dicom_instance_reference(sop_instance_uid: str) -> JsonDict:
    """A logical Reference to one DICOM instance (there is no FHIR resource for it)."""
    return {"identifier": {"system": DICOM_UID, "value": f"urn:oid:{sop_instance_uid}"},
            "display": "DICOM SOP Instance"}


def to_review_provenance(
    *,
    target: str,
    clinician: str,
    recorded: datetime,
    decision: Literal["approve", "reject"],
    reason: str | None,
) -> JsonDict:
    """The Provenance of a clinician's decision on one AI result. Pass `target` as the version
    reviewed ("Observation/1/_history/2") where it is known."""
    resource: JsonDict = {
        "resourceType": "Provenance",
        "target": [{"reference": target}],
        "occurredDateTime": fhir_datetime(recorded),
        "recorded": fhir_instant(recorded),
    }
    if reason and reason.strip():
        resource["reason"] = [concept(text=reason)]
    resource["activity"] = concept(
        coding(CS_REVIEW_DECISION, decision, REVIEW_DISPLAYS[decision]),
        text=REVIEW_DISPLAYS[decision])
    resource["agent"] = [{"type": _agent_type("verifier"), "who": {"reference": clinician}}]
    return resource
