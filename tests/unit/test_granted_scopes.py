"""SMART scopes as granted: App Launch 2 (`.cruds`, queries) and 1.0 (`.read`/`.write`/`.*`)."""

from __future__ import annotations

import pytest

from plugin.scopes import parse_scope, parse_scopes


@pytest.mark.parametrize(("scope", "resource_type", "allowed", "refused"), [
    ("patient/Observation.rs", "Observation", "rs", "cud"),
    ("user/Observation.cruds", "Observation", "cruds", ""),
    ("patient/Observation.c", "Observation", "c", "ruds"),
    ("user/*.rs", "DocumentReference", "rs", "cud"),
    ("patient/Observation.rs?category=laboratory", "Observation", "rs", "cud"),
    ("user/Observation.read", "Observation", "rs", "cud"),  # v1
    ("user/Observation.write", "Observation", "cud", "rs"),
    ("system/*.*", "Provenance", "cruds", ""),
    ("patient/Observation.rs", "DiagnosticReport", "", "cruds"),
])
def test_what_a_scope_grants(scope: str, resource_type: str, allowed: str, refused: str) -> None:
    granted = parse_scopes(scope)
    assert all(granted.allows(resource_type, letter) for letter in allowed)
    assert not any(granted.allows(resource_type, letter) for letter in refused)


@pytest.mark.parametrize("item", [
    "openid", "fhirUser", "launch", "launch/patient", "offline_access", "patient/Observation.",
    "patient/Observation.sr",  # v2 letters out of order
    "patient/Observation.rr", "patient/observation.rs", "clinic/Observation.rs",
    "user/Observation.read?category=x",  # v1 takes no query
])
def test_other_scopes_grant_no_resource_access(item: str) -> None:
    assert parse_scope(item) is None
    granted = parse_scopes(item)
    assert granted.resources == () and granted.others == (item,)


def test_a_mixed_grant_and_its_reading() -> None:
    granted = parse_scopes("launch openid patient/Observation.rs patient/DocumentReference.cruds "
                           "user/Provenance.c patient/Observation.rs")
    assert len(granted.resources) == 3 and granted.others == ("launch", "openid")
    assert granted.can_read("Observation") and not granted.can_create("Observation")
    assert granted.can_create("DocumentReference") and granted.can_create("Provenance")
    assert parse_scopes(["patient/Observation.rs", "patient/Patient.r"]).can_read("Patient")
    with pytest.raises(ValueError, match="not a SMART interaction"):
        granted.allows("Observation", "x")
