"""docs/fhir-profile.md lists everything the mappers write: every URI of systems.py, every LOINC
code of the table and every body site code."""

from __future__ import annotations

from pathlib import Path

import pytest

from fhir_mappers import systems
from fhir_mappers.body_sites import _SITES
from fhir_mappers.loinc import TABLE

DOC = (Path(__file__).resolve().parents[3] / "docs" / "fhir-profile.md").read_text("utf-8")
URIS = {name: value for name, value in vars(systems).items()
        if name.isupper() and isinstance(value, str)}


@pytest.mark.parametrize("name", sorted(URIS))
def test_every_uri_is_documented(name: str) -> None:
    uri = URIS[name]
    # Extensions and code systems of our own are named by their last segment in tables.
    assert uri in DOC or (uri.startswith(systems.NAMESPACE) and f"`{uri.rsplit('/', 1)[1]}`" in DOC)


def test_every_loinc_and_snomed_code_is_documented() -> None:
    missing = [e.code for e in TABLE if f"| {e.code} |" not in DOC]
    missing += [code for code, _, _ in _SITES if f"`{code}`" not in DOC]
    assert missing == []


def test_ai_transparency_version_and_example_heading() -> None:
    assert "ballot **1.0.0**" in DOC and "http://hl7.org/fhir/uv/aitransparency" in DOC
    assert "\n## Example Bundles\n" in DOC
