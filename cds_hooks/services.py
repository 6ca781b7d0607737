"""The CDS services chartlight offers: what discovery says about each (hook, prefetch
templates) and how each turns a validated call into cards. The handlers are pure; the blueprint
does the I/O (prefetch, analysis status) before calling them.

- chartlight-patient-results (patient-view): the patient's latest AI summary, the AI results
  awaiting review, and the analyses pending for them.
- chartlight-imaging-order-select / -order-sign: for imaging orders (e.g. a repeat chest X-ray
  ServiceRequest), the AI comparison of the patient's last two studies and its localised
  findings, or a plain statement that there is none.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel

from cds_hooks.ai_results import read_models, read_results
from cds_hooks.cards import AnalysisStatus, CardContext, imaging_order_cards, patient_view_cards
from cds_hooks.models import (
    SPEC_VERSION,
    Card,
    OrderSelectContext,
    OrderSignContext,
    PatientViewContext,
    ServiceDescription,
)
from cds_hooks.prefetch import resources
from cds_hooks.summary_card import is_summary, newest_summary, summary_card
from fhir_mappers.systems import SID_DEVICE, SID_RESULT, V2_0074

Resource = dict[str, Any]
_PATIENT = "{{context.patientId}}"
_OURS = "identifier=" + quote(SID_RESULT + "|", safe=":/")  # "|" encoded: Tomcat refuses it raw
_DEVICES = "Device?identifier=" + quote(SID_DEVICE + "|", safe=":/") + "&_count=100"
_RAD = quote(f"{V2_0074}|RAD", safe=":/")

PATIENT_VIEW_PREFETCH = {
    "chartlightObservations": f"Observation?patient={_PATIENT}&{_OURS}&_count=200",
    "chartlightReports": f"DiagnosticReport?patient={_PATIENT}&{_OURS}&_count=100",
    "chartlightDocuments": f"DocumentReference?patient={_PATIENT}&{_OURS}&_count=100",
    "chartlightDevices": _DEVICES,
}
IMAGING_PREFETCH = {
    "imagingFindings": f"Observation?patient={_PATIENT}&category=imaging&{_OURS}&_count=200",
    "radiologyReports": f"DiagnosticReport?patient={_PATIENT}&category={_RAD}&{_OURS}&_count=100",
    "chartlightDevices": _DEVICES,
}

# ServiceRequest.category of imaging orders (SNOMED CT 363679005 "Imaging"; US Core uses it).
IMAGING_CATEGORY_CODES = frozenset({"363679005", "imaging", "RAD", "radiology"})
_IMAGING_WORDS = re.compile(
    r"\b(x-?ray|xr|radiograph\w*|ct|cta|mri?|mra|ultrasound|us|sonograph\w*|mammogra\w*|pet|"
    r"fluoroscop\w*|imaging|dexa|angiogra\w*)\b", re.IGNORECASE)


@dataclass(frozen=True)
class HookCall:
    """A validated hook call with its data in hand."""

    context: BaseModel
    data: Mapping[str, Resource | None]
    status: AnalysisStatus
    cards: CardContext


@dataclass(frozen=True)
class CdsService:
    id: str
    hook: str
    title: str
    description: str
    prefetch: Mapping[str, str]
    context_model: type[BaseModel]
    handler: Callable[[HookCall], list[Card]]
    # Whether a call needs any data at all (order hooks: only when imaging is ordered).
    relevant: Callable[[BaseModel], bool] = lambda context: True
    # The hook definition's version whose context the service reads (the `hookVersion` of
    # its metadata table, HL7/cds-hooks-library): patient-view, order-select and order-sign 1.0.
    hook_version: str = "1.0"

    def describe(self) -> ServiceDescription:
        return ServiceDescription(hook=self.hook, title=self.title, description=self.description,
                                  id=self.id, prefetch=dict(self.prefetch), version=SPEC_VERSION,
                                  hookVersion=self.hook_version)


def patient_results(call: HookCall) -> list[Card]:
    assert isinstance(call.context, PatientViewContext)
    patient = call.context.patientId
    found = [r for key, kind in (("chartlightObservations", "Observation"),
                                 ("chartlightReports", "DiagnosticReport"),
                                 ("chartlightDocuments", "DocumentReference"))
             for r in resources(call.data.get(key), kind)]
    # The patient summary is its own card, first; it is not a result of one input.
    summary = newest_summary(found)
    found = [r for r in found if not is_summary(r)]
    models = read_models(resources(call.data.get("chartlightDevices"), "Device"))
    results = read_results(found, patient, fhir_base=call.cards.fhir_server)
    cards = patient_view_cards(results, models, call.status, call.cards)
    return ([summary_card(summary, call.cards)] if summary is not None else []) + cards


def imaging_orders(call: HookCall) -> list[Card]:
    assert isinstance(call.context, OrderSignContext)
    found = [*resources(call.data.get("imagingFindings"), "Observation"),
             *resources(call.data.get("radiologyReports"), "DiagnosticReport")]
    models = read_models(resources(call.data.get("chartlightDevices"), "Device"))
    results = read_results(found, call.context.patientId, fhir_base=call.cards.fhir_server)
    return imaging_order_cards(ordered_imaging(call.context), results, models, call.status, call.cards)


def ordered_imaging(context: BaseModel) -> list[Resource]:
    """The imaging ServiceRequests the call is about: order-select's selections, or every
    draft order of order-sign."""
    assert isinstance(context, OrderSignContext)
    orders = context.draftOrders.resources()
    if isinstance(context, OrderSelectContext):
        chosen = set(context.selections)
        orders = [o for o in orders if f"{o.get('resourceType')}/{o.get('id')}" in chosen]
    return [o for o in orders if is_imaging_order(o)]


def is_imaging_order(resource: Resource) -> bool:
    if resource.get("resourceType") != "ServiceRequest":
        return False
    for concept in resource.get("category", []):
        if any(c.get("code") in IMAGING_CATEGORY_CODES for c in concept.get("coding", [])):
            return True
        if _IMAGING_WORDS.search(str(concept.get("text", ""))):
            return True
    code = resource.get("code", {})
    names = [code.get("text", ""), *(c.get("display", "") for c in code.get("coding", []))]
    return any(_IMAGING_WORDS.search(str(name)) for name in names)


SERVICES: tuple[CdsService, ...] = (
    CdsService(
        id="chartlight-patient-results", hook="patient-view", title="chartlight AI results",
        description="AI-extracted results awaiting review for this patient (lab values read from "
                    "documents, dictation transcripts, imaging findings), with their evidence, and "
                    "the AI analyses still pending. Nothing is final until a clinician signs it off.",
        prefetch=PATIENT_VIEW_PREFETCH, context_model=PatientViewContext, handler=patient_results),
    CdsService(
        id="chartlight-imaging-order-select", hook="order-select",
        title="chartlight AI imaging comparison",
        description="When an imaging study is ordered (e.g. a repeat chest X-ray): the AI comparison "
                    "of the patient's last two studies and its localised findings.",
        prefetch=IMAGING_PREFETCH, context_model=OrderSelectContext, handler=imaging_orders,
        relevant=lambda context: bool(ordered_imaging(context))),
    CdsService(
        id="chartlight-imaging-order-sign", hook="order-sign",
        title="chartlight AI imaging comparison (signing)",
        description="Before imaging orders are signed: the AI comparison of the patient's last two "
                    "studies and its localised findings.",
        prefetch=IMAGING_PREFETCH, context_model=OrderSignContext, handler=imaging_orders,
        relevant=lambda context: bool(ordered_imaging(context))),
)
SERVICES_BY_ID = {service.id: service for service in SERVICES}
