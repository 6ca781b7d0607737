"""`chartlight models` and plugin.engines.model_store against a loopback server speaking the
Hugging Face Hub's HTTP API (tests/support/hub_server.py), serving tiny random-weight MedASR and
MedGemma checkpoints saved from the real config classes: pull (a gated repo's 401 and 403, a
download cut off mid-file that resumes, a second pull that fetches nothing), list, verify."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import huggingface_hub.constants
import pytest
from click.testing import CliRunner
from transformers import LasrProcessor

from plugin import cli
from plugin.engines import model_store
from plugin.engines.model_store import MODELS, ModelStoreError
from plugin.engines.test_models.tiny_gemma import save_tiny_medgemma
from plugin.engines.test_models.tiny_medasr import tiny_loaded
from tests.support.hub_server import HubRepo, HubState, hub_server

MEDASR, MEDGEMMA = MODELS
COMMIT = "a1b2c3d4e5" * 4
ACCEPTED = "hf_token_of_a_user_who_accepted"


@pytest.fixture(scope="module")
def medasr_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hub-medasr")
    loaded = tiny_loaded()
    loaded.model.save_pretrained(folder)
    LasrProcessor(loaded.feature_extractor, loaded.tokenizer).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def medgemma_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_medgemma(tmp_path_factory.mktemp("hub-medgemma"))


@pytest.fixture
def hub(medasr_files: Path, medgemma_files: Path) -> Iterator[tuple[str, HubState]]:
    state = HubState(repos={
        "google/medasr": HubRepo.from_folder(medasr_files, commit=COMMIT),
        "google/medgemma-1.5-4b-it": HubRepo.from_folder(medgemma_files, gated=True,
                                                         accepted_tokens=frozenset({ACCEPTED}))})
    with hub_server(state) as endpoint:
        yield endpoint, state


@pytest.fixture
def no_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No token anywhere huggingface_hub looks (environment, token file)."""
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))


def test_pull_fetches_a_snapshot_that_list_and_verify_accept(
        hub: tuple[str, HubState], tmp_path: Path, no_token: None, medasr_files: Path) -> None:
    endpoint, state = hub
    cache = str(tmp_path / "cache")
    assert model_store.locate("google/medasr", cache_dir=cache) is None

    folder = model_store.pull("google/medasr", cache_dir=cache, endpoint=endpoint, progress=False)
    assert folder.name == COMMIT and folder.parent.name == "snapshots"
    for path in medasr_files.iterdir():
        assert (folder / path.name).read_bytes() == path.read_bytes()

    found = model_store.status(MEDASR, "google/medasr", cache_dir=cache)
    assert (found.folder, found.revision, found.problem) == (folder, COMMIT, "")
    assert found.checksum.startswith("sha256:") and found.size_bytes > 0
    # A plain copy of the same files has the same checksum: it is of the contents, not the layout.
    assert model_store.checksum(medasr_files) == found.checksum

    report = model_store.verify(MEDASR, folder)
    assert [(c.name, c.ok) for c in report.checks] == [
        ("files", True), ("safetensors headers", True), ("config classes", True), ("smoke run", True)]
    assert "LasrCTCConfig" in report.checks[2].detail and "CTC frames" in report.checks[3].detail

    fetched = len(state.gets("model.safetensors"))
    assert model_store.pull("google/medasr", cache_dir=cache, endpoint=endpoint, progress=False) == folder
    assert len(state.gets("model.safetensors")) == fetched  # already here: not fetched again


def test_a_download_cut_off_mid_file_resumes_where_it_stopped(
        hub: tuple[str, HubState], tmp_path: Path, no_token: None, medasr_files: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint, state = hub
    # huggingface_hub writes what it receives in 10 MB chunks; the tiny model is 0.2 MB, so the
    # chunks are made small enough for a cut after 4 KiB to leave 4 KiB on disk, as 10 MB would.
    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", 1024)
    state.cut_after["model.safetensors"] = 4096
    folder = model_store.pull("google/medasr", cache_dir=str(tmp_path / "cache"), endpoint=endpoint,
                              progress=False)
    first, second = state.gets("model.safetensors")
    assert first.range is None and second.range == "bytes=4096-"
    assert (folder / "model.safetensors").read_bytes() == (medasr_files / "model.safetensors").read_bytes()
    assert model_store.verify(MEDASR, folder, smoke=False).ok


def test_a_pull_that_did_not_finish_is_reported_and_completed_by_pulling_again(
        hub: tuple[str, HubState], tmp_path: Path, no_token: None) -> None:
    endpoint, state = hub
    cache = str(tmp_path / "cache")
    folder = model_store.pull("google/medasr", cache_dir=cache, endpoint=endpoint, progress=False)
    # What a pull stopped before its last file leaves: the file list, and a file missing.
    (folder / "model.safetensors").resolve().unlink()
    (folder / "model.safetensors").unlink()
    found = model_store.status(MEDASR, "google/medasr", cache_dir=cache)
    assert found.folder is None
    assert found.problem == "an earlier pull did not finish (chartlight models pull medasr)"

    before = {name: len(state.gets(name)) for name in ("config.json", "model.safetensors")}
    assert model_store.pull("google/medasr", cache_dir=cache, endpoint=endpoint, progress=False) == folder
    assert len(state.gets("config.json")) == before["config.json"]  # kept, not fetched again
    assert len(state.gets("model.safetensors")) == before["model.safetensors"] + 1
    assert model_store.verify(MEDASR, folder, smoke=False).ok


def test_a_gated_model_without_a_token_says_where_to_accept_the_terms(
        hub: tuple[str, HubState], tmp_path: Path, no_token: None) -> None:
    endpoint, state = hub
    with pytest.raises(ModelStoreError) as refused:
        model_store.pull("google/medgemma-1.5-4b-it", cache_dir=str(tmp_path / "cache"), endpoint=endpoint)
    message = str(refused.value)
    assert "is gated" in message and "no Hugging Face token was found" in message
    assert f"accept the terms at {endpoint}/google/medgemma-1.5-4b-it" in message
    assert all(r.authorization is None for r in state.seen)


def test_a_gated_model_whose_terms_the_token_has_not_accepted(
        hub: tuple[str, HubState], tmp_path: Path, no_token: None, monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint, state = hub
    monkeypatch.setenv("HF_TOKEN", "hf_token_of_someone_else")
    with pytest.raises(ModelStoreError, match="has not accepted its terms: accept the terms at "
                                              f"{endpoint}/google/medgemma-1.5-4b-it"):
        model_store.pull("google/medgemma-1.5-4b-it", cache_dir=str(tmp_path / "cache"), endpoint=endpoint)
    assert "hf_token_of_someone_else" not in str(state.seen[-1].path)

    monkeypatch.setenv("HF_TOKEN", ACCEPTED)  # the user's token, from where huggingface_hub looks
    folder = model_store.pull("google/medgemma-1.5-4b-it", cache_dir=str(tmp_path / "cache"),
                              endpoint=endpoint, progress=False)
    assert state.seen[-1].authorization == f"Bearer {ACCEPTED}"
    report = model_store.verify(MEDGEMMA, folder)
    assert report.ok, report.checks
    assert "Gemma3Config" in report.checks[2].detail and "1 generated token" in report.checks[3].detail


def test_offline_pull_refuses_without_connecting(
        hub: tuple[str, HubState], tmp_path: Path, no_token: None, monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint, state = hub
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelStoreError, match="HF_HUB_OFFLINE is set"):
        model_store.pull("google/medasr", cache_dir=str(tmp_path / "cache"), endpoint=endpoint)
    assert state.seen == []


def test_unknown_repo_and_revision_are_clear_errors(hub: tuple[str, HubState], tmp_path: Path,
                                                    no_token: None) -> None:
    endpoint, _ = hub
    with pytest.raises(ModelStoreError, match="google/nothing was not found"):
        model_store.pull("google/nothing", cache_dir=str(tmp_path / "c"), endpoint=endpoint)
    with pytest.raises(ModelStoreError, match="has no revision 'v9'"):
        model_store.pull("google/medasr", revision="v9", cache_dir=str(tmp_path / "c"), endpoint=endpoint)


def test_verify_finds_truncated_weights_and_altered_blobs(
        hub: tuple[str, HubState], tmp_path: Path, no_token: None, medasr_files: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(medasr_files, copy)
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    report = model_store.verify(MEDASR, copy)
    assert not report.ok
    [headers] = [c for c in report.checks if c.name == "safetensors headers"]
    assert not headers.ok and "truncated" in headers.detail

    endpoint, _ = hub
    folder = model_store.pull("google/medasr", cache_dir=str(tmp_path / "cache"), endpoint=endpoint,
                              progress=False)
    blob = (folder / "config.json").resolve()
    blob.write_text(blob.read_text().replace("32", "33", 1))
    [files] = [c for c in model_store.verify(MEDASR, folder, smoke=False).checks if c.name == "files"]
    assert not files.ok and "config.json" in files.detail


def test_the_cli_pulls_from_hf_endpoint_then_lists_and_verifies(
        hub: tuple[str, HubState], tmp_path: Path, no_token: None, monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint, _ = hub
    cache = tmp_path / "hub-cache"
    # The test run's own CHARTLIGHT_* variables (sandbox ports) are not settings of the CLI.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("CHARTLIGHT_")}
    env = {**inherited, "HF_ENDPOINT": endpoint, "HF_HUB_CACHE": str(cache),
           "CHARTLIGHT_DATABASE_URL": f"sqlite:///{tmp_path}/jobs.db",
           "CHARTLIGHT_SMART_SIGNING_KEY_PATH": str(tmp_path / "keys.pem")}
    env.pop("HF_TOKEN", None)
    pulled = subprocess.run([sys.executable, "-m", "plugin.cli", "models", "pull", "medasr"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert pulled.returncode == 0, pulled.stderr
    assert f"google/medasr: {cache}" in pulled.stdout and COMMIT in pulled.stdout
    assert "Fetching" in pulled.stderr  # huggingface_hub's progress bar

    refused = subprocess.run([sys.executable, "-m", "plugin.cli", "models", "--offline", "pull", "medgemma"],
                             env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1 and "HF_HUB_OFFLINE is set" in refused.stderr

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    runner = CliRunner()
    settings: dict[str, str | None] = {name: None for name in os.environ if name.startswith("CHARTLIGHT_")}
    settings.update({"CHARTLIGHT_DATABASE_URL": env["CHARTLIGHT_DATABASE_URL"],
                     "CHARTLIGHT_SMART_SIGNING_KEY_PATH": env["CHARTLIGHT_SMART_SIGNING_KEY_PATH"]})
    listed = runner.invoke(cli.cli, ["models", "list", "--json"], env=settings)
    assert listed.exit_code == 0, listed.output
    shown = json.loads(listed.output)
    medasr, medgemma = shown["models"]
    assert (medasr["reference"], medasr["revision"]) == ("google/medasr", COMMIT)
    assert medasr["pipelines"] == ["speech"]
    assert medasr["checksum"].startswith("sha256:") and medasr["folder"].startswith(str(cache))
    assert medgemma["folder"] is None and "chartlight models pull medgemma" in medgemma["problem"]
    assert shown["pipelines"]["speech"]["can_run"] is True
    assert shown["pipelines"]["imaging"]["can_run"] is False

    verified = runner.invoke(cli.cli, ["models", "verify", "medasr"], env=settings)
    assert verified.exit_code == 0, verified.output
    assert "ok   smoke run: 1 s of audio" in verified.output
    both = runner.invoke(cli.cli, ["models", "verify", "--no-smoke"], env=settings)
    assert both.exit_code == 1 and "medgemma (google/medgemma-1.5-4b-it): absent" in both.output


def test_models_help_imports_nothing_heavy() -> None:
    probe = ("import sys, json\nfrom plugin.cli import cli\n"
             "for args in (['models', '--help'], ['models', 'pull', '--help'],\n"
             "             ['models', 'verify', '--help']):\n"
             "    try:\n        cli(args, prog_name='chartlight')\n    except SystemExit:\n        pass\n"
             "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
             "('torch', 'transformers', 'huggingface_hub', 'flask', 'sqlalchemy', 'rich'))))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert "HF_HUB_OFFLINE" in out and "--revision" in out
    assert json.loads(out.strip().splitlines()[-1]) == []
