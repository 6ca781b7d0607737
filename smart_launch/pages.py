"""The SMART app's pages: the patient's inputs with their analysis status (live), starting an
analysis, review of each result beside its evidence, approve / edit / reject, and dictation.

Every route needs a launched session (smart_launch.session.login_required); URLs carry resource
ids only, never patient data or tokens. State-changing requests are POSTs, which the blueprint's
CSRF check covers (header X-CSRF-Token from the page's <meta> tag)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, abort, current_app, jsonify, render_template, request, url_for
from sqlalchemy.exc import SQLAlchemyError

from fhir_mappers.systems import SID_DEVICE, SID_RESULT
from plugin.app import job_store_of, settings_of
from plugin.errors import FhirError, FhirResponseError, InputError, ResponseTooLarge
from plugin.fhir import FhirClient
from plugin.jobs import Job
from plugin.jobs.on_record import RESULT_TYPES
from plugin.pipelines.imaging.prepare import imaging_options
from plugin.pipelines.pathology.prepare import pathology_options
from plugin.pipelines.speech.audio import decode_audio
from plugin.pipelines.speech.formatting import format_transcript
from plugin.pipelines.speech.streaming import IncrementalDecoder
from plugin.review import approve, edit, reject
from smart_launch.live import NAME, LiveRefused, Owner
from smart_launch.runtime import runtime_of
from smart_launch.session import SmartSession, current_session, fhir_client_for, login_required
from smart_launch.style import fetch_style, style_allowed, style_sheet

from .views.context import (
    Abilities,
    evidence_cache_of,
    limitations,
    live_recordings_of,
    pipelines_of,
    runs_of,
    style_cache_of,
)
from .views.context import json_failure as _fail
from .views.context import patient_in_context as _patient
from .views.dictation import MAX_DICTATION_BYTES, dictation_source
from .views.dictation_note import NOTE_KINDS, note_view
from .views.evidence import audio_bytes, document_bytes, page_png
from .views.imaging import frame_png, prior_study_reference
from .views.inputs import KIND_TITLES, InputRow, Status, job_statuses, patient_inputs, statuses
from .views.pathology import cited_patches, patch_png, patches_of, slide_overview, subject_is
from .views.patient import banner_of
from .views.record import analysed_versions
from .views.results import ReviewItem, TextSpan, Word, review_items, source_of, transcript_words

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
SOURCE_TYPES = ("DocumentReference", "DiagnosticReport", "Media", "ImagingStudy")
PREVIEW_PREFIX = "preview-"


def register_pages(bp: Blueprint) -> None:
    """Add the app's pages to the smart blueprint (templates and static files live beside this
    module)."""
    if bp.template_folder is None:
        bp.template_folder = str(HERE / "templates")
    if bp.static_folder is None:
        bp.static_folder = str(HERE / "static")
        bp.static_url_path = "/static"
    routes: list[tuple[str, str, Any, list[str]]] = [
        ("/app", "app_home", home, ["GET"]),
        ("/app/status.json", "app_status", status, ["GET"]),
        ("/app/style.css", "app_style", style_css, ["GET"]),
        ("/app/analyze", "app_analyze", analyze, ["POST"]),
        ("/app/source/<resource_type>/<resource_id>", "app_source", source_review, ["GET"]),
        ("/app/evidence/<resource_type>/<resource_id>/page.png", "app_evidence_page", evidence_page,
         ["GET"]),
        ("/app/audio/<resource_type>/<resource_id>", "app_audio", audio, ["GET"]),
        ("/app/imaging/<resource_type>/<resource_id>/<which>.png", "app_imaging", imaging, ["GET"]),
        ("/app/pathology/<resource_type>/<resource_id>/patch/<int:index>.png", "app_pathology_patch",
         pathology_patch, ["GET"]),
        ("/app/pathology/ImagingStudy/<study_id>/overview.<fmt>", "app_pathology_overview",
         pathology_overview, ["GET"]),
        ("/app/review/<resource_type>/<resource_id>/<decision>", "app_review", review, ["POST"]),
        ("/app/dictation", "app_dictation", dictation, ["GET"]),
        ("/app/dictation/upload", "app_dictation_upload", dictation_upload, ["POST"]),
        ("/app/dictation/live/<recording_id>", "app_dictation_live", dictation_live, ["POST"]),
    ]
    for rule, endpoint, view, methods in routes:
        bp.add_url_rule(rule, endpoint, login_required(view), methods=methods)
    from smart_launch.chart_pages import register_chart_pages  # the summary and ask-the-chart pages

    register_chart_pages(bp)
    bp.register_error_handler(FhirError, _fhir_error)
    bp.register_error_handler(SQLAlchemyError, _store_error)


def _fhir_error(exc: FhirError) -> Any:
    """The EHR refused or could not be reached: say so (its diagnostics, never a token), as JSON
    for the pages' fetch calls and as a page otherwise."""
    log.info("FHIR request of a page failed (%s)", type(exc).__name__)
    status = 502
    if isinstance(exc, FhirResponseError) and exc.status in (401, 403, 404):
        status = exc.status
    if request.accept_mimetypes.best == "application/json" or request.path.endswith(".json") \
            or request.method == "POST":
        return _fail(status, _fhir_message(exc))
    return render_template("app_error.html", heading="The EHR did not answer as expected",
                           message=_fhir_message(exc), retry_url=url_for("smart.app_home"),
                           next_step="Try again; if it keeps failing, tell the EHR administrator what "
                                     "the EHR answered."), status


def _store_error(exc: SQLAlchemyError) -> Any:
    """chartlight's own database (jobs, sessions) did not answer: a locked SQLite file, a
    PostgreSQL failover. A 503 that says so and what to do, never a bare 500; the log names the
    driver's error class only (the SQL's parameters may name patients)."""
    log.warning("a page's job or session database call failed (%s)", type(exc).__name__)
    message = "chartlight's job database did not answer (it may be busy or restarting)"
    if request.accept_mimetypes.best == "application/json" or request.path.endswith(".json") \
            or request.method == "POST":
        return _fail(503, message + "; try again in a moment")
    return render_template("app_error.html", heading="chartlight is busy", message=message,
                           retry_url=url_for("smart.app_home"),
                           next_step="Try again in a moment; if it keeps failing, tell the administrator "
                                     "of chartlight."), 503


# ---- helpers -------------------------------------------------------------------------------------


def _session() -> SmartSession:
    session = current_session()
    if session is None:  # login_required has run: only a race with logout gets here
        abort(401)
    return session


def _fhir_message(exc: FhirError) -> str:
    if isinstance(exc, FhirResponseError):
        return f"the EHR answered HTTP {exc.status}: {exc.diagnostics or 'no details'}"
    if isinstance(exc, ResponseTooLarge):
        return f"the EHR's answer was larger than this app's {exc.limit}-byte limit"
    return "the EHR could not be reached (no answer: the connection failed or timed out)"


def _inputs(session: SmartSession, client: FhirClient) -> list[InputRow]:
    """The patient's inputs on the EHR, plus dictations this session recorded but could not
    store (no write scope), which live in memory only."""
    rows = patient_inputs(client, pipelines_of(current_app), _patient(session))
    for source in runs_of(current_app).sources(session.id):
        rows.append(InputRow("recording", f"DocumentReference/{source['id']}", "1",
                             "Dictation (kept in this session only)", str(source.get("date", ""))[:16]
                             .replace("T", " "), "speech", ""))
    return rows


def _jobs(session: SmartSession) -> list[Job]:
    """The job store's jobs for this patient on this EHR: analyses started in the app by any
    user (any session), by CDS hooks or the CLI."""
    return job_store_of(current_app).list(subject=f"Patient/{_patient(session)}",
                                          fhir_base_url=session.fhir_base, limit=500)


def _statuses(session: SmartSession, rows: list[InputRow], record: Record | None = None) -> dict[str, Status]:
    recorded = analysed_versions(record.items, record.provenances) if record else None
    return statuses(rows, _jobs(session), runs_of(current_app).statuses(session.id), recorded)


@dataclass(frozen=True)
class Record:
    items: list[ReviewItem]  # chartlight's results about the patient (and this session's unwritten ones)
    provenances: list[dict[str, Any]]  # the Provenances of the written ones (which input version)


def _record(session: SmartSession, client: FhirClient) -> Record:
    """Every chartlight result about the patient that this session may read on the EHR, with the
    Provenances that target them (`_revinclude`, when Provenance may be read), plus the ones this
    session's runs hold in memory (shown, not written)."""
    patient_id = _patient(session)
    resources: list[dict[str, Any]] = []
    devices: list[dict[str, Any]] = []
    provenances: list[dict[str, Any]] = []
    with_provenance: dict[str, str | int] = {"_revinclude": "Provenance:target"} \
        if session.can_read("Provenance") else {}
    searches: list[tuple[str, dict[str, str | int]]] = [
        (t, {"subject": f"Patient/{patient_id}", "identifier": f"{SID_RESULT}|", "_count": 200,
             **with_provenance}) for t in RESULT_TYPES]
    searches.append(("Device", {"identifier": f"{SID_DEVICE}|", "_count": 100}))
    for resource_type, params in searches:
        if not session.can_read(resource_type):
            continue
        try:
            for page in client.search_pages(resource_type, params):
                for entry in page.get("entry", []):
                    resource = entry.get("resource", {})
                    if resource.get("resourceType") == "Provenance":
                        provenances.append(resource)
                    elif resource.get("resourceType") == resource_type:
                        (devices if resource_type == "Device" else resources).append(resource)
        except FhirResponseError as exc:
            if exc.status not in (401, 403):
                raise
            continue  # the EHR's policy is narrower than the scopes said
    # A result already in the record is shown from the record, not from this session's memory.
    held, held_devices = runs_of(current_app).results(session.id)
    recorded = {_identifier(r) for r in resources}
    resources += [r for r in held if _identifier(r) not in recorded]
    return Record(review_items(resources, devices + held_devices, patient_id), provenances)


def _identifier(resource: dict[str, Any]) -> str:
    return next((f"{i.get('system')}|{i.get('value')}" for i in resource.get("identifier", [])
                 if i.get("system") == SID_RESULT), "")


# ---- pages ---------------------------------------------------------------------------------------


def home() -> Any:
    session = _session()
    # A visit re-queues this patient's analyses on this EHR that failed for a reason that may have
    # passed (as a later hook does); before the statuses are read, so the page shows them queued.
    requeued = job_store_of(current_app).requeue_transient(subject=f"Patient/{_patient(session)}",
                                                           fhir_base_url=session.fhir_base)
    if requeued:
        log.info("app visit: %d analysis job(s) that failed transiently queued again", requeued)
    client = fhir_client_for(session)
    abilities = Abilities.of(session)
    banner = banner_of(client, _patient(session)) if session.need_patient_banner else None
    rows = _inputs(session, client)
    record = _record(session, client)
    states = _statuses(session, rows, record)
    items = record.items
    by_source: dict[str, list[ReviewItem]] = {}
    for item in items:
        by_source.setdefault(source_of(item), []).append(item)
    groups = [(title, [r for r in rows if r.kind == kind]) for kind, title in KIND_TITLES.items()]
    return render_template(
        "app_home.html", smart=session, banner=banner, abilities=abilities, groups=groups,
        states=states, by_source=by_source, dictation=_speech_ready(), limits=limitations(session),
        in_context=set(session.fhir_context))


def style_css() -> Any:
    """The EHR's style (smart_style_url) as CSS custom properties (smart_launch.style); empty when
    the EHR sent none, or one this app does not fetch (another host) or cannot read."""
    session = _session()
    properties: dict[str, str] = {}
    url = session.smart_style_url
    if url:
        runtime = runtime_of(current_app)
        ehr_urls = (session.fhir_base, runtime.discovery.get(session.fhir_base).token_endpoint)
        if style_allowed(url, ehr_urls):
            timeout_s = min(5.0, runtime.settings.smart_http_timeout_s)
            properties = style_cache_of(current_app).get_or_make(
                url, lambda: fetch_style(runtime.web, url, timeout_s=timeout_s))
        else:
            log.info("the EHR's smart_style_url is not on the EHR's own host: not fetched")
    response = Response(style_sheet(properties), mimetype="text/css")
    response.headers["Cache-Control"] = "private, max-age=300"
    return response


def status() -> Any:
    """The analyses' status by input row key, for the pages' live updates: ids only, no PHI, and
    no request to the EHR (the pages poll this)."""
    session = _session()
    jobs = job_statuses(_jobs(session))
    runs = runs_of(current_app).statuses(session.id)
    return jsonify(inputs={key: s.as_json() for key, s in {**jobs, **runs}.items()})


def analyze() -> Any:
    """Start analysis of one input (`source` = "DocumentReference/5", `pipeline`) or of all the
    patient's inputs (`source` = "all")."""
    session = _session()
    body = request.get_json(silent=True) or request.form
    wanted = str(body.get("source", ""))
    client = fhir_client_for(session)
    try:
        rows = _inputs(session, client)
    except FhirError as exc:
        return _fail(502, _fhir_message(exc))
    if wanted == "all":  # what has not been analysed yet (or failed), by the job store and the record
        states = _statuses(session, rows, _record(session, client))
        chosen = [r for r in rows if r.pipeline and states[r.key].state in ("not analysed", "failed")]
    else:
        chosen = [r for r in rows if not r.unavailable and r.pipeline and r.reference == wanted
                  and body.get("pipeline", r.pipeline) == r.pipeline]
    if not chosen and wanted == "all":
        return jsonify(ok=True, started=[], written=Abilities.of(session).write)
    if not chosen:
        return _fail(400, f"source {wanted!r}: not an input of this patient that an installed "
                          "pipeline can analyse")
    started = _start(session, client, chosen)
    return jsonify(ok=True, started=started, written=Abilities.of(session).write)


def _start(session: SmartSession, client: FhirClient, rows: list[InputRow]) -> list[str]:
    """Analyse each row with the user's token. When the scopes allow writing, as a job of the
    service's job store (it survives a restart; the runner writes the results back for the user,
    plugin.jobs.JobStore.submit says how an existing job is taken over); else as a preview kept
    for this session only (no write is attempted)."""
    write = Abilities.of(session).write
    pipelines = pipelines_of(current_app)
    subject = f"Patient/{_patient(session)}"
    started = []
    for row in rows:
        resource_type, resource_id = row.reference.split("/", 1)
        if write:
            job = job_store_of(current_app).submit(
                pipeline=row.pipeline, source_type=resource_type, source_id=resource_id,
                source_version=row.version, subject=subject, fhir_base_url=session.fhir_base,
                session_id=session.id, on_behalf_of=session.user or "")
            log.info("analysis of %s with %s: job %d (%s)", row.reference, row.pipeline, job.id,
                     job.state.value)
        else:
            source = client.vread(resource_type, resource_id, row.version)
            runs_of(current_app).start(session.id, row.key, pipelines[row.pipeline], client, source,
                                       subject)
            log.info("analysis of %s with %s started (shown only)", row.reference, row.pipeline)
        started.append(row.key)
    return started


def source_review(resource_type: str, resource_id: str) -> Any:
    """One input's results, each beside its evidence, with the review actions."""
    if resource_type not in SOURCE_TYPES:
        abort(404)
    session = _session()
    client = fhir_client_for(session)
    reference = f"{resource_type}/{resource_id}"
    rows = [r for r in _inputs(session, client) if r.reference == reference]
    if not rows:
        abort(404)
    record = _record(session, client)
    items = [i for i in record.items if source_of(i) == reference]
    kind = rows[0].kind
    words: tuple[Word, ...] = ()
    transcript = next((i for i in items if i.result.kind == "document" and i.result.value == "transcript"),
                      None)
    note = None
    if transcript is not None:
        words = transcript_words(transcript.result.resource)
        # The structured note is made from the transcript, so it names the transcript as source.
        note = next((i for i in record.items if source_of(i) == transcript.reference
                     and i.result.kind == "document" and i.result.value in NOTE_KINDS), None)
    patches = cited_patches(items) if rows[0].pipeline == "pathology" else ()
    return render_template(
        "app_source.html", smart=session, abilities=Abilities.of(session), row=rows[0], kind=kind,
        items=items, words=words, transcript=transcript, note=note,
        patches=patches, patches_of=lambda item: patches_of(item, patches),
        note_view=note_view(note.result.resource) if note else None,
        state=_statuses(session, rows, record)[rows[0].key],
        banner=banner_of(client, _patient(session)) if session.need_patient_banner else None)


def evidence_page(resource_type: str, resource_id: str) -> Any:
    """The page a result was read from, as PNG, its region highlighted (`view=crop` for a band
    around it). Only the ids travel in the URL; the document is fetched with the user's client."""
    if resource_type not in RESULT_TYPES:
        abort(404)
    session = _session()
    client = fhir_client_for(session)
    item = _find_item(session, client, f"{resource_type}/{resource_id}")
    spans = item.text_spans
    if not spans:
        abort(404)
    view = "crop" if request.args.get("view") == "crop" else "page"
    source_ref = source_of(item)
    return _png(session, item, view, lambda: _render(client, source_ref, spans, view))


def _render(client: FhirClient, source_ref: str, spans: tuple[TextSpan, ...], view: str) -> bytes:
    source_type, _, source_id = source_ref.partition("/")
    if source_type not in ("DocumentReference", "DiagnosticReport"):
        raise InputError(source_ref, "is not a document")
    document = document_bytes(client, client.read(source_type, source_id))
    page = spans[0].page
    boxes = tuple(s.box for s in spans if s.page == page and s.box is not None)
    return page_png(document, page=page, boxes=boxes, view="crop" if view == "crop" else "page",
                    source=source_ref)


def audio(resource_type: str, resource_id: str) -> Any:
    """A recording's audio for the transcript player (fetched with the user's client)."""
    if resource_type not in ("Media", "DocumentReference"):
        abort(404)
    session = _session()
    client = fhir_client_for(session)
    reference = f"{resource_type}/{resource_id}"
    if not any(r.reference == reference and r.kind == "recording" for r in _inputs(session, client)):
        abort(404)
    kept = {f"DocumentReference/{s['id']}": s for s in runs_of(current_app).sources(session.id)}
    try:
        sound = evidence_cache_of(current_app).get_or_make(
            (session.id, reference, "audio"),
            lambda: audio_bytes(client, kept.get(reference) or client.read(resource_type, resource_id)))
    except (InputError, FhirError) as exc:
        return _fail(422, str(exc) if isinstance(exc, InputError) else _fhir_message(exc))
    response = Response(sound.data, mimetype=sound.content_type)
    response.headers["Cache-Control"] = "no-store"
    return response


def imaging(resource_type: str, resource_id: str, which: str) -> Any:
    """The image a finding was seen on (`current`), or the prior study's image it was compared
    with (`prior`), as PNG at the frame's pixel size; the page draws the boxes over it."""
    if resource_type not in RESULT_TYPES or which not in ("current", "prior"):
        abort(404)
    session = _session()
    client = fhir_client_for(session)
    item = _find_item(session, client, f"{resource_type}/{resource_id}")
    current = source_of(item)
    if not current.startswith("ImagingStudy/"):
        abort(404)
    study_ref: str | None = current
    spot = item.image_spots[0] if item.image_spots else None
    if which == "prior":
        spot = None
        if resource_id.startswith(PREVIEW_PREFIX) or not session.can_read("Provenance"):
            abort(404)  # the prior study is named only by the write's Provenance
        study_ref = prior_study_reference(
            list(client.search("Provenance", {"target": item.reference})), current)
        if study_ref is None:
            abort(404)
    study_type, _, study_id = str(study_ref).partition("/")
    options = imaging_options(settings_of(current_app))
    return _png(session, item, which,
                lambda: frame_png(client, client.read(study_type, study_id), spot, options))


def _patient_study(session: SmartSession, client: FhirClient, study_ref: str) -> dict[str, Any]:
    """The slide study, read with the user's client: 404 when it is not an ImagingStudy, 403
    when it is another patient's than the launch's."""
    study_type, _, study_id = study_ref.partition("/")
    if study_type != "ImagingStudy" or not study_id:
        abort(404)
    study = client.read(study_type, study_id)
    if not subject_is(study, _patient(session), base_url=client.base_url):
        abort(403)
    return study


def pathology_patch(resource_type: str, resource_id: str, index: int) -> Any:
    """The `index`-th (1-based) image evidence of a pathology finding: the slide patch it cites,
    cut from the cited level of the slide, as PNG."""
    if resource_type not in RESULT_TYPES:
        abort(404)
    session = _session()
    client = fhir_client_for(session)
    item = _find_item(session, client, f"{resource_type}/{resource_id}")
    spots = item.image_spots
    if not 1 <= index <= len(spots) or spots[index - 1].level is None:
        abort(404)
    study = _patient_study(session, client, source_of(item))
    options = pathology_options(settings_of(current_app))
    return _png(session, item, f"patch-{index}",
                lambda: patch_png(client, study, options, spots[index - 1]))


def pathology_overview(study_id: str, fmt: str) -> Any:
    """The slide of a study at its thumbnail level (`overview.png`), and where each patch that
    chartlight's findings about it cite lies on it (`overview.json`: overview pixels)."""
    if fmt not in ("png", "json"):
        abort(404)
    session = _session()
    client = fhir_client_for(session)
    reference = f"ImagingStudy/{study_id}"
    study = _patient_study(session, client, reference)
    patches = cited_patches(i for i in _record(session, client).items if source_of(i) == reference)
    options = pathology_options(settings_of(current_app))
    version = str((study.get("meta") or {}).get("versionId", ""))
    # Keyed with the FHIR server: the same ids on another EHR are another patient's slide.
    key = (session.fhir_base, session.id, reference, version, "overview", patches)
    try:
        overview = evidence_cache_of(current_app).get_or_make(
            key, lambda: slide_overview(client, study, options, patches))
    except (InputError, FhirError) as exc:
        log.info("the slide overview of %s could not be made (%s)", reference, type(exc).__name__)
        return _fail(422, str(exc) if isinstance(exc, InputError) else _fhir_message(exc))
    if fmt == "json":
        response = jsonify(ok=True, **overview.as_json())
    else:
        response = Response(overview.png, mimetype="image/png")
    response.headers["Cache-Control"] = "no-store"
    return response


def _png(session: SmartSession, item: ReviewItem, view: str, make: Callable[[], bytes]) -> Any:
    """A rendered evidence image, made once per session, result version and view; a source that
    cannot be rendered is a 422 with the reason."""
    try:
        key = (session.fhir_base, session.id, item.reference, item.version, view)
        png = evidence_cache_of(current_app).get_or_make(key, make)
    except (InputError, FhirError) as exc:
        log.info("evidence of %s could not be rendered (%s)", item.reference, type(exc).__name__)
        return _fail(422, str(exc) if isinstance(exc, InputError) else _fhir_message(exc))
    response = Response(png, mimetype="image/png")
    response.headers["Cache-Control"] = "no-store"
    return response


def review(resource_type: str, resource_id: str, decision: str) -> Any:
    """approve | edit (`value`, optional `comment`) | reject (`reason`) one result."""
    if resource_type not in RESULT_TYPES or decision not in ("approve", "edit", "reject"):
        abort(404)
    session = _session()
    abilities = Abilities.of(session)
    if not abilities.sign:
        return _fail(403, abilities.why_not_sign)
    if resource_id.startswith(PREVIEW_PREFIX):
        return _fail(409, "this result was shown only, never written: there is nothing to sign")
    body = request.get_json(silent=True) or request.form
    client = fhir_client_for(session)
    reference = f"{resource_type}/{resource_id}"
    _find_item(session, client, reference)  # 404 unless one of chartlight's results about this patient
    now = datetime.now(UTC)
    clinician = str(session.user)
    try:
        if decision == "approve":
            location = approve(client, reference, clinician=clinician, now=now)
        elif decision == "edit":
            location = edit(client, reference, str(body.get("value", "")), clinician=clinician,
                            now=now, comment=str(body.get("comment", "")))
        else:
            location = reject(client, reference, clinician=clinician,
                              reason=str(body.get("reason", "")), now=now)
    except InputError as exc:
        return _fail(400, exc.reason)
    except FhirResponseError as exc:
        return _fail(409 if exc.status in (409, 412) else 502, _fhir_message(exc))
    log.info("%s %s by the session's user", decision, location)
    item = _find_item(session, client, reference)
    return jsonify(ok=True, reference=reference, version=location.rsplit("/", 1)[-1],
                   state=item.state, value=item.result.value, ai_original=item.ai_original)


def _find_item(session: SmartSession, client: FhirClient, reference: str) -> ReviewItem:
    """One of the patient's results: read from the EHR, or from this session's unwritten ones."""
    resource_type, _, resource_id = reference.partition("/")
    if resource_id.startswith(PREVIEW_PREFIX):
        resources, devices = runs_of(current_app).results(session.id)
        resources = [r for r in resources if f"{r['resourceType']}/{r['id']}" == reference]
    else:
        try:
            resources, devices = [client.read(resource_type, resource_id)], []
        except FhirResponseError as exc:
            if exc.status in (403, 404, 410):
                abort(404)
            raise
    items = review_items(resources, devices, _patient(session))
    if not items:
        abort(404)
    return items[0]


# ---- dictation -----------------------------------------------------------------------------------


def _speech_ready() -> str:
    """"" when dictation can be transcribed here, else why not."""
    speech = pipelines_of(current_app).get("speech")
    if speech is None:
        return "no speech pipeline is installed here"
    return speech.unavailable_reason


def _live_engine() -> Any:
    """The speech engine's steps for live dictation (plugin.pipelines.speech.streaming), or None
    when live dictation is off or the engine cannot decode incrementally."""
    speech = pipelines_of(current_app).get("speech")
    if not settings_of(current_app).speech_live or speech is None or speech.unavailable_reason:
        return None
    windowed = getattr(speech.engine, "windowed", None)
    return windowed() if windowed is not None else None


def dictation() -> Any:
    session = _session()
    client = fhir_client_for(session)
    live = _live_engine() is not None
    return render_template(
        "app_dictation.html", smart=session, abilities=Abilities.of(session),
        unavailable=_speech_ready(), max_bytes=MAX_DICTATION_BYTES,
        live_url=url_for("smart.app_dictation_live", recording_id="RECORDING_ID") if live else "",
        banner=banner_of(client, _patient(session)) if session.need_patient_banner else None)


def dictation_upload() -> Any:
    """The recorded audio (request body, or multipart field `audio`): stored as the patient's
    DocumentReference (when writes are allowed) and transcribed with the speech pipeline."""
    session = _session()
    unavailable = _speech_ready()
    if unavailable:
        return _fail(503, f"dictation cannot be transcribed here: {unavailable}")
    upload = request.files.get("audio")
    data = upload.read(MAX_DICTATION_BYTES + 1) if upload else request.stream.read(MAX_DICTATION_BYTES + 1)
    content_type = (upload.mimetype if upload else request.mimetype) or "application/octet-stream"
    try:
        reference, written = _store_dictation(session, data, content_type)
    except InputError as exc:
        return _fail(400, exc.reason)
    except FhirError as exc:
        return _fail(502, _fhir_message(exc))
    return jsonify(ok=True, source=reference, written=written)


def _store_dictation(session: SmartSession, data: bytes, content_type: str) -> tuple[str, bool]:
    """A recording, as the patient's DocumentReference (when writes are allowed) whose
    transcription job starts now, else as a preview run of this session: its reference, and
    whether it was written."""
    client = fhir_client_for(session)
    abilities = Abilities.of(session)
    source = dictation_source(data, content_type, subject=f"Patient/{_patient(session)}",
                              author=session.user, now=datetime.now(UTC))
    if abilities.write:
        stored = client.create(source)
        reference = f"DocumentReference/{stored['id']}"
        row = InputRow("recording", reference, str(stored["meta"]["versionId"]), "Dictation", "",
                       "speech", "")
        _start(session, client, [row])
    else:
        reference = f"DocumentReference/{PREVIEW_PREFIX}dictation-{datetime.now(UTC):%H%M%S%f}"
        preview_source = {**source, "id": reference.split("/")[1], "meta": {"versionId": "1"}}
        runs_of(current_app).start(session.id, f"speech:{reference}", pipelines_of(current_app)["speech"],
                                   client, preview_source, f"Patient/{_patient(session)}", keep_source=True)
    return reference, abilities.write


# ---- live dictation (smart_launch.live: the spool; plugin.pipelines.speech.streaming) ----------


def dictation_live(recording_id: str) -> Any:
    """Piece `seq` of a live recording (16 kHz mono 16-bit little-endian PCM in the body) ->
    the transcript so far. `?stop=1` ends the recording: its final transcript (the batch
    transcript of the same audio) and the recording stored and transcribed as an upload is,
    once, however often the stop is sent."""
    session = _session()
    engine = _live_engine()
    if engine is None:
        return _fail(503, "live dictation is not available here: record, then upload")
    owner = Owner(session.id, session.fhir_base, f"Patient/{_patient(session)}")
    live = live_recordings_of(current_app)
    try:
        test_weights = _test_weights(engine)
        if request.args.get("stop") == "1":
            answer = live.stop(owner, recording_id,
                               lambda key, samples, wav: _finish_live(session, engine, key, samples, wav))
            return jsonify(ok=True, final=True, **answer)
        seq = request.args.get("seq", type=int)
        if seq is None:
            return _fail(400, f"{NAME}: the piece's sequence number (seq) is missing")
        piece = live.append(owner, recording_id, seq, request.get_data(cache=False))
        with live.decoder(piece.key, lambda: IncrementalDecoder(engine)) as decoder:
            partial = decoder.partial(piece.samples)
    except InputError as exc:
        return _fail(400, exc.reason)
    except LiveRefused as exc:
        return _fail(exc.status, str(exc))
    except FhirError as exc:
        return _fail(502, _fhir_message(exc))
    text = format_transcript(partial.transcript.text) if partial else ""
    return jsonify(ok=True, final=False, text=text, seconds=round(len(piece.samples) / 16_000, 3),
                   test_weights=test_weights)


def _test_weights(engine: Any) -> bool:
    """Whether the model is a random-weight test model: its words are shown marked as such. Live
    text is shown only, never written; the stored recording's transcription job is guarded as
    an upload's is (plugin.engines.test_models.sandbox_only)."""
    return bool(engine.model_info().test_weights)


def _finish_live(session: SmartSession, engine: Any, key: str, samples: Any, wav: bytes) -> dict[str, Any]:
    """The final transcript, then the recording stored as an upload is (a WAV file)."""
    # Refused as an upload of it would be (silent, too short), before anything is written.
    decode_audio(wav, source=NAME, max_duration_s=settings_of(current_app).speech_max_duration_s)
    with live_recordings_of(current_app).decoder(key, lambda: IncrementalDecoder(engine)) as decoder:
        final = decoder.final(samples)
    reference, written = _store_dictation(session, wav, "audio/wav")
    log.info("live dictation stopped: %.1f s stored as %s", len(samples) / 16_000, reference)
    return {"text": format_transcript(final.transcript.text), "source": reference, "written": written,
            "seconds": round(len(samples) / 16_000, 3), "test_weights": _test_weights(engine)}
