"""Granted SMART scopes decide what the app offers: read, and write (create)."""

from __future__ import annotations

import pytest

from plugin.scopes import parse_scopes
from smart_launch.scopes import can_read, can_write, launch_scopes, permissions


def test_v2_scopes() -> None:
    granted = frozenset({"launch", "openid", "patient/Observation.crus", "patient/Patient.r",
                         "user/Device.cu", "patient/Condition.rs?category=problem-list-item"})
    assert permissions(granted, "Observation") == frozenset("crus")
    assert can_read(granted, "Patient") and not can_write(granted, "Patient")
    assert can_write(granted, "Observation") and can_write(granted, "Device")
    assert can_read(granted, "Condition")  # a granular scope still reads that type
    assert not can_read(granted, "DocumentReference") and not can_write(granted, "DocumentReference")


def test_update_only_is_not_enough_to_write() -> None:
    assert not can_write(frozenset({"patient/Observation.ru"}), "Observation")


def test_v1_and_wildcard_scopes() -> None:
    assert can_write(frozenset({"patient/Observation.write"}), "Observation")
    assert not can_read(frozenset({"patient/Observation.write"}), "Observation")
    assert can_read(frozenset({"user/*.read"}), "Media")
    assert not can_write(frozenset({"user/*.read"}), "Media")
    assert can_write(frozenset({"patient/*.*"}), "Provenance")


def test_malformed_scopes_grant_nothing() -> None:
    assert not permissions(frozenset({"patient/Observation", "Observation.crus", "patient/Obs-1.r",
                                      "patient/Observation.xyz"}), "Observation")


def test_launch_scope_matches_the_flow() -> None:
    assert launch_scopes("launch/patient openid patient/Patient.r", ehr_launch=True) == \
        "launch openid patient/Patient.r"
    assert launch_scopes("launch openid", ehr_launch=False) == "launch/patient openid"


@pytest.mark.parametrize("scope", [
    "patient/Observation.rc",  # v2 letters out of order
    "patient/observation.c",  # not a FHIR type
    "patient/Observation.write?category=laboratory",  # v1 takes no query
    "patient/Observation.cc",
])
def test_the_app_and_the_writer_read_a_scope_alike(scope: str) -> None:
    """What the app offers (Abilities) and what write-back then does (FhirClient.granted_scopes)
    come from one parser: the app never offers a write the writer refuses."""
    granted = frozenset({scope})
    assert can_write(granted, "Observation") == parse_scopes(scope).can_create("Observation")
    assert can_read(granted, "Observation") == parse_scopes(scope).can_read("Observation")
