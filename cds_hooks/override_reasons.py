"""Override reasons: the ones chartlight's cards offer, and the non-adherence reason codes CDS
Hooks 3.0 suggests (code system http://terminology.hl7.org/CodeSystem/non-adherence-reason-codes,
value sets non-adherence-reason and non-adherence-reason-clinical; HL7/cds-hooks
input/vocabulary). Pure data and lookups: feedback is checked against them and the report sums
reasons up by the code system's six categories, whichever code an EHR sent.
"""

from __future__ import annotations

from dataclasses import dataclass

from cds_hooks.models import Coding
from fhir_mappers.systems import NAMESPACE

CS_OVERRIDE_REASON = f"{NAMESPACE}/CodeSystem/cds-override-reason"
CS_NON_ADHERENCE = "http://terminology.hl7.org/CodeSystem/non-adherence-reason-codes"

# The code system's top-level concepts (its categories), code -> display.
CATEGORIES: dict[str, str] = {
    "cds-not-applicable": "PC CDS does not apply to patient",
    "cds-suboptimal-context": "PC CDS delivered in suboptimal context",
    "recipient-disagrees-evidence":
        "Recipient disagrees with recommendation because of issues with the evidence",
    "recipient-concerns-outcomes": "Recipient has concerns regarding potential health outcomes",
    "does-not-align-preferences": "Recommendation does not align with patient preferences or values",
    "not-convenient-feasible": "Recommendation is not convenient or feasible",
}
# Its second-level concepts: code -> (display, category).
NON_ADHERENCE_CODES: dict[str, tuple[str, str]] = {
    "patient-ineligible": ("Patient does not meet eligibility for recommended action", "cds-not-applicable"),
    "indication-order-exists": ("Patient has indication/order for intended action", "cds-not-applicable"),
    "action-completed": ("Recommended action was already completed", "cds-not-applicable"),
    "action-unsuccessful": ("Recommended action was previously unsuccessful", "cds-not-applicable"),
    "action-performed-no-adverse-effect": (
        "Intended action was performed previously without adverse effect", "cds-not-applicable"),
    "action-not-priority": (
        "Recommended action is not relevant or a priority in current state of health", "cds-not-applicable"),
    "limited-time": ("Could not address recommended action due to limited time", "cds-suboptimal-context"),
    "wrong-time-workflow": (
        "PC CDS delivered at wrong time in workflow or patient lifecycle", "cds-suboptimal-context"),
    "inappropriate-recipient": ("PC CDS delivered to inappropriate recipient/role", "cds-suboptimal-context"),
    "need-more-info": ("Could not address recommended action due to need for more information/pending "
                       "results/pending consult", "cds-suboptimal-context"),
    "does-not-align-latest-evidence": (
        "Recommended action does not align with the latest evidence", "recipient-disagrees-evidence"),
    "expert-contradicts": (
        "Advice from expert contradicts the recommended action", "recipient-disagrees-evidence"),
    "policy-contradicts": ("Institutional policy/guideline contradicts the recommended action",
                           "recipient-disagrees-evidence"),
    "recipient-does-not-trust": (
        "Recipient does not agree with or trust the recommended action", "recipient-disagrees-evidence"),
    "risk-benefit-ratio": ("Recipient assessment of risk/benefit ratio", "recipient-concerns-outcomes"),
    "mitigate-risk-negative-outcome": (
        "Action taken to mitigate risk of negative outcome", "recipient-concerns-outcomes"),
    "likely-negative-health-outcomes": (
        "Recommended action likely to have negative health outcomes", "recipient-concerns-outcomes"),
    "patient-contraindication": (
        "Patient has contraindication to recommended action", "recipient-concerns-outcomes"),
    "patient-fears-discomfort": ("Patient fears discomfort from complying with recommended action",
                                 "does-not-align-preferences"),
    "patient-does-not-want-change": (
        "Patient does not want to change behavior or believes the change is unnecessary",
        "does-not-align-preferences"),
    "cultural-religious-reason": (
        "Patient has a cultural or religious reason for not following recommended action",
        "does-not-align-preferences"),
    "prefers-alternative": (
        "Patient prefers an alternative approach or treatment", "does-not-align-preferences"),
    "patient-refuses": ("Patient refuses/declines (no context given)*", "does-not-align-preferences"),
    "inadequate-support": ("Patient has inadequate caregiver/social support", "not-convenient-feasible"),
    "service-not-available": ("Treatment or service is not practically available", "not-convenient-feasible"),
    "implementation-challenges": (
        "Recommended action cannot be implemented due to technology/challenges", "not-convenient-feasible"),
    "too-costly-uncovered": (
        "Recommended action is too costly or not covered by insurance", "not-convenient-feasible"),
    "recipient-does-not-understand": (
        "Recipient does not understand the recommended action or know how to perform the recommended "
        "action", "not-convenient-feasible"),
    "comorbidity-disability": ("Patient has co-morbidity or disability that hinders them from completing "
                               "recommended action", "not-convenient-feasible"),
}


@dataclass(frozen=True)
class Reason:
    """One of chartlight's own override reasons, with the non-adherence category it belongs to."""

    code: str
    display: str
    category: str

    @property
    def coding(self) -> Coding:
        return Coding(system=CS_OVERRIDE_REASON, code=self.code, display=self.display)


# What a clinician may say when not signing AI results off from a card. Each belongs to one of
# the 3.0 categories, so reports from EHRs that send either code read the same.
CHARTLIGHT_REASONS: tuple[Reason, ...] = (
    Reason("incorrect", "AI result is incorrect", "recipient-disagrees-evidence"),
    Reason("review-in-app", "Will review in the chartlight app", "cds-suboptimal-context"),
    Reason("not-relevant", "Not clinically relevant", "cds-not-applicable"),
    Reason("wrong-patient", "Source belongs to another patient", "cds-not-applicable"),
)
_OURS = {reason.code: reason for reason in CHARTLIGHT_REASONS}


def card_override_reasons() -> list[Coding]:
    return [reason.coding for reason in CHARTLIGHT_REASONS]


def check_reason(system: str | None, code: str | None) -> str | None:
    """Why a feedback reason cannot be right (a code its own system does not define), else
    None. Codes of other systems are the EHR's own (CDS Hooks lets clients add reasons): kept."""
    if system == CS_OVERRIDE_REASON and code not in _OURS:
        return f"override reason {str(code)[:60]!r} is not one of chartlight's ({', '.join(_OURS)})"
    if system == CS_NON_ADHERENCE and code not in NON_ADHERENCE_CODES and code not in CATEGORIES:
        return f"override reason {str(code)[:60]!r} is not in {CS_NON_ADHERENCE}"
    return None


def category_of(system: str, code: str) -> str | None:
    """The non-adherence category (a code of CATEGORIES) of a reason, when it has one."""
    if system == CS_OVERRIDE_REASON and code in _OURS:
        return _OURS[code].category
    if system == CS_NON_ADHERENCE:
        if code in CATEGORIES:
            return code
        if code in NON_ADHERENCE_CODES:
            return NON_ADHERENCE_CODES[code][1]
    return None
