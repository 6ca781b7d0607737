"""Build, start, stop and reset the local HAPI FHIR sandbox (an R4 JPA server on H2).

The server is our own launcher, shipped as package data in plugin/sandbox/hapi_launcher and
built with Maven into a cache folder named by the hash of its sources (never into the installed
package); tests and the demo talk to it over HTTP only. One sandbox per port: its pid file, log
and (when persistent) H2 database live in `state_dir`, named by port, so a test sandbox and a
demo sandbox can coexist. A server already on the port is kept only when its command line is
the one this sandbox would run (same build, heap, database); otherwise it is restarted.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

from plugin.errors import SandboxError
from plugin.sandbox.places import default_cache_dir
from plugin.sandbox.processes import (
    ServerProcess,
    alive,
    find_processes,
    keep_or_stop,
    running_pid,
    spawn_detached,
    stop_process,
)

LAUNCHER_SOURCES = Path(__file__).resolve().parent / "hapi_launcher"
MAIN_CLASS = "org.chartlight.sandbox.SandboxServer"
JAR_NAME = "chartlight-hapi-sandbox.jar"
FHIR_JSON = "application/fhir+json"
# Serial GC keeps the resident size near the heap; C1-only JIT starts about twice as fast on
# two cores, at the cost of slower large (50 MB) attachment handling.
JVM_OPTIONS = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true")
# `clean` so target/lib never keeps a jar the pom no longer asks for.
MAVEN_COMMAND = ("mvn", "-B", "-q", "-Dstyle.color=never", "clean", "package")
MAVEN_TIMEOUT_S = 1800
LOG_TAIL_LINES = 40
MAVEN_TAIL_CHARS = 4000
POLL_INTERVAL_S = 1.0
REQUEST_TIMEOUT_S = 10.0
BUILD_COMPLETE = ".chartlight-build-complete"
EXPUNGE_TIMEOUT_S = 300.0
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def default_build_root() -> Path:
    """Where launcher builds go: <cache>/hapi-launcher. Builds are named by the hash of their
    sources, so every checkout and install of the same sources shares one."""
    return default_cache_dir() / "hapi-launcher"


def _quiet(_: str) -> None:
    """Default for `say`: callers that print nothing."""


@dataclass(frozen=True)
class HapiSandbox:
    """The HAPI FHIR sandbox on one port of 127.0.0.1."""

    state_dir: Path
    port: int = 8080
    heap_mb: int = 1536
    persistent: bool = False
    sources: Path = LAUNCHER_SOURCES
    build_root: Path = field(default_factory=default_build_root)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / f"hapi-{self.port}.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / f"hapi-{self.port}.log"

    @property
    def database_file(self) -> Path:
        """H2 file database (H2 adds `.mv.db`); used only when `persistent`."""
        return self.state_dir / f"hapi-{self.port}-db"

    @property
    def build_dir(self) -> Path:
        """The launcher's Maven project, copied from `sources`, and its `target/` build."""
        return self.build_root / sources_hash(self.sources)

    def build(self) -> None:
        """Build the launcher with Maven unless this version of its sources was built before."""
        self.build_root.mkdir(parents=True, exist_ok=True)
        # Two checkouts building the same sources at once would share one folder.
        with open(self.build_root / f"{self.build_dir.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not self._build_is_complete():
                self._maven_build()

    def _maven_build(self) -> None:
        if shutil.which(MAVEN_COMMAND[0]) is None:
            raise SandboxError("Maven (mvn) is not installed; `make deps` installs it")
        shutil.rmtree(self.build_dir, ignore_errors=True)
        shutil.copytree(self.sources, self.build_dir, ignore=shutil.ignore_patterns("target"))
        try:
            result = subprocess.run(
                MAVEN_COMMAND, cwd=self.build_dir, capture_output=True, text=True,
                timeout=MAVEN_TIMEOUT_S, check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise SandboxError(f"Maven build of {self.build_dir} took over {exc.timeout} s") from exc
        if result.returncode != 0:
            output = ANSI_ESCAPE.sub("", result.stdout + result.stderr).strip()
            raise SandboxError(
                f"Maven build of {self.build_dir} failed (exit {result.returncode}):\n"
                f"{output[-MAVEN_TAIL_CHARS:]}"
            )
        (self.build_dir / BUILD_COMPLETE).touch()

    def start(self, timeout_s: float = 300, *, say: Callable[[str], None] = _quiet) -> str:
        """Start the sandbox (building it first if needed) and wait until it answers. A server
        of ours on the port with another command line is restarted, and `say` is told why.

        `timeout_s` bounds the wait for the server, not a first Maven build.
        """
        self.build()
        holders = self.servers_on_port()
        kept = keep_or_stop("HAPI sandbox", holders, self.command(), timeout_s=60, say=say)
        if not kept and self.is_running():
            raise SandboxError(
                f"a FHIR server answers at {self.base_url} but it is not a chartlight HAPI sandbox "
                f"this machine started; stop it or choose another port (sandbox_port)")
        started_here = not kept
        if kept:
            if self.is_running():
                return self.base_url
            pid = next(h.pid for h in holders if list(h.argv) == self.command())
        else:
            pid = self._spawn()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not alive(pid):
                self.pid_file.unlink(missing_ok=True)
                raise SandboxError(
                    f"HAPI sandbox (pid {pid}) exited during start-up; last lines of "
                    f"{self.log_file}:\n{self._log_tail()}"
                )
            if self.is_running():
                return self.base_url
            time.sleep(POLL_INTERVAL_S)
        if started_here:
            self.stop()
        raise SandboxError(
            f"HAPI sandbox did not answer at {self.base_url} within {timeout_s:.0f} s; last lines "
            f"of {self.log_file}:\n{self._log_tail()}"
        )

    def stop(self, timeout_s: float = 60) -> None:
        """Stop the sandbox on this port (the one this state_dir started, or another launcher of
        ours holding the port): SIGTERM, then SIGKILL after `timeout_s`."""
        pids = {h.pid for h in self.servers_on_port()}
        pid = self._sandbox_pid()
        if pid is not None:
            pids.add(pid)
        for pid in sorted(pids):
            stop_process(pid, name="HAPI sandbox", timeout_s=timeout_s)
        self.pid_file.unlink(missing_ok=True)

    def servers_on_port(self) -> list[ServerProcess]:
        """Our launchers started for this port, by whoever started them."""
        port_arg = f"--server.port={self.port}"
        return find_processes(lambda argv: MAIN_CLASS in argv and port_arg in argv)

    def is_running(self) -> bool:
        """Whether a FHIR server answers at base_url (this sandbox or one started elsewhere)."""
        try:
            response = requests.get(
                f"{self.base_url}/metadata", headers={"Accept": FHIR_JSON},
                timeout=REQUEST_TIMEOUT_S,
            )
        except requests.RequestException:
            return False
        return response.status_code == 200

    def reset(self) -> None:
        """Delete everything on the server ($expunge everything) and check that it is empty."""
        body = {
            "resourceType": "Parameters",
            "parameter": [{"name": "expungeEverything", "valueBoolean": True}],
        }
        headers = {"Accept": FHIR_JSON, "Content-Type": FHIR_JSON}
        try:
            response = requests.post(
                f"{self.base_url}/$expunge", json=body, headers=headers, timeout=EXPUNGE_TIMEOUT_S
            )
            if response.status_code != 200:
                raise SandboxError(
                    f"$expunge at {self.base_url} -> HTTP {response.status_code}: "
                    f"{response.text[:2000]}"
                )
            # System-wide history covers every resource type and every version.
            history = requests.get(
                f"{self.base_url}/_history", params={"_count": "1"},
                headers={"Accept": FHIR_JSON}, timeout=REQUEST_TIMEOUT_S,
            )
            history.raise_for_status()
            left = history.json().get("entry")
        except requests.RequestException as exc:
            raise SandboxError(f"resetting the sandbox at {self.base_url} failed: {exc}") from exc
        if left:
            raise SandboxError(f"$expunge at {self.base_url} left resources behind")

    def _build_is_complete(self) -> bool:
        lib = self.build_dir / "target" / "lib"
        return ((self.build_dir / BUILD_COMPLETE).is_file()
                and (self.build_dir / "target" / JAR_NAME).is_file() and any(lib.glob("*.jar")))

    def command(self) -> list[str]:
        """The command line this sandbox runs; a server on the port with another one is not it."""
        java = shutil.which("java")
        if java is None:
            raise SandboxError("java is not installed; `make deps` installs a JDK")
        target = self.build_dir.resolve() / "target"
        return [
            java, f"-Xmx{self.heap_mb}m", *JVM_OPTIONS,
            "-cp", f"{target / 'classes'}{os.pathsep}{target / 'lib' / '*'}",
            MAIN_CLASS,
            f"--server.port={self.port}",
            # Always explicit, so a SANDBOX_H2_FILE in the environment cannot change the mode.
            f"--sandbox.h2-file={self.database_file.resolve() if self.persistent else ''}",
        ]

    def _spawn(self) -> int:
        argv = self.command()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        return spawn_detached(argv, log_file=self.log_file, pid_file=self.pid_file)

    def _sandbox_pid(self) -> int | None:
        """The pid in the pid file, if that process is alive and is our launcher."""
        return running_pid(self.pid_file, MAIN_CLASS)

    def _log_tail(self) -> str:
        try:
            with self.log_file.open("rb") as log:
                log.seek(max(0, log.seek(0, os.SEEK_END) - 64 * 1024))
                text = log.read().decode("utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-LOG_TAIL_LINES:])


def sources_hash(sources: Path) -> str:
    """A hash of the launcher's pom and Java sources: a changed source is a new build."""
    digest = hashlib.sha256()
    for path in sorted([sources / "pom.xml", *(sources / "src").rglob("*")]):
        if path.is_file():
            digest.update(str(path.relative_to(sources)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def default_sandbox(
    state_root: Path, *, port: int = 8080, persistent: bool = False, heap_mb: int = 1536
) -> HapiSandbox:
    """A sandbox with its state under <state_root>/hapi."""
    return HapiSandbox(
        state_dir=state_root / "hapi",
        port=port,
        heap_mb=heap_mb,
        persistent=persistent,
    )
