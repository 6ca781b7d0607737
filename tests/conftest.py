"""Shared fixtures. The HAPI FHIR sandbox is started here when a test needs it and no sandbox
is already answering; it is emptied once per session so every run starts from a clean server."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from plugin.fhir import FhirClient
from plugin.sandbox.hapi import default_sandbox
from plugin.sandbox.orthanc import default_pacs

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def sandbox_url() -> Iterator[str]:
    port = int(os.environ.get("CHARTLIGHT_SANDBOX_PORT", "8091"))
    box = default_sandbox(REPO_ROOT, port=port)
    started_here = not box.is_running()
    box.start()
    box.reset()
    yield box.base_url
    if started_here:
        box.stop()


@pytest.fixture(scope="session")
def sandbox2_url() -> Iterator[str]:
    """A second, separate HAPI FHIR server (another EHR), for tests of many EHRs at once."""
    port = int(os.environ.get("CHARTLIGHT_SANDBOX2_PORT", "8094"))
    box = default_sandbox(REPO_ROOT, port=port)
    started_here = not box.is_running()
    box.start()
    box.reset()
    yield box.base_url
    if started_here:
        box.stop()


@pytest.fixture(scope="session")
def pacs_url() -> Iterator[str]:
    """The Orthanc PACS sandbox's DICOMweb base, emptied once per session."""
    pacs = default_pacs(REPO_ROOT, port=int(os.environ.get("CHARTLIGHT_PACS_PORT", "8052")))
    started_here = not pacs.is_running()
    url = pacs.start()
    pacs.reset()
    yield url
    if started_here:
        pacs.stop()


@pytest.fixture
def fhir(sandbox_url: str) -> FhirClient:
    return FhirClient(sandbox_url, timeout_s=120, retry_backoff_s=0.05)


@pytest.fixture
def run_id() -> str:
    """A value unique to one test, to tag what it writes so searches see only its own data."""
    return uuid.uuid4().hex
