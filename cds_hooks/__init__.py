"""The CDS Hooks service (2.0.1, ready for 3.0): discovery, hook services, prefetch, JWT auth,
feedback, CORS."""

from cds_hooks.blueprint import create_blueprint
from cds_hooks.runtime import CdsRuntime, runtime_of
from cds_hooks.services import SERVICES, SERVICES_BY_ID

__all__ = ["SERVICES", "SERVICES_BY_ID", "CdsRuntime", "create_blueprint", "runtime_of"]
