"""The documents pipeline: one DocumentReference or DiagnosticReport attachment (PDF, scan,
photo) -> verified lab values, grouped by panel, with a summary for the clinician.

Steps: pick the attachment and check what its bytes are; read every page as words with boxes
(text layer, or OCR where the layer is missing, garbage or partial); read the tables by their
geometry; extract rows with MedGemma when its weights are here (shown the page and the rows the
geometry read), else keep the geometry's rows; keep only rows the page shows where they were read
(grounding) and that pass the precision gate (known name, readable unit, confident OCR); group by
panel; summarise, listing what was read but not recognised. Bad input raises InputError, so the
job fails with its reason and nothing is written for it.
"""

from __future__ import annotations

import hashlib
from contextlib import closing
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Literal

from fhir_mappers.loinc import name_key
from plugin.budget import DEFAULT_JOB_MEMORY_BYTES, MemoryBudget
from plugin.engines.medgemma import DEFAULT_MODEL, MedGemmaEngine
from plugin.engines.vision_language import VisionLanguageEngine
from plugin.errors import ConfigError
from plugin.fhir import resolve_attachment
from plugin.jobs import JobContext
from plugin.results import (
    InputProblem,
    MeasuredValue,
    ModelInfo,
    PipelineResult,
    SourceRef,
    TextEvidence,
)

from . import layout_extractor
from .document_pages import DocumentPages, PageLimits, model_images, read_pages
from .grounding import Verified, ground
from .inputs import DocumentKind, select_attachment, sniff_kind
from .lab_extraction import MAX_NEW_TOKENS, PROMPT_VERSION, extract_page
from .lab_rows import LabRow, implausible, read_number, row_key, to_measured_value
from .pages import PageText
from .panels import report_groups
from .precision_gate import WITHHELD, far_outside, withheld_reason
from .printed_numbers import Conventions, detect_conventions, parse_date
from .summary import DocumentFacts, summary_narrative

PIPELINE = "documents"
PIPELINE_VERSION = "1.0"


@dataclass(frozen=True)
class DocumentsOptions:
    engine: Literal["auto", "medgemma", "layout"] = "auto"
    medgemma_model: str = DEFAULT_MODEL
    ocr_dpi: int = 300  # the most a page is rendered at for OCR (scans: their own resolution)
    max_page_pixels: int = 60_000_000  # a page image larger than this is refused
    max_pages: int = 50  # later pages are not read (and the summary says so)
    ocr_workers: int | None = None  # tesseract processes at once; default one per CPU
    attachment_allowed_hosts: tuple[str, ...] = ()  # foreign hosts attachments may come from
    max_new_tokens: int = MAX_NEW_TOKENS  # the longest answer MedGemma may give for one page
    # What one job may hold decoded at once (page images, cleanup copies), charged before decoding.
    job_memory_bytes: int = DEFAULT_JOB_MEMORY_BYTES

    def __post_init__(self) -> None:
        for name in ("ocr_dpi", "max_page_pixels", "max_pages", "max_new_tokens",
                     "job_memory_bytes"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"documents option {name} must be positive")

    @property
    def limits(self) -> PageLimits:
        return PageLimits(self.ocr_dpi, self.max_page_pixels, self.max_pages, self.ocr_workers)


@dataclass(frozen=True)
class _Extraction:
    rows: tuple[LabRow, ...]
    problems: tuple[InputProblem, ...]
    model: ModelInfo
    version: str
    note: str


class DocumentsPipeline:
    """Called by the JobRunner: `pipeline(context) -> PipelineResult`. `engine` replaces the
    default MedGemma engine (tests, a remote endpoint)."""

    def __init__(self, options: DocumentsOptions = DocumentsOptions(),
                 engine: VisionLanguageEngine | None = None) -> None:
        self.options = options
        self.engine = engine if engine is not None else MedGemmaEngine(options.medgemma_model)

    def __call__(self, context: JobContext) -> PipelineResult:
        resource = context.source
        name = f"{resource['resourceType']}/{resource['id']}"
        selected = select_attachment(resource, source=name)
        label = f"{name} {selected.where}"
        context.report_progress(0.05, "fetching the attachment")
        data = resolve_attachment(context.client, selected.attachment, source=label,
                                  allowed_hosts=self.options.attachment_allowed_hosts)
        kind = sniff_kind(data, source=label, declared_type=selected.declared_type)
        budget = MemoryBudget(label, self.options.job_memory_bytes)
        budget.charge(len(data), "the attachment")
        digest = hashlib.sha256(data).hexdigest()
        source = SourceRef(resource["resourceType"], resource["id"],
                           resource["meta"]["versionId"], digest)
        context.report_progress(0.1, "reading the pages")
        document = read_pages(data, kind, source=label, limits=self.options.limits,
                              progress=context.report_progress, budget=budget)
        context.report_progress(0.6, "extracting lab values")
        header = layout_extractor.read_lab_rows(document.pages)
        extraction = self._extract(data, kind, label, document, header, context, budget)
        values, checked = verified_values(extraction.rows, document.pages, header.collected,
                                          geometry=header.rows)
        problems = (*document.problems, *extraction.problems, *checked,
                    *silent_pages(document.pages, values, (*extraction.problems, *checked)))
        facts = DocumentFacts(label, kind, selected.declared_type, len(data), digest,
                              document.page_count)
        summary = summary_narrative(facts, document.pages, extraction.model, extraction.note,
                                    values, problems)
        return PipelineResult(
            pipeline=PIPELINE, pipeline_version=extraction.version, source=source,
            model=extraction.model, items=(*values, summary),
            reports=report_groups(values, header.collected), problems=problems)

    def _extract(self, data: bytes, kind: DocumentKind, label: str, document: DocumentPages,
                 header: layout_extractor.LayoutReading, context: JobContext,
                 budget: MemoryBudget) -> _Extraction:
        engine, note = self._choose_engine()
        if engine is None:
            return _Extraction(header.rows, header.unreadable, layout_extractor.MODEL,
                               PIPELINE_VERSION, note)
        rows: list[LabRow] = []
        problems: list[InputProblem] = []
        pages = {page.number: page for page in document.pages}
        last = max(pages, default=0)
        # One page image at a time: each is dropped (and released) before the next is drawn.
        with closing(model_images(data, kind, source=label, limits=self.options.limits,
                                  budget=budget)) as images:
            for number, image in enumerate(images, start=1):
                if number > last:
                    break
                page = pages.get(number)
                if page is None:  # OCR could not read it: the problem is already reported
                    continue
                context.report_progress(0.6 + 0.3 * (number - 1) / last,
                                        f"MedGemma reading page {page.number}")
                found = extract_page(engine, image, page, document.page_count,
                                     max_new_tokens=self.options.max_new_tokens,
                                     layout_rows=header.rows)
                rows += found.rows
                problems += found.problems
        return _Extraction(tuple(rows), tuple(problems), engine.model_info(),
                           f"{PIPELINE_VERSION}+prompt.{PROMPT_VERSION}", note)

    def _choose_engine(self) -> tuple[VisionLanguageEngine | None, str]:
        """The model to use, or None for the layout rules; and a note saying why."""
        if self.options.engine == "layout":
            return None, "deterministic layout rules, as configured"
        if self.engine.available():
            return self.engine, "MedGemma page by page; every value checked against the page"
        why_unavailable = getattr(self.engine, "why_unavailable", lambda: "not available")
        reason = why_unavailable() or "not available"
        if self.options.engine == "medgemma":
            raise ConfigError(f"the documents pipeline is configured for MedGemma, which cannot "
                              f"run here: {reason}")
        return None, f"deterministic layout rules; MedGemma not used: {reason}"


def verified_values(rows: tuple[LabRow, ...], pages: tuple[PageText, ...],
                    collected: datetime | None, *, geometry: tuple[LabRow, ...] = (),
                    conventions: Conventions | None = None,
                    ) -> tuple[list[MeasuredValue], list[InputProblem]]:
    """Rows the page shows, as MeasuredValues; the others as "unverified" problems, and rows
    the precision gate stops as "read but not recognised". A row without a position (the
    model's) is checked where the geometry read the same test, when it did."""
    conventions = conventions or detect_conventions(page.text for page in pages)
    by_number = {page.number: page for page in pages}
    values: list[MeasuredValue] = []
    problems: list[InputProblem] = []
    taken: set[str] = set()
    for row in rows:
        page = by_number.get(row.page)
        if page is None:
            problems.append(InputProblem(f"page {row.page}", f"unverified: {row.name} = "
                                                             f"{row.result} (no such page was read)"))
            continue
        checked = ground(placed(row, geometry), page, conventions)
        if isinstance(checked, InputProblem):
            problems.append(checked)
            continue
        value = _measured(checked, page, collected, taken, conventions)
        if value is None:
            problems.append(InputProblem(f"page {row.page}", f"unverified: {row.name} = "
                                                             f"{row.result} (not a result)"))
            continue
        # "<0.5" is a quantity too (a comparator and a number): not an ordinal result.
        numeric = isinstance(value.value, Decimal) or \
            read_number(value.value, ocr=False) is not None
        why = withheld_reason(checked.row, confidence=checked.confidence, numeric=numeric,
                              ocr=page.origin == "ocr")
        if why is None and page.origin == "ocr":
            # OCR drops decimal points ("4,3" read as "43") with high confidence; a value far
            # outside its printed range with no flag printed is more likely that than real.
            bounds = value.reference_range
            why = implausible(value, checked.row.flag) or (
                far_outside(value.value, bounds.low, bounds.high)
                if bounds is not None and isinstance(value.value, Decimal) else None)
        if why is not None:
            taken.discard(value.key)
            problems.append(InputProblem(f"page {row.page}", f"{WITHHELD}: "
                                                             f"{checked.evidence.quote!r} ({why})"))
            continue
        values.append(value)
        problems += checked.problems
    return values, problems


def silent_pages(pages: tuple[PageText, ...], values: list[MeasuredValue],
                 problems: tuple[InputProblem, ...]) -> list[InputProblem]:
    """A problem for each page read that gave neither a value nor a problem: a page whose
    results could not be found must not pass for a page without results."""
    spoken = {f"page {e.page}" for v in values for e in v.evidence if isinstance(e, TextEvidence)}
    spoken |= {p.where for p in problems}
    return [InputProblem(f"page {page.number}", "no lab result rows were found on this page")
            for page in pages if f"page {page.number}" not in spoken]


def placed(row: LabRow, geometry: tuple[LabRow, ...]) -> LabRow:
    """A row without a position (from the model) given the position where the geometry read
    the same test on the same page; its own result must then be printed there."""
    if row.at is not None or not geometry:
        return row
    key = name_key(row.name)
    same = [g for g in geometry if g.page == row.page and name_key(g.name) == key]
    if len(same) != 1:
        return row
    return replace(row, at=same[0].at, span=same[0].span)


def _measured(checked: Verified, page: PageText, collected: datetime | None,
              taken: set[str], conventions: Conventions) -> MeasuredValue | None:
    row = checked.row
    # A collection time the model read counts only where the page prints it.
    printed = row.collected if row.collected and row.collected in page.text else ""
    effective = (parse_date(printed, conventions) if printed else None) or collected
    return to_measured_value(row, key=row_key(row, taken), evidence=checked.evidence,
                             ocr=page.origin == "ocr", effective=effective,
                             confidence=checked.confidence)
