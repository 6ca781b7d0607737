"""`sandbox up` keeps a server already on its port only when it is the one it would start: a
sandbox EHR proxying to another FHIR server (the leftover of a test run on the demo's port) is
restarted with the right upstream, saying so; the same one is kept; a stranger is refused."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from pathlib import Path

import pytest

from plugin.errors import SandboxError
from plugin.sandbox.ehr import EhrSandbox
from plugin.sandbox.orthanc import OrthancSandbox

pytestmark = pytest.mark.sandbox


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_ehr_with_another_upstream_is_restarted_and_the_same_one_kept(tmp_path: Path) -> None:
    port = free_port()
    stale = EhrSandbox(state_dir=tmp_path / "tests", fhir_upstream="http://127.0.0.1:8091/fhir",
                       app_base="http://127.0.0.1:8000", port=port)
    wanted = EhrSandbox(state_dir=tmp_path / "demo", fhir_upstream="http://127.0.0.1:8080/fhir",
                        app_base="http://127.0.0.1:8000", port=port)
    said: list[str] = []
    try:
        stale.start()
        [old] = stale.servers_on_port()
        wanted.start(say=said.append)
        [new] = wanted.servers_on_port()
        assert new.pid != old.pid and "--fhir-upstream=http://127.0.0.1:8080/fhir" in new.argv
        assert len(said) == 1 and f"pid {old.pid}" in said[0] and "restarting it" in said[0]
        said.clear()
        wanted.start(say=said.append)  # already the one it would start: kept
        assert wanted.servers_on_port() == [new] and said == []
    finally:
        wanted.stop()
    assert wanted.servers_on_port() == [] and not wanted.is_running()


def test_an_orthanc_with_another_configuration_is_restarted(tmp_path: Path) -> None:
    port = free_port()
    pacs = OrthancSandbox(state_dir=tmp_path, port=port)
    said: list[str] = []
    try:
        pacs.start()
        [old] = pacs.servers_on_port()
        config = pacs.config_file.read_text()
        changed = config.replace('"StorageCompression": false', '"StorageCompression": true')
        assert changed != config
        pacs.config_file.write_text(changed)
        pacs.start(say=said.append)
        [new] = pacs.servers_on_port()
        assert new.pid != old.pid and said and "restarting it" in said[0]
        assert pacs.config_file.read_text() == config
    finally:
        pacs.stop()


def test_a_server_that_is_not_ours_is_refused(tmp_path: Path) -> None:
    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        ehr = EhrSandbox(state_dir=tmp_path, fhir_upstream="http://127.0.0.1:8080/fhir",
                         app_base="http://127.0.0.1:8000", port=server.server_address[1])
        with pytest.raises(SandboxError, match="not a sandbox EHR this machine started"):
            ehr.start()
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_an_ehr_from_before_the_move_into_the_package_is_ours_and_restarted(tmp_path: Path) -> None:
    """`python -m tests.sandbox.ehr --port N ...` is how the EHR ran before it became package data;
    one left running by an older checkout must be restarted, not refused as a stranger."""
    import subprocess
    import sys

    port = free_port()
    # A stand-in with the former command line (the module itself is gone from this checkout).
    former = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)",
                               "-m", "tests.sandbox.ehr", "--port", str(port),
                               "--fhir-upstream", "http://127.0.0.1:8091/fhir"])
    ehr = EhrSandbox(state_dir=tmp_path, fhir_upstream="http://127.0.0.1:8080/fhir",
                     app_base="http://127.0.0.1:8000", port=port)
    said: list[str] = []
    try:
        # Until the child has exec'd, /proc shows the parent's command line: wait for its own.
        cmdline = Path(f"/proc/{former.pid}/cmdline")
        deadline = time.monotonic() + 10
        while b"tests.sandbox.ehr" not in cmdline.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [p.pid for p in ehr.servers_on_port()] == [former.pid]
        ehr.start(say=said.append)
        assert former.wait(timeout=30) is not None and said and f"pid {former.pid}" in said[0]
        assert ehr.is_running()
    finally:
        if former.poll() is None:
            former.kill()
            former.wait()
        ehr.stop()
