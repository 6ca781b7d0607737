"""The documents pipeline: one DocumentReference or DiagnosticReport attachment (PDF, scan,
photo) -> verified lab values, grouped by panel, with a summary for the clinician.

Steps: pick the attachment and check what its bytes are; read every page as text (text layer or
OCR); extract rows with MedGemma when its weights are here (else with the layout rules); keep only
rows the page text shows (grounding); group by panel; summarise. Bad input raises InputError, so
the job fails with its reason and nothing is written for it.
"""

from __future__ import annotations

import hashlib
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from plugin.budget import DEFAULT_JOB_MEMORY_BYTES, MemoryBudget
from plugin.engines.medgemma import DEFAULT_MODEL, MedGemmaEngine
from plugin.engines.vision_language import VisionLanguageEngine
from plugin.errors import ConfigError
from plugin.fhir import resolve_attachment
from plugin.jobs import JobContext
from plugin.results import InputProblem, MeasuredValue, ModelInfo, PipelineResult, SourceRef

from . import layout_extractor
from .document_pages import DocumentPages, PageLimits, model_images, read_pages
from .grounding import Verified, ground
from .inputs import DocumentKind, select_attachment, sniff_kind
from .lab_extraction import MAX_NEW_TOKENS, PROMPT_VERSION, extract_page
from .lab_rows import LabRow, implausible, parse_collected, row_key, to_measured_value
from .pages import PageText
from .panels import report_groups
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
        values, checked = verified_values(extraction.rows, document.pages, header.collected)
        problems = (*document.problems, *extraction.problems, *checked)
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
                                     max_new_tokens=self.options.max_new_tokens)
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
                     collected: datetime | None) -> tuple[list[MeasuredValue], list[InputProblem]]:
    """Rows the page text shows, as MeasuredValues; the others as "unverified" problems."""
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
        checked = ground(row, page)
        if isinstance(checked, InputProblem):
            problems.append(checked)
            continue
        value = _measured(checked, page, collected, taken)
        if value is None:
            problems.append(InputProblem(f"page {row.page}", f"unverified: {row.name} = "
                                                             f"{row.result} (not a result)"))
            continue
        values.append(value)
        problems += checked.problems
        doubt = implausible(value, checked.row.flag) if page.origin == "ocr" else None
        if doubt is not None:
            problems.append(InputProblem(f"page {row.page}", doubt))
    return values, problems


def _measured(checked: Verified, page: PageText, collected: datetime | None,
              taken: set[str]) -> MeasuredValue | None:
    row = checked.row
    # A collection time the model read counts only where the page prints it.
    printed = row.collected if row.collected and row.collected in page.text else ""
    effective = parse_collected(printed) or collected
    return to_measured_value(row, key=row_key(row, taken), evidence=checked.evidence,
                             ocr=page.origin == "ocr", effective=effective,
                             confidence=checked.confidence)
