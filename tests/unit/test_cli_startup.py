"""The command line parses without the service: no Flask, CDS Hooks stack, SQLAlchemy, torch or
transformers before a command runs (what keeps `chartlight --help` fast, bench/cli_startup.py)."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from plugin import cli as cli_module
from plugin.config import CONFIG_FILE_ENV
from plugin.jobs import JobState

HEAVY = ("flask", "cds_hooks", "sqlalchemy", "torch", "transformers", "plugin.app", "rich")


def test_help_imports_none_of_the_service() -> None:
    commands = [["--help"], ["sandbox", "up", "--help"], ["demo", "--help"], ["jobs", "list", "--help"]]
    roots = sorted({h.split(".")[0] for h in HEAVY} - {"plugin"})
    probe = ("import sys, json\nfrom plugin.cli import cli\n"
             f"for args in {commands!r}:\n"
             "    try:\n        cli(args, prog_name='chartlight')\n    except SystemExit:\n        pass\n"
             f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {roots!r}"
             " or m == 'plugin.app')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []
    assert "--test-models" in out and "--json" in out and "Commands:" in out


def test_feedback_group_is_listed_and_runs_lazily() -> None:
    runner = CliRunner()
    listed = runner.invoke(cli_module.cli, ["--help"])
    assert "feedback" in listed.output and "CDS Hooks cards" in listed.output
    shown = runner.invoke(cli_module.cli, ["feedback", "--help"])
    assert shown.exit_code == 0 and "report" in shown.output


def test_spelled_out_names_match_the_service() -> None:
    assert tuple(s.value for s in JobState) == cli_module.JOB_STATES
    assert cli_module.CONFIG_FILE_ENV == CONFIG_FILE_ENV


def test_demo_refuses_test_models_against_a_server_that_is_not_a_sandbox() -> None:
    result = CliRunner().invoke(cli_module.cli, ["demo", "--test-models"],
                                env={"CHARTLIGHT_FHIR_BASE_URL": "https://ehr.example.org/fhir"})
    assert result.exit_code == 1
    assert "test_models: fhir_base_url https://ehr.example.org/fhir is not a sandbox" in result.output
