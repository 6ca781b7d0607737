"""Feedback is stored once per card, outcome and time, and summed up by `chartlight feedback report`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text

from cds_hooks.cli import feedback as feedback_group
from cds_hooks.feedback import FeedbackStore
from cds_hooks.models import FeedbackItem
from cds_hooks.override_reasons import (
    CATEGORIES,
    CS_NON_ADHERENCE,
    CS_OVERRIDE_REASON,
    card_override_reasons,
    category_of,
)
from cds_hooks.runtime import runtime_of
from plugin.app import create_app
from plugin.config import TrustedEhr
from tests.support.cds_ehr import (
    PATIENT_VIEW,
    PUBLIC_BASE,
    Ehr,
    bearer,
    cds_settings,
    diagnostics,
    ehr_with_jwks,
    rsa_key,
)

EXAMPLES: dict[str, Any] = json.loads((Path(__file__).parent / "spec_examples.json").read_text())
URL = PATIENT_VIEW + "/feedback"
OTHER_ISSUER = "https://other-ehr.example.net"


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
    assert response.status_code == 400 and "outcome" in diagnostics(response)


def test_an_override_reason_with_neither_reason_nor_comment_is_a_400(client: FlaskClient, ehr: Ehr) -> None:
    """CDS Hooks 3.0 invariant cds-fb-3 (HL7/cds-hooks input/fsh/invariants/cds-fb-3.fsh): "An
    overrideReason must contain a reason, a userComment, or both". Nothing is stored for it."""
    empty = {"card": "9368d37b-283f-44a0-93ea-547cebab93ed", "outcome": "overridden",
             "overrideReason": {}, "outcomeTimestamp": "2020-12-11T00:00:00Z"}
    response = client.post(URL, json={"feedback": [empty]}, headers=bearer(ehr.token(PUBLIC_BASE + URL)))
    assert response.status_code == 400 and "overrideReason" in diagnostics(response)
    comment_only = {**empty, "overrideReason": {"userComment": "seen on paper"}}
    assert send(client, ehr, {"feedback": [comment_only]}) == {"stored": 1, "duplicates": 0}


def test_report_with_no_feedback(app: Flask) -> None:
    with app.app_context():
        result = CliRunner().invoke(feedback_group, ["report"])
    assert result.exit_code == 0 and "no feedback received yet" in result.output


CARD = "4e0a3a1e-3283-4575-ab82-028d55fe2719"


def overridden(code: str, system: str, when: str = "2026-11-28T10:00:00Z") -> dict[str, Any]:
    return {"card": CARD, "outcome": "overridden", "outcomeTimestamp": when,
            "overrideReason": {"reason": {"system": system, "code": code}}}


def test_feedback_is_kept_and_reported_per_ehr(ehr: Ehr, tmp_path: Path) -> None:
    """Two EHRs send the same card id, outcome and time: neither is the other's duplicate, and
    each EHR's report holds its own feedback only."""
    with ehr_with_jwks([rsa_key("other-rs384")], iss=OTHER_ISSUER) as other:
        trusted = tuple(TrustedEhr(iss=e.iss, jwks_url=e.jwks_url) for e in (ehr, other))
        app = create_app(cds_settings(ehr, tmp_path, cds_trusted_ehrs=trusted))
        client = app.test_client()
        item = overridden("action-not-priority", CS_NON_ADHERENCE)
        assert send(client, ehr, {"feedback": [item]}) == {"stored": 1, "duplicates": 0}
        later = {**item, "outcomeTimestamp": "2026-11-28T11:00:00Z"}
        assert send(client, other, {"feedback": [item, later]}) == {"stored": 2, "duplicates": 0}
        assert send(client, other, {"feedback": [item]}) == {"stored": 0, "duplicates": 1}
    store = runtime_of(app).feedback
    assert [(r.issuer, r.overridden) for r in store.report()] == [(ehr.iss, 1), (OTHER_ISSUER, 2)]
    [mine] = store.report(issuer=ehr.iss)
    assert (mine.issuer, mine.overridden) == (ehr.iss, 1)
    with app.app_context():
        result = CliRunner(env={"COLUMNS": "250"}).invoke(feedback_group, ["report", "--ehr", OTHER_ISSUER])
    assert result.exit_code == 0, result.output
    assert OTHER_ISSUER in result.output and ehr.iss not in result.output


def test_override_reasons_of_either_code_system_are_summed_by_category(app: Flask, client: FlaskClient,
                                                                         ehr: Ehr) -> None:
    batch = [overridden("not-relevant", CS_OVERRIDE_REASON, "2026-11-28T10:00:00Z"),
             overridden("patient-ineligible", CS_NON_ADHERENCE, "2026-11-28T10:01:00Z"),
             overridden("incorrect", CS_OVERRIDE_REASON, "2026-11-28T10:02:00Z"),
             overridden("ehr-own-code", "https://ehr.example.org/override", "2026-11-28T10:03:00Z")]
    assert send(client, ehr, {"feedback": batch}) == {"stored": 4, "duplicates": 0}
    [row] = runtime_of(app).feedback.report()
    assert dict(row.categories) == {
        "PC CDS does not apply to patient": 2,
        "Recipient disagrees with recommendation because of issues with the evidence": 1}
    assert dict(row.reasons)["ehr-own-code"] == 1


@pytest.mark.parametrize(("code", "system"), [("made-up", CS_NON_ADHERENCE), ("made-up", CS_OVERRIDE_REASON)])
def test_a_code_its_own_system_lacks_is_refused_and_nothing_is_stored(
        app: Flask, client: FlaskClient, ehr: Ehr, code: str, system: str) -> None:
    good = overridden("action-completed", CS_NON_ADHERENCE, "2026-11-28T09:00:00Z")
    response = client.post(URL, json={"feedback": [good, overridden(code, system)]},
                           headers=bearer(ehr.token(PUBLIC_BASE + URL)))
    assert response.status_code == 400
    assert "feedback.1.overrideReason.reason" in diagnostics(response) and "made-up" in diagnostics(response)
    assert runtime_of(app).feedback.report() == []


def test_cards_offer_reasons_each_in_a_non_adherence_category() -> None:
    reasons = card_override_reasons()
    assert reasons and all(r.display and r.system == CS_OVERRIDE_REASON for r in reasons)
    assert all(category_of(r.system or "", r.code) in CATEGORIES for r in reasons)


def test_a_table_from_before_the_issuer_was_in_the_key_is_migrated(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/old.db")
    with engine.begin() as connection:  # the table as the previous release created it
        connection.execute(text(
            "CREATE TABLE chartlight_cds_feedback (id INTEGER PRIMARY KEY, service_id VARCHAR(100), "
            "card_uuid VARCHAR(100), outcome VARCHAR(20), outcome_timestamp VARCHAR(40), "
            "accepted_suggestions TEXT, override_system VARCHAR(300), override_code VARCHAR(100), "
            "override_display VARCHAR(300), user_comment TEXT, issuer VARCHAR(300), received_at DATETIME, "
            "UNIQUE (card_uuid, outcome, outcome_timestamp))"))
        connection.execute(text("CREATE INDEX ix_chartlight_cds_feedback_service_id "
                                "ON chartlight_cds_feedback (service_id)"))
        connection.execute(text(
            "INSERT INTO chartlight_cds_feedback VALUES (1, 'svc', 'card-1', 'overridden', "
            "'2026-01-01T00:00:00.000000+00:00', '[]', '', '', 'old reason', '', 'https://a.example', "
            "'2026-01-01 00:00:00')"))
    store = FeedbackStore(engine)
    [row] = store.report()
    assert (row.issuer, row.reasons) == ("https://a.example", (("old reason", 1),))
    item = FeedbackItem.model_validate({"card": "card-1", "outcome": "overridden",
                                        "outcomeTimestamp": "2026-01-01T00:00:00Z"})
    now = datetime(2026, 1, 2, tzinfo=UTC)
    assert store.record("svc", [item], issuer="https://b.example", now=now).stored == 1
    assert store.record("svc", [item], issuer="https://a.example", now=now).duplicates == 1
    FeedbackStore(engine)  # a second start finds the table migrated
    assert len(store.report()) == 2
