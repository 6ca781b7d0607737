"""The Orthanc PACS sandbox's own life cycle: config, start, reset, stop (on a free port of its own)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import requests

from plugin.pipelines.imaging.dicomweb import DicomWebClient, store_instances
from plugin.sandbox.orthanc import OrthancSandbox
from tests.support.dicom_builders import axial_specs, series_files

pytestmark = pytest.mark.sandbox


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_orthanc_starts_on_loopback_stores_resets_and_stops(tmp_path: Path) -> None:
    pacs = OrthancSandbox(state_dir=tmp_path, port=free_port())
    config = pacs.config()
    assert config["RemoteAccessAllowed"] is False and config["DicomServerEnabled"] is False
    assert config["DicomWeb"] == {"Enable": True, "Root": "/dicom-web/", "StudiesMetadata": "Full",
                                  "SeriesMetadata": "Full"}
    assert not pacs.is_running()
    try:
        url = pacs.start()
        assert url == f"http://127.0.0.1:{pacs.port}/dicom-web" and pacs.is_running()
        assert pacs.start() == url  # already running: nothing new started
        assert pacs.config_file.is_file() and pacs.pid_file.is_file()
        store_instances(url, series_files(axial_specs(3), study_uid="1.2.3", series_uid="1.2.3.4"))
        assert len(DicomWebClient(url).series_metadata("1.2.3", "1.2.3.4")) == 3
        pacs.reset()
        assert DicomWebClient(url).study_series("1.2.3") == []
        assert requests.get(f"{pacs.base_url}/studies", timeout=10).json() == []
    finally:
        pacs.stop()
    assert not pacs.is_running() and not pacs.pid_file.exists()


def test_cli_sandbox_up_and_status_include_the_pacs(sandbox_url: str, tmp_path: Path) -> None:
    """`sandbox up` on test ports starts the PACS and the EHR; both are stopped after (the EHR
    on the demo's default port, left behind here, once broke `make demo`)."""
    from click.testing import CliRunner

    from plugin.cli import cli
    from plugin.sandbox.ehr import default_ehr_sandbox
    from plugin.sandbox.orthanc import default_pacs

    port, ehr_port = free_port(), free_port()
    env = {"CHARTLIGHT_SANDBOX_PORT": sandbox_url.split(":")[2].split("/")[0],
           "CHARTLIGHT_PACS_PORT": str(port), "CHARTLIGHT_SANDBOX_EHR_PORT": str(ehr_port),
           "CHARTLIGHT_SANDBOX_STATE_DIR": str(tmp_path / "state"),
           "CHARTLIGHT_DATABASE_URL": f"sqlite:///{tmp_path}/j.db"}
    runner = CliRunner()
    try:
        up = runner.invoke(cli, ["sandbox", "up"], env=env)
        assert up.exit_code == 0, up.output
        assert f"Orthanc PACS sandbox (DICOMweb) up at http://127.0.0.1:{port}/dicom-web" in up.output
        assert f"(SMART authorization + FHIR proxy) up at http://127.0.0.1:{ehr_port}" in up.output
        status = runner.invoke(cli, ["sandbox", "status"], env=env)
        assert f"{sandbox_url}: up" in status.output
        assert f"http://127.0.0.1:{port}/dicom-web: up" in status.output
    finally:
        default_pacs(tmp_path / "state", port=port).stop()
        default_ehr_sandbox(tmp_path / "state", fhir_upstream=sandbox_url, app_base="http://127.0.0.1:8000",
                            port=ehr_port).stop()
    status = runner.invoke(cli, ["sandbox", "status"], env=env)
    assert f"http://127.0.0.1:{port}/dicom-web: down" in status.output
    assert f"http://127.0.0.1:{ehr_port}/fhir: down" in status.output
