"""The structured-results DocumentReference: the degraded write path that carries every item of
a result when Observations cannot be written — a readable text summary and all items (values,
units, ranges, evidence, and the codes chartlight would have written) as JSON.
"""

from __future__ import annotations

import json
import math
from dataclasses import fields, is_dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from plugin.results import Finding, MeasuredValue, Narrative, PipelineResult, SourceRef

from .datatypes import JsonDict, attachment, fhir_datetime
from .document_reference import IMAGING_REPORT, LAB_REPORT, NOTE, build_document, document_type
from .interpretation import DISPLAYS, finding_interpretation, measured_interpretation
from .labels import ai_meta, with_test_marker
from .observation import is_numeric_result, lab_code
from .units import normalise_unit

STRUCTURED_RESULTS_FORMAT = "chartlight-structured-results/1"


def to_structured_results_document(
    result: PipelineResult,
    *,
    subject: str,
    identifier: JsonDict,
    date: datetime | None,
    doc_status: str = "preliminary",
    device: str | None = None,
) -> JsonDict:
    """One DocumentReference with a readable summary of every item (text/plain) and all of them,
    with their evidence and the codes chartlight would have written, as JSON."""
    summary = structured_summary_text(result).encode("utf-8")
    data = json.dumps(structured_results_json(result), ensure_ascii=False, sort_keys=True,
                      indent=2).encode("utf-8")
    values = sum(isinstance(i, MeasuredValue) for i in result.items)
    findings = sum(isinstance(i, Finding) for i in result.items)
    loinc_code, loinc_display = _structured_type(result)
    return build_document(
        meta=ai_meta(result.model, dictated=any(
            isinstance(i, Narrative) and i.dictated for i in result.items)),
        extensions=[],
        identifier=identifier,
        doc_status=doc_status,
        type_=document_type(loinc_code, loinc_display, "structured-results"),
        subject=subject,
        date=date,
        description=with_test_marker(
            result.model, f"AI-extracted results: {_count(values, 'value')}, "
                          f"{_count(findings, 'finding')}"),
        content=[
            {"attachment": attachment(summary, "text/plain; charset=utf-8",
                                      title="Structured results (summary)")},
            {"attachment": attachment(data, "application/json",
                                      title="Structured results (JSON)")},
        ],
        sources=[result.source, *result.other_sources],
        device=device,
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _structured_type(result: PipelineResult) -> tuple[str, str]:
    if any(isinstance(i, MeasuredValue) and i.category == "laboratory" for i in result.items):
        return LAB_REPORT
    if any(isinstance(i, Finding) and i.category == "imaging" for i in result.items):
        return IMAGING_REPORT
    return NOTE


# ---- the attachments ---------------------------------------------------------------------------


def structured_results_json(result: PipelineResult) -> JsonDict:
    """Every item of the result as plain JSON (decimals as exact strings), each value with the
    FHIR code, UCUM unit and interpretation chartlight would have written as an Observation."""
    items: list[JsonDict] = []
    for item in result.items:
        entry = _plain(item)
        if isinstance(item, MeasuredValue):
            entry["fhir"] = {"code": lab_code(item, numeric=is_numeric_result(item.value)),
                             "ucum": normalise_unit(item.unit).ucum,
                             "interpretation": measured_interpretation(item)}
        elif isinstance(item, Finding):
            entry["fhir"] = {"interpretation": finding_interpretation(item)}
        items.append(entry)
    return {
        "format": STRUCTURED_RESULTS_FORMAT,
        "pipeline": result.pipeline,
        "pipeline_version": result.pipeline_version,
        "source": _source(result.source),
        "other_sources": [_source(s) for s in result.other_sources],
        "model": _plain(result.model),
        "items": items,
        "reports": [_plain(r) for r in result.reports],
        "problems": [_plain(p) for p in result.problems],
    }


def structured_summary_text(result: PipelineResult) -> str:
    """A person-readable account of the result, one line per item."""
    model = result.model
    lines = [with_test_marker(model, "Results extracted by AI from the source below."),
             f"Source: {result.source.versioned_reference}",
             f"Model: {model.display or model.name} ({model.version})",
             f"Pipeline: {result.pipeline} {result.pipeline_version}", ""]
    values = [i for i in result.items if isinstance(i, MeasuredValue)]
    findings = [i for i in result.items if isinstance(i, Finding)]
    narratives = [i for i in result.items if isinstance(i, Narrative)]
    if values:
        lines.append("Values:")
        lines += [f"- {_value_line(v)}" for v in values]
    if findings:
        lines.append("Findings:")
        lines += [f"- {_finding_line(f)}" for f in findings]
    if narratives:
        lines.append("Narratives:")
        lines += [f"- {n.title or n.key} ({n.kind})" for n in narratives]
    if result.problems:
        lines.append("Not used:")
        lines += [f"- {p.where}: {p.reason}" for p in result.problems]
    return "\n".join(lines).rstrip() + "\n"


def _value_line(item: MeasuredValue) -> str:
    line = f"{item.name}: {item.value}"
    if item.unit.strip():
        line += f" {normalise_unit(item.unit).display}"
    if item.reference_range is not None:
        rr = item.reference_range
        printed = rr.text.strip() or " - ".join(
            str(b) if b is not None else "" for b in (rr.low, rr.high))
        line += f" (reference {printed})"
    flags = measured_interpretation(item)
    if flags:
        line += f" [{', '.join(DISPLAYS[f] for f in flags)}]"
    return line


def _finding_line(item: Finding) -> str:
    details = [d for d in (item.body_site.strip(), item.change and f"{item.change} since prior")
               if d]
    line = item.text.strip() + (f" ({'; '.join(details)})" if details else "")
    flags = finding_interpretation(item)
    if flags:
        line += f" [{', '.join(DISPLAYS[f] for f in flags)}]"
    return line


def _source(source: SourceRef) -> JsonDict:
    return {**_plain(source), "reference": source.versioned_reference}


def _plain(value: Any) -> Any:
    """Results dataclasses as JSON-ready values, every field kept, with a `type` for each
    dataclass so readers can tell evidence kinds and items apart."""
    if is_dataclass(value) and not isinstance(value, type):
        plain = {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
        return {"type": type(value).__name__, **plain}
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return fhir_datetime(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN or infinity
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value
