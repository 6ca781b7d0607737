"""`chartlight analyze imaging` options: each task's words go with it, other pipelines refuse
them, and without MedGemma the command says so plainly before touching any server."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from plugin.cli import cli


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    # Nothing listens on port 9: a command that tried to reach a server would fail differently.
    return {"CHARTLIGHT_FHIR_BASE_URL": "http://127.0.0.1:9/fhir", "HF_HUB_OFFLINE": "1",
            "CHARTLIGHT_DATABASE_URL": f"sqlite:///{tmp_path}/jobs.db",
            "CHARTLIGHT_MEDGEMMA_MODEL": str(tmp_path / "no-weights-here")}


@pytest.mark.parametrize(("args", "message"), [
    (["--task", "question"], "needs a question"),
    (["--task", "localize"], "at least one structure"),
    (["--question", "Why?"], "only asked by the question task"),
    (["--task", "compare", "--find", "heart"], "only used by the localize task"),
    (["--task", "segment"], "Invalid value for '--task'"),
])
def test_task_options_that_do_not_fit_are_usage_errors(env: dict[str, str], args: list[str],
                                                       message: str) -> None:
    result = CliRunner().invoke(cli, ["analyze", "imaging", "--patient", "1", *args], env=env)
    assert result.exit_code == 2 and message in result.output


def test_other_pipelines_refuse_imaging_options(env: dict[str, str]) -> None:
    result = CliRunner().invoke(cli, ["analyze", "documents", "--patient", "1", "--task", "compare"],
                                env=env)
    assert result.exit_code == 2 and "apply to the imaging pipeline only" in result.output


def test_without_medgemma_weights_imaging_says_so_and_runs_nothing(env: dict[str, str]) -> None:
    result = CliRunner().invoke(cli, ["analyze", "imaging", "--patient", "1", "--task", "question",
                                      "--question", "Is there a pneumothorax?"], env=env)
    assert result.exit_code == 1
    assert "imaging cannot run here: MedGemma cannot run here: no model weights at" in result.output
    assert "No imaging result is written without the real model." in " ".join(result.output.split())
