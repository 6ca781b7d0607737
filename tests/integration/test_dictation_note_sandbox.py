"""Dictation -> structured note and vital signs against the real HAPI sandbox: a transcript
(hand-written words with times, written as the speech pipeline writes one) is structured by
scripted MedGemma answers written by hand and by the tiny random-weight Gemma 3; the note, the
vital-sign Observations and one Provenance naming transcript and recording land on the server;
re-runs update, never duplicate, and never touch what a clinician signed."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from fhir_mappers import RESULT_IDENTIFIER_SYSTEM
from fhir_mappers.systems import V3_OBSERVATION_VALUE
from plugin.engines.test_models import ensure_test_models, medgemma_engine
from plugin.fhir import FhirClient
from plugin.jobs import JobRunner, JobState, JobStore
from plugin.pipelines.speech.dictation_note import PIPELINE, DictationNotePipeline, find_sources
from plugin.results import ModelInfo, Narrative, PipelineResult, SourceRef
from plugin.writeback import write_result

pytestmark = pytest.mark.sandbox
NOW = datetime(2026, 12, 4, 12, tzinfo=UTC)
DICTATION = ("patient seen in clinic today for hypertension {period} blood pressure one twenty eight "
             "over eighty two {period} sats ninety four percent on room air {period} continue "
             "amlodipine two point five milligrams {period} follow up in two weeks {period}")
ANSWER = json.dumps({"sections": [
    {"title": "Subjective", "sentences": [{"text": "Seen for hypertension.", "cites": ["s1"]}]},
    {"title": "Objective", "sentences": [
        {"text": "Blood pressure 128/82 mmHg.", "cites": ["s2"]},
        {"text": "SpO2 94% on room air.", "cites": ["s3"]},
        {"text": "Heart rate 76.", "cites": ["s2"]},  # never said
        {"text": "Lungs clear.", "cites": ["s9"]}]},  # a segment that does not exist
    {"title": "Plan", "sentences": [{"text": "Continue amlodipine 2.5 mg.", "cites": ["s4"]}]}]})


class ScriptedEngine:
    """A MedGemma stand-in that answers with text written by hand."""

    def __init__(self, answer: str, version: str) -> None:
        self.answer, self.version, self.prompts = answer, version, []  # type: ignore[var-annotated]

    def available(self) -> bool:
        return True

    def model_info(self) -> ModelInfo:
        return ModelInfo("scripted/medgemma", self.version, ("Large-Language-Models",))

    def generate(self, parts: Sequence[Any], *, max_new_tokens: int = 1024) -> str:
        self.prompts.append(parts)
        return self.answer


def transcript_for(fhir: FhirClient, subject: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A recording and its transcript, written the way the speech pipeline writes one."""
    media = fhir.create({
        "resourceType": "Media", "status": "completed", "subject": {"reference": subject},
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/media-type",
                             "code": "audio"}]},
        "content": {"contentType": "audio/wav", "data": base64.b64encode(b"RIFF").decode()}})
    words = [{"text": w, "start_s": round(i * 0.4, 3), "end_s": round(i * 0.4 + 0.3, 3)}
             for i, w in enumerate(DICTATION.split())]
    narrative = Narrative(key="transcript", kind="transcript", title="Transcript of dictation",
                          text=DICTATION, dictated=True, details_json=json.dumps({"words": words}))
    result = PipelineResult(pipeline="speech", pipeline_version="1",
                            source=SourceRef("Media", media["id"], media["meta"]["versionId"], "0"),
                            model=ModelInfo("test/asr", "1", ("Deep-Learning-Models",)), items=(narrative,))
    outcome = write_result(fhir, result, subject=subject, now=NOW)
    transcript_id = outcome.created[0].split("/")[1]
    return media, fhir.read("DocumentReference", transcript_id)


def ours(fhir: FhirClient, resource_type: str, subject: str) -> list[dict[str, Any]]:
    return [r for r in fhir.search(resource_type, {"subject": subject})
            if any(i.get("system") == RESULT_IDENTIFIER_SYSTEM for i in r.get("identifier", []))]


def run(store: JobStore, fhir: FhirClient, pipeline: DictationNotePipeline, transcript: dict[str, Any],
        subject: str) -> dict[str, Any]:
    job = store.submit(pipeline=PIPELINE, source_type="DocumentReference", source_id=transcript["id"],
                       source_version=transcript["meta"]["versionId"], subject=subject,
                       fhir_base_url=fhir.base_url)
    if job.state is not JobState.QUEUED:
        job = store.retry(job.id)
    JobRunner(store, {PIPELINE: pipeline}, lambda j: FhirClient(j.fhir_base_url, timeout_s=120)
              ).run_until_idle(timeout_s=300)
    done = store.get(job.id)
    assert done.state is JobState.SUCCEEDED, done.error
    return done.summary


def note_of(fhir: FhirClient, subject: str) -> dict[str, Any]:
    [note] = [d for d in ours(fhir, "DocumentReference", subject)
              if d["type"]["coding"][1]["code"].endswith("-note")]
    return note


def attachment_json(document: dict[str, Any]) -> dict[str, Any]:
    part = next(c["attachment"] for c in document["content"]
                if c["attachment"]["contentType"] == "application/json")
    parsed: dict[str, Any] = json.loads(base64.b64decode(part["data"]))
    return parsed


def test_scripted_note_vitals_provenance_and_reruns(fhir: FhirClient, run_id: str, tmp_path: Path) -> None:
    patient = fhir.create({"resourceType": "Patient", "name": [{"family": f"Note-{run_id[:8]}"}]})
    subject = f"Patient/{patient['id']}"
    media, transcript = transcript_for(fhir, subject)
    assert [s["id"] for s in find_sources(fhir, patient["id"])] == [transcript["id"]]
    store = JobStore(f"sqlite:///{tmp_path}/jobs.db")

    # Without MedGemma: the vital signs are read, the note says it was not structured.
    summary = run(store, fhir, DictationNotePipeline(), transcript, subject)
    note = note_of(fhir, subject)
    markdown = base64.b64decode(note["content"][0]["attachment"]["data"]).decode()
    assert markdown.startswith("**The note was not structured.** no MedGemma engine is configured")
    assert attachment_json(note)["structured"] is False
    assert summary["model"]["name"] == "chartlight/spoken-vitals"
    observations = ours(fhir, "Observation", subject)
    assert sorted(o["code"]["coding"][0]["code"] for o in observations) == ["59408-5", "85354-9"]

    # MedGemma (scripted): the note is structured; invented sentences are withheld and listed.
    summary = run(store, fhir, DictationNotePipeline(engine=ScriptedEngine(ANSWER, "v1")), transcript,
                  subject)
    note = note_of(fhir, subject)
    details = attachment_json(note)
    assert details["structured"] is True and note["meta"]["versionId"] == "2"
    kept = [s["text"] for section in details["sections"] for s in section["sentences"]]
    assert kept == ["Seen for hypertension.", "Blood pressure 128/82 mmHg.", "SpO2 94% on room air.",
                    "Continue amlodipine 2.5 mg."]
    assert sorted(w["reason"] for w in details["withheld"]) == [
        "76 is not spoken in the cited segments s2", "it cites segments that do not exist: s9"]
    assert {(s["system"], s["code"]) for s in note["meta"]["security"]} >= {
        (V3_OBSERVATION_VALUE, "AIAST"), (V3_OBSERVATION_VALUE, "DICTAST")}
    assert note["relatesTo"][0] == {"code": "transforms",
                                    "target": {"reference": f"DocumentReference/{transcript['id']}"}}
    assert note["docStatus"] == "preliminary" and note["type"]["coding"][0]["code"] == "11506-3"
    [bp] = [o for o in ours(fhir, "Observation", subject) if o["code"]["coding"][0]["code"] == "85354-9"]
    assert [(c["code"]["coding"][0]["code"], c["valueQuantity"]["value"], c["valueQuantity"]["code"])
            for c in bp["component"]] == [("8480-6", 128, "mm[Hg]"), ("8462-4", 82, "mm[Hg]")]
    assert bp["category"][0]["coding"][0]["code"] == "vital-signs"
    assert {s["code"] for s in bp["meta"]["security"]} >= {"AIAST", "DICTAST"}
    assert len(ours(fhir, "Observation", subject)) == 2  # updated, not duplicated; no dose
    provenances = list(fhir.search("Provenance", {"target": f"DocumentReference/{note['id']}"}))
    latest = max(provenances, key=lambda p: p["recorded"] + p["id"])
    assert sorted(e["what"]["reference"] for e in latest["entity"]) == sorted([
        f"DocumentReference/{transcript['id']}/_history/{transcript['meta']['versionId']}",
        f"Media/{media['id']}/_history/{media['meta']['versionId']}"])
    assert summary["updated"] and not summary["created"]

    # The same run again writes nothing.
    summary = run(store, fhir, DictationNotePipeline(engine=ScriptedEngine(ANSWER, "v1")), transcript,
                  subject)
    assert not summary["created"] and not summary["updated"] and summary["provenance"] is None

    # A clinician signs the transcript (a new version, the same words): the note job for that
    # version finds its note and Observations unchanged, and writes no second note.
    transcript = fhir.update({**fhir.read("DocumentReference", transcript["id"]), "docStatus": "final"})
    summary = run(store, fhir, DictationNotePipeline(engine=ScriptedEngine(ANSWER, "v1")), transcript,
                  subject)
    assert transcript["meta"]["versionId"] == "2"
    assert not summary["created"] and not summary["updated"] and len(summary["unchanged"]) == 3

    # A clinician signs the note; a new model version leaves it as signed.
    fhir.update({**note_of(fhir, subject), "docStatus": "final"})
    signed = note_of(fhir, subject)
    summary = run(store, fhir, DictationNotePipeline(engine=ScriptedEngine(ANSWER.replace(
        "Seen for", "Reviewed for"), "v2")), transcript, subject)
    signed_ref = f"DocumentReference/{signed['id']}/_history/{signed['meta']['versionId']}"
    assert signed_ref in summary["kept_signed"]
    assert note_of(fhir, subject)["meta"]["versionId"] == signed["meta"]["versionId"]
    assert len(ours(fhir, "DocumentReference", subject)) == 2  # the transcript and the one note


def test_tiny_random_gemma_output_is_marked_and_checked(fhir: FhirClient, run_id: str,
                                                        tmp_path: Path) -> None:
    patient = fhir.create({"resourceType": "Patient", "name": [{"family": f"NoteTiny-{run_id[:8]}"}]})
    subject = f"Patient/{patient['id']}"
    _, transcript = transcript_for(fhir, subject)
    engine = medgemma_engine(ensure_test_models(tmp_path / "models").medgemma)
    store = JobStore(f"sqlite:///{tmp_path}/jobs.db")
    summary = run(store, fhir, DictationNotePipeline(engine=engine), transcript, subject)
    assert summary["model"]["test_weights"] is True
    note = note_of(fhir, subject)
    assert note["description"].startswith("[TEST OUTPUT, not clinical")
    assert any(t["code"] == "test-weights" for t in note["meta"]["tag"])
    details = attachment_json(note)
    segments = {s["id"] for s in details["segments"]}
    # Random weights rarely write JSON; whatever they wrote, nothing uncited or unheard is kept.
    for section in details["sections"]:
        for sentence in section["sentences"]:
            assert sentence["segments"] and set(sentence["segments"]) <= segments
    assert details["structured"] or "the note was not structured" in details["reason"]
    assert sorted(o["code"]["coding"][0]["code"] for o in ours(fhir, "Observation", subject)) == [
        "59408-5", "85354-9"]
