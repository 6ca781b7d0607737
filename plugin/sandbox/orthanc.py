"""Start, stop and reset the local Orthanc PACS sandbox (Debian `orthanc` + `orthanc-dicomweb`).

Orthanc runs directly from /usr/sbin/Orthanc with a JSON configuration of our own, written under
`state_dir/<port>/` beside its storage and index: HTTP on 127.0.0.1 only, no authentication (it
is a loopback sandbox), the DICOM (DIMSE) server off, and the DICOMweb plugin serving QIDO-RS,
WADO-RS and STOW-RS at `/dicom-web/`. One sandbox per port, like the HAPI sandbox. An Orthanc
already on the port is kept only when it runs the configuration this sandbox would write (the
same file, the same content); otherwise it is restarted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from plugin.errors import SandboxError
from plugin.sandbox.processes import (
    ServerProcess,
    alive,
    find_processes,
    keep_or_stop,
    running_pid,
    spawn_detached,
    stop_process,
)

ORTHANC_BINARY = Path("/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
DICOMWEB_ROOT = "/dicom-web/"
POLL_INTERVAL_S = 0.2
REQUEST_TIMEOUT_S = 10.0
LOG_TAIL_LINES = 30


@dataclass(frozen=True)
class OrthancSandbox:
    """The Orthanc PACS sandbox on one port of 127.0.0.1."""

    state_dir: Path
    port: int = 8042
    binary: Path = ORTHANC_BINARY
    plugin: Path = DICOMWEB_PLUGIN

    @property
    def base_url(self) -> str:
        """Orthanc's own REST API (used for reset and status)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb_url(self) -> str:
        """The DICOMweb base an Endpoint.address points at (no trailing slash)."""
        return self.base_url + DICOMWEB_ROOT.rstrip("/")

    @property
    def home(self) -> Path:
        return self.state_dir / str(self.port)

    @property
    def config_file(self) -> Path:
        return self.home / "orthanc.json"

    @property
    def pid_file(self) -> Path:
        return self.home / "orthanc.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "orthanc.log"

    def config(self) -> dict[str, object]:
        """The configuration Orthanc is started with."""
        return {
            "Name": f"chartlight-pacs-{self.port}",
            "StorageDirectory": str((self.home / "storage").resolve()),
            "IndexDirectory": str((self.home / "index").resolve()),
            "HttpPort": self.port,
            "RemoteAccessAllowed": False,  # loopback only
            "AuthenticationEnabled": False,  # a loopback sandbox; a real PACS sits behind auth
            "DicomServerEnabled": False,  # DICOMweb only; no DIMSE port to collide with
            "DicomPort": self.port + 10000 if self.port < 55535 else self.port - 10000,
            "StorageCompression": False,
            "OverwriteInstances": True,  # a re-seed stores the same instances again
            "HttpCompressionEnabled": False,  # bytes on the wire are what the benchmark counts
            "Plugins": [str(self.plugin)],
            "DicomWeb": {
                "Enable": True,
                "Root": DICOMWEB_ROOT,
                # Series metadata from the stored files: every attribute the geometry checks need.
                "StudiesMetadata": "Full",
                "SeriesMetadata": "Full",
            },
        }

    def start(self, timeout_s: float = 60, *, say: Callable[[str], None] = lambda _: None) -> str:
        """Start Orthanc unless ours, with this configuration, already answers; wait until it
        does. Returns the DICOMweb base. Another Orthanc of ours on the port is restarted (`say`
        is told why); a server we did not start there is an error."""
        for path in (self.binary, self.plugin):
            if not path.is_file():
                raise SandboxError(f"{path} is missing; `make deps` installs orthanc and orthanc-dicomweb")
        holders = self.servers_on_port()
        same = [h for h in holders if list(h.argv) == self.command() and self._config_current()]
        keep_or_stop("Orthanc", holders, self.command() if same else [], timeout_s=30, say=say)
        if same and self.is_running():
            return self.dicomweb_url
        if not same and self.is_running():
            raise SandboxError(f"a server answers at {self.base_url} but it is not an Orthanc sandbox "
                               "this machine started; stop it or choose another port (pacs_port)")
        pid = same[0].pid if same else self._spawn()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not alive(pid):
                self.pid_file.unlink(missing_ok=True)
                raise SandboxError(f"Orthanc (pid {pid}) exited during start-up; last lines of "
                                   f"{self.log_file}:\n{self._log_tail()}")
            if self.is_running():
                return self.dicomweb_url
            time.sleep(POLL_INTERVAL_S)
        self.stop()
        raise SandboxError(f"Orthanc did not answer at {self.base_url} within {timeout_s:.0f} s; "
                           f"last lines of {self.log_file}:\n{self._log_tail()}")

    def stop(self, timeout_s: float = 30) -> None:
        """Stop the Orthanc on this port (the one this state_dir started, or another of ours
        holding the port): SIGTERM, then SIGKILL after `timeout_s`."""
        pids = {h.pid for h in self.servers_on_port()}
        pid = self._orthanc_pid()
        if pid is not None:
            pids.add(pid)
        for pid in sorted(pids):
            stop_process(pid, name="Orthanc", timeout_s=timeout_s)
        self.pid_file.unlink(missing_ok=True)

    def command(self) -> list[str]:
        return [str(self.binary), str(self.config_file.resolve())]

    def servers_on_port(self) -> list[ServerProcess]:
        """Orthanc processes whose configuration file (their one argument) serves this port."""
        def serves_port(argv: tuple[str, ...]) -> bool:
            if not argv or Path(argv[0]).name != self.binary.name or len(argv) < 2:
                return False
            try:
                return bool(json.loads(Path(argv[-1]).read_text()).get("HttpPort") == self.port)
            except (OSError, ValueError, AttributeError):
                return False
        return find_processes(serves_port)

    def _config_current(self) -> bool:
        try:
            return bool(json.loads(self.config_file.read_text()) == self.config())
        except (OSError, ValueError):
            return False

    def is_running(self) -> bool:
        """Whether Orthanc's DICOMweb plugin answers on this port."""
        try:
            response = requests.get(f"{self.dicomweb_url}/studies", params={"limit": "1"},
                                    headers={"Accept": "application/dicom+json"},
                                    timeout=REQUEST_TIMEOUT_S)
        except requests.RequestException:
            return False
        return response.status_code == 200

    def reset(self) -> None:
        """Delete every study stored, and check that none is left."""
        try:
            for study_id in self._study_ids():
                response = requests.delete(f"{self.base_url}/studies/{study_id}",
                                           timeout=REQUEST_TIMEOUT_S)
                if response.status_code not in (200, 404):
                    raise SandboxError(f"deleting study {study_id} from Orthanc -> HTTP "
                                       f"{response.status_code}")
            left = self._study_ids()
        except requests.RequestException as exc:
            raise SandboxError(f"resetting Orthanc at {self.base_url} failed: {exc}") from exc
        if left:
            raise SandboxError(f"Orthanc at {self.base_url} still holds {len(left)} studies after reset")

    def _study_ids(self) -> list[str]:
        response = requests.get(f"{self.base_url}/studies", timeout=REQUEST_TIMEOUT_S)
        if response.status_code != 200:
            raise SandboxError(f"listing Orthanc studies -> HTTP {response.status_code}")
        ids: list[str] = response.json()
        return ids

    def _spawn(self) -> int:
        self.home.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(json.dumps(self.config(), indent=2) + "\n")
        argv = self.command()
        return spawn_detached(argv, log_file=self.log_file, pid_file=self.pid_file)

    def _orthanc_pid(self) -> int | None:
        """The pid in the pid file, if that process is alive and is Orthanc run with our config."""
        return running_pid(self.pid_file, str(self.config_file.resolve()))

    def _log_tail(self) -> str:
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-LOG_TAIL_LINES:])


def default_pacs(state_root: Path, *, port: int = 8042) -> OrthancSandbox:
    """A PACS sandbox with its state under <state_root>/orthanc/<port>."""
    return OrthancSandbox(state_dir=state_root / "orthanc", port=port)
