"""What the pages need from the app and the session: installed pipelines, job store, preview
runs, evidence cache, and what the granted scopes let this user do."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask, Response, abort, jsonify

from plugin.app import settings_of
from plugin.jobs import JobLimits
from plugin.pipelines.registry import InstalledPipeline, installed_pipelines
from smart_launch.live import LiveLimits, LiveRecordings
from smart_launch.session import SmartSession
from smart_launch.style import STYLE_CACHE_S

from .evidence import TtlCache
from .runs import SessionRuns

# What an analysis writes: results, reports, documents and the Provenance of each write. Without
# the first two the results are written as one document (plugin.writeback, document-only).
WRITE_TYPES = ("Observation", "DiagnosticReport", "DocumentReference", "Provenance")
DOCUMENT_WRITE_TYPES = ("DocumentReference", "Provenance")
PIPELINES = "chartlight.pipelines"
RUNS = "chartlight.smart.runs"
EVIDENCE_CACHE = "chartlight.smart.evidence"
STYLE_CACHE = "chartlight.smart.styles"
LIVE = "chartlight.smart.live"
LIVE_DIR = ".chartlight/live-dictation"
# What the app reads, by what it is for: the page says which of these the granted scopes rule out.
READS = (("list and analyse documents", ("DocumentReference", "DiagnosticReport")),
         ("list and transcribe recordings", ("Media",)),
         ("list and analyse imaging studies", ("ImagingStudy",)),
         ("show the patient banner", ("Patient",)))


@dataclass(frozen=True)
class Abilities:
    """What the app offers this session, from the granted scopes and the user's identity."""

    write: bool  # analysis results are written back (else shown only)
    sign: bool  # results can be approved / edited / rejected
    why_not_write: str  # also set when results are written as a document only
    why_not_sign: str

    @classmethod
    def of(cls, session: SmartSession) -> Abilities:
        missing = [t for t in WRITE_TYPES if not session.can_write(t)]
        write = not any(t in missing for t in DOCUMENT_WRITE_TYPES)
        if write and missing:
            why_not_write = ("Your EHR granted this app no permission to write " + ", ".join(missing)
                             + ": results are written to the record as one document instead.")
        else:
            why_not_write = "" if write else (
                "Your EHR granted this app no permission to write " + ", ".join(missing)
                + ": results are shown here and not written to the record.")
        if not write:
            return cls(False, False, why_not_write, why_not_write)
        if not session.user:
            return cls(True, False, why_not_write, "Your EHR did not say who you are (no fhirUser was "
                                                   "granted), so results cannot be signed in your name.")
        return cls(True, True, why_not_write, "")

    def as_json(self) -> dict[str, Any]:
        return {"write": self.write, "sign": self.sign}


def limitations(session: SmartSession) -> tuple[str, ...]:
    """What the app cannot do with the granted scopes, each with the scopes to ask the EHR
    administrator for (those chartlight requested and was not granted, for the types concerned)."""
    found = []
    for purpose, types in READS:
        missing = [t for t in types if not session.can_read(t)]
        if missing:
            found.append(f"cannot {purpose}: no read access to {', '.join(missing)}"
                         + _ask(session, missing))
    unwritable = [t for t in WRITE_TYPES if not session.can_write(t)]
    if unwritable:
        found.append(f"cannot write results to the record: no create access to {', '.join(unwritable)}"
                     + _ask(session, unwritable))
    elif not session.user:
        found.append("cannot sign results in your name: the EHR did not say who you are (fhirUser)"
                     + _ask(session, [], extra=("openid", "fhirUser")))
    return tuple(found)


def _ask(session: SmartSession, types: list[str], extra: tuple[str, ...] = ()) -> str:
    wanted = [s for s in sorted(session.requested_scopes) if s not in session.scopes
              and (s in extra or any(f"/{t}." in s or s.endswith("/*.cruds") for t in types))]
    return f" (ask the EHR administrator to grant {' '.join(wanted)})" if wanted else ""


def pipelines_of(app: Flask) -> dict[str, InstalledPipeline]:
    """The service's pipelines (the ones its job runner runs), built once if nobody did."""
    if PIPELINES not in app.extensions:
        app.extensions[PIPELINES] = installed_pipelines(settings_of(app))
    pipelines: dict[str, InstalledPipeline] = app.extensions[PIPELINES]
    return pipelines


def runs_of(app: Flask) -> SessionRuns:
    if RUNS not in app.extensions:
        app.extensions[RUNS] = SessionRuns(workers=settings_of(app).job_workers,
                                            limits=JobLimits.from_settings(settings_of(app)))
    runs: SessionRuns = app.extensions[RUNS]
    return runs


def style_cache_of(app: Flask) -> TtlCache:
    """The EHRs' styles by URL (a few per EHR; fetched at most every STYLE_CACHE_S)."""
    if STYLE_CACHE not in app.extensions:
        app.extensions[STYLE_CACHE] = TtlCache(ttl_s=STYLE_CACHE_S, max_entries=64)
    cache: TtlCache = app.extensions[STYLE_CACHE]
    return cache


def evidence_cache_of(app: Flask) -> TtlCache:
    if EVIDENCE_CACHE not in app.extensions:
        app.extensions[EVIDENCE_CACHE] = TtlCache()
    cache: TtlCache = app.extensions[EVIDENCE_CACHE]
    return cache


def live_recordings_of(app: Flask) -> LiveRecordings:
    """Live dictations in progress on this machine (smart_launch.live), from the settings."""
    if LIVE not in app.extensions:
        settings = settings_of(app)
        limits = LiveLimits(max_duration_s=settings.speech_max_duration_s,
                            memory_bytes=settings.job_memory_bytes, idle_s=settings.speech_live_idle_s,
                            max_recordings=settings.speech_live_max_recordings)
        folder = Path(settings.speech_live_dir or LIVE_DIR).expanduser()
        app.extensions[LIVE] = LiveRecordings(folder, limits)
    live: LiveRecordings = app.extensions[LIVE]
    return live


def patient_in_context(session: SmartSession) -> str:
    """The launch's patient, or 400 for a launch without one (the app's pages need a patient)."""
    if not session.patient_id:
        abort(400, "this launch has no patient in context: open the app from a patient's chart")
    return session.patient_id


def json_failure(status: int, message: str) -> Response:
    """The JSON error body the app's scripts read: {"ok": false, "error": message}."""
    response = jsonify(ok=False, error=message)
    response.status_code = status
    return response
