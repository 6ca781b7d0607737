"""The app's chart pages: the latest patient summary with its citations, each cited resource
(opening the evidence view for chartlight's own results), and "ask the chart" — answers streamed
as NDJSON while the model writes, kept in this process for the session, and written to the EHR
only when the clinician saves one.

Same rules as the other pages (smart_launch.pages): a launched session, the session's patient
only (a cited resource of another patient is refused), POSTs under the blueprint's CSRF check.
Questions and answers are patient data: never logged, never in URLs.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    jsonify,
    render_template,
    request,
    stream_with_context,
    url_for,
)

from plugin.app import settings_of
from plugin.engines.test_models import why_not_sandbox
from plugin.errors import ChartlightError, FhirError
from plugin.fhir import FhirClient
from plugin.pipelines.summary import SummaryPipeline, latest_summary
from plugin.pipelines.summary.ask import BadQuestion, ChartAnswer, ask, check_question, saved_answer_bundle
from plugin.pipelines.summary.digest import AIAST_SYSTEM
from plugin.writeback import subject_of
from smart_launch.session import SmartSession, current_session, fhir_client_for, login_required

from .views.context import Abilities
from .views.context import json_failure as _fail
from .views.context import patient_in_context as _patient
from .views.patient import banner_of

log = logging.getLogger(__name__)
READER = "chartlight.chart_reader"  # the SummaryPipeline whose engine answers questions
ANSWERS = "chartlight.chart_answers"
KEPT_ANSWERS = 200  # answers held for saving, across sessions (oldest dropped first)
_RESOURCE_TYPES = frozenset({"Condition", "AllergyIntolerance", "MedicationRequest", "MedicationStatement",
                             "Observation", "DiagnosticReport", "DocumentReference", "Patient"})


def register_chart_pages(bp: Blueprint) -> None:
    routes: list[tuple[str, str, Any, list[str]]] = [
        ("/app/summary", "app_summary", summary_page, ["GET"]),
        ("/app/chart/<resource_type>/<resource_id>/<version>", "app_chart_resource", chart_resource, ["GET"]),
        ("/app/ask", "app_ask", ask_question, ["POST"]),
        ("/app/ask/save", "app_ask_save", save_answer, ["POST"]),
    ]
    for rule, endpoint, view, methods in routes:
        bp.add_url_rule(rule, endpoint, login_required(view), methods=methods)


def reader_of(app: Flask) -> SummaryPipeline:
    """The chart reader (engine, budget, tokenizer) the settings choose, built once."""
    if READER not in app.extensions:
        from plugin.pipelines.registry import chart_reader

        app.extensions[READER] = chart_reader(settings_of(app))
    reader: SummaryPipeline = app.extensions[READER]
    return reader


class _Answers:
    """Answers awaiting a save, by (session, answer id); memory only, bounded."""

    def __init__(self) -> None:
        self._items: OrderedDict[tuple[str, str], ChartAnswer] = OrderedDict()
        self._lock = threading.Lock()

    def keep(self, session_id: str, answer: ChartAnswer) -> str:
        answer_id = secrets.token_urlsafe(12)
        with self._lock:
            self._items[(session_id, answer_id)] = answer
            while len(self._items) > KEPT_ANSWERS:
                self._items.popitem(last=False)
        return answer_id

    def get(self, session_id: str, answer_id: str) -> ChartAnswer | None:
        with self._lock:
            return self._items.get((session_id, answer_id))


def _answers(app: Flask) -> _Answers:
    answers: _Answers = app.extensions.setdefault(ANSWERS, _Answers())
    return answers


# ---- pages -----------------------------------------------------------------------------------


def summary_page() -> Any:
    session, client = _session_and_client()
    patient_id = _patient(session)
    latest = latest_summary(client, patient_id) if session.can_read("DocumentReference") else None
    reader = reader_of(current_app)
    return render_template(
        "app_summary.html", smart=session, summary=latest, banner=_banner(session, client),
        abilities=Abilities.of(session),
        sentences=(latest.details.get("sentences", []) if latest else []),
        withheld=(latest.details.get("withheld", []) if latest else []),
        ask_unavailable=reader.unavailable_reason(),
        test_model=reader.engine.available() and reader.engine.model_info().test_weights,
        can_save=(session.can_write("DocumentReference") and session.can_write("Provenance")
                  and bool(session.user)))


def chart_resource(resource_type: str, resource_id: str, version: str) -> Any:
    """One cited resource at the cited version, when it is this session's patient's."""
    session, client = _session_and_client()
    if resource_type not in _RESOURCE_TYPES:
        abort(404)
    resource = client.vread(resource_type, resource_id, version)
    if not _names_patient(resource, _patient(session), client.base_url):
        abort(403, "that resource is not about this patient")
    own = any(s.get("system") == AIAST_SYSTEM and s.get("code") == "AIAST"
              for s in (resource.get("meta") or {}).get("security", []))
    source = _analysed_source(resource) if own else None
    evidence_url = (url_for("smart.app_source", resource_type=source[0], resource_id=source[1])
                    if source else None)
    return render_template(
        "app_chart_resource.html", resource=resource, own=own, evidence_url=evidence_url,
        reference=f"{resource_type}/{resource_id}/_history/{version}",
        pretty=json.dumps(resource, indent=2, sort_keys=True), banner=_banner(session, client),
        smart=session, abilities=Abilities.of(session))


def ask_question() -> Any:
    session, client = _session_and_client()
    patient_id = _patient(session)
    try:
        question = check_question((request.get_json(silent=True) or {}).get("question"))
    except BadQuestion as exc:
        return _fail(400, str(exc))
    reader = reader_of(current_app)
    if reader.unavailable_reason():
        return _fail(503, f"ask the chart is not available here: {reader.unavailable_reason()}")
    refusal = _test_model_refusal(reader, client)
    if refusal:
        return _fail(403, refusal)
    app = current_app._get_current_object()  # type: ignore[attr-defined]  # for the answers store

    def lines() -> Iterator[str]:
        try:
            for part in ask(reader, client, patient_id, question, readable=session.can_read):
                if isinstance(part, str):
                    yield json.dumps({"chunk": part}) + "\n"
                else:
                    kept = _answers(app).keep(session.id, part)
                    yield json.dumps({"answer": _answer_json(part, kept)}) + "\n"
        except (FhirError, ChartlightError) as exc:
            log.info("ask the chart failed (%s)", type(exc).__name__)  # no question, no answer
            yield json.dumps({"error": str(exc)}) + "\n"
    return Response(stream_with_context(lines()), mimetype="application/x-ndjson",
                    headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def save_answer() -> Any:
    session, client = _session_and_client()
    answer_id = str((request.get_json(silent=True) or {}).get("answer") or "")
    answer = _answers(current_app).get(session.id, answer_id)
    if answer is None or answer.patient.id != _patient(session):
        return _fail(404, "that answer is no longer held here: ask the question again")
    if not session.user:
        return _fail(403, "the launch did not say who you are (no fhirUser): the answer cannot be saved "
                          "with you as its author")
    if not (session.can_write("DocumentReference") and session.can_write("Provenance")):
        return _fail(403, "the access your EHR granted does not allow writing documents")
    refusal = _test_model_refusal(reader_of(current_app), client)
    if refusal:
        return _fail(403, refusal)
    bundle = saved_answer_bundle(answer, clinician=session.user, now=datetime.now(UTC),
                                 base_url=client.base_url)
    if bundle is None:
        return _fail(400, "no sentence of that answer is supported by the chart: there is nothing to save")
    response = client.transaction(bundle)
    written = [e.get("response", {}).get("location", "").removeprefix(client.base_url + "/")
               for e in response.get("entry", [])]
    document = next((w for w in written if w.startswith("DocumentReference/")), "")
    provenance = next((w for w in written if w.startswith("Provenance/")), "")
    return jsonify(ok=True, document=document, provenance=provenance)


# ---- helpers ---------------------------------------------------------------------------------


def _session_and_client() -> tuple[SmartSession, FhirClient]:
    session = current_session()
    if session is None:
        abort(401)
    return session, fhir_client_for(session)


def _banner(session: SmartSession, client: FhirClient) -> Any:
    return banner_of(client, _patient(session)) if session.need_patient_banner else None


def _test_model_refusal(reader: SummaryPipeline, client: FhirClient) -> str:
    """Random-weight test models answer only against a sandbox (as their jobs write only there)."""
    if not reader.engine.model_info().test_weights:
        return ""
    why = why_not_sandbox(client.base_url, client.capabilities)
    return f"test models: {why}" if why else ""


def _names_patient(resource: dict[str, Any], patient_id: str, base_url: str) -> bool:
    if resource.get("resourceType") == "Patient":
        return str(resource.get("id")) == patient_id
    named = subject_of(resource, base_url=base_url) or subject_of(
        {"subject": resource.get("patient")}, base_url=base_url)
    return named == f"Patient/{patient_id}"


def _analysed_source(resource: dict[str, Any]) -> tuple[str, str] | None:
    """The input one of chartlight's results was read from (what the evidence view opens)."""
    candidates = [r.get("reference", "") for r in resource.get("derivedFrom", [])]
    candidates += [r.get("reference", "") for r in (resource.get("context") or {}).get("related", [])]
    for reference in candidates:
        parts = str(reference).split("/")
        if len(parts) >= 2 and parts[0] in ("DocumentReference", "DiagnosticReport", "Media", "ImagingStudy"):
            return parts[0], parts[1]
    return None


def _answer_json(answer: ChartAnswer, answer_id: str) -> dict[str, Any]:
    def link(ref: str) -> dict[str, str]:
        resource_type, resource_id, _, version = ref.split("/")
        return {"reference": ref, "url": url_for("smart.app_chart_resource", resource_type=resource_type,
                                                  resource_id=resource_id, version=version)}
    return {
        "id": answer_id,
        "sentences": [{"text": s.text, "citations": [link(r) for r in s.refs]} for s in answer.checked.kept],
        "withheld": [w.reason for w in answer.checked.withheld],
        "unreadable": answer.unreadable,
        "test_output": answer.model.test_weights,
    }
