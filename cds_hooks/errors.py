"""The CDS Hooks service's errors, under chartlight's root error.

    ChartlightError (plugin.errors)
    └── CdsHooksError               a hook call cannot be answered with cards
        ├── NotAuthenticated        the JWT is missing or fails a check -> 401, no detail
        ├── BadHookRequest          the body is not a valid CDS Hooks request -> 400
        ├── UnknownService          no service with that id -> 404
        └── PrefetchUnavailable     data the service needs was neither prefetched nor
                                    fetchable from fhirServer -> 412 (CDS Hooks 2.0.1)

blueprint.py turns each into its HTTP response, in one place.
"""

from __future__ import annotations

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


class PrefetchUnavailable(CdsHooksError):
    """A prefetch key the service needs was not sent and could not be fetched."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"prefetch {key!r}: {reason}")
        self.key = key
        self.reason = reason
