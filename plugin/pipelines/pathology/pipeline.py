"""The pathology pipeline: one ImagingStudy with a whole-slide (SM) series -> MedGemma's findings
on patches of the slide as laboratory Observations, a pathology DiagnosticReport (category PAT)
and a narrative report draft; optionally the DICOM SR of the read back into the PACS.

Steps: prepare the slide (plugin.pipelines.pathology.prepare: pyramid, tissue mask, patches
fetched tile by tile); build the user turn (prompts); one model call; read the answer (reading)
and check every citation against the patches shown: a citation of a patch not shown is dropped
and listed, a finding left citing nothing is withheld and listed, an answer that cannot be read
is reported and no finding is written from it. Each finding's evidence names, per cited patch,
the level instance, the frames fetched for it and the region in that level's total pixel matrix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from plugin.engines.answers import AnswerFormatError
from plugin.engines.vision_language import VisionLanguageEngine
from plugin.errors import ConfigError, InputError
from plugin.fhir import FhirClient
from plugin.jobs import JobContext
from plugin.pipelines.imaging.pipeline import study_report_code
from plugin.results import (
    Coding,
    Finding,
    ImageEvidence,
    InputProblem,
    ModelInfo,
    PipelineResult,
    ReportGroup,
)

from .prompts import PROMPT_VERSION, level_index, slide_parts
from .reading import SlideReading, check_citations, read_answer
from .report_draft import SlideRead, preparation_notes, report_narrative
from .slide import Patch, PreparedSlide

if TYPE_CHECKING:
    from plugin.pipelines.imaging.stow import DicomWriteOptions

    from .prepare import PathologyOptions

PIPELINE = "pathology"
PIPELINE_VERSION = "1"
MAX_NEW_TOKENS = 1024
KEY = "pathology"  # item keys start with it: "pathology/1", the report "pathology"
# DiagnosticReport.code: LOINC's panel for a pathology report (the slide's study rarely carries a
# procedure code of its own; when it does, that code is used).
PATHOLOGY_REPORT_CODE = Coding("http://loinc.org", "60567-5", "Comprehensive pathology report panel")

Progress = Callable[[float, str], None]


class PrepareSlide(Protocol):
    """plugin.pipelines.pathology.prepare.prepare_slide: pyramid, tissue mask, patches."""

    def __call__(self, client: FhirClient, study: dict[str, Any], options: PathologyOptions, *,
                 progress: Progress | None = None) -> PreparedSlide: ...


FindStudies = Callable[[FhirClient, str], list[dict[str, Any]]]


class PathologyPipeline:
    """Called by the JobRunner: `pipeline(context) -> PipelineResult`.

    `engine` is the vision-language engine (local or remote); `preparation` the slide options
    (PathologyOptions); `prepare`/`find_studies` replace the PACS functions (tests build
    PreparedSlide objects themselves); `dicom_write` the SR back into the PACS (None: off).
    """

    def __init__(self, engine: VisionLanguageEngine, *, preparation: PathologyOptions | None = None,
                 max_new_tokens: int = MAX_NEW_TOKENS, prepare: PrepareSlide | None = None,
                 find_studies: FindStudies | None = None,
                 dicom_write: DicomWriteOptions | None = None) -> None:
        if max_new_tokens <= 0:
            raise ConfigError("pathology max_new_tokens must be positive")
        self.engine = engine
        self.preparation = preparation
        self.max_new_tokens = max_new_tokens
        self._prepare = prepare
        self._find_studies = find_studies
        self.dicom_write = dicom_write

    def unavailable_reason(self) -> str:
        """Why the pipeline cannot run here (the model is absent); "" when it can."""
        if self.engine.available():
            return ""
        why = getattr(self.engine, "why_unavailable", lambda: None)() or "it is not available"
        return (f"MedGemma cannot run here: {why}. No pathology result is written without the "
                "real model.")

    def find_studies(self, client: FhirClient, patient_id: str) -> list[dict[str, Any]]:
        """The patient's studies with a whole-slide series."""
        find = self._find_studies or _default_find_studies()
        return find(client, patient_id)

    def __call__(self, context: JobContext) -> PipelineResult:
        reason = self.unavailable_reason()
        if reason:
            raise ConfigError(f"pathology pipeline: {reason}")
        context.report_progress(0.02, "preparing the slide")
        slide = self._prepare_slide(context, 0.02, 0.55)
        if not slide.patches:
            raise InputError(f"ImagingStudy/{slide.source.id}",
                             "no patch of tissue was taken from the slide, so there is nothing to "
                             "show the model")
        parts = slide_parts(slide)
        context.report_progress(0.6, f"model call 1 of 1 ({len(slide.patches)} patch"
                                     f"{'es' * (len(slide.patches) != 1)})")
        answer = self.engine.generate(parts, max_new_tokens=self.max_new_tokens)
        context.report_progress(0.9, "reading the model's answer")
        result = slide_result(slide, answer, self.engine.model_info(), context.source)
        if self.dicom_write is not None and self.dicom_write.enabled:
            from plugin.pipelines.imaging.stow import write_back_sr

            context.report_progress(0.93, "storing the DICOM SR in the PACS")
            result = write_back_sr(context.client, result, slide, self.dicom_write)
        return result

    def _prepare_slide(self, context: JobContext, start: float, end: float) -> PreparedSlide:
        prepare = self._prepare or _default_prepare()
        options = self.preparation if self.preparation is not None else _default_options()

        def progress(fraction: float, text: str) -> None:
            context.report_progress(start + (end - start) * min(max(fraction, 0.0), 1.0), text)

        return prepare(context.client, context.source, options, progress=progress)


def slide_result(slide: PreparedSlide, answer: str, model: ModelInfo,
                 resource: dict[str, Any]) -> PipelineResult:
    """The result of one answer about `slide`. Pure."""
    where = f"ImagingStudy/{slide.source.id}"
    problems: list[InputProblem] = []
    reading: SlideReading | None
    try:
        reading = read_answer(answer)
    except AnswerFormatError as exc:
        reading = None
        problems.append(InputProblem(where, f"the model's answer could not be read ({exc}); no "
                                            "finding was taken from it"))
    findings: list[Finding] = []
    cited: list[tuple[int, ...]] = []
    if reading is not None:
        problems += [InputProblem(where, f"not used: {u}") for u in reading.unusable]
        checked = check_citations(reading, {p.number for p in slide.patches})
        problems += [InputProblem(where, text) for text in checked.problems]
        by_number = {p.number: p for p in slide.patches}
        for kept in checked.kept:
            findings.append(Finding(
                key=f"{KEY}/{kept.number}", text=kept.finding.text, category="pathology",
                body_site=slide.context.body_site, abnormal=kept.finding.abnormal,
                evidence=tuple(patch_evidence(slide, by_number[n]) for n in kept.patches)))
            cited.append(kept.patches)
        if reading.impression and not findings:
            # An impression rests on findings: with none left that cites a shown patch, nothing on
            # the slide supports it, so it is neither the report's conclusion nor in the draft.
            problems.append(InputProblem(where, f"impression ({reading.impression[:80]}) not used: no "
                                                "finding it could rest on cites a patch the model was "
                                                "shown"))
            reading = replace(reading, impression="")
    narrative = report_narrative(SlideRead(
        slide=slide, model=model, reading=reading, findings=tuple(findings),
        problems=tuple(problems), key=f"{KEY}/report", cited=tuple(cited)))
    conclusion = (reading.impression or "; ".join(f.text for f in findings)) if reading else ""
    reports: tuple[ReportGroup, ...] = ()
    if findings or conclusion:
        reports = (ReportGroup(key=KEY, code=study_report_code(resource, PATHOLOGY_REPORT_CODE),
                               category="PAT",
                               item_keys=tuple(f.key for f in findings), conclusion=conclusion,
                               effective=slide.started),)
    return PipelineResult(
        pipeline=PIPELINE, pipeline_version=f"{PIPELINE_VERSION}+prompt.{PROMPT_VERSION}",
        source=slide.source, model=model, items=(*findings, narrative), reports=reports,
        problems=tuple(problems), instances_used=slide.instances_used,
        frames_used=tuple(slide.frames_used.items()),
        preparation=tuple(f"slide: {note}" for note in preparation_notes(slide)))


def patch_evidence(slide: PreparedSlide, patch: Patch) -> ImageEvidence:
    """Where a patch lies: its level's instance, the frames fetched for it, its region in that
    level's total pixel matrix, and the level's place in the pyramid."""
    return ImageEvidence(slide.study_uid, patch.level.series_uid, patch.level.instance_uid,
                         box=patch.region, frames=tuple(sorted(patch.frames)),
                         level=level_index(slide, patch))




def _default_prepare() -> PrepareSlide:
    from .prepare import prepare_slide

    prepare: PrepareSlide = prepare_slide
    return prepare


def _default_find_studies() -> FindStudies:
    from .prepare import find_slide_studies

    find: FindStudies = find_slide_studies
    return find


def _default_options() -> PathologyOptions:
    from .prepare import PathologyOptions

    return PathologyOptions()
