"""\"Ask the chart\": a clinician's question answered by MedGemma from the chart digest, every
sentence checked against the lines it cites (as the summary is), streamed while it is generated
when the engine can stream. Nothing is written here: `saved_answer_bundle` builds the
transaction the app sends only when the clinician saves the answer, with the clinician as an
author of the saved document and as an agent of its Provenance.

Questions and answers are patient data: nothing here logs them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fhir_mappers.provenance import AGENT_TYPE_DISPLAYS
from fhir_mappers.systems import PROVENANCE_PARTICIPANT_TYPE
from plugin.engines.answers import AnswerFormatError
from plugin.errors import ChartlightError
from plugin.fhir import FhirClient
from plugin.pipelines.summary.citations import CheckedAnswer, check_answer
from plugin.pipelines.summary.pipeline import SummaryPipeline
from plugin.pipelines.summary.prompts import ANSWER_PROMPT_VERSION, question_prompt
from plugin.results import ModelInfo, Narrative, PipelineResult, SourceRef
from plugin.writeback import WriteOutcome, build_transaction, plan_resources

PIPELINE = "ask"
MAX_QUESTION_CHARS = 500


class BadQuestion(ChartlightError):
    """The question cannot be asked; the message says why (never quoting it)."""


@dataclass(frozen=True)
class ChartAnswer:
    question: str
    checked: CheckedAnswer
    model: ModelInfo
    patient: SourceRef  # the Patient at the version asked about
    unreadable: str = ""  # why the model's answer could not be read ("" when it could)

    @property
    def key(self) -> str:
        text = "\n".join([self.question, *(s.text + "|" + ",".join(s.refs) for s in self.checked.kept)])
        return "answer-" + hashlib.sha256(text.encode()).hexdigest()[:24]


def check_question(question: Any) -> str:
    """The question as asked, or BadQuestion saying what is wrong with it."""
    if not isinstance(question, str) or not question.strip():
        raise BadQuestion("the question is empty: type a question about this patient's chart")
    text = " ".join(question.split())
    if len(text) > MAX_QUESTION_CHARS:
        raise BadQuestion(f"the question is longer than {MAX_QUESTION_CHARS} characters; ask a shorter one")
    return text


def ask(pipeline: SummaryPipeline, client: FhirClient, patient_id: str, question: str, *,
        readable: Callable[[str], bool] = lambda resource_type: True) -> Iterator[str | ChartAnswer]:
    """Text chunks as the model writes them, then the checked ChartAnswer (always last).
    `readable` says which resource types the user's grant may read."""
    patient = client.read("Patient", patient_id)
    digest, _ = pipeline.digest(client, patient_id, readable=readable)
    prompt = question_prompt(digest, question)
    limit = pipeline.options.max_new_tokens
    stream = getattr(pipeline.engine, "stream", None)
    chunks: list[str] = []
    for chunk in (stream([prompt], max_new_tokens=limit) if stream is not None
                  else [pipeline.engine.generate([prompt], max_new_tokens=limit)]):
        chunks.append(chunk)
        yield chunk
    source = SourceRef("Patient", patient_id, str((patient.get("meta") or {}).get("versionId") or "1"))
    model = pipeline.engine.model_info()
    try:
        checked = check_answer("".join(chunks), digest.by_id())
    except AnswerFormatError as exc:
        yield ChartAnswer(question, CheckedAnswer((), ()), model, source, unreadable=str(exc))
        return
    yield ChartAnswer(question, checked, model, source)


def answer_markdown(answer: ChartAnswer) -> str:
    """The saved document's text: question, answer sentences with their citations. Pure."""
    lines = []
    if answer.model.test_weights:
        lines += ["**TEST OUTPUT, not clinical** (random-weight test model)", ""]
    lines += [f"**Question:** {answer.question}", "", "**Answer (AI, checked against the chart):**", ""]
    lines += [f"- {s.text} " + " ".join(f"[{r}]({r})" for r in s.refs) for s in answer.checked.kept]
    if answer.checked.withheld:
        lines += ["", f"_{len(answer.checked.withheld)} sentence(s) withheld: not supported by the chart._"]
    return "\n".join(lines) + "\n"


def saved_answer_bundle(answer: ChartAnswer, *, clinician: str, now: datetime,
                        base_url: str) -> dict[str, Any] | None:
    """The transaction that saves `answer` for its patient: the chart-answer DocumentReference
    (authors: the model's Device and `clinician`), the Device when new, and a Provenance whose
    entities are the Patient and every cited resource version. None when nothing is left to save
    (no sentence survived the check). Pure."""
    if not answer.checked.kept:
        return None
    narrative = Narrative(key=answer.key, kind="chart-answer", title="Answer to a question about the chart",
                          text=answer_markdown(answer), media_type="text/markdown")
    result = PipelineResult(pipeline=PIPELINE, pipeline_version=ANSWER_PROMPT_VERSION, source=answer.patient,
                            model=answer.model, items=(narrative,),
                            other_sources=tuple(_ref(r) for r in answer.checked.cited_refs))
    subject = f"Patient/{answer.patient.id}"
    planned = plan_resources(result, subject=subject)
    bundle = build_transaction(result, planned, {}, WriteOutcome(path="document-only"), base_url=base_url,
                               now=now, on_behalf_of=clinician)
    assert bundle is not None  # nothing exists yet: every planned resource is a create
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "DocumentReference":
            resource["author"] = [*resource.get("author", []), {"reference": clinician}]
        elif resource["resourceType"] == "Provenance":
            resource["agent"].append({"type": {"coding": [{
                "system": PROVENANCE_PARTICIPANT_TYPE, "code": "author",
                "display": AGENT_TYPE_DISPLAYS["author"]}]}, "who": {"reference": clinician}})
    return bundle


def _ref(versioned: str) -> SourceRef:
    resource_type, resource_id, _, version = versioned.split("/")
    return SourceRef(resource_type, resource_id, version)
