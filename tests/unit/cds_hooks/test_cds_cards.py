"""Cards from results exactly as fhir_mappers write them (no server): indicators, summaries,
test-output marking, sign-off suggestions, imaging comparison, status."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from cds_hooks.ai_results import read_models, read_results
from cds_hooks.cards import (
    AnalysisStatus,
    CardContext,
    imaging_order_cards,
    patient_view_cards,
    signed_off,
    summary_line,
)
from cds_hooks.services import is_imaging_order
from fhir_mappers import TEST_WEIGHTS_DISPLAY, to_device
from plugin.results import (
    Box,
    Coding,
    Finding,
    ImageEvidence,
    MeasuredValue,
    ModelInfo,
    PipelineResult,
    ReportGroup,
    SourceRef,
)
from plugin.writeback import plan_resources
from tests.support.pipelines import fixed_result

PATIENT = "p1"
CONTEXT = CardContext(
    service_id="chartlight-patient-results",
    hook_instance="h-1",
    patient_id=PATIENT,
    user="Practitioner/dr",
    app_launch_url="https://chartlight.example.org/smart/launch",
)
PIPELINES = AnalysisStatus(pipelines=("documents",))
MEDGEMMA = ModelInfo(
    name="google/medgemma-1.5-4b-it",
    version="rev-1",
    kinds=("Vision-Language-Models",),
    display="MedGemma 1.5 4B",
)


def stored(result: PipelineResult) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The resources write-back would store for `result`, with server ids given."""
    planned = plan_resources(result, subject=f"Patient/{PATIENT}")
    ids = {p.key: f"{p.resource['resourceType']}/{i}" for i, p in enumerate(planned, start=1)}
    ids["device"] = "Device/d1"
    text = json.dumps([p.resource for p in planned])
    for key, ref in ids.items():
        text = text.replace(f'"@{key}"', json.dumps(ref))
    resources = json.loads(text)
    for resource, p in zip(resources, planned, strict=True):
        resource["id"] = ids[p.key].split("/")[1]
        resource["meta"]["versionId"] = "1"
    return resources, [{**to_device(result.model), "id": "d1"}]


def lab_cards(result: PipelineResult, status: AnalysisStatus = PIPELINES) -> list[dict[str, Any]]:
    resources, devices = stored(result)
    cards = patient_view_cards(read_results(resources, PATIENT), read_models(devices), status, CONTEXT)
    return [c.model_dump(exclude_none=True) for c in cards]


def source() -> SourceRef:
    return SourceRef("DocumentReference", "doc1", "1")


def with_values(*values: MeasuredValue, model: ModelInfo = MEDGEMMA) -> PipelineResult:
    return PipelineResult(
        pipeline="documents", pipeline_version="1", source=source(), model=model, items=values
    )


def value(key: str, flag: str | None, *, critical: bool = False, name: str = "Potassium") -> MeasuredValue:
    return MeasuredValue(
        key=key,
        name=name,
        value=Decimal("6.9"),
        unit="mmol/L",
        interpretation=flag,  # type: ignore[arg-type]
        critical=critical,
    )


@pytest.mark.parametrize(
    "flag, critical, indicator",
    [
        ("H", True, "critical"),
        ("L", True, "critical"),
        ("H", False, "warning"),
        ("L", False, "warning"),
        ("N", False, "info"),
    ],
)
def test_indicator_follows_the_worst_flag(flag: str, critical: bool, indicator: str) -> None:
    cards = lab_cards(with_values(value("k", flag, critical=critical), value("n", "N", name="Sodium")))
    assert cards[0]["indicator"] == indicator


def test_fixed_results_card_names_the_model_and_is_marked_as_test_output() -> None:
    card = lab_cards(fixed_result(source()))[0]
    assert card["indicator"] == "warning"  # glucose H and HbA1c H, nothing critical
    assert card["summary"].startswith("TEST OUTPUT, not clinical: AI read 3 results")
    assert "Glucose 112 mg/dL H" in card["summary"] and len(card["summary"]) < 140
    assert TEST_WEIGHTS_DISPLAY in card["detail"]
    assert "TEST MODEL chartlight-test/fixed-results 1" in card["source"]["label"]
    assert '"Glucose 112 mg/dL 70-99 H" (page 1)' in card["detail"]  # the evidence, quoted
    assert card["links"] == [
        {
            "label": "Review in chartlight",
            "url": CONTEXT.app_launch_url,
            "type": "smart",
            "appContext": json.dumps(
                {
                    "patient": PATIENT,
                    "results": [r for r in json.loads(card["links"][0]["appContext"])["results"]],
                },
                separators=(",", ":"),
            ),
        }
    ]
    assert {r["code"] for r in card["overrideReasons"]} >= {"incorrect", "review-in-app"}


def test_real_model_cards_are_not_marked() -> None:
    card = lab_cards(with_values(value("k", "H")))[0]
    assert "TEST" not in card["summary"] and TEST_WEIGHTS_DISPLAY not in card["detail"]
    assert card["source"]["label"] == "chartlight AI (MedGemma 1.5 4B rev-1)"


def test_sign_off_suggestion_updates_every_preliminary_result_to_final() -> None:
    card = lab_cards(fixed_result(source()))[0]
    assert card["selectionBehavior"] == "at-most-one"
    [suggestion] = card["suggestions"]
    actions = suggestion["actions"]
    assert len(actions) == 5  # 3 Observations, the DiagnosticReport, the summary DocumentReference
    for action in actions:
        resource = action["resource"]
        assert action["type"] == "update" and resource["id"]
        if resource["resourceType"] == "DocumentReference":
            assert resource["docStatus"] == "final" and resource["authenticator"] == {
                "reference": "Practitioner/dr"
            }
        else:
            assert resource["status"] == "final"
        assert any(s["code"] == "AIAST" for s in resource["meta"]["security"])
        assert "versionId" not in resource["meta"]


def test_signed_results_are_not_offered_again_and_patients_cannot_sign() -> None:
    resources, devices = stored(fixed_result(source()))
    final = [signed_off(r, "Practitioner/dr") for r in resources]
    cards = patient_view_cards(read_results(final, PATIENT), read_models(devices), PIPELINES, CONTEXT)
    assert len(cards) == 1 and "already signed off" in (cards[0].detail or "")
    as_patient = replace(CONTEXT, user="Patient/p1")
    cards = patient_view_cards(read_results(resources, PATIENT), read_models(devices), PIPELINES, as_patient)
    assert cards[0].suggestions is None


def test_results_of_other_patients_or_rejected_ones_are_ignored() -> None:
    resources, _ = stored(fixed_result(source()))
    assert read_results(resources, "someone-else") == []
    rejected = [{**r, "status": "entered-in-error"} for r in resources if r["resourceType"] == "Observation"]
    assert read_results(rejected, PATIENT) == []


def test_summaries_stay_under_140_characters() -> None:
    long_name = "Extraordinarily long laboratory analyte name " * 3
    card = lab_cards(with_values(*(value(f"k{i}", "H", name=long_name) for i in range(6))))[0]
    assert len(card["summary"]) < 140 and card["summary"].endswith("…")
    assert summary_line("a b " * 100).endswith("…") and len(summary_line("a b " * 100)) <= 139


def test_card_uuids_are_deterministic_per_hook_call() -> None:
    first, again = lab_cards(fixed_result(source())), lab_cards(fixed_result(source()))
    assert first[0]["uuid"] == again[0]["uuid"]
    assert first[0]["suggestions"][0]["uuid"] != first[0]["uuid"]


@pytest.mark.parametrize(
    "status, phrase",
    [
        (AnalysisStatus(), "no analysis pipelines are installed"),
        (AnalysisStatus(pipelines=("documents",), newly_queued=2), "2 input(s) being analysed"),
        (AnalysisStatus(pipelines=("documents",), queued=1, running=1), "2 input(s) being analysed"),
        (AnalysisStatus(pipelines=("documents",), checking=True), "checking this chart"),
        (AnalysisStatus(pipelines=("documents",)), "no AI results awaiting review"),
    ],
)
def test_status_card_without_results(status: AnalysisStatus, phrase: str) -> None:
    [card] = patient_view_cards([], {}, status, CONTEXT)
    assert phrase in card.summary and card.indicator == "info"


def test_failed_analyses_warn() -> None:
    status = AnalysisStatus(
        pipelines=("documents",), failed=1, failures=("documents: DocumentReference/9: bad PDF",)
    )
    [card] = patient_view_cards([], {}, status, CONTEXT)
    assert card.indicator == "warning" and "bad PDF" in (card.detail or "")


# ---- imaging orders ------------------------------------------------------------------------------

CHEST_XR = {
    "resourceType": "ServiceRequest",
    "id": "sr1",
    "status": "draft",
    "intent": "order",
    "code": {
        "coding": [{"system": "http://loinc.org", "code": "36643-5", "display": "XR Chest 2 Views"}],
        "text": "Chest X-ray, 2 views (repeat)",
    },
    "subject": {"reference": f"Patient/{PATIENT}"},
}


def imaging_result(*, critical: bool = False) -> PipelineResult:
    finding = Finding(
        key="opacity",
        text="Round opacity in the right lower zone, larger than on the prior",
        body_site="right lower lobe",
        change="worsened",
        abnormal=True,
        critical=critical,
        evidence=(ImageEvidence("1.2.3", "1.2.3.1", "1.2.3.1.1", frame=1, box=Box(301.5, 655, 372.5, 726)),),
    )
    report = ReportGroup(
        key="cxr",
        code=Coding("http://loinc.org", "36643-5", "XR Chest 2 Views"),
        category="RAD",
        item_keys=("opacity",),
        conclusion="Right lower zone opacity, enlarging.",
    )
    return PipelineResult(
        pipeline="imaging",
        pipeline_version="1",
        source=SourceRef("ImagingStudy", "cxr-now", "1"),
        model=MEDGEMMA,
        items=(finding,),
        reports=(report,),
        other_sources=(SourceRef("ImagingStudy", "cxr-prior", "1"),),
    )


@pytest.mark.parametrize("critical, indicator", [(False, "warning"), (True, "critical")])
def test_imaging_order_shows_the_comparison_and_where_the_finding_is(critical: bool, indicator: str) -> None:
    resources, devices = stored(imaging_result(critical=critical))
    status = AnalysisStatus(pipelines=("imaging",))
    [card] = imaging_order_cards(
        [CHEST_XR], read_results(resources, PATIENT), read_models(devices), status, CONTEXT
    )
    assert card.indicator == indicator
    assert card.summary.startswith("AI comparison of the last two studies, XR Chest 2 Views: worsened")
    detail = card.detail or ""
    assert "Ordered: Chest X-ray, 2 views (repeat)" in detail
    assert "box 301.5,655,372.5,726 px" in detail and "right lower lobe; worsened since prior" in detail
    assert "Right lower zone opacity, enlarging." in detail


@pytest.mark.parametrize(
    "pipelines, phrase", [((), "imaging pipeline is not installed"), (("imaging",), "none of their studies")]
)
def test_imaging_order_without_ai_results_says_so_plainly(pipelines: tuple[str, ...], phrase: str) -> None:
    [card] = imaging_order_cards([CHEST_XR], [], {}, AnalysisStatus(pipelines=pipelines), CONTEXT)
    assert card.summary.startswith("No AI imaging results for this patient") and phrase in (card.detail or "")


def test_only_imaging_orders_count() -> None:
    assert is_imaging_order(CHEST_XR)
    assert is_imaging_order(
        {
            "resourceType": "ServiceRequest",
            "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "363679005"}]}],
            "code": {"text": "Study"},
        }
    )
    assert not is_imaging_order({"resourceType": "ServiceRequest", "code": {"text": "Basic metabolic panel"}})
    assert not is_imaging_order({"resourceType": "MedicationRequest", "code": {"text": "CT"}})
    assert imaging_order_cards([], [], {}, AnalysisStatus(), CONTEXT) == []


def test_an_absolute_subject_counts_only_on_the_callers_server() -> None:
    """The same patient id on another FHIR server is another person."""
    resources, _ = stored(fixed_result(source()))
    mine = "https://ehr.example.org/fhir"
    absolute = [{**r, "subject": {"reference": f"{mine}/Patient/{PATIENT}"}} for r in resources]
    assert read_results(absolute, PATIENT, fhir_base=mine)
    assert read_results(absolute, PATIENT, fhir_base="https://other-ehr.example.net/fhir") == []
    assert read_results(absolute, PATIENT, fhir_base="") == []  # a hook without a known server
    assert read_results(resources, PATIENT, fhir_base="")  # relative subjects: the caller's own data


def _response_invariants(card: dict[str, Any]) -> list[str]:
    """The CDS Hooks 3.0 response invariants (logical model CDSHooksResponse, cds-resp-1..7) that
    a card breaks, written from their definitions."""
    broken = []
    suggestions = card.get("suggestions") or []
    recommended = sum(bool(s.get("isRecommended")) for s in suggestions)
    if card.get("selectionBehavior") == "at-most-one" and recommended > 1:
        broken.append("cds-resp-1")
    actions = [a for s in suggestions for a in s.get("actions", [])]
    if any(a["type"] == "delete" and ("resource" in a or not a.get("resourceId")) for a in actions):
        broken.append("cds-resp-2")
    if any(link["type"] != "smart" and "appContext" in link for link in card.get("links", [])):
        broken.append("cds-resp-3")
    if any(not reason.get("display") for reason in card.get("overrideReasons", [])):
        broken.append("cds-resp-4")
    if any(not a.get("description") for a in actions):
        broken.append("cds-resp-5")
    if suggestions and "selectionBehavior" not in card:
        broken.append("cds-resp-6")
    if any(s.get("actionSelectionBehavior") not in (None, "all", "any", "at-most-one") for s in suggestions):
        broken.append("cds-resp-7")
    if not (card["summary"] and len(card["summary"]) < 140 and card["source"]["label"]
            and card["indicator"] in ("info", "warning", "critical")):
        broken.append("required fields")
    return broken


def test_every_kind_of_card_keeps_the_response_invariants() -> None:
    resources, devices = stored(fixed_result(source()))
    imaging, imaging_devices = stored(imaging_result(critical=True))
    cards = [
        *patient_view_cards(read_results(resources, PATIENT), read_models(devices), PIPELINES, CONTEXT),
        *patient_view_cards([], {}, AnalysisStatus(failed=1, failures=("documents: x: broken",)), CONTEXT),
        *imaging_order_cards([CHEST_XR], read_results(imaging, PATIENT), read_models(imaging_devices),
                             AnalysisStatus(pipelines=("imaging",)), CONTEXT),
        *imaging_order_cards([CHEST_XR], [], {}, AnalysisStatus(), CONTEXT),
    ]
    dumped = [c.model_dump(mode="json", exclude_none=True) for c in cards]
    assert len(dumped) >= 4 and any(c.get("suggestions") for c in dumped)
    assert {json.dumps(c["summary"]): _response_invariants(c) for c in dumped} == {
        json.dumps(c["summary"]): [] for c in dumped}
