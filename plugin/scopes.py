"""SMART scopes as granted with an access token: SMART App Launch 2 syntax
`<patient|user|system>/<Type|*>.<c?r?u?d?s?>[?param=value]` and the 1.0 syntax
`<patient|user|system>/<Type|*>.<read|write|*>`, read into what each resource type may be done
with. Pure: CDS Hooks 3.0 (`fhirAuthorization.scope`), SMART sessions and the service's own
token (`fhir_token_scopes`) all describe their grant this way.

A v2 scope with a query (`patient/Observation.rs?category=laboratory`) grants the interaction on
part of the type only; it counts as granted here and the FHIR server enforces the rest (a refusal
then degrades as a refusal by the server would). Scopes that are not about resources (`openid`,
`launch`, `offline_access`, ...) grant nothing here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# v2 letters must appear in this order, each at most once (SMART App Launch 2, Scopes).
_RESOURCE_SCOPE = re.compile(
    r"^(patient|user|system)/([A-Z][A-Za-z]*|\*)\.(c?r?u?d?s?|read|write|\*)(\?[^\s]*)?$")
V1_PERMISSIONS = {"read": frozenset("rs"), "write": frozenset("cud"), "*": frozenset("cruds")}
INTERACTIONS = frozenset("cruds")


@dataclass(frozen=True)
class ResourceScope:
    context: str  # patient | user | system
    resource_type: str  # a FHIR type or "*"
    permissions: frozenset[str]  # of c r u d s
    query: str = ""  # a v2 restriction, without "?"
    v1: bool = False

    def covers(self, resource_type: str, interaction: str) -> bool:
        return self.resource_type in (resource_type, "*") and interaction in self.permissions


@dataclass(frozen=True)
class GrantedScopes:
    """The resource scopes of one grant. `others` are the grant's remaining scopes (openid,
    launch, ... or ones this module does not understand)."""

    resources: tuple[ResourceScope, ...] = ()
    others: tuple[str, ...] = ()

    def allows(self, resource_type: str, interaction: str) -> bool:
        """Whether any scope grants `interaction` (one of c r u d s) on `resource_type`."""
        if interaction not in INTERACTIONS:
            raise ValueError(f"not a SMART interaction: {interaction!r}")
        return any(scope.covers(resource_type, interaction) for scope in self.resources)

    def can_read(self, resource_type: str) -> bool:
        return self.allows(resource_type, "r") or self.allows(resource_type, "s")

    def can_create(self, resource_type: str) -> bool:
        return self.allows(resource_type, "c")


def parse_scopes(scopes: str | Iterable[str]) -> GrantedScopes:
    """The grant a space-separated scope string (or a list of scopes) describes."""
    items = scopes.split() if isinstance(scopes, str) else [s for item in scopes for s in item.split()]
    resources, others = [], []
    for item in dict.fromkeys(items):  # once each, in order
        scope = parse_scope(item)
        if scope is None:
            others.append(item)
        else:
            resources.append(scope)
    return GrantedScopes(tuple(resources), tuple(others))


def parse_scope(item: str) -> ResourceScope | None:
    match = _RESOURCE_SCOPE.match(item)
    if match is None:
        return None
    context, resource_type, permissions, query = match.groups()
    if permissions == "":
        return None  # "patient/Observation." grants nothing and is not a scope
    if permissions in V1_PERMISSIONS:
        if query:
            return None  # v1 scopes take no query
        return ResourceScope(context, resource_type, V1_PERMISSIONS[permissions], v1=True)
    return ResourceScope(context, resource_type, frozenset(permissions), (query or "").removeprefix("?"))
