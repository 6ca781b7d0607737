"""The patient summary card, from summary DocumentReferences written by hand (as the prefetch
carries them): the newest is shown, test output says so, signed summaries say so, bad
attachments are skipped."""

from __future__ import annotations

import base64
import json
from typing import Any

from cds_hooks.cards import CardContext
from cds_hooks.summary_card import newest_summary, summary_card

CONTEXT = CardContext(service_id="chartlight-patient-results", hook_instance="h1", patient_id="9",
                      user="Practitioner/7", app_launch_url="https://app.example/smart/launch")
KIND = {"system": "https://chartlight.dev/fhir/CodeSystem/document-kind", "code": "patient-summary"}


MARKDOWN = "## Diabetes\n- HbA1c 7.1 %. [Observation/1/_history/1]\n"


def doc(doc_id: str, updated: str, *, status: str = "preliminary", test: bool = False,
        details: Any = None, markdown: str = MARKDOWN) -> dict[str, Any]:
    meta: dict[str, Any] = {"lastUpdated": updated}
    if test:
        meta["tag"] = [{"system": "https://chartlight.dev/fhir/CodeSystem/run-kind", "code": "test-weights"}]
    details = {"sentences": [{"text": "HbA1c 7.1 %."}], "withheld": [{"reason": "x"}]} if details is None \
        else details
    raw = details if isinstance(details, bytes) else json.dumps(details).encode()
    return {"resourceType": "DocumentReference", "id": doc_id, "meta": meta, "docStatus": status,
            "type": {"coding": [{"system": "http://loinc.org", "code": "60591-5"}, KIND]},
            "content": [{"attachment": {"contentType": "text/markdown; charset=utf-8",
                                        "data": base64.b64encode(markdown.encode()).decode()}},
                        {"attachment": {"contentType": "application/json",
                                        "data": base64.b64encode(raw).decode()}}]}


def test_the_newest_summary_becomes_a_card_with_a_link_into_the_app() -> None:
    other = {"resourceType": "DocumentReference", "id": "x", "type": {"coding": []}}
    chosen = newest_summary([doc("1", "2026-11-01T00:00:00Z"), other, doc("2", "2026-12-01T08:00:00Z")])
    assert chosen is not None and chosen["id"] == "2"
    card = summary_card(chosen, CONTEXT)
    assert card.summary == ("AI patient summary (preliminary, awaiting review): 1 cited statement, "
                            "updated 2026-12-01")
    assert card.detail is not None and "HbA1c 7.1 %." in card.detail and "1 statement(s)" in card.detail
    assert card.links is not None and json.loads(card.links[0].appContext or "{}") == {
        "patient": "9", "view": "summary", "results": ["DocumentReference/2"]}


def test_test_output_and_signed_summaries_say_so() -> None:
    test = summary_card(doc("3", "2026-12-01", test=True), CONTEXT)
    assert test.summary.startswith("TEST OUTPUT, not clinical:") and "TEST MODEL" in test.source.label
    assert test.detail is not None and test.detail.startswith("**TEST OUTPUT, not clinical")
    signed = summary_card(doc("4", "2026-12-01", status="final"), CONTEXT)
    assert "(signed off)" in signed.summary


def test_an_unreadable_details_attachment_is_skipped_not_fatal() -> None:
    card = summary_card(doc("5", "2026-12-01", details=b"{not json"), CONTEXT)
    assert "0 cited statements" in card.summary and "HbA1c 7.1 %." in (card.detail or "")
