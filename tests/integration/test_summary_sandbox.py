"""The patient summary against the real HAPI sandbox: the seeded chart, a job per Patient version,
scripted model answers written by hand, the tiny random-weight Gemma 3, the write-back (one
DocumentReference, a Provenance naming every cited version), re-runs, refresh and signing."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from plugin.config import Settings
from plugin.fhir import FhirClient
from plugin.jobs import JobRunner, JobState, JobStore
from plugin.pipelines.registry import summary_pipeline
from plugin.pipelines.summary import EstimatedCounter, SummaryOptions, SummaryPipeline
from plugin.pipelines.summary.latest import latest_summary, queue_summary
from plugin.results import ModelInfo
from plugin.sandbox.seed import SeedReport, seed_chart
from plugin.sandbox.synthetic import DEMO_PATIENT

pytestmark = pytest.mark.sandbox


class ScriptedEngine:
    """A model whose answer is written by hand; it finds the id of the line it means by the
    line's words in the prompt, as a model reading the digest would."""

    def __init__(self, sentences: list[tuple[str, str, list[str]]], *, raw: str | None = None) -> None:
        self.sentences, self.raw, self.prompts = sentences, raw, []  # type: list[str]

    def available(self) -> bool:
        return True

    def model_info(self) -> ModelInfo:
        return ModelInfo(name="scripted-answers", version="1", kinds=("Large-Language-Models",))

    def generate(self, parts: Sequence[Any], *, max_new_tokens: int = 1024) -> str:
        prompt = str(parts[0])
        self.prompts.append(prompt)
        if self.raw is not None:
            return self.raw
        def line_id(words: str) -> str:
            found = re.search(r"^(L\d+) .*" + re.escape(words), prompt, re.MULTILINE)
            return found.group(1) if found else "L999"
        return json.dumps([{"problem": problem, "text": text, "cites": [line_id(w) for w in cites]}
                           for problem, text, cites in self.sentences])


ANSWER = [
    ("Type 2 diabetes mellitus", "Type 2 diabetes mellitus since 2019-03-04, treated with metformin "
     "1000 mg twice daily.", ["Type 2 diabetes mellitus", "Metformin"]),
    ("Type 2 diabetes mellitus", "HbA1c fell from 8.4 % to 7.1 %.", ["Hemoglobin A1c"]),
    ("Essential hypertension", "Blood pressure came down to 128/82 mm[Hg] on 2026-11-14.",
     ["Blood pressure panel"]),
    ("Allergies", "Penicillin allergy (hives).", ["Penicillin"]),
    # made up: no such line; a number the cited line does not hold
    ("Kidneys", "Creatinine doubled.", ["no such line"]),
    ("Chronic kidney disease stage 3", "Potassium was 6.1 mmol/L.", ["Potassium"]),
]


@pytest.fixture
def patient(fhir: FhirClient, run_id: str) -> str:
    created = fhir.create({"resourceType": "Patient", "name": [{"family": f"Summary-{run_id[:8]}"}]})
    report = SeedReport(created["id"])
    seed_chart(fhir, replace(DEMO_PATIENT, mrn=f"SUM-{run_id}"), report)
    # 4 problems, 4 medications, 2 allergies, 12 visits (an encounter and 4 vitals), 16 labs
    assert report.rows[-1][3] == "86 created"
    seed_chart(fhir, replace(DEMO_PATIENT, mrn=f"SUM-{run_id}"), report)  # a second seeding adds nothing
    assert report.rows[-1][3] == "already seeded"
    return str(created["id"])


def run(store: JobStore, fhir: FhirClient, engine: Any, patient: str, *, refresh: bool = False):  # type: ignore[no-untyped-def]
    pipeline = SummaryPipeline(SummaryOptions(token_budget=4000), engine, EstimatedCounter())
    job = queue_summary(store, fhir, patient, refresh=refresh)
    JobRunner(store, {"summary": pipeline}, lambda j: FhirClient(j.fhir_base_url)).run_until_idle()
    return store.get(job.id)


def test_a_cited_summary_is_written_once_refreshed_when_the_chart_changes_and_signed_stays(
        fhir: FhirClient, patient: str, tmp_path: Path) -> None:
    store = JobStore(f"sqlite:///{tmp_path}/jobs.db")
    engine = ScriptedEngine(ANSWER)
    job = run(store, fhir, engine, patient)
    assert job.state is JobState.SUCCEEDED, job.error
    assert "Problem (active): Type 2 diabetes mellitus, since 2019-03-04" in engine.prompts[0]
    assert "Acute bronchitis" not in engine.prompts[0]  # resolved: not in the digest
    (written,) = job.summary["created"]
    doc = fhir.read("DocumentReference", written.split("/")[1])
    assert doc["type"]["coding"][0]["code"] == "60591-5" and doc["docStatus"] == "preliminary"
    assert {"code": "AIAST"}.items() <= doc["meta"]["security"][0].items()
    summary = latest_summary(fhir, patient)
    assert summary is not None and not summary.stale and summary.reference == f"DocumentReference/{doc['id']}"
    assert [s["text"] for s in summary.details["sentences"]] == [s[1] for s in ANSWER[:4]]
    assert [w["reason"] for w in summary.details["withheld"]] == [
        "cites line(s) that do not exist: L999", "states 6.1, not in the cited resources"]
    assert "HbA1c fell from 8.4 % to 7.1 %." in summary.markdown
    # The Provenance's entities: the Patient and every cited resource at the version read.
    provenance = next(fhir.search("Provenance", {"target": f"DocumentReference/{doc['id']}"}))
    entities = {e["what"]["reference"] for e in provenance["entity"]}
    cited = {ref for s in summary.details["sentences"] for ref in s["refs"]}
    assert entities == cited | {f"Patient/{patient}/_history/1"}
    assert len([r for r in cited if r.startswith("Observation/")]) == 4 + 4  # HbA1c and BP trends

    # Same chart, same answer: nothing new.
    assert queue_summary(store, fhir, patient).state is JobState.SUCCEEDED
    again = run(store, fhir, engine, patient, refresh=True)
    assert again.summary["created"] == [] and again.summary["updated"] == []

    # A new HbA1c: the summary is stale; a refresh updates the same DocumentReference.
    category = {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}
    fhir.create({"resourceType": "Observation", "status": "final",
                 "subject": {"reference": f"Patient/{patient}"}, "category": [{"coding": [category]}],
                 "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}],
                          "text": "Hemoglobin A1c"},
                 "effectiveDateTime": "2026-11-30", "valueQuantity": {"value": 6.9, "unit": "%"}})
    stale = latest_summary(fhir, patient)
    assert stale is not None and stale.changed_since == ("Observation",)
    engine.sentences = [*ANSWER[:1], ("Type 2 diabetes mellitus", "HbA1c is now 6.9 %.", ["Hemoglobin A1c"])]
    refreshed = run(store, fhir, engine, patient, refresh=True)
    assert refreshed.summary["updated"] == [f"DocumentReference/{doc['id']}/_history/2"]
    fresh = latest_summary(fhir, patient)
    assert fresh is not None and not fresh.stale and "HbA1c is now 6.9 %." in fresh.markdown

    # A new Patient version (a phone number): a new job, the same summary updated, not a second.
    fhir.update({**fhir.read("Patient", patient), "telecom": [{"system": "phone", "value": "555-0100"}]})
    engine.sentences = ANSWER[:3]
    moved = run(store, fhir, engine, patient)
    assert moved.id != refreshed.id and moved.summary["created"] == []
    assert moved.summary["updated"] == [f"DocumentReference/{doc['id']}/_history/3"]

    # Signed by a clinician: a re-run leaves it alone.
    current = fhir.read("DocumentReference", doc["id"])
    fhir.update({**current, "docStatus": "final"})
    engine.sentences = ANSWER[:2]
    signed = run(store, fhir, engine, patient, refresh=True)
    assert signed.summary["kept_signed"] == [f"DocumentReference/{doc['id']}/_history/4"]
    assert signed.summary["updated"] == []


def test_answers_that_cannot_be_used_write_nothing(fhir: FhirClient, patient: str, tmp_path: Path) -> None:
    store = JobStore(f"sqlite:///{tmp_path}/jobs.db")
    cut_off = '[{"problem": "Diabetes", "text": "HbA1c fell fr'
    truncated = run(store, fhir, ScriptedEngine([], raw=cut_off), patient)
    assert truncated.state is JobState.SUCCEEDED and truncated.summary["created"] == []
    assert "could not be read" in truncated.summary["problems"][0]["reason"]
    made_up = run(store, fhir, ScriptedEngine([("x", "HbA1c was 5.0 %.", ["Hemoglobin A1c"])]), patient,
                  refresh=True)
    assert made_up.state is JobState.SUCCEEDED and made_up.summary["created"] == []
    assert "none of the model's 1 sentence(s)" in made_up.summary["problems"][0]["reason"]
    assert latest_summary(fhir, patient) is None


def test_the_tiny_random_weight_gemma_runs_the_whole_path_and_is_refused(
        fhir: FhirClient, patient: str, tmp_path: Path) -> None:
    settings = Settings(fhir_base_url=fhir.base_url, test_models=True,
                        test_models_dir=str(tmp_path / "models"), summary_max_new_tokens=24,
                        summary_token_budget=1500)
    installed = summary_pipeline(settings)
    assert "TEST OUTPUT, not clinical" in installed.engine_note and not installed.unavailable_reason
    store = JobStore(f"sqlite:///{tmp_path}/jobs.db")
    job = queue_summary(store, fhir, patient)
    JobRunner(store, {"summary": installed.run}, lambda j: FhirClient(j.fhir_base_url)).run_until_idle()
    done = store.get(job.id)
    # Random weights write noise: the checks refuse it, and nothing is written.
    assert done.state is JobState.SUCCEEDED and done.summary["created"] == [], done.error
    reason = done.summary["problems"][0]["reason"]
    assert "nothing was written" in reason
    assert "could not be read" in reason or "none of the model" in reason
    assert latest_summary(fhir, patient) is None


def test_the_tiny_gemma_answers_a_question_streamed_and_marked_as_test_output(
        fhir: FhirClient, patient: str, tmp_path: Path) -> None:
    from plugin.pipelines.registry import chart_reader
    from plugin.pipelines.summary.ask import ChartAnswer, ask, saved_answer_bundle

    settings = Settings(fhir_base_url=fhir.base_url, test_models=True,
                        test_models_dir=str(tmp_path / "models"), summary_max_new_tokens=16,
                        summary_token_budget=800)
    parts = list(ask(chart_reader(settings), fhir, patient, "How is the blood pressure?"))
    *chunks, answer = parts
    assert chunks and all(isinstance(c, str) for c in chunks)  # streamed from the model's thread
    assert isinstance(answer, ChartAnswer) and answer.model.test_weights
    # Noise from random weights: nothing survives the checks, so there is nothing to save.
    assert answer.checked.kept == () and (answer.unreadable or answer.checked.withheld)
    assert saved_answer_bundle(answer, clinician="Practitioner/1", now=datetime.now(UTC),
                               base_url=fhir.base_url) is None
