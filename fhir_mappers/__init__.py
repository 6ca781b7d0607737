"""Pure, deterministic functions from pipeline results to FHIR R4 resources (plain JSON dicts).

No I/O, clock, randomness or environment: subject, identifiers and times are passed in, and the
same input gives byte-identical output, which is what makes write-back idempotent.
docs/fhir-profile.md describes everything written.
"""

from .device import to_device
from .diagnostic_report import to_diagnostic_report
from .document_reference import to_document_reference
from .identifiers import (
    REPORT_KEY_PREFIX,
    STRUCTURED_RESULTS_KEY,
    device_identifier,
    fhir_id_safe,
    identifier_query,
    item_identifier,
    report_identifier,
    result_identifier,
    structured_results_identifier,
)
from .labels import AIAST_CODE, DICTAST_CODE, TEST_WEIGHTS_CODE, TEST_WEIGHTS_DISPLAY
from .loinc import LoincEntry, lookup_loinc
from .observation import to_observation
from .provenance import activity_pipeline, pipeline_activity, to_provenance, to_review_provenance
from .structured_results import to_structured_results_document
from .systems import SID_DEVICE as DEVICE_IDENTIFIER_SYSTEM
from .systems import SID_RESULT as RESULT_IDENTIFIER_SYSTEM
from .units import Unit, normalise_unit

__all__ = [
    "AIAST_CODE",
    "DEVICE_IDENTIFIER_SYSTEM",
    "DICTAST_CODE",
    "REPORT_KEY_PREFIX",
    "RESULT_IDENTIFIER_SYSTEM",
    "STRUCTURED_RESULTS_KEY",
    "TEST_WEIGHTS_CODE",
    "TEST_WEIGHTS_DISPLAY",
    "LoincEntry",
    "Unit",
    "activity_pipeline",
    "device_identifier",
    "fhir_id_safe",
    "identifier_query",
    "item_identifier",
    "lookup_loinc",
    "normalise_unit",
    "pipeline_activity",
    "report_identifier",
    "result_identifier",
    "structured_results_identifier",
    "to_device",
    "to_diagnostic_report",
    "to_document_reference",
    "to_observation",
    "to_provenance",
    "to_review_provenance",
    "to_structured_results_document",
]
