"""Feedback is stored once per card, outcome and time, and summed up by `chartlight feedback report`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

from cds_hooks.cli import feedback as feedback_group
from cds_hooks.runtime import runtime_of
from tests.support.cds_ehr import PATIENT_VIEW, PUBLIC_BASE, Ehr, bearer

EXAMPLES: dict[str, Any] = json.loads((Path(__file__).parent / "spec_examples.json").read_text())
URL = PATIENT_VIEW + "/feedback"


def send(client: FlaskClient, ehr: Ehr, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(URL, json=body, headers=bearer(ehr.token(PUBLIC_BASE + URL)))
    assert response.status_code == 200, response.get_json()
    result: dict[str, Any] = response.get_json()
    return result


def test_batches_and_duplicates_store_each_outcome_once(app: Flask, client: FlaskClient, ehr: Ehr) -> None:
    accepted, overridden, with_reason = EXAMPLES["feedback"]
    batch = {"feedback": [*accepted["feedback"], *overridden["feedback"], *with_reason["feedback"]]}
    assert send(client, ehr, batch) == {"stored": 3, "duplicates": 0}
    assert send(client, ehr, batch) == {"stored": 0, "duplicates": 3}
    # The same instant written another way is the same feedback.
    same = {**accepted["feedback"][0], "outcomeTimestamp": "2021-12-11T10:05:31.000+00:00"}
    assert send(client, ehr, {"feedback": [same]}) == {"stored": 0, "duplicates": 1}
    # A later action on the same card is new feedback.
    later = {**overridden["feedback"][0], "outcomeTimestamp": "2020-12-12T00:00:00Z"}
    assert send(client, ehr, {"feedback": [later]}) == {"stored": 1, "duplicates": 0}

    [row] = runtime_of(app).feedback.report()
    assert (row.service_id, row.cards, row.accepted, row.overridden, row.with_comment) == (
        "chartlight-patient-results",
        3,
        1,
        3,
        1,
    )
    assert row.reasons == (("d7ecf885", 1),)

    with app.app_context():
        result = CliRunner(env={"COLUMNS": "200"}).invoke(feedback_group, ["report"])
    assert result.exit_code == 0, result.output
    assert "chartlight-patient-results" in result.output and "d7ecf885: 1" in result.output


def test_invalid_feedback_is_a_400(client: FlaskClient, ehr: Ehr) -> None:
    bad = {"feedback": [{"card": "c", "outcome": "liked", "outcomeTimestamp": "2020-12-11T00:00:00Z"}]}
    response = client.post(URL, json=bad, headers=bearer(ehr.token(PUBLIC_BASE + URL)))
    assert response.status_code == 400 and "outcome" in response.get_json()["detail"]


def test_report_with_no_feedback(app: Flask) -> None:
    with app.app_context():
        result = CliRunner().invoke(feedback_group, ["report"])
    assert result.exit_code == 0 and "no feedback received yet" in result.output
