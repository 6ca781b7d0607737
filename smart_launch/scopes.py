"""What granted SMART scopes let the app do, read with the one scope parser (plugin.scopes) that
write-back and CDS Hooks use too, so the app never offers what the writer then refuses; and the
scopes a launch asks for. Pure functions; the session asks them what the user may do."""

from __future__ import annotations

from plugin.scopes import parse_scopes


def permissions(scopes: frozenset[str], resource_type: str) -> frozenset[str]:
    """The interaction letters (c, r, u, d, s) the scopes grant on `resource_type`."""
    granted = parse_scopes(sorted(scopes))
    return frozenset(letter for letter in "cruds" if granted.allows(resource_type, letter))


def can_read(scopes: frozenset[str], resource_type: str) -> bool:
    return parse_scopes(sorted(scopes)).can_read(resource_type)


def can_write(scopes: frozenset[str], resource_type: str) -> bool:
    """Creating is what every write of ours starts with, so `c` (or v1 `write`) decides."""
    return parse_scopes(sorted(scopes)).can_create(resource_type)


def launch_scopes(configured: str, *, ehr_launch: bool) -> str:
    """The configured scopes plus the launch scope of the flow (`launch`, or `launch/patient` for a
    standalone launch, which has the EHR pick the patient)."""
    wanted = [s for s in configured.split() if s not in {"launch", "launch/patient"}]
    return " ".join([("launch" if ehr_launch else "launch/patient"), *wanted])
