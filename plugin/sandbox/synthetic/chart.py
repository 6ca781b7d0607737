"""The synthetic patient's chart as an EHR holds it: problems, medications, allergies, encounters
and a year of vital signs and labs, as FHIR R4 resources (no I/O; plugin.sandbox.seed stores them).

Values are fixed, not random: the same chart every time, so the summary's checks can be tested
against numbers a person wrote down here. `scaled_observations` makes a larger chart (the
benchmark's 2,000 resources) from the same series.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

Resource = dict[str, Any]
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
CHART_END = date(2026, 11, 14)  # the last clinic visit, a week before the seeded dictation

# (key, SNOMED code, display, onset, clinical status)
CONDITIONS = (
    ("t2dm", "44054006", "Type 2 diabetes mellitus", date(2019, 3, 4), "active"),
    ("htn", "38341003", "Essential hypertension", date(2017, 9, 12), "active"),
    ("ckd3", "433144002", "Chronic kidney disease stage 3", date(2024, 6, 20), "active"),
    ("bronchitis", "10509002", "Acute bronchitis", date(2025, 1, 8), "resolved"),
)
# (key, RxNorm code, display, dosage text, authored, status)
MEDICATIONS = (
    ("metformin", "860975", "Metformin 500 MG Extended Release Oral Tablet",
     "1000 mg by mouth twice daily with meals", date(2019, 3, 4), "active"),
    ("lisinopril", "314077", "Lisinopril 20 MG Oral Tablet", "20 mg by mouth once daily",
     date(2017, 9, 12), "active"),
    ("atorvastatin", "617310", "Atorvastatin 20 MG Oral Tablet", "20 mg by mouth at night",
     date(2021, 2, 1), "active"),
    ("amoxicillin", "308182", "Amoxicillin 500 MG Oral Capsule", "500 mg three times daily for 7 days",
     date(2025, 1, 8), "stopped"),
)
# (key, SNOMED substance, display, reaction, criticality)
ALLERGIES = (
    ("penicillin", "764146007", "Penicillin", "Hives", "high"),
    ("sulfa", "387406002", "Sulfonamide", "Rash", "low"),
)
# Monthly vital signs, oldest first: systolic, diastolic, heart rate, weight kg, SpO2 %.
VITALS = (
    (148, 92, 84, 91.2, 96), (146, 90, 82, 90.8, 97), (144, 91, 80, 90.5, 97), (142, 88, 81, 90.1, 96),
    (140, 88, 78, 89.6, 97), (138, 86, 79, 89.4, 98), (136, 86, 77, 89.0, 97), (135, 84, 76, 88.7, 97),
    (134, 84, 78, 88.5, 98), (132, 82, 75, 88.1, 97), (130, 82, 74, 87.9, 98), (128, 82, 74, 87.6, 98),
)
# Quarterly labs, oldest first: (LOINC, display, unit, values, reference high)
LABS = (
    ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", (8.4, 7.9, 7.5, 7.1), 5.7),
    ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", (1.38, 1.41, 1.45, 1.52), 1.10),
    ("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", (4.6, 4.8, 4.7, 5.3), 5.1),
    ("13457-7", "Cholesterol in LDL [Mass/volume] in Serum or Plasma by calculation", "mg/dL",
     (131, 118, 104, 97), 100),
)


def chart_resources(patient_id: str, *, end: date = CHART_END) -> list[tuple[str, Resource]]:
    """(seed key, resource) for every chart resource of `Patient/patient_id`; keys are unique."""
    subject = {"reference": f"Patient/{patient_id}"}
    out: list[tuple[str, Resource]] = []
    for key, code, display, onset, status in CONDITIONS:
        out.append((f"condition/{key}", {
            "resourceType": "Condition", "subject": subject,
            "clinicalStatus": _concept("http://terminology.hl7.org/CodeSystem/condition-clinical", status),
            "verificationStatus": _concept("http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                           "confirmed"),
            "category": [_concept("http://terminology.hl7.org/CodeSystem/condition-category",
                                  "problem-list-item")],
            "code": _concept(SNOMED, code, display), "onsetDateTime": onset.isoformat(),
            "recordedDate": onset.isoformat()}))
    for key, code, display, dosage, authored, status in MEDICATIONS:
        out.append((f"medication/{key}", {
            "resourceType": "MedicationRequest", "status": status, "intent": "order", "subject": subject,
            "medicationCodeableConcept": _concept(RXNORM, code, display),
            "authoredOn": authored.isoformat(), "dosageInstruction": [{"text": dosage}]}))
    for key, code, display, reaction, criticality in ALLERGIES:
        out.append((f"allergy/{key}", {
            "resourceType": "AllergyIntolerance", "patient": subject, "criticality": criticality,
            "clinicalStatus": _concept("http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                                       "active"),
            "code": _concept(SNOMED, code, display), "recordedDate": "2015-05-02",
            "reaction": [{"manifestation": [{"text": reaction}]}]}))
    visits = [end - timedelta(days=30 * (len(VITALS) - 1 - i)) for i in range(len(VITALS))]
    for i, (when, (sys, dia, hr, kg, spo2)) in enumerate(zip(visits, VITALS, strict=True)):
        out.append((f"encounter/{i}", {
            "resourceType": "Encounter", "status": "finished", "subject": subject,
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB",
                      "display": "ambulatory"},
            "type": [{"text": "Diabetes and hypertension follow-up"}],
            "period": {"start": _at(when, 9), "end": _at(when, 9, 30)}}))
        out += _vitals(subject, f"vitals/{i}", when, sys, dia, hr, kg, spo2)
    for code, display, unit, values, high in LABS:
        for q, value in enumerate(values):
            when = end - timedelta(days=91 * (len(values) - 1 - q))
            out.append((f"lab/{code}/{q}", _observation(
                subject, "laboratory", code, display, value, unit, when,
                interpretation="H" if value > high else "N", high=high)))
    return out


# Further analytes of the benchmark's large chart: (LOINC, display, unit, typical value, reference high)
BENCH_ANALYTES = (
    ("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", 126, 99),
    ("2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L", 139, 145),
    ("2075-0", "Chloride [Moles/volume] in Serum or Plasma", "mmol/L", 102, 107),
    ("2028-9", "Carbon dioxide, total [Moles/volume] in Serum or Plasma", "mmol/L", 25, 29),
    ("3094-0", "Urea nitrogen [Mass/volume] in Serum or Plasma", "mg/dL", 22, 20),
    ("17861-6", "Calcium [Mass/volume] in Serum or Plasma", "mg/dL", 9.4, 10.2),
    ("1751-7", "Albumin [Mass/volume] in Serum or Plasma", "g/dL", 4.1, 5.0),
    ("1920-8", "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "U/L", 24, 40),
    ("1742-6", "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "U/L", 31, 45),
    ("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 12.9, 15.5),
    ("6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*3/uL", 7.2, 11.0),
    ("777-3", "Platelets [#/volume] in Blood by Automated count", "10*3/uL", 241, 400),
    ("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", 182, 200),
    ("2085-9", "Cholesterol in HDL [Mass/volume] in Serum or Plasma", "mg/dL", 46, 90),
    ("2571-8", "Triglyceride [Mass/volume] in Serum or Plasma", "mg/dL", 168, 150),
    ("3016-3", "Thyrotropin [Units/volume] in Serum or Plasma", "m[IU]/L", 2.1, 4.5),
)


def scaled_observations(patient_id: str, count: int, *, end: date = CHART_END) -> list[Resource]:
    """`count` extra lab Observations (the benchmark's large chart): the LABS and BENCH_ANALYTES
    series repeated back in time, weekly, with ids so they can be served from memory without a
    server. Values vary by a fixed pattern around each analyte's typical value."""
    subject = {"reference": f"Patient/{patient_id}"}
    analytes = [(code, display, unit, values[-1], high) for code, display, unit, values, high in LABS]
    analytes += list(BENCH_ANALYTES)
    out = []
    for n in range(count):
        code, display, unit, typical, high = analytes[n % len(analytes)]
        when = end - timedelta(days=7 * (n // len(analytes)))
        value = round(typical * (1 + ((n * 7) % 11 - 5) / 100), 2)
        resource = _observation(subject, "laboratory", code, display, value, unit, when,
                                interpretation="H" if value > high else "N", high=high)
        out.append({**resource, "id": f"bench-{n}", "meta": {"versionId": "1",
                                                              "lastUpdated": _at(when, 12)}})
    return out


def _vitals(subject: Resource, key: str, when: date, sys: int, dia: int, hr: int, kg: float,
            spo2: int) -> list[tuple[str, Resource]]:
    bp = _observation(subject, "vital-signs", "85354-9", "Blood pressure panel", None, "", when)
    bp["component"] = [
        {"code": _concept(LOINC, "8480-6", "Systolic blood pressure"), "valueQuantity": _qty(sys, "mm[Hg]")},
        {"code": _concept(LOINC, "8462-4", "Diastolic blood pressure"), "valueQuantity": _qty(dia, "mm[Hg]")},
    ]
    return [
        (f"{key}/bp", bp),
        (f"{key}/hr", _observation(subject, "vital-signs", "8867-4", "Heart rate", hr, "/min", when)),
        (f"{key}/weight", _observation(subject, "vital-signs", "29463-7", "Body weight", kg, "kg", when)),
        (f"{key}/spo2", _observation(subject, "vital-signs", "59408-5", "Oxygen saturation by pulse oximetry",
                                     spo2, "%", when)),
    ]


def _observation(subject: Resource, category: str, code: str, display: str, value: float | None,
                 unit: str, when: date, *, interpretation: str = "", high: float | None = None) -> Resource:
    resource: Resource = {
        "resourceType": "Observation", "status": "final",
        "category": [_concept("http://terminology.hl7.org/CodeSystem/observation-category", category)],
        "code": _concept(LOINC, code, display), "subject": {**subject},
        "effectiveDateTime": _at(when, 9, 10),
    }
    if value is not None:
        resource["valueQuantity"] = _qty(value, unit)
    if interpretation:
        resource["interpretation"] = [_concept(
            "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", interpretation)]
    if high is not None:
        resource["referenceRange"] = [{"high": _qty(high, unit)}]
    return resource


def _qty(value: float, unit: str) -> Resource:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def _concept(system: str, code: str, display: str = "") -> Resource:
    coding = {"system": system, "code": code, **({"display": display} if display else {})}
    return {"coding": [coding], **({"text": display} if display else {})}


def _at(day: date, hour: int, minute: int = 0) -> str:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC).isoformat()
