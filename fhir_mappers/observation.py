"""Measured values and findings -> FHIR R4 Observation.

A measured value: LOINC code from the table in loinc.py (else text and chartlight's
`lab-test-name` code), valueQuantity with its UCUM unit (or valueString for results like
"Positive"), reference range, interpretation (as flagged, else computed). A finding: its own code
or LOINC's narrative code for its category, valueString, body site, and — for a comparison with a
prior study — a coded change-from-prior component with interpretation B/W.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal

from plugin.results import Coding, Finding, MeasuredValue, ModelInfo, ReferenceRange, SourceRef

from .body_sites import body_site
from .datatypes import JsonDict, coding, concept, fhir_datetime, fhir_string, json_number
from .evidence import derived_from_extension, evidence_extensions
from .interpretation import (
    finding_interpretation,
    interpretation_concepts,
    measured_interpretation,
    range_bounds,
)
from .labels import ai_meta, test_weights_note
from .loinc import loinc_entry, lookup_loinc
from .systems import (
    CS_CHANGE_FROM_PRIOR,
    CS_FINDING_ASPECT,
    CS_LAB_TEST_NAME,
    LOINC,
    OBSERVATION_CATEGORY,
    UCUM,
)
from .units import normalise_unit

CATEGORY_DISPLAYS = {
    "laboratory": "Laboratory",
    "vital-signs": "Vital Signs",
    "exam": "Exam",
    "imaging": "Imaging",
}
# A finding's own category -> Observation.category (a slide's findings are laboratory results:
# observation-category "laboratory" covers histology and anatomic pathology).
FINDING_OBSERVATION_CATEGORY = {"pathology": "laboratory"}

# Observation.code of a finding that has no code of its own.
FINDING_CODES = {
    "imaging": (LOINC, "18782-3", "Radiology Study observation (narrative)"),
    "exam": (LOINC, "29545-1", "Physical findings Narrative"),
    "pathology": (LOINC, "22635-7", "Pathology report microscopic observation"),
}

CHANGE_DISPLAYS = {
    "new": "New since prior study",
    "improved": "Improved since prior study",
    "stable": "Stable since prior study",
    "worsened": "Worsened since prior study",
    "resolved": "Resolved since prior study",
}

# Observation.derivedFrom may only point at these types (R4); other sources use our extension.
DERIVED_FROM_TYPES = frozenset({
    "DocumentReference", "ImagingStudy", "Media", "QuestionnaireResponse", "Observation",
    "MolecularSequence",
})

_COMPARATOR_VALUE = re.compile(r"^\s*(<=|>=|<|>|≤|≥)\s*(\d+(?:\.\d+)?)\s*$")
_COMPARATORS = {"≤": "<=", "≥": ">="}


def to_observation(
    item: MeasuredValue | Finding,
    *,
    subject: str,
    source: SourceRef,
    identifier: JsonDict,
    model: ModelInfo,
    status: str = "preliminary",
    effective: datetime | None = None,
    device: str | None = None,
) -> JsonDict:
    """One Observation for a measured value or a finding. `effective` is used when the item
    carries no time of its own (e.g. the study date of an imaging finding). `device` is the
    reference of the model's Device: naming it ties each result to the model version."""
    extensions = evidence_extensions(item.evidence, item.confidence)
    dictated = isinstance(item, MeasuredValue) and item.dictated
    resource: JsonDict = {"resourceType": "Observation", "meta": ai_meta(model, dictated=dictated)}
    if source.resource_type not in DERIVED_FROM_TYPES:
        extensions.append(derived_from_extension(source))
    if extensions:
        resource["extension"] = extensions
    resource["identifier"] = [identifier]
    resource["status"] = status
    category = FINDING_OBSERVATION_CATEGORY.get(item.category, item.category)
    resource["category"] = [
        concept(coding(OBSERVATION_CATEGORY, category, CATEGORY_DISPLAYS[category]))
    ]
    if isinstance(item, MeasuredValue):
        _measured(resource, item, subject, effective)
    else:
        _finding(resource, item, subject, effective)
    if source.resource_type in DERIVED_FROM_TYPES:
        resource["derivedFrom"] = [{"reference": source.reference}]
    if device is not None:
        resource["device"] = {"reference": device}
    return _ordered(resource, test_weights_note(model))


def _measured(
    resource: JsonDict, item: MeasuredValue, subject: str, effective: datetime | None
) -> None:
    resource["code"] = lab_code(item, numeric=is_numeric_result(item.value))
    resource["subject"] = {"reference": subject}
    when = item.effective or effective
    if when is not None:
        resource["effectiveDateTime"] = fhir_datetime(when)
    resource.update(_value(item.value, item.unit))
    if item.components:
        resource["component"] = [_component(part) for part in item.components]
    interpretation = measured_interpretation(item)
    if interpretation:
        resource["interpretation"] = interpretation_concepts(interpretation)
    if item.method.strip():
        resource["method"] = concept(text=item.method)
    if item.reference_range is not None:
        reference_range = _reference_range(item.reference_range, item.unit)
        if reference_range:
            resource["referenceRange"] = [reference_range]


def _finding(resource: JsonDict, item: Finding, subject: str, effective: datetime | None) -> None:
    resource["code"] = finding_code(item)
    resource["subject"] = {"reference": subject}
    if effective is not None:
        resource["effectiveDateTime"] = fhir_datetime(effective)
    text = fhir_string(item.text)
    if text is not None:
        resource["valueString"] = text
    interpretation = finding_interpretation(item)
    if interpretation:
        resource["interpretation"] = interpretation_concepts(interpretation)
    site = body_site(item.body_site)
    if site is not None:
        resource["bodySite"] = site
    if item.change is not None:
        resource["component"] = [change_component(item.change)]


def _component(part: MeasuredValue) -> JsonDict:
    """One part of a panel (a systolic pressure): its code and value."""
    return {"code": lab_code(part, numeric=is_numeric_result(part.value)),
            **_value(part.value, part.unit)}


def is_numeric_result(value: Decimal | str) -> bool:
    """A number, or a number with a comparator ("<0.01"): written as valueQuantity."""
    return isinstance(value, Decimal) or _COMPARATOR_VALUE.match(value) is not None


def lab_code(item: MeasuredValue, *, numeric: bool | None = None) -> JsonDict:
    """Observation.code of a measured value: the code it came with, else LOINC from our table,
    else its name under chartlight's lab-test-name system."""
    if item.code is not None:
        return concept(_given_coding(item.code), text=item.name)
    entry = lookup_loinc(item.name, item.unit, specimen=item.specimen or item.panel,
                         numeric=numeric)
    if entry is not None:
        return concept(coding(LOINC, entry.code, entry.display), text=item.name)
    name_code = lab_test_name_code(item.name)
    if not name_code:
        return concept(text=item.name)
    return concept(coding(CS_LAB_TEST_NAME, name_code, item.name.strip()), text=item.name)


def lab_test_name_code(name: str) -> str:
    """The normalised name used as a `lab-test-name` code ("Anti-TPO Ab" -> "anti-tpo-ab")."""
    return re.sub(r"[\W_]+", "-", name.casefold()).strip("-")


def finding_code(item: Finding) -> JsonDict:
    if item.code is not None:
        return concept(_given_coding(item.code), text=item.code.display)
    return concept(coding(*FINDING_CODES[item.category]))


def change_component(change: str) -> JsonDict:
    return {
        "code": concept(coding(CS_FINDING_ASPECT, "change-from-prior", "Change from prior study")),
        "valueCodeableConcept": concept(
            coding(CS_CHANGE_FROM_PRIOR, change, CHANGE_DISPLAYS[change])
        ),
    }


def _given_coding(given: Coding) -> JsonDict:
    display = given.display
    if not display and given.system == LOINC and (entry := loinc_entry(given.code)) is not None:
        display = entry.display
    return coding(given.system, given.code, display)


def quantity(value: Decimal, printed_unit: str, *, comparator: str = "") -> JsonDict:
    """A Quantity with the printed unit's UCUM code when it has one (else its text only)."""
    result: JsonDict = {"value": json_number(value)}
    if comparator:
        result["comparator"] = comparator
    unit = normalise_unit(printed_unit)
    if unit.display:
        result["unit"] = unit.display
    if unit.ucum is not None:
        result["system"] = UCUM
        result["code"] = unit.ucum
    return result


def _value(value: Decimal | str, unit: str) -> JsonDict:
    if isinstance(value, Decimal):
        return {"valueQuantity": quantity(value, unit)}
    if match := _COMPARATOR_VALUE.match(value):  # "<0.01": below the limit of detection
        comparator = _COMPARATORS.get(match[1], match[1])
        return {"valueQuantity": quantity(Decimal(match[2]), unit, comparator=comparator)}
    text = fhir_string(value)
    return {"valueString": text} if text is not None else {}


def _reference_range(reference_range: ReferenceRange, unit: str) -> JsonDict:
    """low/high (same unit as the value) and the range as printed. Bounds read from printed
    text such as "<200" are written as FHIR's inclusive low/high; the text keeps the exact
    wording."""
    result: JsonDict = {}
    bounds = range_bounds(reference_range)
    if bounds is not None:
        if bounds.low is not None:
            result["low"] = quantity(bounds.low, unit)
        if bounds.high is not None:
            result["high"] = quantity(bounds.high, unit)
    text = fhir_string(reference_range.text)
    if text is not None:
        result["text"] = text.strip()
    return result


_ORDER = (
    "resourceType", "meta", "extension", "identifier", "status", "category", "code", "subject",
    "effectiveDateTime", "valueQuantity", "valueString", "valueCodeableConcept",
    "interpretation", "note", "bodySite", "method", "device", "referenceRange", "derivedFrom",
    "component",
)


def _ordered(resource: JsonDict, note: list[JsonDict]) -> JsonDict:
    # FHIR's element order, so the JSON reads like the server's own and diffs stay small.
    if note:
        resource["note"] = note
    unordered = resource.keys() - set(_ORDER)
    if unordered:
        raise RuntimeError(f"Observation elements missing from _ORDER: {sorted(unordered)}")
    return {key: resource[key] for key in _ORDER if key in resource}
