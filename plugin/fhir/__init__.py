"""FHIR R4 REST access: the client and attachment resolution."""

from plugin.fhir.attachments import resolve_attachment
from plugin.fhir.client import FhirClient

__all__ = ["FhirClient", "resolve_attachment"]
