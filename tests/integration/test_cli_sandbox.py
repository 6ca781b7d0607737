"""The jobs and review commands, through the real CLI, against the real sandbox."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from plugin.cli import cli
from plugin.fhir import FhirClient
from plugin.jobs import JobStore
from plugin.results import SourceRef
from plugin.writeback import write_result
from tests.support.pipelines import fixed_result
from tests.support.sources import create_patient_with_document

pytestmark = pytest.mark.sandbox


def test_jobs_list_show_retry(tmp_path: Path, sandbox_url: str) -> None:
    url = f"sqlite:///{tmp_path}/jobs.db"
    store = JobStore(url)
    job = store.submit(pipeline="documents", source_type="DocumentReference", source_id="7",
                       source_version="2", subject="Patient/1", fhir_base_url=sandbox_url)
    running = store.claim_next()
    assert running is not None
    env = {"CHARTLIGHT_DATABASE_URL": url, "CHARTLIGHT_FHIR_BASE_URL": sandbox_url, "COLUMNS": "200"}
    runner = CliRunner()
    busy = runner.invoke(cli, ["jobs", "retry", str(job.id)], env=env)
    assert busy.exit_code == 1 and f"job {job.id} is running (attempt 1)" in busy.output
    store.fail(running, "DocumentReference/7 content[0]: the PDF is encrypted")  # still its attempt's
    other = store.submit(pipeline="documents", source_type="DocumentReference", source_id="7",
                         source_version="2", subject="Patient/1", fhir_base_url="http://other-ehr.test/fhir")

    listed = runner.invoke(cli, ["jobs", "list", "--state", "failed"], env=env)
    assert listed.exit_code == 0 and "DocumentReference/7/_history/2" in listed.output
    queued = runner.invoke(cli, ["jobs", "list", "--state", "queued"], env=env)
    assert queued.exit_code == 0 and "DocumentReference/7" not in queued.output  # another server's job
    everywhere = runner.invoke(cli, ["jobs", "list", "--all-servers", "--state", "queued"], env=env)
    assert everywhere.exit_code == 0 and "http://other-ehr.test/fhir" in everywhere.output
    assert f"│ {other.id} " in everywhere.output

    shown = runner.invoke(cli, ["jobs", "show", str(job.id)], env=env)
    assert shown.exit_code == 0 and json.loads(shown.output)["error"].endswith("encrypted")

    retried = runner.invoke(cli, ["jobs", "retry", str(job.id)], env=env)
    assert retried.exit_code == 0 and store.get(job.id).state.value == "queued"

    missing = runner.invoke(cli, ["jobs", "show", "999"], env=env)
    assert missing.exit_code == 2 and "there is no job 999" in missing.output


def test_review_approve_and_reject(fhir: FhirClient, sandbox_url: str, run_id: str) -> None:
    subject, doc = create_patient_with_document(fhir, run_id, "Cli")
    clinician = fhir.create({"resourceType": "Practitioner", "name": [{"family": "Signer"}]})
    outcome = write_result(fhir, fixed_result(SourceRef("DocumentReference", doc["id"], "1")),
                           subject=subject, now=datetime.now(UTC))
    observation, document = (next(c for c in outcome.created if c.startswith(t)).split("/_history/")[0]
                             for t in ("Observation/", "DocumentReference/"))
    env = {"CHARTLIGHT_FHIR_BASE_URL": sandbox_url}
    runner = CliRunner()
    approved = runner.invoke(cli, ["review", "approve", observation, "--clinician",
                                   f"Practitioner/{clinician['id']}"], env=env)
    assert approved.exit_code == 0 and approved.output.strip() == f"approved: {observation}/_history/2"
    rejected = runner.invoke(cli, ["review", "reject", document, "--clinician",
                                   f"Practitioner/{clinician['id']}", "--reason", "not this patient"],
                             env=env)
    assert rejected.exit_code == 0 and fhir.read(*document.split("/"))["status"] == "entered-in-error"
    again = runner.invoke(cli, ["review", "approve", observation, "--clinician", "Practitioner/1"], env=env)
    assert again.exit_code == 1 and "already reviewed" in again.output
