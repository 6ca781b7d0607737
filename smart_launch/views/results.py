"""A patient's chartlight results as the review pages show them: each result with its evidence in
structured form (page, offsets and box of a document; time range of a recording; instance, frame
and box of an image), read back from the extensions fhir_mappers writes. Pure: resources in,
values out."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, replace
from typing import Any, Literal

from cds_hooks.ai_results import AiResult, Model, local_reference, read_models, read_results
from fhir_mappers.systems import EXT_EVIDENCE_AUDIO, EXT_EVIDENCE_IMAGE, EXT_EVIDENCE_TEXT
from plugin.results import Box
from plugin.review import EXT_AI_ORIGINAL, document_text

Resource = dict[str, Any]
ReviewState = Literal["awaiting review", "approved", "edited", "rejected"]


@dataclass(frozen=True)
class TextSpan:
    """Where in a document a value was read: page (1-based), character offsets into that page's
    text, the quoted text and the printed region (page pixels; PDF points for a PDF)."""

    page: int
    start: int
    end: int
    quote: str
    box: Box | None


@dataclass(frozen=True)
class AudioSpan:
    start_s: float
    end_s: float
    quote: str


@dataclass(frozen=True)
class ImageSpot:
    """A place in a DICOM study; `box` in pixels of the frame. A whole-slide patch also names
    its pyramid `level` (0 = base) and the 1-based `frames` (tiles) it was cut from; its `box` is
    then in that level's total pixel matrix (docs/pathology.md)."""

    study: str
    series: str
    instance: str
    frame: int | None
    slice_index: int | None
    box: Box | None
    level: int | None = None
    frames: tuple[int, ...] = ()


Evidence = TextSpan | AudioSpan | ImageSpot


@dataclass(frozen=True)
class Word:
    text: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class ReviewItem:
    """One result as the app shows it."""

    result: AiResult
    evidence: tuple[Evidence, ...]
    state: ReviewState
    ai_original: str  # the model's value in words, when a clinician edited it
    model: Model | None

    @property
    def reference(self) -> str:
        return self.result.reference

    @property
    def id(self) -> str:
        return self.reference.split("/", 1)[1]

    @property
    def version(self) -> str:
        return str(self.result.resource.get("meta", {}).get("versionId", ""))

    @property
    def editable_value(self) -> str:
        """What the edit box starts with: the number of a quantity, or the text."""
        resource = self.result.resource
        if "valueQuantity" in resource:
            return str(resource["valueQuantity"].get("value", ""))
        if self.result.kind == "document":
            return document_text(resource)
        return self.result.value

    @property
    def test_weights(self) -> bool:
        return self.result.test_weights or bool(self.model and self.model.test_weights)

    @property
    def text_spans(self) -> tuple[TextSpan, ...]:
        return tuple(e for e in self.evidence if isinstance(e, TextSpan))

    @property
    def image_spots(self) -> tuple[ImageSpot, ...]:
        return tuple(e for e in self.evidence if isinstance(e, ImageSpot))


def review_items(resources: list[Resource], devices: list[Resource], patient_id: str) -> list[ReviewItem]:
    """chartlight's results among `resources` (rejected ones included, marked so), in a stable
    order: values and findings as they appear in the source (page, then offset; by name when
    they carry no text evidence), then reports, then documents."""
    models = read_models(devices)
    rejected = [r for r in resources if r.get("status") in ("entered-in-error", "cancelled")]
    shown = read_results([_unrejected(r) for r in rejected], patient_id)
    rejected_refs = {r.reference for r in shown}
    shown += read_results(resources, patient_id)
    items = []
    for result in shown:
        resource = next(r for r in resources if f"{r['resourceType']}/{r['id']}" == result.reference)
        items.append(ReviewItem(
            result=replace(result, resource=resource),
            evidence=evidence_of(resource),
            state="rejected" if result.reference in rejected_refs else _state(resource),
            ai_original=ai_original_text(resource),
            model=models.get(result.device)))
    order = {"value": 0, "finding": 0, "report": 1, "document": 2}

    def position(item: ReviewItem) -> tuple[int, int, int, str, str]:
        spans = item.text_spans
        where = (spans[0].page, spans[0].start) if spans else (1 << 30, 0)
        return order[item.result.kind], *where, item.result.name.lower(), item.reference

    return sorted(items, key=position)


def evidence_of(resource: Resource) -> tuple[Evidence, ...]:
    """The evidence extensions of a resource, in the order written; malformed ones are skipped."""
    found: list[Evidence] = []
    for extension in resource.get("extension", []):
        parts = {p.get("url"): next((v for k, v in p.items() if k.startswith("value")), None)
                 for p in extension.get("extension", [])}
        try:
            if extension.get("url") == EXT_EVIDENCE_TEXT:
                found.append(TextSpan(int(str(parts["page"])), int(str(parts["start"])),
                                      int(str(parts["end"])),
                                      str(parts.get("quote") or ""), parse_box(parts.get("box"))))
            elif extension.get("url") == EXT_EVIDENCE_AUDIO:
                found.append(AudioSpan(float(str(parts["start"])), float(str(parts["end"])),
                                       str(parts.get("quote") or "")))
            elif extension.get("url") == EXT_EVIDENCE_IMAGE:
                found.append(ImageSpot(
                    str(parts.get("study") or ""), str(parts.get("series") or ""),
                    str(parts.get("instance") or ""), _int_or_none(parts.get("frame")),
                    _int_or_none(parts.get("slice")), parse_box(parts.get("box")),
                    _int_or_none(parts.get("level")), parse_frames(parts.get("frames"))))
        except (KeyError, TypeError, ValueError):
            continue
    return tuple(found)


def parse_box(text: object) -> Box | None:
    """"x0,y0,x1,y1" -> Box; None for anything else."""
    try:
        x0, y0, x1, y1 = (float(v) for v in str(text).split(","))
    except ValueError:
        return None
    return Box(x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def parse_frames(text: object) -> tuple[int, ...]:
    """"7,8,11,12" -> (7, 8, 11, 12): 1-based frame numbers; () when absent. A malformed list
    (not whole numbers, or a number under 1) makes the whole evidence item malformed."""
    if text is None or str(text).strip() == "":
        return ()
    frames = tuple(int(v) for v in str(text).split(","))
    if min(frames) < 1:
        raise ValueError(f"frame numbers are 1-based: {text!r}")
    return frames


def ai_original_text(resource: Resource) -> str:
    for extension in resource.get("extension", []):
        if extension.get("url") != EXT_AI_ORIGINAL:
            continue
        if "valueQuantity" in extension:
            q = extension["valueQuantity"]
            return f"{q.get('comparator', '')}{q.get('value', '')} {q.get('unit', '')}".strip()
        return str(extension.get("valueString", ""))
    return ""


def transcript_words(resource: Resource) -> tuple[Word, ...]:
    """The words with their times from a transcript's JSON companion attachment (speech
    pipeline's details), or nothing when it has none."""
    for content in resource.get("content", [])[1:]:
        attachment = content.get("attachment", {})
        if attachment.get("contentType") != "application/json" or not attachment.get("data"):
            continue
        try:
            details = json.loads(base64.b64decode(attachment["data"]))
            return tuple(Word(str(w["text"]), float(w["start_s"]), float(w["end_s"]))
                         for w in details.get("words", []))
        except (ValueError, KeyError, TypeError):
            return ()
    return ()


def source_of(item: ReviewItem) -> str:
    """The analysed input ("DocumentReference/5"), or "" when the result does not say."""
    return local_reference(item.result.source) if item.result.source else ""


def _state(resource: Resource) -> ReviewState:
    status = resource.get("docStatus") if resource.get("resourceType") == "DocumentReference" \
        else resource.get("status")
    if status in ("preliminary", "registered", "partial"):
        return "awaiting review"
    if any(e.get("url") == EXT_AI_ORIGINAL for e in resource.get("extension", [])) or status == "amended":
        return "edited"
    return "approved"


def _unrejected(resource: Resource) -> Resource:
    # read_results leaves out what a clinician rejected; the app still lists it, marked rejected.
    return {**resource, "status": "final"}


def _int_or_none(value: object) -> int | None:
    return None if value is None else int(str(value))
