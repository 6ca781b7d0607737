"""The imaging pipeline: one ImagingStudy -> MedGemma's findings (or answer, comparison with the
prior study, or boxes) as Observations, an imaging DiagnosticReport and a narrative report draft.

Steps: prepare the study (retrieval from the PACS, series selection, preprocessing:
plugin.pipelines.imaging.prepare); for a comparison, find and prepare the prior study; build the
user turn for the task (prompts); one model call; read the answer (tasks) and trace every finding
back to its series, instance, frame and box. An answer that cannot be read is reported in the
narrative and as a problem, and no finding is written from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from fhir_mappers.body_sites import is_known_body_site
from plugin.engines.answers import AnswerFormatError
from plugin.engines.vision_language import VisionLanguageEngine
from plugin.errors import ConfigError, InputError
from plugin.fhir import FhirClient
from plugin.jobs import JobContext
from plugin.results import (
    Box,
    Coding,
    Finding,
    ImageEvidence,
    InputProblem,
    ModelInfo,
    PipelineResult,
    ReportGroup,
)

from .boxes import BoxError, to_pixel_box
from .comparison import find_prior_study, is_slide_only, study_modalities
from .prepared import PreparedImage, PreparedStudy
from .prompts import PROMPT_VERSION, slice_label, task_parts
from .report_draft import StudyRead, report_narrative
from .tasks import ImagingTask, ReadFinding, Reading, read_answer

if TYPE_CHECKING:
    from .prepare import ImagingOptions
    from .stow import DicomWriteOptions

PIPELINE = "imaging"
PIPELINE_VERSION = "1"
MAX_NEW_TOKENS = 1024
# DiagnosticReport.code when the study carries no procedure code of its own.
IMAGING_REPORT_CODE = Coding("http://loinc.org", "18748-4", "Diagnostic imaging study")

Progress = Callable[[float, str], None]
_VOLUMES = frozenset({"CT", "MR"})


class PrepareStudy(Protocol):
    """plugin.pipelines.imaging.prepare.prepare_study: retrieval, selection, preprocessing."""

    def __call__(self, client: FhirClient, study: dict[str, Any], options: Any, *,
                 progress: Progress | None = None) -> PreparedStudy: ...


FindStudies = Callable[[FhirClient, str], list[dict[str, Any]]]


@dataclass(frozen=True)
class _Read:
    reading: Reading | None  # None: the answer could not be read
    problems: tuple[InputProblem, ...]


class ImagingPipeline:
    """Called by the JobRunner: `pipeline(context) -> PipelineResult`.

    `engine` is the vision-language engine (local or remote, chosen by configuration);
    `preparation` the PACS retrieval and preprocessing options; `prepare`/`find_studies` replace
    the PACS functions (tests build PreparedStudy objects themselves).
    """

    def __init__(self, engine: VisionLanguageEngine, *, task: ImagingTask | None = None,
                 preparation: ImagingOptions | None = None, max_new_tokens: int = MAX_NEW_TOKENS,
                 prepare: PrepareStudy | None = None, find_studies: FindStudies | None = None,
                 dicom_write: DicomWriteOptions | None = None) -> None:
        if max_new_tokens <= 0:
            raise ConfigError("imaging max_new_tokens must be positive")
        self.engine = engine
        self.task = task or ImagingTask()
        self.preparation = preparation
        self.max_new_tokens = max_new_tokens
        self._prepare = prepare
        self._find_studies = find_studies
        self.dicom_write = dicom_write  # the SR back into the PACS (stow.py); None: off

    def unavailable_reason(self) -> str:
        """Why the pipeline cannot run here (the model is absent); "" when it can."""
        if self.engine.available():
            return ""
        why = getattr(self.engine, "why_unavailable", lambda: None)() or "it is not available"
        return (f"MedGemma cannot run here: {why}. No imaging result is written without the "
                "real model.")

    def __call__(self, context: JobContext) -> PipelineResult:
        reason = self.unavailable_reason()
        if reason:
            raise ConfigError(f"imaging pipeline: {reason}")
        resource = context.source
        name = f"ImagingStudy/{resource.get('id', '?')}"
        # The prior is looked for first: without one, nothing is fetched from the PACS.
        compare = self.task.kind == "compare"
        prior_resource = self._prior_resource(context, resource, name) if compare else None
        context.report_progress(0.02, "preparing the study")
        study = self._prepare_study(context, resource, 0.02, 0.45)
        prior = None
        if prior_resource is not None:
            prior = self._prepare_study(context, prior_resource, 0.45, 0.58)
            if prior.kind == study.kind and prior.choices.get("plane") != study.choices.get("plane"):
                raise InputError(name, f"the prior study ImagingStudy/{prior_resource.get('id')} was "
                                       f"shown in the {prior.choices.get('plane')} plane, this one in "
                                       f"the {study.choices.get('plane')} plane: not comparable")
            if prior.kind != study.kind:
                raise InputError(name, f"the prior study ImagingStudy/{prior_resource.get('id')} was "
                                       f"prepared as a {prior.kind}, this one as a {study.kind}: not "
                                       "comparable")
        if self.task.kind == "localize" and study.kind != "projection":
            raise InputError(name, f"localisation needs a projection image (such as a chest X-ray); "
                                   f"this study was prepared as a {study.kind}")
        parts = task_parts(self.task, study, prior)
        images = sum(not isinstance(p, str) for p in parts)
        context.report_progress(0.6, f"model call 1 of 1 ({images} image{'s' * (images != 1)})")
        answer = self.engine.generate(parts, max_new_tokens=self.max_new_tokens)
        context.report_progress(0.9, "reading the model's answer")
        read = self._read(answer, name)
        model = self.engine.model_info()
        result = self._result(study, prior, read, model, resource)
        if self.dicom_write is not None and self.dicom_write.enabled:
            from .stow import write_back_sr

            context.report_progress(0.93, "storing the DICOM SR in the PACS")
            result = write_back_sr(context.client, result, study, self.dicom_write,
                                   prior_study_uid=prior.study_uid if prior is not None else "")
        return result

    # ---- the studies ---------------------------------------------------------------------------

    def _prepare_study(self, context: JobContext, resource: dict[str, Any], start: float,
                       end: float) -> PreparedStudy:
        prepare = self._prepare or _default_prepare()
        options = self.preparation if self.preparation is not None else _default_options()

        def progress(fraction: float, text: str) -> None:
            context.report_progress(start + (end - start) * min(max(fraction, 0.0), 1.0), text)

        return prepare(context.client, resource, options, progress=progress)

    def _prior_resource(self, context: JobContext, resource: dict[str, Any], name: str) -> dict[str, Any]:
        patient = _patient_id(resource, name)
        context.report_progress(0.01, "looking for the prior study")
        find = self._find_studies or _default_find_studies()
        prior = find_prior_study(resource, find(context.client, patient))
        if prior is None:
            raise InputError(name, "no earlier ImagingStudy of the same modality and body part to "
                                   "compare with")
        return prior

    # ---- the answer ----------------------------------------------------------------------------

    def _read(self, answer: str, name: str) -> _Read:
        try:
            reading = read_answer(self.task, answer)
        except AnswerFormatError as exc:
            return _Read(None, (InputProblem(name, f"the model's answer could not be read ({exc}); "
                                                   "no finding was taken from it"),))
        return _Read(reading, tuple(InputProblem(name, f"not used: {u}") for u in reading.unusable))

    def _result(self, study: PreparedStudy, prior: PreparedStudy | None, read: _Read,
                model: ModelInfo, resource: dict[str, Any]) -> PipelineResult:
        findings: list[Finding] = []
        problems = list(read.problems)
        if read.reading is not None:
            findings, traced = self._findings(read.reading, study)
            problems += traced
        narrative = report_narrative(StudyRead(
            task=self.task, study=study, prior=prior, model=model, reading=read.reading,
            findings=tuple(findings), problems=tuple(problems), key=f"{self.task.key}/report"))
        reports: tuple[ReportGroup, ...] = ()
        conclusion = _conclusion(read.reading, findings)
        if findings or conclusion:  # a question's answer is the draft's alone
            reports = (ReportGroup(key=self.task.key, code=study_report_code(resource, IMAGING_REPORT_CODE),
                                   category="RAD", item_keys=tuple(f.key for f in findings),
                                   conclusion=conclusion, effective=study.started),)
        used = study.instances_used + (prior.instances_used if prior is not None else ())
        return PipelineResult(
            pipeline=PIPELINE, pipeline_version=f"{PIPELINE_VERSION}+prompt.{PROMPT_VERSION}",
            source=study.source, model=model, items=(*findings, narrative), reports=reports,
            problems=tuple(problems), other_sources=(prior.source,) if prior is not None else (),
            instances_used=tuple(dict.fromkeys(used)),
            preparation=tuple(_preparation_notes(study, prior)))

    def _findings(self, reading: Reading, study: PreparedStudy
                  ) -> tuple[list[Finding], list[InputProblem]]:
        findings: list[Finding] = []
        problems: list[InputProblem] = []
        where = f"ImagingStudy/{study.source.id}"
        for number, read in enumerate(reading.findings, 1):
            evidence, missing = _finding_evidence(read, study)
            problems += [InputProblem(where, f"finding #{number} cites {m}, which the model was not "
                                             "shown; that citation is left out") for m in missing]
            findings.append(Finding(key=f"{self.task.key}/{number}", text=read.text,
                                    body_site=read.body_site, abnormal=read.abnormal,
                                    change=read.change, evidence=evidence))
        for number, box in enumerate(reading.boxes, 1):
            image = study.images[0]
            try:
                pixels = to_pixel_box(box.box_2d, image)
            except BoxError as exc:
                problems.append(InputProblem(where, f"box #{number} ({box.label}) not used: {exc}"))
                continue
            # A box names anatomy ("right lung") or a finding ("nodule"): only the first is a site.
            site = box.label if is_known_body_site(box.label) else ""
            findings.append(Finding(key=f"{self.task.key}/{number}", text=box.label, body_site=site,
                                    evidence=(_image_evidence(study, image, box=pixels),)))
        return findings, problems


def task_sources(task: ImagingTask, studies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The studies a task applies to: a comparison needs a prior study; localisation a
    radiograph (no CT or MR in the study). Others: every study. A study of whole slides only
    (every series SM) is the pathology pipeline's, never imaging's."""
    studies = [s for s in studies if not is_slide_only(s)]
    if task.kind == "compare":
        return [s for s in studies if find_prior_study(s, studies) is not None]
    if task.kind == "localize":
        return [s for s in studies if study_modalities(s) and not study_modalities(s) & _VOLUMES]
    return studies


def _finding_evidence(read: ReadFinding, study: PreparedStudy
                      ) -> tuple[tuple[ImageEvidence, ...], list[str]]:
    """Where a finding was seen: the projection image, or the volume's slices the model cited
    (else the series as a whole). Also the citations that match no slice shown."""
    if study.kind == "projection":
        return (_image_evidence(study, study.images[0]),), []
    by_label = {slice_label(image.label, n).upper(): image
                for n, image in enumerate(study.images, 1)}
    cited: list[ImageEvidence] = []
    missing: list[str] = []
    for number in read.slices:
        image = by_label.get(f"SLICE {number}")
        if image is None:
            missing.append(f"SLICE {number}")
        else:
            cited.append(_image_evidence(study, image))
    if cited:
        return tuple(cited), missing
    series = tuple(dict.fromkeys(image.series_uid for image in study.images))
    return tuple(ImageEvidence(study.study_uid, uid, "") for uid in series), missing


def _image_evidence(study: PreparedStudy, image: PreparedImage, *, box: Box | None = None
                    ) -> ImageEvidence:
    return ImageEvidence(study.study_uid, image.series_uid, image.instance_uid, frame=image.frame,
                         slice_index=image.slice_index, box=box)


def _preparation_notes(study: PreparedStudy, prior: PreparedStudy | None) -> list[str]:
    """The orientation of each study's images as shown to the model, and geometry the PACS's
    metadata lost and the instances' own headers gave, for the Provenance."""
    notes = []
    for name, prepared in (("study", study), ("prior study", prior)):
        if prepared is None:
            continue
        text = (prepared.choices.get("orientation") or {}).get("text")
        if text:
            notes.append(f"{name} images: {text}")
        fallback = (prepared.choices.get("metadata_fallback") or {}).get("cause")
        if fallback:
            notes.append(f"{name}: {fallback}")
    return notes


def _conclusion(reading: Reading | None, findings: list[Finding]) -> str:
    if reading is None:
        return ""
    return reading.impression or "; ".join(f.text for f in findings)


def study_report_code(resource: dict[str, Any], default: Coding) -> Coding:
    """The study's own procedure code (LOINC or other) when it has one, else `default`."""
    for concept in resource.get("procedureCode", []):
        for coding in concept.get("coding", []):
            if coding.get("system") and coding.get("code"):
                return Coding(coding["system"], coding["code"], coding.get("display", ""))
    return default


def _patient_id(resource: dict[str, Any], name: str) -> str:
    reference = (resource.get("subject") or {}).get("reference", "")
    if not reference.startswith("Patient/") or len(reference.split("/")) < 2:
        raise InputError(name, "the study names no Patient subject, so no prior study can be found")
    return reference.split("/")[1]


def _default_prepare() -> PrepareStudy:
    from .prepare import prepare_study

    return prepare_study


def _default_find_studies() -> FindStudies:
    from .prepare import find_imaging_studies

    return find_imaging_studies


def _default_options() -> Any:
    from .prepare import ImagingOptions

    return ImagingOptions()
