"""Shared fixtures. The HAPI FHIR sandbox and the Orthanc PACS are started here, on the test
ports (CHARTLIGHT_SANDBOX_PORT, CHARTLIGHT_PACS_PORT), when a test needs them and none of ours is
already answering; they are emptied once per session so every run starts from a clean server.

Every server a test session starts, by a fixture, a test or a command a test runs, is stopped
when the session ends: on success, failure and Ctrl-C (SIGTERM is turned into Ctrl-C too). The
session names a ledger folder in $SANDBOX_SERVER_LEDGER, where plugin.sandbox.processes
records each server it spawns; at the end every recorded server still running is stopped. A
session killed outright (SIGKILL) cannot do that: the next session, at its start, stops the
servers of every ledger whose session is gone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from plugin.fhir import FhirClient
from plugin.sandbox.hapi import default_sandbox
from plugin.sandbox.orthanc import default_pacs
from plugin.sandbox.processes import LEDGER_ENV, owner_alive, process_start_time, stop_recorded
from tests.support import postgres
from tests.support import redis_server as redis_server_support

REPO_ROOT = Path(__file__).resolve().parents[1]
STATE_ROOT = REPO_ROOT / ".sandbox"
LEDGERS = STATE_ROOT / "test-ledgers"


def pytest_sessionstart(session: pytest.Session) -> None:
    reclaimed = reclaim_stale_ledgers(LEDGERS)
    if reclaimed:
        _say(session, f"stopped {reclaimed} server(s) left running by an earlier test session (killed)")
    ledger = LEDGERS / f"{os.getpid()}-{process_start_time(os.getpid())}"
    ledger.mkdir(parents=True, exist_ok=True)
    os.environ[LEDGER_ENV] = str(ledger)
    signal.signal(signal.SIGTERM, _interrupt)


@pytest.hookimpl(trylast=True)  # after the session fixtures' own finalisers
def pytest_sessionfinish(session: pytest.Session) -> None:
    ledger = os.environ.pop(LEDGER_ENV, None)
    if not ledger:
        return
    left = stop_recorded(Path(ledger))
    if left:
        names = ", ".join(f"{Path(s.argv[0]).name} (pid {s.pid})" for s in left)
        _say(session, f"stopped {len(left)} server(s) tests started and left running: {names}")
    shutil.rmtree(ledger, ignore_errors=True)


def _say(session: pytest.Session, line: str) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line)


def reclaim_stale_ledgers(root: Path) -> int:
    """Stop the servers of every ledger whose session has ended; returns how many were stopped."""
    stopped = 0
    for ledger in sorted(root.glob("*")) if root.is_dir() else []:
        if ledger.is_dir() and not owner_alive(ledger):
            stopped += len(stop_recorded(ledger))
            shutil.rmtree(ledger, ignore_errors=True)
    return stopped


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM (a CI timeout, `kill`) ends the session like Ctrl-C, so finalisers run."""
    raise KeyboardInterrupt


def _hapi_server(port_variable: str, default_port: int) -> Iterator[str]:
    """A HAPI FHIR sandbox on the port `port_variable` names, emptied once; stopped afterwards
    when this session started it."""
    box = default_sandbox(STATE_ROOT, port=int(os.environ.get(port_variable, str(default_port))))
    started_here = not box.is_running()
    try:
        box.start()
        box.reset()
        yield box.base_url
    finally:
        if started_here:
            box.stop()


@pytest.fixture(scope="session")
def sandbox_url() -> Iterator[str]:
    yield from _hapi_server("CHARTLIGHT_SANDBOX_PORT", 8091)


@pytest.fixture(scope="session")
def sandbox2_url() -> Iterator[str]:
    """A second, separate HAPI FHIR server (another EHR), for tests of many EHRs at once."""
    yield from _hapi_server("TEST_SANDBOX2_PORT", 8094)


@pytest.fixture(scope="session")
def pacs_url() -> Iterator[str]:
    """The Orthanc PACS sandbox's DICOMweb base, emptied once per session."""
    pacs = default_pacs(STATE_ROOT, port=int(os.environ.get("CHARTLIGHT_PACS_PORT", "8052")))
    started_here = not pacs.is_running()
    try:
        url = pacs.start()
        pacs.reset()
        yield url
    finally:
        if started_here:
            pacs.stop()


@pytest.fixture(scope="session")
def postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A PostgreSQL server of this session's own (initdb in a temporary folder, started on
    $TEST_POSTGRES_PORT, default 8095, stopped at the end); the URL of its `postgres` database.
    Nothing is skipped: a server that does not start fails the tests with the reason."""
    try:
        server = postgres.start_postgres(int(os.environ.get("TEST_POSTGRES_PORT", "8095")))
    except postgres.PostgresUnavailable as exc:
        failure = str(exc)
    else:
        failure = ""
    if failure:
        pytest.fail(failure, pytrace=False)
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        _say(request.session, f"\nPostgreSQL started on port {server.port} in {server.start_s:.1f} s")
    try:
        yield server.admin_url
    finally:
        postgres.stop(server)


@pytest.fixture(scope="session")
def redis_server(request: pytest.FixtureRequest) -> Iterator[redis_server_support.RedisServer]:
    """A Redis server of this session's own (the Celery broker of the scale-out tests), on
    $TEST_REDIS_PORT (default 8096), stopped at the end. Tests that stop it (an outage) start it
    again on the same port before they end."""
    try:
        server = redis_server_support.start_redis(int(os.environ.get("TEST_REDIS_PORT", "8096")))
    except redis_server_support.RedisUnavailable as exc:
        failure = str(exc)
    else:
        failure = ""
    if failure:
        pytest.fail(failure, pytrace=False)
    try:
        yield server
    finally:
        redis_server_support.stop(server)


@pytest.fixture
def fhir(sandbox_url: str) -> FhirClient:
    return FhirClient(sandbox_url, timeout_s=120, retry_backoff_s=0.05)


@pytest.fixture
def run_id() -> str:
    """A value unique to one test, to tag what it writes so searches see only its own data."""
    return uuid.uuid4().hex
