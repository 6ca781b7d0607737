"""The patient summary pipeline: chart -> digest -> MedGemma's cited sentences -> checked summary.

A job's source is the Patient at its version; the result is one `patient-summary` narrative
(markdown with every sentence's citations, plus a JSON companion with the sentences, their cited
resource versions, what was withheld and the digest's measures). The resources the kept
sentences cite are the Provenance's entities, at the versions read. Nothing is written when the
model's answer cannot be read or no sentence survives the check: the job fails with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from plugin.engines.answers import AnswerFormatError
from plugin.engines.test_models import TEST_OUTPUT
from plugin.engines.vision_language import VisionLanguageEngine
from plugin.errors import ChartlightError
from plugin.fhir import FhirClient
from plugin.jobs import JobContext
from plugin.pipelines.summary.chart import read_chart
from plugin.pipelines.summary.citations import CheckedAnswer, check_answer
from plugin.pipelines.summary.digest import Digest, build_digest
from plugin.pipelines.summary.prompts import SUMMARY_PROMPT_VERSION, summary_prompt
from plugin.pipelines.summary.tokens import TokenCounter
from plugin.results import InputProblem, ModelInfo, Narrative, PipelineResult, SourceRef

PIPELINE = "summary"
PIPELINE_VERSION = f"chartlight-summary-1/{SUMMARY_PROMPT_VERSION}"
SUMMARY_KEY = "patient-summary"


class SummaryNotWritten(ChartlightError):
    """The model's answer gave nothing that could be written; the message says why."""


@dataclass(frozen=True)
class SummaryOptions:
    token_budget: int = 6000
    max_new_tokens: int = 1024


class SummaryPipeline:
    def __init__(self, options: SummaryOptions, engine: VisionLanguageEngine,
                 count_tokens: TokenCounter) -> None:
        self.options, self.engine, self.count_tokens = options, engine, count_tokens

    def unavailable_reason(self) -> str:
        if self.engine.available():
            return ""
        why = getattr(self.engine, "why_unavailable", lambda: "the engine is not available")()
        return f"MedGemma cannot run here ({why or 'not available'})"

    def digest(self, client: FhirClient, patient_id: str, *, readable: Callable[[str], bool] = lambda t: True
               ) -> tuple[Digest, tuple[str, ...]]:
        """The patient's chart digest within the budget, and what could not be read."""
        chart = read_chart(client, patient_id, readable=readable)
        digest = build_digest(list(chart.resources), budget=self.options.token_budget,
                              count_tokens=self.count_tokens, counter=self.count_tokens.name,
                              today=datetime.now(UTC).date())
        return digest, chart.capped

    def __call__(self, context: JobContext) -> PipelineResult:
        patient = context.source
        if patient.get("resourceType") != "Patient":
            raise ChartlightError(f"the summary pipeline summarises a Patient, not "
                                  f"{patient.get('resourceType')}")
        context.report_progress(0.1, "reading the chart")
        digest, capped = self.digest(context.client, context.job.source_id)
        if not digest.lines:
            raise SummaryNotWritten("the chart holds nothing to summarise within the token budget "
                                    f"({digest.total_lines} line(s), summary_token_budget "
                                    f"{digest.budget}); nothing was written")
        context.report_progress(0.3, f"asking the model ({len(digest.lines)} chart lines, "
                                     f"{digest.tokens} tokens)")
        answer = self.engine.generate([summary_prompt(digest)], max_new_tokens=self.options.max_new_tokens)
        return summary_result(answer, digest, patient_id=context.job.source_id,
                              patient_version=context.job.source_version,
                              model=self.engine.model_info(), capped=capped)


def summary_result(answer: str, digest: Digest, *, patient_id: str, patient_version: str,
                   model: ModelInfo, capped: tuple[str, ...] = ()) -> PipelineResult:
    """The result for one model answer over `digest`. Pure."""
    source = SourceRef("Patient", patient_id, patient_version)
    try:
        checked = check_answer(answer, digest.by_id())
    except AnswerFormatError as exc:
        return nothing_written(source, model, f"the model's answer could not be read ({exc}); "
                                              "nothing was written")
    if not checked.kept:
        withheld = tuple(InputProblem(where=f"sentence {i}", reason=w.reason)
                         for i, w in enumerate(checked.withheld, start=1))
        return nothing_written(source, model, f"none of the model's {len(checked.withheld)} "
                               "sentence(s) is supported by the chart lines it cites; nothing was "
                               "written", withheld)
    narrative = Narrative(key=SUMMARY_KEY, kind="patient-summary", title="Patient summary (AI draft)",
                          text=summary_markdown(checked, test_weights=model.test_weights),
                          media_type="text/markdown",
                          details_json=summary_details(checked, digest, capped))
    problems = tuple(InputProblem(where=f"sentence {i}", reason=w.reason)
                     for i, w in enumerate(checked.withheld, start=1))
    problems += tuple(InputProblem(where="chart", reason=c) for c in capped)
    return PipelineResult(
        pipeline=PIPELINE, pipeline_version=PIPELINE_VERSION,
        source=source, model=model, items=(narrative,), problems=problems,
        other_sources=tuple(_source_ref(ref) for ref in checked.cited_refs),
        # One summary per patient: a new Patient version (an address change) updates it, and
        # a signed one stays signed, instead of a second summary beside the first.
        identity=SourceRef("Patient", patient_id, ""))


def nothing_written(source: SourceRef, model: ModelInfo, reason: str,
                    withheld: tuple[InputProblem, ...] = ()) -> PipelineResult:
    """A model answer nothing could be taken from: the job ends with nothing written and says
    why (as a document whose every value was refused does); an earlier summary stays, marked
    stale when the chart changed since. Pure."""
    return PipelineResult(pipeline=PIPELINE, pipeline_version=PIPELINE_VERSION, source=source,
                          model=model, items=(), problems=(InputProblem("answer", reason), *withheld))


def summary_markdown(checked: CheckedAnswer, *, test_weights: bool) -> str:
    """Problem-oriented markdown: each sentence followed by its citations as links. Pure."""
    out = []
    if test_weights:
        out += [f"**{TEST_OUTPUT}** (random-weight test model)", ""]
    out += ["_AI draft from the chart (preliminary, not reviewed). Each sentence cites the chart "
            "resources it rests on._", ""]
    heading = None
    for sentence in checked.kept:
        problem = sentence.problem or "General"
        if problem != heading:
            out += ["", f"## {problem}"]
            heading = problem
        links = " ".join(f"[{ref}]({ref})" for ref in sentence.refs)
        out.append(f"- {sentence.text} {links}")
    if checked.withheld:
        out += ["", f"_{len(checked.withheld)} sentence(s) withheld: their citations or values are "
                "not in the chart (listed in the details attachment)._"]
    return "\n".join(out).strip() + "\n"


def summary_details(checked: CheckedAnswer, digest: Digest, capped: tuple[str, ...]) -> str:
    """The machine-readable companion. Deterministic for the same chart and answer, so a re-run
    over an unchanged chart writes nothing new."""
    return json.dumps({
        "sentences": [{"problem": s.problem, "text": s.text, "cites": list(s.cites), "refs": list(s.refs)}
                      for s in checked.kept],
        "withheld": [{"text": w.text, "reason": w.reason} for w in checked.withheld],
        "digest": {"lines": len(digest.lines), "tokens": digest.tokens, "budget": digest.budget,
                   "counter": digest.counter, "lines_before_trimming": digest.total_lines,
                   "tokens_before_trimming": digest.total_tokens, "capped": list(capped),
                   "chart_fingerprint": digest.fingerprint,
                   "chart_last_updated": digest.last_updated},
    }, sort_keys=True, indent=1)


def _source_ref(versioned: str) -> SourceRef:
    resource_type, resource_id, _, version = versioned.split("/")
    return SourceRef(resource_type, resource_id, version)
