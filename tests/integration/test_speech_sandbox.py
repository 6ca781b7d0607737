"""The speech pipeline against the real HAPI sandbox: dictation audio found for a patient, run
as jobs with the tiny random-weight MedASR, written back as labelled transcripts with Provenance;
a bad recording fails its own job and writes nothing."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from fhir_mappers import RESULT_IDENTIFIER_SYSTEM
from fhir_mappers.systems import V3_OBSERVATION_VALUE
from plugin.engines.test_models.tiny_medasr import tiny_engine
from plugin.fhir import FhirClient
from plugin.jobs import JobRunner, JobState, JobStore
from plugin.pipelines.speech import PIPELINE, SpeechPipeline, find_sources
from plugin.sandbox.synthetic import DICTATION_TEXT, espeak_wav, to_flac

pytestmark = pytest.mark.sandbox


def stored_attachment(fhir: FhirClient, data: bytes, content_type: str) -> dict[str, Any]:
    """The attachment as EHRs expose it: a Binary on the server, with size and SHA-1."""
    binary = fhir.create_binary(data, content_type)
    return {"contentType": content_type, "url": f"Binary/{binary['id']}", "size": len(data),
            "hash": base64.b64encode(hashlib.sha1(data, usedforsecurity=False).digest()).decode()}


def audio_media(fhir: FhirClient, subject: str, attachment: dict[str, Any]) -> dict[str, Any]:
    return fhir.create({
        "resourceType": "Media", "status": "completed", "subject": {"reference": subject},
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/media-type",
                             "code": "audio"}]},
        "content": attachment})


def test_dictation_becomes_a_labelled_transcript(fhir: FhirClient, run_id: str, tmp_path: Path) -> None:
    patient = fhir.create({"resourceType": "Patient", "name": [{"family": f"Speech-{run_id[:8]}"}]})
    subject = f"Patient/{patient['id']}"
    wav = espeak_wav(DICTATION_TEXT)
    media = audio_media(fhir, subject, stored_attachment(fhir, wav, "audio/wav"))
    flac_doc = fhir.create({
        "resourceType": "DocumentReference", "status": "current", "subject": {"reference": subject},
        "content": [{"attachment": {"contentType": "audio/flac",
                                    "data": base64.b64encode(to_flac(wav)).decode()}}]})
    bad = audio_media(fhir, subject, stored_attachment(fhir, b"not audio at all\n" * 50, "audio/wav"))
    # Our own earlier output carrying audio must never be taken as an input.
    fhir.create({
        "resourceType": "DocumentReference", "status": "current", "subject": {"reference": subject},
        "meta": {"security": [{"system": V3_OBSERVATION_VALUE, "code": "AIAST"}]},
        "content": [{"attachment": {"contentType": "audio/wav",
                                    "data": base64.b64encode(wav[:4000]).decode()}}]})
    fhir.create({"resourceType": "DocumentReference", "status": "current",  # not audio
                 "subject": {"reference": subject},
                 "content": [{"attachment": {"contentType": "text/plain", "data": "aGVsbG8="}}]})

    sources = find_sources(fhir, patient["id"])
    assert sorted(f"{s['resourceType']}/{s['id']}" for s in sources) == sorted(
        [f"Media/{media['id']}", f"DocumentReference/{flac_doc['id']}", f"Media/{bad['id']}"])

    store = JobStore(f"sqlite:///{tmp_path}/jobs.db")
    jobs = {s["id"]: store.submit(pipeline=PIPELINE, source_type=s["resourceType"], source_id=s["id"],
                                  source_version=s["meta"]["versionId"], subject=subject,
                                  fhir_base_url=fhir.base_url) for s in sources}
    runner = JobRunner(store, {PIPELINE: SpeechPipeline(engine=tiny_engine())},
                       lambda job: FhirClient(job.fhir_base_url, timeout_s=120))
    runner.run_until_idle(timeout_s=300)

    failed = store.get(jobs[bad["id"]].id)
    assert failed.state is JobState.FAILED
    assert failed.error.startswith(f"Media/{bad['id']} content: not audio")
    for source in (media, flac_doc):
        done = store.get(jobs[source["id"]].id)
        assert done.state is JobState.SUCCEEDED, done.error
        assert done.summary["model"]["test_weights"] is True

    transcripts = [d for d in fhir.search("DocumentReference", {"subject": subject})
                   if any(i.get("system") == RESULT_IDENTIFIER_SYSTEM for i in d.get("identifier", []))]
    related = {d["context"]["related"][0]["reference"]: d for d in transcripts}
    assert sorted(related) == sorted([f"Media/{media['id']}", f"DocumentReference/{flac_doc['id']}"])
    assert f"Media/{bad['id']}" not in related  # nothing written for the bad input

    transcript = related[f"Media/{media['id']}"]
    labels = {(s["system"], s["code"]) for s in transcript["meta"]["security"]}
    assert {(V3_OBSERVATION_VALUE, "AIAST"), (V3_OBSERVATION_VALUE, "DICTAST")} <= labels
    assert transcript["docStatus"] == "preliminary"
    text_part, words_part = (c["attachment"] for c in transcript["content"])
    assert text_part["contentType"].startswith("text/plain")
    assert base64.b64decode(text_part["data"]).decode("utf-8").strip()
    assert words_part["contentType"] == "application/json"
    details = json.loads(base64.b64decode(words_part["data"]))
    assert details["words"] and details["model"]["test_weights"] is True
    assert all(0 <= w["start_s"] < w["end_s"] <= details["duration_s"] for w in details["words"])
    # The FLAC DocumentReference is also the transcript's `relatesTo` (transforms) target.
    flac_transcript = related[f"DocumentReference/{flac_doc['id']}"]
    assert flac_transcript["relatesTo"][0]["target"]["reference"] == f"DocumentReference/{flac_doc['id']}"

    provenances = list(fhir.search("Provenance", {"target": f"DocumentReference/{transcript['id']}"}))
    assert len(provenances) == 1
    entities = [e["what"]["reference"] for e in provenances[0]["entity"]]
    assert entities == [f"Media/{media['id']}/_history/{media['meta']['versionId']}"]

