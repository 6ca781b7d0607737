"""Deterministic identifiers: the same origin always gives the same identifier, so a re-run finds
and updates the resource it wrote before instead of writing a second one.

A result's identifier hashes where it came from (source type, id, version, content hash), the
pipeline and the item's key. It leaves out the model and prompt versions on purpose: a new model
or prompt version updates the same resource (a new FHIR version of it), it does not duplicate it.
"""

from __future__ import annotations

import hashlib
import json
import re

from plugin.results import ModelInfo, PipelineResult, ReportGroup, SourceRef

from .datatypes import JsonDict, is_fhir_id
from .systems import SID_DEVICE, SID_RESULT

HASH_HEX_CHARS = 40  # 160 bits: collisions are not a practical concern at any EHR's scale

REPORT_KEY_PREFIX = "report/"
STRUCTURED_RESULTS_KEY = "structured-results"


def _digest(parts: list[str]) -> str:
    # JSON encoding keeps the parts apart: ("a|b", "c") and ("a", "b|c") hash differently.
    encoded = json.dumps(parts, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(encoded).hexdigest()[:HASH_HEX_CHARS]


def result_identifier(source: SourceRef, pipeline: str, item_key: str) -> JsonDict:
    """The identifier of one thing a pipeline wrote about one source version."""
    value = _digest([
        "result", source.resource_type, source.id, source.version_id, source.content_sha256,
        pipeline, item_key,
    ])
    return {"system": SID_RESULT, "value": value}


def item_identifier(result: PipelineResult, item_key: str) -> JsonDict:
    """An item's (Observation's or narrative DocumentReference's) identifier."""
    return result_identifier(result.identity or result.source, result.pipeline, item_key)


def report_identifier(result: PipelineResult, group: ReportGroup) -> JsonDict:
    """A report group's (DiagnosticReport's) identifier; kept apart from item keys by a prefix."""
    return result_identifier(result.identity or result.source, result.pipeline,
                             REPORT_KEY_PREFIX + group.key)


def structured_results_identifier(result: PipelineResult) -> JsonDict:
    """The identifier of the structured-results DocumentReference (the degraded write path)."""
    return result_identifier(result.identity or result.source, result.pipeline, STRUCTURED_RESULTS_KEY)


def device_identifier(model: ModelInfo) -> JsonDict:
    """One Device per model name and version; test weights are a different device."""
    value = _digest(["device", model.name, model.version, "test" if model.test_weights else ""])
    return {"system": SID_DEVICE, "value": value}


def identifier_query(identifier: JsonDict) -> str:
    """The `identifier=system|value` search (conditional create/update) for an identifier."""
    return f"identifier={identifier['system']}|{identifier['value']}"


def fhir_id_safe(value: str) -> str:
    """A valid FHIR logical id for `value`: unchanged when it already is one, otherwise its
    characters outside [A-Za-z0-9-.] replaced and a hash of the original appended, so two
    different inputs never map to the same id."""
    if not value:
        raise ValueError("an empty string has no FHIR id")
    if is_fhir_id(value):
        return value
    cleaned = re.sub(r"[^A-Za-z0-9\-.]+", "-", value).strip("-")[:47]
    suffix = hashlib.sha256(value.encode("utf-8")).hexdigest()[:16]
    return f"{cleaned}-{suffix}" if cleaned else suffix
