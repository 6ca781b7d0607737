"""An ImagingStudy on the FHIR server for a study already in a PACS: a patient of its own, a
dicom-wado-rs Endpoint at the PACS's address, one series of the given modality."""

from __future__ import annotations

from typing import Any

from plugin.fhir import FhirClient

Resource = dict[str, Any]
DCM = "http://dicom.nema.org/resources/ontology/DCM"


def study_at(client: FhirClient, address: str, study_uid: str, series_uid: str, *,
             modality: str = "CT", family: str = "Imaging-test") -> Resource:
    """The ImagingStudy (as stored) for `study_uid`/`series_uid` behind an Endpoint at `address`."""
    patient = client.create({"resourceType": "Patient", "name": [{"family": family}]})
    endpoint = client.create({
        "resourceType": "Endpoint", "status": "active",
        "connectionType": {"system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
                           "code": "dicom-wado-rs"},
        "payloadType": [{"text": "DICOM"}], "address": address})
    return client.create({
        "resourceType": "ImagingStudy", "status": "available",
        "subject": {"reference": f"Patient/{patient['id']}"},
        "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{study_uid}"}],
        "endpoint": [{"reference": f"Endpoint/{endpoint['id']}"}],
        "series": [{"uid": series_uid, "modality": {"system": DCM, "code": modality}}]})
