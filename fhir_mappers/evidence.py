"""Evidence, confidence and source links as extensions: where in the source each result came
from.

    evidence-text   page, start, end (character offsets into that page's extracted text),
                    quote, box ("x0,y0,x1,y1" in page pixels)
    evidence-audio  start, end (seconds from the start of the recording), quote
    evidence-image  study, series, instance (DICOM UIDs as FHIR `id`, the type ImagingStudy uses
                    for them), frame, slice, box ("x0,y0,x1,y1" in image pixels); for a
                    whole-slide patch also level (0 = the base level) and frames ("3,4,9,10",
                    the 1-based tiles of the instance), its box then in the level's total
                    pixel matrix
    confidence      valueDecimal, the model's confidence in the item (0..1)
    derived-from    valueReference, the source, where the resource has no element that may
                    point at it (R4 DiagnosticReport; Observation.derivedFrom of a DiagnosticReport)

Empty parts are left out (FHIR allows no empty strings).
"""

from __future__ import annotations

import math

from plugin.results import AudioEvidence, Box, Evidence, ImageEvidence, SourceRef, TextEvidence

from .datatypes import JsonDict, fhir_string, is_fhir_id, json_number, number_text
from .systems import (
    EXT_CONFIDENCE,
    EXT_DERIVED_FROM,
    EXT_EVIDENCE_AUDIO,
    EXT_EVIDENCE_IMAGE,
    EXT_EVIDENCE_TEXT,
)


def box_text(box: Box) -> str:
    return ",".join(number_text(v) for v in (box.x0, box.y0, box.x1, box.y1))


def frames_text(frames: tuple[int, ...]) -> str:
    """1-based frame numbers as "3,4,9,10" (sorted, no repeats)."""
    return ",".join(str(f) for f in sorted(set(frames)))


def _part(name: str, value_type: str, value: object) -> JsonDict:
    return {"url": name, value_type: value}


def _text_part(name: str, text: str) -> list[JsonDict]:
    value = fhir_string(text)
    return [_part(name, "valueString", value)] if value is not None else []


def _uid_part(name: str, uid: str) -> list[JsonDict]:
    # A DICOM UID (digits and dots, at most 64) is a valid FHIR id; anything else is kept as text.
    if is_fhir_id(uid):
        return [_part(name, "valueId", uid)]
    return _text_part(name, uid)


def evidence_extension(evidence: Evidence) -> JsonDict:
    parts: list[JsonDict]
    if isinstance(evidence, TextEvidence):
        parts = [
            _part("page", "valueInteger", evidence.page),
            _part("start", "valueInteger", evidence.start),
            _part("end", "valueInteger", evidence.end),
            *_text_part("quote", evidence.quote),
        ]
        if evidence.box is not None:
            parts.append(_part("box", "valueString", box_text(evidence.box)))
        return {"url": EXT_EVIDENCE_TEXT, "extension": parts}
    if isinstance(evidence, AudioEvidence):
        parts = [
            _part("start", "valueDecimal", json_number(evidence.start_s)),
            _part("end", "valueDecimal", json_number(evidence.end_s)),
            *_text_part("quote", evidence.quote),
        ]
        return {"url": EXT_EVIDENCE_AUDIO, "extension": parts}
    if isinstance(evidence, ImageEvidence):
        parts = [
            *_uid_part("study", evidence.study_uid),
            *_uid_part("series", evidence.series_uid),
            *_uid_part("instance", evidence.instance_uid),
        ]
        if evidence.frame is not None:
            parts.append(_part("frame", "valueInteger", evidence.frame))
        if evidence.slice_index is not None:
            parts.append(_part("slice", "valueInteger", evidence.slice_index))
        if evidence.box is not None:
            parts.append(_part("box", "valueString", box_text(evidence.box)))
        if evidence.level is not None:
            parts.append(_part("level", "valueInteger", evidence.level))
        if evidence.frames:
            parts.append(_part("frames", "valueString", frames_text(evidence.frames)))
        return {"url": EXT_EVIDENCE_IMAGE, "extension": parts}
    raise TypeError(f"not evidence: {type(evidence).__name__}")


def confidence_extension(confidence: float) -> JsonDict:
    return {"url": EXT_CONFIDENCE, "valueDecimal": json_number(confidence)}


def evidence_extensions(
    evidence: tuple[Evidence, ...], confidence: float | None = None
) -> list[JsonDict]:
    """The extensions for an item's evidence (in order) and confidence."""
    extensions = [evidence_extension(e) for e in evidence]
    if confidence is not None and math.isfinite(confidence):
        extensions.append(confidence_extension(confidence))
    return extensions


def derived_from_extension(source: SourceRef) -> JsonDict:
    return {"url": EXT_DERIVED_FROM, "valueReference": {"reference": source.reference}}
