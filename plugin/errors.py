"""The one exception tree of chartlight.

    ChartlightError                 root: anything chartlight raises on purpose
    ├── ConfigError                 a setting is missing or invalid (names the setting)
    ├── SandboxError                the HAPI/Orthanc sandbox could not be built, started or reset
    ├── InputError                  one input (attachment, file) is unusable; names it and why
    │   └── AttachmentRefused       an attachment url points at a host we may not contact
    ├── EngineError                 a model engine gave no answer (a remote endpoint refused,
    │                               timed out or replied in a shape it should not)
    └── FhirError                   talking to a FHIR server failed
        ├── FhirTransportError      no HTTP answer at all (connection refused, timeout)
        ├── FhirResponseError       the server answered with an error status; keeps the
        │                           response and its parsed OperationOutcome
        └── ResponseTooLarge        a body was bigger than the configured limit

Routes and the CLI turn these into OperationOutcomes / exit codes in one place each.
"""

from __future__ import annotations

from typing import Any


class ChartlightError(Exception):
    """Root of every error chartlight raises on purpose."""


class ConfigError(ChartlightError):
    """A setting is missing or invalid."""


class SandboxError(ChartlightError):
    """The local sandbox servers could not be built, started, stopped or reset."""


class InputError(ChartlightError):
    """One input cannot be used; `source` names it, the message says why."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class AttachmentRefused(InputError):
    """An attachment url points at a host that is neither the FHIR server nor allow-listed."""


class EngineError(ChartlightError):
    """A model engine could not produce an answer; the message says why (never a secret).
    `transient` marks a failure worth retrying later (timeout, no connection, overloaded)."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class FhirError(ChartlightError):
    """Talking to a FHIR server failed."""

    def __init__(self, message: str, *, method: str, url: str) -> None:
        super().__init__(message)
        self.method = method
        self.url = url


class FhirTransportError(FhirError):
    """The request got no HTTP answer (connection refused, reset, timed out)."""


class ResponseTooLarge(FhirError):
    """A response body exceeded the configured size limit; reading stopped at the limit."""

    def __init__(self, *, method: str, url: str, limit: int) -> None:
        super().__init__(
            f"{method} {url}: response larger than the {limit}-byte limit", method=method, url=url
        )
        self.limit = limit


class FhirResponseError(FhirError):
    """The server answered with an error status.

    `status` is the HTTP status, `outcome` the parsed OperationOutcome (or None when the body
    was not one) and `diagnostics` the server's own words, joined, for people to read.
    """

    def __init__(
        self,
        *,
        method: str,
        url: str,
        status: int,
        outcome: dict[str, Any] | None,
        body_excerpt: str = "",
    ) -> None:
        self.status = status
        self.outcome = outcome
        self.diagnostics = _diagnostics(outcome) or body_excerpt
        super().__init__(
            f"{method} {url} -> HTTP {status}: {self.diagnostics or 'no diagnostics'}",
            method=method,
            url=url,
        )


def _diagnostics(outcome: dict[str, Any] | None) -> str:
    if not outcome:
        return ""
    parts = []
    for issue in outcome.get("issue", []):
        text = issue.get("diagnostics") or (issue.get("details") or {}).get("text") or ""
        if text:
            parts.append(f"[{issue.get('severity', '?')}] {text}")
    return "; ".join(parts)
