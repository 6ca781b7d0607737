"""The CDS Hooks service's errors, under chartlight's root error.

    ChartlightError (plugin.errors)
    └── CdsHooksError               a hook call cannot be answered with cards
        ├── NotAuthenticated        the JWT is missing or fails a check -> 401, no detail
        ├── BadHookRequest          the body is not a valid CDS Hooks request -> 400
        ├── UnknownService          no service with that id -> 404
        ├── NotAllowed              a method the URL does not answer -> 405
        └── PrefetchUnavailable     data the service needs was neither prefetched nor
                                    fetchable from fhirServer -> 412 (CDS Hooks 2.0.1)

blueprint.py turns each into its HTTP response, in one place. Every error body is a FHIR
OperationOutcome (CDS Hooks 3.0, Returning OperationOutcome); CDS Hooks 2.0.1 asks nothing of
error bodies, so its clients are served by the same answer.
"""

from __future__ import annotations

from typing import Any

from plugin.errors import ChartlightError


class CdsHooksError(ChartlightError):
    """A CDS Hooks call cannot be answered with cards."""


class NotAuthenticated(CdsHooksError):
    """The caller's JWT is missing, malformed, untrusted, expired or replayed. The message is for
    the service's log only: the caller learns nothing but 401."""


class BadHookRequest(CdsHooksError):
    """The request body is not a valid CDS Hooks request for this service."""


class UnknownService(CdsHooksError):
    """No CDS service has this id."""


class NotAllowed(CdsHooksError):
    """The URL exists but does not answer this HTTP method."""

    def __init__(self, method: str, allowed: tuple[str, ...]) -> None:
        super().__init__(f"{method[:10]} is not answered here; use {', '.join(allowed)}")
        self.allowed = allowed


class PrefetchUnavailable(CdsHooksError):
    """A prefetch key the service needs was not sent and could not be fetched."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"prefetch {key!r}: {reason}")
        self.key = key
        self.reason = reason


def operation_outcome(code: str, text: str, diagnostics: str | None = None,
                      expression: str | None = None) -> dict[str, Any]:
    """A FHIR R4 OperationOutcome with one error issue: `code` from the IssueType value set,
    `text` for people, `diagnostics` for the integrator (never tokens or patient data)."""
    issue: dict[str, Any] = {"severity": "error", "code": code, "details": {"text": text}}
    if diagnostics:
        issue["diagnostics"] = diagnostics
    if expression:
        issue["expression"] = [expression]
    return {"resourceType": "OperationOutcome", "issue": [issue]}
