"""A sandbox EHR for tests and the demo: a strict SMART on FHIR authorization server (Authlib) with a
FHIR proxy in front of the HAPI sandbox, and an EHR page that launches apps in an iframe."""

from plugin.sandbox.ehr_server.oauth import Client, LaunchContext
from plugin.sandbox.ehr_server.server import (
    EhrConfig,
    SandboxEhr,
    backend_client,
    confidential_client,
    create_ehr_app,
    ehr_of,
    public_client,
)

__all__ = ["Client", "EhrConfig", "LaunchContext", "SandboxEhr", "backend_client", "confidential_client",
           "create_ehr_app", "ehr_of", "public_client"]
