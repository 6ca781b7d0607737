"""Start, stop and probe the sandbox EHR (plugin/sandbox/ehr_server: a SMART authorization server and FHIR
proxy in front of the HAPI sandbox) as its own process, for `chartlight sandbox up` and the demo.

It registers one public client, the chartlight app at `app_base`, so a person can open
`launch_page(patient)` in a browser and see the app launched inside an EHR-like page.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import requests

from plugin.errors import SandboxError
from plugin.fhir import FhirClient
from plugin.sandbox.processes import (
    ServerProcess,
    alive,
    find_processes,
    keep_or_stop,
    running_pid,
    spawn_detached,
    stop_process,
)

MODULE = "plugin.sandbox.ehr_server"
# Where it ran from before it moved into the package: one of those left on a port is ours too.
FORMER_MODULE = "tests.sandbox.ehr"
DEMO_CLIENT_ID = "chartlight-demo"
USER_ID = "sandbox-clinician"  # the EHR's signed-in user (plugin.sandbox.ehr_server.server.EhrConfig.user)
POLL_INTERVAL_S = 0.3


@dataclass(frozen=True)
class EhrSandbox:
    state_dir: Path
    fhir_upstream: str
    app_base: str  # the chartlight service the EHR launches, e.g. http://127.0.0.1:8000
    port: int = 9090
    # Call the app's CDS Hooks patient-view services on the EHR page and show the cards beside it.
    cds: bool = False

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def fhir_base(self) -> str:
        """What the app sees as `iss`: the proxy's FHIR base."""
        return f"{self.base_url}/fhir"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / f"ehr-{self.port}.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / f"ehr-{self.port}.log"

    def launch_page(self, patient_id: str, client_id: str = DEMO_CLIENT_ID) -> str:
        """The EHR page that opens the app for `patient_id` in an iframe."""
        return f"{self.base_url}/ehr?{urlencode({'patient': patient_id, 'app': client_id})}"

    def start(self, timeout_s: float = 30, *, say: Callable[[str], None] = lambda _: None) -> str:
        """Start the EHR unless ours, with this upstream and client, already answers; another
        EHR of ours on the port is restarted (`say` is told why)."""
        holders = self.servers_on_port()
        kept = keep_or_stop("sandbox EHR", holders, self.command(), timeout_s=10, say=say)
        if kept and self.is_running():
            return self.base_url
        if not kept and self.is_running():
            raise SandboxError(f"a server answers at {self.base_url} but it is not a sandbox EHR this "
                               "machine started; stop it or choose another port (sandbox_ehr_port)")
        pid = next(h.pid for h in holders if list(h.argv) == self.command()) if kept else self._spawn()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not alive(pid):
                self.pid_file.unlink(missing_ok=True)
                raise SandboxError(f"sandbox EHR (pid {pid}) exited during start-up; see {self.log_file}")
            if self.is_running():
                return self.base_url
            time.sleep(POLL_INTERVAL_S)
        self.stop()
        raise SandboxError(f"sandbox EHR did not answer at {self.base_url} within {timeout_s:.0f} s")

    def stop(self, timeout_s: float = 10) -> None:
        """Stop the EHR on this port (the one this state_dir started, or another of ours)."""
        pids = {h.pid for h in self.servers_on_port()}
        pid = self._pid()
        if pid is not None:
            pids.add(pid)
        for pid in sorted(pids):
            stop_process(pid, name="sandbox EHR", timeout_s=timeout_s)
        self.pid_file.unlink(missing_ok=True)

    def command(self) -> list[str]:
        app = self.app_base.rstrip("/")
        client = {"client_id": DEMO_CLIENT_ID, "redirect_uris": [f"{app}/smart/callback"],
                  "launch_url": f"{app}/smart/launch"}
        return [sys.executable, "-m", MODULE, f"--port={self.port}", f"--fhir-upstream={self.fhir_upstream}",
                f"--client-json={json.dumps(client)}", *([f"--cds-base={app}"] if self.cds else [])]

    def servers_on_port(self) -> list[ServerProcess]:
        """Sandbox EHR processes started for this port, by whoever started them."""
        def on_port(argv: tuple[str, ...]) -> bool:
            pairs = set(zip(argv, argv[1:], strict=False))
            return (any(("-m", module) in pairs for module in (MODULE, FORMER_MODULE))
                    and (f"--port={self.port}" in argv or ("--port", str(self.port)) in pairs))
        return find_processes(on_port)

    def is_running(self) -> bool:
        try:
            answer = requests.get(f"{self.fhir_base}/.well-known/smart-configuration", timeout=5)
        except requests.RequestException:
            return False
        return answer.status_code == 200

    def _spawn(self) -> int:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        return spawn_detached(self.command(), log_file=self.log_file, pid_file=self.pid_file)

    def _pid(self) -> int | None:
        return running_pid(self.pid_file, MODULE)


def default_ehr_sandbox(state_root: Path, *, fhir_upstream: str, app_base: str,
                        port: int = 9090) -> EhrSandbox:
    """A sandbox EHR with its state under <state_root>/ehr, calling the app's CDS services too."""
    return EhrSandbox(state_dir=state_root / "ehr", fhir_upstream=fhir_upstream, app_base=app_base, port=port,
                      cds=True)


def ensure_user(client: FhirClient) -> str:
    """Create the sandbox EHR's signed-in user on the FHIR server (it names them as fhirUser)."""
    client.update({"resourceType": "Practitioner", "id": USER_ID,
                   "name": [{"family": "Clinician", "given": ["Sandbox"]}]})
    return f"Practitioner/{USER_ID}"


def app_environment(ehr: EhrSandbox) -> dict[str, str]:
    """The settings (as environment variables) that let `chartlight serve` be launched by `ehr`."""
    smart_ehrs = [{"name": "sandbox", "iss": ehr.fhir_base, "client_id": DEMO_CLIENT_ID}]
    environment = {"CHARTLIGHT_SMART_EHRS": json.dumps(smart_ehrs),
                   "CHARTLIGHT_FHIR_BASE_URL": ehr.fhir_upstream}
    if ehr.cds:
        # The EHR signs its hook calls with the key in its CDS JWK Set (plugin.sandbox.ehr_server.cds).
        trusted = [{"name": "sandbox", "iss": ehr.base_url, "jwks_url": f"{ehr.base_url}/ehr/cds-jwks.json",
                    "fhir_servers": [ehr.fhir_base]}]
        environment["CHARTLIGHT_CDS_TRUSTED_EHRS"] = json.dumps(trusted)
    return environment
