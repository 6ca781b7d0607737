"""AI results -> CDS Hooks cards. Pure: results, models, analysis status and the hook's context
in; cards out, with deterministic uuids (the same call gives the same cards).

One card per analysed input that has results awaiting review: a one-line summary of what the AI
found, the worst flag as the indicator (critical for HH/LL/AA, warning for H/L/A, else info), the
evidence in the detail, the model as the source, a suggestion to sign the results off (update
actions making them final, as `plugin.review.approve` does) and a link into the chartlight app.
Output of a random-weight test model says so in the summary, the detail and the source.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from cds_hooks.ai_results import AiResult, Model, Severity
from cds_hooks.models import Action as CardAction
from cds_hooks.models import Card, Link, Source, Suggestion
from cds_hooks.override_reasons import card_override_reasons
from fhir_mappers import TEST_WEIGHTS_DISPLAY

Resource = dict[str, Any]
SUMMARY_LIMIT = 139
TEST_PREFIX = "TEST OUTPUT, not clinical: "
Indicator = Literal["info", "warning", "critical"]
INDICATORS: dict[Severity, Indicator] = {"critical": "critical", "abnormal": "warning", "normal": "info"}
_SEVERITY_ORDER: dict[Severity, int] = {"normal": 0, "abnormal": 1, "critical": 2}
SIGNERS = ("Practitioner/", "PractitionerRole/")  # who may authenticate a result (R4)
_UUID_NAMESPACE = uuid.UUID("0b6f2a8e-35a5-5d5e-9c36-6f1e3f7c9a10")


@dataclass(frozen=True)
class CardContext:
    service_id: str
    hook_instance: str
    patient_id: str
    user: str  # context.userId, e.g. "Practitioner/123"
    app_launch_url: str
    fhir_server: str = ""  # the caller's allow-listed fhirServer; "" when unknown


@dataclass(frozen=True)
class AnalysisStatus:
    """The patient's analysis jobs and the look for inputs not analysed yet."""

    pipelines: tuple[str, ...] = ()  # installed pipeline names
    unavailable: tuple[str, ...] = ()  # "speech: model weights not found"
    queued: int = 0
    running: int = 0
    failed: int = 0
    newly_queued: int = 0  # queued by this call's look for new inputs
    on_record: int = 0  # inputs that look left alone: their results are on the record already
    checking: bool = False  # that look had not finished when the card was made
    failures: tuple[str, ...] = field(default=())  # "DocumentReference/7: unreadable PDF"
    jobs_unreadable: bool = False  # the job database did not answer: job counts are not known
    queue_unreachable: bool = False  # the job broker did not answer: new analyses wait for it

    @property
    def pending(self) -> int:
        return self.queued + self.running


@dataclass(frozen=True)
class ResultGroup:
    """The results read from one input."""

    source: str
    results: tuple[AiResult, ...]

    @property
    def severity(self) -> Severity:
        return max((r.severity for r in self.results), key=_SEVERITY_ORDER.__getitem__, default="normal")

    @property
    def awaiting_review(self) -> tuple[AiResult, ...]:
        return tuple(r for r in self.results if r.preliminary)

    @property
    def report(self) -> AiResult | None:
        return next((r for r in self.results if r.kind == "report"), None)

    @property
    def effective(self) -> str:
        return max((r.effective for r in self.results), default="")

    @property
    def test_weights(self) -> bool:
        return any(r.test_weights for r in self.results)


def group_by_source(results: Iterable[AiResult]) -> list[ResultGroup]:
    """Results grouped by the input they were read from; results a report lists join the
    report's group. Newest input first."""
    results = list(results)
    report_of = {member: r.source for r in results if r.kind == "report" for member in r.members}
    groups: dict[str, list[AiResult]] = {}
    for result in results:
        source = result.source or report_of.get(result.reference, "") or "unknown input"
        groups.setdefault(source, []).append(result)
    built = [ResultGroup(source, tuple(items)) for source, items in groups.items()]
    return sorted(built, key=lambda g: (g.effective, g.source), reverse=True)


def card_uuid(context: CardContext, key: str) -> str:
    return str(uuid.uuid5(_UUID_NAMESPACE, f"{context.service_id}|{context.hook_instance}|{key}"))


# ---- patient-view --------------------------------------------------------------------------------


def patient_view_cards(results: list[AiResult], models: dict[str, Model], status: AnalysisStatus,
                       context: CardContext) -> list[Card]:
    """A card per input with results awaiting review, then one status card when analyses are
    pending, failed, just started, or there is nothing to show."""
    groups = group_by_source(results)
    cards = [results_card(g, models, context, headline=_results_headline(g))
             for g in groups if g.awaiting_review]
    signed = sum(1 for r in results if not r.preliminary)
    status_card = _status_card(status, context, shown=len(cards), signed=signed)
    return cards + ([status_card] if status_card is not None else [])


def _results_headline(group: ResultGroup) -> str:
    values = [r for r in group.results if r.kind in ("value", "finding")]
    flagged = sorted((r for r in values if r.severity != "normal"),
                     key=lambda r: -_SEVERITY_ORDER[r.severity])
    what = group.report.name if group.report else _input_name(group.source)
    date = f" ({group.effective[:10]})" if group.effective else ""
    head = f"AI read {len(values)} result{'s' if len(values) != 1 else ''} from {what}{date}"
    if not flagged:
        return head + ": none flagged"
    listed = ", ".join(f"{r.name} {r.value} {'/'.join(_shown_flags(r))}".strip() for r in flagged)
    return f"{head}: {len(flagged)} flagged — {listed}"


def results_card(group: ResultGroup, models: dict[str, Model], context: CardContext, *,
                 headline: str, intro: str = "") -> Card:
    model_list = _models_of(group, models)
    test = group.test_weights or any(m.test_weights for m in model_list)
    suggestion = _sign_off(group, context)
    return Card(
        uuid=card_uuid(context, f"results|{group.source}"),
        summary=summary_line((TEST_PREFIX if test else "") + headline),
        detail=_detail(group, model_list, test, intro),
        indicator=INDICATORS[group.severity],
        source=_source(model_list, test),
        suggestions=[suggestion] if suggestion else None,
        selectionBehavior="at-most-one" if suggestion else None,
        overrideReasons=card_override_reasons(),
        links=[_app_link(context, [r.reference for r in group.results])],
    )


def _status_card(status: AnalysisStatus, context: CardContext, *, shown: int, signed: int) -> Card | None:
    lines = []
    if status.checking:
        lines.append("chartlight is checking this chart for inputs not analysed yet.")
    if status.newly_queued:
        lines.append(f"{status.newly_queued} input(s) not analysed yet: AI analysis started in the "
                     "background; results will appear here when ready.")
    if status.pending:
        lines.append(f"{status.pending} input(s) awaiting AI analysis ({status.running} running, "
                     f"{status.queued} queued).")
    if status.failed:
        lines.append(f"{status.failed} analysis job(s) failed:")
        lines.extend(f"- {failure}" for failure in status.failures[:5])
    if status.jobs_unreadable:
        lines.append("chartlight could not read its analysis jobs just now (its job database did not "
                     "answer), so what is queued, running or failed is not shown.")
    if status.queue_unreachable:
        lines.append("chartlight's job queue is not reachable just now: inputs are recorded and "
                     "their analysis starts once it is back; results shown are read from the record.")
    if not status.pipelines:
        lines.append("No analysis pipelines are installed, so nothing new will be analysed.")
    lines.extend(f"Pipeline {reason}" for reason in status.unavailable)
    if not lines and shown:
        return None  # the result cards say it all
    if status.newly_queued or status.pending:
        count = status.newly_queued + status.pending
        summary = f"chartlight: {count} input(s) being analysed by AI; results will appear when ready"
    elif status.checking:
        summary = "chartlight: checking this chart for inputs not analysed yet"
    elif shown == 0 and not status.pipelines:
        summary = "chartlight: no AI results for this patient; no analysis pipelines are installed"
    elif shown == 0:
        summary = "chartlight: no AI results awaiting review for this patient"
    else:
        summary = "chartlight: some AI analyses need attention"
    if status.on_record:
        lines.append(f"{status.on_record} input(s) already analysed: their results are on the record, "
                     "so they were not analysed again.")
    if signed:
        lines.append(f"{signed} AI result(s) of this patient are already signed off.")
    return Card(
        uuid=card_uuid(context, "status"),
        summary=summary_line(summary),
        detail="\n".join(lines) or "Every input of this chart has been analysed and reviewed.",
        indicator="warning" if status.failed else "info",
        source=Source(label="chartlight"),
        links=[_app_link(context, [])],
    )


# ---- imaging orders ------------------------------------------------------------------------------


def imaging_order_cards(orders: list[Resource], results: list[AiResult], models: dict[str, Model],
                        status: AnalysisStatus, context: CardContext) -> list[Card]:
    """For imaging orders: the AI read of the patient's latest analysed study (its comparison
    with the prior study and its localised findings), or a plain statement that there is none."""
    if not orders:
        return []
    ordered = "; ".join(order_name(o) for o in orders)
    imaging = [r for r in results if r.category in ("imaging", "RAD") or r.kind == "finding"]
    groups = [g for g in group_by_source(imaging) if any(r.kind in ("finding", "report") for r in g.results)]
    if not groups:
        if "imaging" not in status.pipelines:
            why = "the imaging pipeline is not installed"
        elif status.pending:
            why = f"{status.pending} imaging analysis job(s) are still running or queued"
        else:
            why = "none of their studies has been analysed yet"
        return [Card(
            uuid=card_uuid(context, "imaging|none"),
            summary=summary_line("No AI imaging results for this patient: no AI comparison of prior "
                                 "studies is available"),
            detail=f"Ordered: {_escape(ordered)}.\n\nchartlight has no AI imaging results for this "
                   f"patient: {why}.",
            indicator="info", source=Source(label="chartlight"),
            links=[_app_link(context, [])])]
    latest = groups[0]
    findings = [r for r in latest.results if r.kind == "finding"]
    changes = [f for f in findings if f.change]
    what = latest.report.name if latest.report else _input_name(latest.source)
    date = f" ({latest.effective[:10]})" if latest.effective else ""
    if changes:
        head = f"AI comparison of the last two studies, {what}{date}: " + ", ".join(
            f"{f.change} — {f.value or f.name}" for f in changes)
    else:
        head = (f"AI read of the last study, {what}{date}: {len(findings)} finding(s), "
                "no comparison with a prior")
    intro = (f"Ordered: {_escape(ordered)}.\n\nThe latest study chartlight analysed is "
             f"{_escape(latest.source)}" + (" (compared with the prior study)." if changes else "."))
    if len(groups) > 1:
        intro += f" {len(groups) - 1} earlier AI read(s) are in the chartlight app."
    return [results_card(latest, models, context, headline=head, intro=intro)]


def order_name(order: Resource) -> str:
    code = order.get("code", {})
    name = code.get("text") or next((c.get("display") or c.get("code") for c in code.get("coding", [])
                                     if c.get("display") or c.get("code")), "")
    return str(name or f"{order.get('resourceType')}/{order.get('id', '?')}")


# ---- card parts ----------------------------------------------------------------------------------


def summary_line(text: str) -> str:
    """One line under 140 characters, cut at a word with an ellipsis when longer."""
    text = " ".join(text.split())
    if len(text) <= SUMMARY_LIMIT:
        return text
    cut = text[:SUMMARY_LIMIT - 1].rsplit(" ", 1)[0].rstrip(",;:—- ")
    return cut + "…"


def signed_off(resource: Resource, clinician: str) -> Resource:
    """The result as a clinician's approval leaves it (the same change plugin.review.approve
    makes): final, and for a document authenticated by the clinician."""
    changed = {k: v for k, v in resource.items() if k != "meta"}
    changed["meta"] = {k: v for k, v in resource.get("meta", {}).items() if k in ("security", "tag")}
    if resource["resourceType"] == "DocumentReference":
        changed["docStatus"] = "final"
        changed["authenticator"] = {"reference": clinician}
    else:
        changed["status"] = "final"
    return changed


def _sign_off(group: ResultGroup, context: CardContext) -> Suggestion | None:
    pending = group.awaiting_review
    if not pending or not context.user.startswith(SIGNERS):
        return None
    actions = [CardAction(type="update", description=f"Sign off {r.name}: mark final",
                          resource=signed_off(r.resource, context.user)) for r in pending]
    return Suggestion(label=f"Sign off {len(pending)} AI result(s) as final",
                      uuid=card_uuid(context, f"sign-off|{group.source}"), actions=actions)


def _detail(group: ResultGroup, models: list[Model], test: bool, intro: str) -> str:
    lines = []
    if test:
        lines += [f"**{TEST_WEIGHTS_DISPLAY}.** These results come from a random-weight test model.", ""]
    if intro:
        lines += [intro, ""]
    by = ", ".join(m.label for m in models) or "an AI model not named on the server"
    waiting = len(group.awaiting_review)
    lines.append(f"AI-extracted from {_escape(group.source)} by {_escape(by)}; "
                 f"{waiting} of {len(group.results)} awaiting clinician review.")
    rows = [r for r in group.results if r.kind in ("value", "finding")]
    if rows:
        lines += ["", "| Result | Value | Flag | Range / site | Status | Evidence |",
                  "|---|---|---|---|---|---|"]
        for r in rows:
            site = r.reference_range or r.body_site
            if r.change:
                site = f"{site}; {r.change} since prior".strip("; ")
            evidence = "; ".join(f"\"{e.quote}\" ({e.where})" if e.quote else e.where for e in r.evidence)
            lines.append("| " + " | ".join(_escape(x) for x in (
                r.name, r.value, "/".join(_shown_flags(r)), site, r.status, evidence)) + " |")
    for r in group.results:
        if r.kind == "report" and r.value:
            lines += ["", f"**Conclusion (AI):** {_escape(r.value)}"]
        elif r.kind == "document":
            lines += ["", f"AI {r.value or 'document'}: {_escape(r.name)} ({r.status})"]
    return "\n".join(lines)


def _source(models: list[Model], test: bool) -> Source:
    named = ", ".join(m.label for m in models) or "AI model"
    return Source(label=f"chartlight AI ({'TEST MODEL ' if test else ''}{named})"[:200])


def _app_link(context: CardContext, references: list[str]) -> Link:
    app_context = json.dumps({"patient": context.patient_id, "results": references},
                             separators=(",", ":"))
    return Link(label="Review in chartlight", url=context.app_launch_url, type="smart",
                appContext=app_context)


def _models_of(group: ResultGroup, models: dict[str, Model]) -> list[Model]:
    found = {r.device: models[r.device] for r in group.results if r.device in models}
    return [found[k] for k in sorted(found)]


def _shown_flags(result: AiResult) -> list[str]:
    return [f for f in result.flags if f not in ("N", "B", "W")]


def _input_name(source: str) -> str:
    kind = source.split("/")[0]
    return {"DocumentReference": "a document", "Media": "a recording", "ImagingStudy": "an imaging study",
            "DiagnosticReport": "a report"}.get(kind, source)


def _escape(text: str) -> str:
    """Cell text safe in a GitHub-flavoured markdown table."""
    return " ".join(str(text).split()).replace("\\", "\\\\").replace("|", "\\|")
