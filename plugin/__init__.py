"""chartlight's service core: app factory, settings, CLI, FHIR client, sandbox, demo."""

__version__ = "0.1.0"
