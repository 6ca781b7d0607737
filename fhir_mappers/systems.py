"""Every URI chartlight writes into FHIR resources: its own namespace (identifier systems, code
systems, extensions) and the external code systems, extensions and profiles it uses.

docs/fhir-profile.md lists each of these with its meaning; keep the two in step.
"""

from __future__ import annotations

# ---- chartlight's own namespace ------------------------------------------------------------

NAMESPACE = "https://chartlight.dev/fhir"

# Identifier systems
SID_RESULT = f"{NAMESPACE}/sid/result"  # every resource a pipeline writes (hash of its origin)
SID_DEVICE = f"{NAMESPACE}/sid/device"  # one Device per model name + version

# Code systems
CS_RUN_KIND = f"{NAMESPACE}/CodeSystem/run-kind"  # meta.tag: test-weights
CS_LAB_TEST_NAME = f"{NAMESPACE}/CodeSystem/lab-test-name"  # lab tests with no LOINC in our table
CS_CHANGE_FROM_PRIOR = f"{NAMESPACE}/CodeSystem/change-from-prior"  # new|improved|stable|...
CS_FINDING_ASPECT = f"{NAMESPACE}/CodeSystem/finding-aspect"  # component codes of a finding
CS_DOCUMENT_KIND = f"{NAMESPACE}/CodeSystem/document-kind"  # transcript|report-draft|summary|...
CS_REVIEW_DECISION = f"{NAMESPACE}/CodeSystem/review-decision"  # approve|reject

# Extensions
EXT_EVIDENCE_TEXT = f"{NAMESPACE}/StructureDefinition/evidence-text"
EXT_EVIDENCE_AUDIO = f"{NAMESPACE}/StructureDefinition/evidence-audio"
EXT_EVIDENCE_IMAGE = f"{NAMESPACE}/StructureDefinition/evidence-image"
EXT_CONFIDENCE = f"{NAMESPACE}/StructureDefinition/confidence"
EXT_DERIVED_FROM = f"{NAMESPACE}/StructureDefinition/derived-from"
# The 1-based frames of a DICOM instance that a model was shown (Provenance.entity), "3,4,9".
EXT_DICOM_FRAMES = f"{NAMESPACE}/StructureDefinition/dicom-frames"
# The AI Device that produced a resource which has no element of its own for it.
EXT_GENERATED_BY = f"{NAMESPACE}/StructureDefinition/generated-by"

# ---- external code systems ------------------------------------------------------------------

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"
V3_OBSERVATION_VALUE = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
V3_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V3_OBSERVATION_INTERPRETATION = (
    "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
)
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"  # DiagnosticReport.category
V3_DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"  # Provenance.activity
PROVENANCE_PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
DICOM_UID = "urn:dicom:uid"  # identifier system of DICOM UIDs (values urn:oid:<uid>)
US_CORE_DOCUMENTREFERENCE_CATEGORY = (
    "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category"
)

# ---- security labels (HL7 DS4P) ----------------------------------------------------------------

DS4P_INLINE_SEC_LABEL = (
    "http://hl7.org/fhir/uv/security-label-ds4p/StructureDefinition/extension-inline-sec-label"
)

# ---- HL7 AI Transparency on FHIR (ballot 1.0.0) ------------------------------------------------

AI_TRANSPARENCY = "http://hl7.org/fhir/uv/aitransparency"
AI_DEVICE_TYPE_CS = f"{AI_TRANSPARENCY}/CodeSystem/AIdeviceTypeCS"
EXT_AI_KIND = f"{AI_TRANSPARENCY}/StructureDefinition/aitransparency.AIKind"
