"""Typed results that pipelines return and fhir_mappers turn into FHIR resources.

A pipeline run over one source produces a `PipelineResult`: the items it found (measured values,
findings, narratives), each with the evidence of where in the source it came from, the model that
produced them, and the per-input problems it met. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Literal

# ---- where a result came from ---------------------------------------------------------------


@dataclass(frozen=True)
class SourceRef:
    """One input resource at the exact version that was analysed."""

    resource_type: str  # DocumentReference, DiagnosticReport, Media, ImagingStudy
    id: str
    version_id: str
    content_sha256: str = ""  # of the bytes analysed (attachment, DICOM instances)

    @property
    def versioned_reference(self) -> str:
        return f"{self.resource_type}/{self.id}/_history/{self.version_id}"

    @property
    def reference(self) -> str:
        return f"{self.resource_type}/{self.id}"


@dataclass(frozen=True)
class Box:
    """A rectangle in pixel coordinates of the source image/page: x0,y0 top-left, x1,y1
    bottom-right."""

    x0: float
    y0: float
    x1: float
    y1: float


@dataclass(frozen=True)
class TextEvidence:
    """A span of a document's text: page (1-based) and character offsets into that page's
    extracted text, the quoted text, and optionally the page region it was printed in."""

    page: int
    start: int
    end: int
    quote: str
    box: Box | None = None


@dataclass(frozen=True)
class AudioEvidence:
    """A time range of an audio recording, in seconds from its start."""

    start_s: float
    end_s: float
    quote: str = ""


@dataclass(frozen=True)
class ImageEvidence:
    """A place in a DICOM study: the instance (and frame or slice index) and optionally a box.

    A whole-slide patch names its pyramid `level` (0 = the base, largest level), the `frames`
    (tiles, 1-based) of the instance its pixels came from, and `box` in that level's *total pixel
    matrix* (not in one frame)."""

    study_uid: str
    series_uid: str
    instance_uid: str
    frame: int | None = None
    slice_index: int | None = None
    box: Box | None = None
    frames: tuple[int, ...] = ()
    level: int | None = None


Evidence = TextEvidence | AudioEvidence | ImageEvidence

# ---- what was found -------------------------------------------------------------------------


@dataclass(frozen=True)
class Coding:
    system: str
    code: str
    display: str = ""


@dataclass(frozen=True)
class ReferenceRange:
    low: Decimal | None = None
    high: Decimal | None = None
    text: str = ""  # as printed, e.g. "70-99" or "<200"


Interpretation = Literal["H", "L", "HH", "LL", "N", "A"]


@dataclass(frozen=True)
class MeasuredValue:
    """A lab-style value: name, result, unit, range, flag."""

    key: str  # stable within the source: same input, same key
    name: str
    value: Decimal | str  # Decimal for numbers, str for results like "Positive"
    unit: str = ""
    reference_range: ReferenceRange | None = None
    interpretation: Interpretation | None = None  # as the report flagged it; None = compute
    panel: str = ""
    specimen: str = ""
    method: str = ""
    effective: datetime | None = None
    code: Coding | None = None  # set when the source or model gave a code
    category: Literal["laboratory", "vital-signs", "exam"] = "laboratory"
    critical: bool = False
    evidence: tuple[Evidence, ...] = ()
    confidence: float | None = None
    # Parts of a panel measured together (a blood pressure's systolic and diastolic): written as
    # Observation.component, the value itself then left empty ("").
    components: tuple[MeasuredValue, ...] = ()
    dictated: bool = False  # read from a dictation: labelled DICTAST as well as AIAST


ChangeFromPrior = Literal["new", "improved", "stable", "worsened", "resolved"]


@dataclass(frozen=True)
class Finding:
    """An observation in words (imaging or exam), coded where possible."""

    key: str
    text: str
    code: Coding | None = None
    body_site: str = ""  # as the model named it; coded by the mapper when known
    category: Literal["imaging", "exam", "pathology"] = "imaging"
    change: ChangeFromPrior | None = None  # longitudinal comparison only
    abnormal: bool | None = None
    critical: bool = False
    evidence: tuple[Evidence, ...] = ()
    confidence: float | None = None


NarrativeKind = Literal["transcript", "report-draft", "summary", "radiology-note", "clinic-note",
                        "patient-summary", "chart-answer"]


@dataclass(frozen=True)
class Narrative:
    """Text written for a person: a transcript, a report draft or a summary."""

    key: str
    kind: NarrativeKind
    title: str
    text: str
    media_type: Literal["text/plain", "text/markdown"] = "text/plain"
    dictated: bool = False  # came from dictation: labelled DICTAST as well as AIAST
    details_json: str = ""  # optional machine-readable companion (e.g. words with times)
    evidence: tuple[Evidence, ...] = ()


Item = MeasuredValue | Finding | Narrative

# ---- who produced it -------------------------------------------------------------------------

AIKind = Literal[
    "Large-Language-Models",
    "Vision-Language-Models",
    "Deep-Learning-Models",
    "Non-Deterministic-AI",
    "Deterministic-AI",
]


@dataclass(frozen=True)
class ModelInfo:
    """The engine that produced a result. `test_weights` marks random-weight test models, whose
    output is never clinical: every resource written from it says so."""

    name: str  # e.g. "google/medgemma-1.5-4b-it" or "chartlight/lab-layout-extractor"
    version: str  # model revision / weights hash / code version
    kinds: tuple[AIKind, ...]
    display: str = ""
    test_weights: bool = False


@dataclass(frozen=True)
class ReportGroup:
    """Items that together form one report (a lab panel, an imaging read) -> DiagnosticReport."""

    key: str
    code: Coding
    category: Literal["LAB", "RAD", "PAT"]
    item_keys: tuple[str, ...]
    conclusion: str = ""  # written by the model: labelled inline as AI-asserted
    effective: datetime | None = None
    # The SOP Instance UID of the DICOM SR of this report stored in the PACS ("" = none).
    dicom_sr_uid: str = ""


@dataclass(frozen=True)
class InputProblem:
    """Something in the source that could not be used (a page, a value that did not verify)."""

    where: str
    reason: str


@dataclass(frozen=True)
class PipelineResult:
    pipeline: str  # "documents" | "speech" | "imaging" | "pathology"
    pipeline_version: str  # prompt/code version: a change updates the same resources
    source: SourceRef
    model: ModelInfo
    items: tuple[Item, ...] = ()
    reports: tuple[ReportGroup, ...] = ()
    problems: tuple[InputProblem, ...] = ()
    # Extra inputs (e.g. the prior study of a comparison), at their exact versions.
    other_sources: tuple[SourceRef, ...] = field(default=())
    # DICOM SOP Instance UIDs whose pixels the model was shown (imaging, pathology), for the
    # Provenance.
    instances_used: tuple[str, ...] = ()
    # What the written resources' identifiers are derived from, when not `source` at its version:
    # a note made from our own transcript is one note per transcript (the transcript's id alone),
    # updated when the transcript changes and left alone when only its review status did.
    identity: SourceRef | None = None
    # What was done to the inputs that a reader of the Provenance should know (e.g. an imaging
    # study's slices flipped to the standard display orientation): one sentence each.
    preparation: tuple[str, ...] = ()
    # The frames of each instance in `instances_used` whose pixels the model was shown, where only
    # some were (a whole slide's tiles): (instance UID, 1-based frame numbers), for the Provenance.
    frames_used: tuple[tuple[str, tuple[int, ...]], ...] = ()
