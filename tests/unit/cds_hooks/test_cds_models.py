"""The request and card models against the CDS Hooks 2.0.1 specification's own examples."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from cds_hooks.models import (
    Card,
    FeedbackRequest,
    HookRequest,
    OrderSelectContext,
    OrderSignContext,
    PatientViewContext,
    Source,
)
from cds_hooks.services import SERVICES_BY_ID

EXAMPLES: dict[str, Any] = json.loads((Path(__file__).parent / "spec_examples.json").read_text())


def test_the_specifications_requests_validate() -> None:
    view = HookRequest.model_validate(EXAMPLES["patient-view"])
    assert PatientViewContext.model_validate(view.context).patientId == "1288992"
    assert view.fhirAuthorization is not None
    assert view.fhirAuthorization.access_token.get_secret_value() == "some-opaque-fhir-access-token"
    assert "some-opaque" not in repr(view)  # the token stays out of reprs and logs
    select = OrderSelectContext.model_validate(HookRequest.model_validate(EXAMPLES["order-select"]).context)
    assert select.selections == [
        "NutritionOrder/pureeddiet-simple",
        "MedicationRequest/smart-MedicationRequest-103",
    ]
    assert len(select.draftOrders.resources()) == 2
    sign = OrderSignContext.model_validate(HookRequest.model_validate(EXAMPLES["order-sign"]).context)
    assert {r["resourceType"] for r in sign.draftOrders.resources()} == {
        "NutritionOrder",
        "MedicationRequest",
    }
    for feedback in EXAMPLES["feedback"]:
        assert FeedbackRequest.model_validate(feedback).feedback


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda b: b.pop("hookInstance"), "hookInstance"),
        (lambda b: b.update(hookInstance="  "), "hookInstance"),
        (lambda b: b.pop("fhirServer"), "fhirServer is required"),
        (lambda b: b["fhirAuthorization"].update(token_type="MAC"), "Bearer"),
        (lambda b: b.update(fhirServer="file:///etc/passwd"), "http"),
    ],
)
def test_invalid_requests_are_refused(change: Any, message: str) -> None:
    body = json.loads(json.dumps(EXAMPLES["patient-view"]))
    change(body)
    with pytest.raises(ValidationError, match=message):
        HookRequest.model_validate(body)


@pytest.mark.parametrize(
    "context",
    [
        {"userId": "Practitioner/1"},  # no patientId
        {"patientId": "1"},  # no userId
        {"userId": "Practitioner/1", "patientId": "1&_include=*"},  # would change the FHIR query
        {"userId": "Practitioner/1", "patientId": ""},
    ],
)
def test_patient_view_context_needs_user_and_a_fhir_id(context: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        PatientViewContext.model_validate(context)


def test_order_contexts_need_their_fields() -> None:
    context = json.loads(json.dumps(EXAMPLES["order-select"]["context"]))
    OrderSelectContext.model_validate(context)
    for field in ("selections", "draftOrders", "userId", "patientId"):
        broken = {k: v for k, v in context.items() if k != field}
        with pytest.raises(ValidationError):
            OrderSelectContext.model_validate(broken)
    with pytest.raises(ValidationError):
        OrderSelectContext.model_validate({**context, "selections": []})
    with pytest.raises(ValidationError):
        OrderSignContext.model_validate({**context, "draftOrders": {"resourceType": "Patient"}})


def test_cards_follow_the_rules() -> None:
    source = Source(label="chartlight")
    Card(uuid="u", summary="x" * 139, indicator="info", source=source)
    with pytest.raises(ValidationError):
        Card(uuid="u", summary="x" * 140, indicator="info", source=source)
    with pytest.raises(ValidationError):
        Card(uuid="u", summary="s", indicator="urgent", source=source)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="selectionBehavior"):
        Card.model_validate(
            {
                "uuid": "u",
                "summary": "s",
                "indicator": "info",
                "source": {"label": "c"},
                "suggestions": [{"label": "do it", "actions": []}],
            }
        )


def test_feedback_rules() -> None:
    with pytest.raises(ValidationError, match="acceptedSuggestions"):
        FeedbackRequest.model_validate(
            {"feedback": [{"card": "c", "outcome": "accepted", "outcomeTimestamp": "2021-12-11T10:05:31Z"}]}
        )
    with pytest.raises(ValidationError, match="time zone"):
        FeedbackRequest.model_validate(
            {"feedback": [{"card": "c", "outcome": "overridden", "outcomeTimestamp": "2021-12-11T10:05:31"}]}
        )


def test_prefetch_templates_keep_to_the_recommended_subset() -> None:
    for service in SERVICES_BY_ID.values():
        for template in service.prefetch.values():
            assert "|" not in template  # encoded: servers behind Tomcat refuse a raw "|"
            assert "_include" not in template and "_revinclude" not in template
        description = service.describe()
        assert description.id == service.id and description.prefetch
