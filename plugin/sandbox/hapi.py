"""Build, start, stop and reset the local HAPI FHIR sandbox (an R4 JPA server on H2).

The server is our own launcher under tests/sandbox/hapi, built with Maven; tests and the demo
talk to it over HTTP only. One sandbox per port: its pid file, log and (when persistent) H2
database live in `state_dir`, named by port, so a test sandbox and a demo sandbox can coexist.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from plugin.errors import SandboxError
from plugin.sandbox.processes import alive, running_pid, spawn_detached, stop_process

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
EXPUNGE_TIMEOUT_S = 300.0
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class HapiSandbox:
    """The HAPI FHIR sandbox on one port of 127.0.0.1."""

    project_dir: Path
    state_dir: Path
    port: int = 8080
    heap_mb: int = 1536
    persistent: bool = False

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

    def build(self) -> None:
        """Build the launcher with Maven unless the jar and its lib/ are newer than every source."""
        if self._build_is_fresh():
            return
        if shutil.which(MAVEN_COMMAND[0]) is None:
            raise SandboxError("Maven (mvn) is not installed; `make deps` installs it")
        try:
            result = subprocess.run(
                MAVEN_COMMAND, cwd=self.project_dir, capture_output=True, text=True,
                timeout=MAVEN_TIMEOUT_S, check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise SandboxError(f"Maven build of {self.project_dir} took over {exc.timeout} s") from exc
        if result.returncode != 0:
            output = ANSI_ESCAPE.sub("", result.stdout + result.stderr).strip()
            raise SandboxError(
                f"Maven build of {self.project_dir} failed (exit {result.returncode}):\n"
                f"{output[-MAVEN_TAIL_CHARS:]}"
            )

    def start(self, timeout_s: float = 300) -> str:
        """Start the sandbox (building it first if needed) and wait until it answers.

        `timeout_s` bounds the wait for the server, not a first Maven build.
        """
        if self.is_running():
            return self.base_url
        pid = self._sandbox_pid()
        started_here = pid is None
        if pid is None:
            self.build()
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
        """Stop the sandbox this state_dir started: SIGTERM, then SIGKILL after `timeout_s`."""
        pid = self._sandbox_pid()
        if pid is not None:
            stop_process(pid, name="HAPI sandbox", timeout_s=timeout_s)
        self.pid_file.unlink(missing_ok=True)

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

    def _build_is_fresh(self) -> bool:
        jar = self.project_dir / "target" / JAR_NAME
        lib = self.project_dir / "target" / "lib"
        if not jar.is_file() or not lib.is_dir() or not any(lib.glob("*.jar")):
            return False
        built_at = min(jar.stat().st_mtime, lib.stat().st_mtime)
        sources = [self.project_dir / "pom.xml", *(self.project_dir / "src").rglob("*")]
        return all(path.stat().st_mtime < built_at for path in sources if path.is_file())

    def _spawn(self) -> int:
        java = shutil.which("java")
        if java is None:
            raise SandboxError("java is not installed; `make deps` installs a JDK")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        target = self.project_dir.resolve() / "target"
        argv = [
            java, f"-Xmx{self.heap_mb}m", *JVM_OPTIONS,
            "-cp", f"{target / 'classes'}{os.pathsep}{target / 'lib' / '*'}",
            MAIN_CLASS,
            f"--server.port={self.port}",
            # Always explicit, so a SANDBOX_H2_FILE in the environment cannot change the mode.
            f"--sandbox.h2-file={self.database_file.resolve() if self.persistent else ''}",
        ]
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


def default_sandbox(
    repo_root: Path, *, port: int = 8080, persistent: bool = False, heap_mb: int = 1536
) -> HapiSandbox:
    """The repository's sandbox, with its state under <repo_root>/.sandbox/hapi."""
    return HapiSandbox(
        project_dir=repo_root / "tests" / "sandbox" / "hapi",
        state_dir=repo_root / ".sandbox" / "hapi",
        port=port,
        heap_mb=heap_mb,
        persistent=persistent,
    )
