"""The summary a clinician reads first (markdown): what was read and how, what was extracted,
and what could not be verified or read. Deterministic, so a re-run changes nothing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fhir_mappers.interpretation import measured_interpretation
from plugin.results import InputProblem, MeasuredValue, ModelInfo, Narrative, TextEvidence

from .pages import PageText
from .precision_gate import WITHHELD

SUMMARY_KEY = "summary"
LOW_CONFIDENCE = 0.8  # OCR confidence below which the summary asks for a look at the page
_KIND_NAMES = {"pdf": "PDF", "png": "PNG image", "jpeg": "JPEG image", "tiff": "TIFF image"}


@dataclass(frozen=True)
class DocumentFacts:
    label: str  # e.g. "DocumentReference/12 content[0]"
    kind: str
    declared_type: str
    size: int
    sha256: str
    page_count: int  # pages in the file, read or not


def summary_narrative(facts: DocumentFacts, pages: Sequence[PageText], model: ModelInfo,
                      engine_note: str, values: Sequence[MeasuredValue],
                      problems: Sequence[InputProblem]) -> Narrative:
    flagged = [v for v in values if set(measured_interpretation(v)) - {"N"}]
    panels = len({v.panel for v in values})
    unverified = sum(p.reason.startswith("unverified") for p in problems)
    withheld = [p for p in problems if p.reason.startswith(WITHHELD)]
    others = len(problems) - unverified - len(withheld)
    lines = [
        f"### Lab values read from {facts.label}",
        "",
        f"- **Document:** {_document(facts)}",
        f"- **Read:** {_reading(pages, facts.page_count)}",
        f"- **Extracted by:** {model.name} {model.version}"
        + (f" ({engine_note})" if engine_note else ""),
        f"- **Result:** {len(values)} value{_s(len(values))} in {panels} panel{_s(panels)}, "
        f"{len(flagged)} outside the reference range; {unverified} not verified against the "
        f"page, {len(withheld)} read but not recognised (withheld), {others} other "
        f"problem{_s(others)}.",
    ]
    if values:
        lines += ["", "| Panel | Test | Result | Unit | Reference range | Flag | Page | Note |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [_row(v) for v in values]
    if withheld:
        lines += ["", "#### Read but not recognised (not written)", ""]
        lines += [f"- {p.where}: {_cell(p.reason[len(WITHHELD) + 2:])}" for p in withheld]
    rest = [p for p in problems if p not in withheld]
    if rest:
        lines += ["", "#### Not verified, not read, or to check", ""]
        lines += [f"- {p.where}: {_cell(p.reason)}" for p in rest]
    title = f"Lab report: {len(values)} value{_s(len(values))} extracted"
    return Narrative(key=SUMMARY_KEY, kind="summary", title=title, text="\n".join(lines) + "\n",
                     media_type="text/markdown")


def _document(facts: DocumentFacts) -> str:
    kind = _KIND_NAMES.get(facts.kind, facts.kind)
    declared = f", declared {facts.declared_type}" if facts.declared_type else ""
    pages = f"{facts.page_count} page{_s(facts.page_count)}"
    return f"{kind}, {pages}, {facts.size} bytes{declared}; SHA-256 `{facts.sha256[:16]}…`"


def _reading(pages: Sequence[PageText], page_count: int) -> str:
    if not pages:
        return f"none of the {page_count} pages could be read"
    return "; ".join(f"page {p.number}: {p.note or p.origin}" for p in pages)


def _row(value: MeasuredValue) -> str:
    flag = "".join(code for code in measured_interpretation(value) if code != "N")
    computed = " (from the range)" if flag and value.interpretation is None else ""
    page = next((str(e.page) for e in value.evidence if isinstance(e, TextEvidence)), "")
    note = (f"OCR confidence {value.confidence:.2f}: check against the page"
            if value.confidence is not None and value.confidence < LOW_CONFIDENCE else "")
    cells = (value.panel, value.name, str(value.value), value.unit,
             value.reference_range.text if value.reference_range else "", flag + computed, page,
             note)
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _s(count: int) -> str:
    return "" if count == 1 else "s"
