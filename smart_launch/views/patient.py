"""The patient banner (shown when the EHR's launch context asks for one: need_patient_banner)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from plugin.errors import FhirError
from plugin.fhir import FhirClient

Resource = dict[str, Any]


@dataclass(frozen=True)
class Banner:
    name: str
    birth_date: str
    gender: str
    identifier: str  # the first identifier, as "value (system's last path part)"


def banner_of(client: FhirClient, patient_id: str) -> Banner:
    """Name, birth date, gender and an identifier of the patient; a banner that says it could
    not read the patient when the EHR refuses."""
    try:
        patient = client.read("Patient", patient_id)
    except FhirError:
        return Banner(name="(the patient's record could not be read)", birth_date="", gender="",
                      identifier="")
    return to_banner(patient)


def to_banner(patient: Resource) -> Banner:
    names = patient.get("name", [])
    official = next((n for n in names if n.get("use") == "official"), names[0] if names else {})
    name = official.get("text") or " ".join(
        [*official.get("given", []), str(official.get("family", ""))]).strip()
    identifiers = patient.get("identifier", [])
    identifier = ""
    if identifiers:
        first = identifiers[0]
        label = (first.get("type", {}).get("text") or str(first.get("system", "")).rstrip("/")
                 .rsplit("/", 1)[-1])
        identifier = f"{first.get('value', '')} ({label})" if label else str(first.get("value", ""))
    return Banner(name=name or "(no name)", birth_date=str(patient.get("birthDate", "")),
                  gender=str(patient.get("gender", "")), identifier=identifier)
