"""SMART scopes as granted: v2 `<patient|user|system>/<Type|*>.<c?r?u?d?s?>[?query]` and v1
`.read`/`.write`/`.*`. Pure functions; the session asks them what the user may do."""

from __future__ import annotations

import re

_SCOPE = re.compile(r"^(patient|user|system)/([A-Za-z]+|\*)\.([cruds]+|read|write|\*)(\?.*)?$")
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}


def permissions(scopes: frozenset[str], resource_type: str) -> frozenset[str]:
    """The interaction letters (c, r, u, d, s) the scopes grant on `resource_type`."""
    letters: set[str] = set()
    for scope in scopes:
        match = _SCOPE.match(scope)
        if match and match.group(2) in (resource_type, "*"):
            letters.update(_V1.get(match.group(3), match.group(3)))
    return frozenset(letters)


def can_read(scopes: frozenset[str], resource_type: str) -> bool:
    return bool({"r", "s"} & permissions(scopes, resource_type))


def can_write(scopes: frozenset[str], resource_type: str) -> bool:
    """Creating is what every write of ours starts with, so `c` (or v1 `write`) decides."""
    return "c" in permissions(scopes, resource_type)


def launch_scopes(configured: str, *, ehr_launch: bool) -> str:
    """The configured scopes plus the launch scope of the flow (`launch`, or `launch/patient` for a
    standalone launch, which has the EHR pick the patient)."""
    wanted = [s for s in configured.split() if s not in {"launch", "launch/patient"}]
    return " ".join([("launch" if ehr_launch else "launch/patient"), *wanted])
