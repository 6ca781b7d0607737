"""What the documents pipeline reads right, and how fast, on lab reports it did not draw: the
corpus of tests/corpus/labs (reportlab, Chromium and fpdf2 layouts, their scans and photos), and
the pipeline's OCR throughput against a naive Tesseract loop measured in the same run.

Part 1, corpus (one pass; the pipeline as a job runs it, layout rules, no model):
  per layout and input (text-layer PDF, 300 dpi scan, 200 dpi JPEG scan, phone photo):
  recall (truth rows written right), wrong (values written whose value, unit, range, flag or page
  differ from the page, or whose name is not a printed test), precision, "no unit" (values
  written without the unit printed beside them), "withheld" (problems the pipeline listed instead
  of writing: names, units or values it would not stand behind, unreadable pages) and pages/s;
  then totals per producer and per input kind.
Held out: the layouts of tests.corpus.labs.held_out() (a fourth producer, added after the reader
  was tuned), the same columns, reported apart from the corpus totals.
Part 2, OCR throughput (interleaved repeats, medians: the machine is shared):
  naive   pytesseract.image_to_string page by page, Tesseract's defaults (its OpenMP threads)
  ours    the whole pipeline on the same scans (image-only PDFs: decode, clean-up, OCR, rows)

Part 3 (only with --line-heights-ab 28,24,20): the pipeline on part 2's scans with the clean-up's
  target text-line height (scan_cleanup.TARGET_LINE_HEIGHT) set to each value in turn, interleaved,
  medians, ratio vs the first value, and the rows each reads right on those scans. --line-height PX
  sets that target for the whole run (parts 1 and 2), to score a candidate on the full corpus.

Run: .venv/bin/python bench/documents.py [--repeats 3] [--layouts rl-cells-cbc,...] [--no-scans]
     [--line-height 28] [--line-heights-ab 28,24,20]
"""

from __future__ import annotations

import argparse
import base64
import io
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pypdfium2
import pytesseract
from PIL import Image

# The corpus lives under tests/: the repository root must be importable when run as a script.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fhir_mappers.interpretation import measured_interpretation  # noqa: E402
from fhir_mappers.loinc import lookup_loinc  # noqa: E402
from fhir_mappers.units import normalise_unit  # noqa: E402
from plugin.fhir import FhirClient  # noqa: E402
from plugin.jobs import Job, JobContext, JobState  # noqa: E402
from plugin.pipelines.documents import (  # noqa: E402
    PIPELINE,
    DocumentsOptions,
    DocumentsPipeline,
    scan_cleanup,
)
from plugin.results import MeasuredValue, PipelineResult, TextEvidence  # noqa: E402
from tests.corpus.labs import (  # noqa: E402
    LabLayout,
    ReadValue,
    Score,
    held_out,
    layouts,
    scans,
    score,
)

NOW = datetime(2026, 12, 1, tzinfo=UTC)
PIPELINE_UNDER_TEST = DocumentsPipeline(DocumentsOptions(engine="layout"))


def _context(data: bytes, content_type: str, name: str) -> JobContext:
    resource_id = name.replace("/", "-")
    resource: dict[str, object] = {"resourceType": "DocumentReference", "id": resource_id,
                "meta": {"versionId": "1"}, "status": "current",
                "content": [{"attachment": {"contentType": content_type,
                                            "data": base64.b64encode(data).decode()}}]}
    job = Job(id=1, pipeline=PIPELINE, source_type="DocumentReference", source_id=resource_id,
              source_version="1", subject="Patient/bench", fhir_base_url="http://fhir.invalid/fhir",
              state=JobState.RUNNING, progress=0.0, progress_text="", attempts=1,
              next_attempt_at=NOW, error="", summary={}, created_at=NOW, updated_at=NOW)
    # The attachment is inline, so the client is never called.
    return JobContext(job=job, client=FhirClient("http://fhir.invalid/fhir"), source=resource,
                      report_progress=lambda fraction, text: None)


def read_value(value: MeasuredValue) -> ReadValue:
    """A MeasuredValue as the scorer sees it; the LOINC code, UCUM unit and interpretation as the
    mappers would write them (a flag the report did not print is computed from the range)."""
    pages = [e.page for e in value.evidence if isinstance(e, TextEvidence)]
    entry = value.code.code if value.code else None
    if entry is None:
        found = lookup_loinc(value.name, value.unit, specimen=value.specimen,
                             numeric=isinstance(value.value, Decimal))
        entry = found.code if found else None
    reference = value.reference_range
    flags = measured_interpretation(value)
    return ReadValue(value.name, value.value, value.unit, normalise_unit(value.unit).ucum if
                     value.unit else None, reference.low if reference else None,
                     reference.high if reference else None, flags[0] if flags else None,
                     pages[0] if pages else None, entry)


@dataclass(frozen=True)
class Run:
    layout: LabLayout
    kind: str  # "text" or the scan variant's suffix
    pages: int
    seconds: float
    score: Score
    problems: int
    error: str = ""


def run(layout: LabLayout, kind: str, data: bytes, content_type: str, pages: int) -> Run:
    start = time.perf_counter()
    try:
        result: PipelineResult = PIPELINE_UNDER_TEST(_context(data, content_type,
                                                              f"{layout.name}/{kind}"))
    except Exception as error:  # noqa: BLE001 - the bench reports a failed input and goes on
        return Run(layout, kind, pages, time.perf_counter() - start,
                   score(layout.truth, []), 0, f"{type(error).__name__}: {error}")
    seconds = time.perf_counter() - start
    written = [read_value(i) for i in result.items if isinstance(i, MeasuredValue)]
    return Run(layout, kind, pages, seconds, score(layout.truth, written), len(result.problems))


def _inputs(layout: LabLayout, with_scans: bool) -> list[tuple[str, bytes, str]]:
    found = [("text", layout.render(), "application/pdf")]
    if with_scans:
        found += [(s.name.rsplit("/", 1)[1], s.data, s.content_type) for s in scans(layout)]
    return found


def _row(label: str, runs: list[Run]) -> str:
    truth = sum(r.score.truth for r in runs)
    right = sum(len(r.score.correct) for r in runs)
    written = sum(r.score.written for r in runs)
    wrong = sum(len(r.score.wrong) for r in runs)
    withheld = sum(r.score.units_withheld for r in runs)
    problems = sum(r.problems for r in runs)
    pages = sum(r.pages for r in runs)
    seconds = sum(r.seconds for r in runs)
    precision = (written - wrong) / written if written else 1.0
    failed = sum(1 for r in runs if r.error)
    return (f"{label:<52} {pages:>5} {right:>4}/{truth:<4} {right / truth:>6.2f} {written:>7} "
            f"{wrong:>5} {precision:>9.2f} {withheld:>8} {problems:>8} {pages / seconds:>7.2f}"
            + (f"  ({failed} failed)" if failed else ""))


HEADER = (f"{'layout / input':<52} {'pages':>5} {'right':>9} {'recall':>6} {'written':>7} "
          f"{'wrong':>5} {'precision':>9} {'no unit':>8} {'withheld':>8} {'pages/s':>7}")


def corpus_table(selected: list[LabLayout], with_scans: bool) -> list[Run]:
    runs: list[Run] = []
    print("Part 1: the lab corpus through the pipeline (layout rules)\n")
    print(HEADER)
    for layout in selected:
        for kind, data, content_type in _inputs(layout, with_scans):
            done = run(layout, kind, data, content_type, layout.pages)
            runs.append(done)
            print(_row(f"{layout.name} [{layout.producer}] {kind}", [done]), flush=True)
    print("\nTotals")
    print(HEADER)
    by_producer: dict[str, list[Run]] = defaultdict(list)
    by_kind: dict[str, list[Run]] = defaultdict(list)
    for done in runs:
        by_producer[f"{done.layout.producer}, {'text layer' if done.kind == 'text' else 'scans'}"
                    ].append(done)
        by_kind[done.kind].append(done)
    for label, group in (*sorted(by_producer.items()), *sorted(by_kind.items())):
        print(_row(label, group))
    print(_row("all text-layer PDFs", [r for r in runs if r.kind == "text"]))
    if with_scans:
        print(_row("all scans and photos", [r for r in runs if r.kind != "text"]))
    wrong = [(r, w) for r in runs for w in (*r.score.wrong, *r.score.codes_wrong)]
    if wrong:
        print(f"\nWrong values written ({len(wrong)}):")
        for done, item in wrong:
            print(f"  {done.layout.name} {done.kind}: {item.reason}")
    errors = [r for r in runs if r.error]
    for done in errors:
        print(f"  FAILED {done.layout.name} {done.kind}: {done.error}")
    return runs


def held_out_table(with_scans: bool) -> list[Run]:
    """The layouts by a producer the reader was not developed on, reported apart."""
    runs: list[Run] = []
    print("\nHeld out (a producer the reader was not developed or tuned on)\n")
    print(HEADER)
    for layout in held_out():
        for kind, data, content_type in _inputs(layout, with_scans):
            done = run(layout, kind, data, content_type, layout.pages)
            runs.append(done)
            print(_row(f"{layout.name} [{layout.producer}] {kind}", [done]), flush=True)
    print(_row("all held-out inputs", runs))
    for done, item in [(r, w) for r in runs for w in (*r.score.wrong, *r.score.codes_wrong)]:
        print(f"  WRONG {done.layout.name} {done.kind}: {item.reason}")
    for done in runs:
        for missed in done.score.missed:
            print(f"  missed {done.layout.name} {done.kind}: {missed.name} {missed.value_text}")
    return runs


def line_height_ab(selected: list[LabLayout], heights: list[float], repeats: int) -> None:
    """The pipeline's time and rows read right on the 300 dpi scans with the clean-up's target
    line height set to each of `heights` in turn (interleaved; the first is the baseline)."""
    inputs = [(layout, s.data, s.content_type) for layout in selected for s in scans(layout)
              if s.name.endswith("/scan-300dpi")]
    pages = sum(layout.pages for layout, _, _ in inputs)
    kept = scan_cleanup.TARGET_LINE_HEIGHT
    times: dict[float, list[float]] = {height: [] for height in heights}
    read: dict[float, list[Run]] = {}
    try:
        for _ in range(repeats):
            for height in heights:
                scan_cleanup.TARGET_LINE_HEIGHT = height
                start = time.perf_counter()
                read[height] = [run(layout, "scan-300dpi", data, content_type, layout.pages)
                                for layout, data, content_type in inputs]
                times[height].append(time.perf_counter() - start)
    finally:
        scan_cleanup.TARGET_LINE_HEIGHT = kept
    print(f"\nPart 3: target text-line height, {pages} scanned pages at 300 dpi "
          f"({len(inputs)} layouts), medians of {repeats} interleaved repeats")
    print(f"{'line px':>7} {'median s':>9} {'pages/s':>8} {'ratio':>6} {'right':>9} {'wrong':>5}")
    base = statistics.median(times[heights[0]])
    for height in heights:
        median = statistics.median(times[height])
        right = sum(len(r.score.correct) for r in read[height])
        truth = sum(r.score.truth for r in read[height])
        wrong = sum(len(r.score.wrong) for r in read[height])
        print(f"{height:>7.1f} {median:>9.2f} {pages / median:>8.2f} {base / median:>5.2f}x "
              f"{right:>4}/{truth:<4} {wrong:>5}")


def _page_images(pdf: bytes, dpi: int) -> list[Image.Image]:
    document = pypdfium2.PdfDocument(pdf)
    try:
        return [document[i].render(scale=dpi / 72).to_pil() for i in range(len(document))]
    finally:
        document.close()


def throughput(selected: list[LabLayout], repeats: int) -> None:
    """The pipeline's pages/s on the 300 dpi scans vs a naive loop over the same page images."""
    inputs: list[tuple[LabLayout, bytes, str]] = []
    images: list[Image.Image] = []
    for layout in selected:
        scan = next(s for s in scans(layout) if s.name.endswith("/scan-300dpi"))
        inputs.append((layout, scan.data, scan.content_type))
        if scan.content_type == "application/pdf":
            images += _page_images(scan.data, scan.dpi)
        else:
            images.append(Image.open(io.BytesIO(scan.data)))
    pages = len(images)
    times: dict[str, list[float]] = {"naive": [], "ours": []}
    for _ in range(repeats):
        start = time.perf_counter()
        for image in images:
            pytesseract.image_to_string(image)
        times["naive"].append(time.perf_counter() - start)
        start = time.perf_counter()
        for layout, data, content_type in inputs:
            PIPELINE_UNDER_TEST(_context(data, content_type, f"{layout.name}/throughput"))
        times["ours"].append(time.perf_counter() - start)
    print(f"\nPart 2: OCR throughput, {pages} scanned pages at 300 dpi "
          f"({len(inputs)} layouts), medians of {repeats} interleaved repeats")
    print(f"{'variant':<8} {'median s':>9} {'pages/s':>8}")
    for name, measured in times.items():
        median = statistics.median(measured)
        print(f"{name:<8} {median:>9.2f} {pages / median:>8.2f}")
    ratio = statistics.median(times["naive"]) / statistics.median(times["ours"])
    print(f"\nOCR throughput, ours / naive: {ratio:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="throughput repeats (part 2)")
    parser.add_argument("--layouts", default="", help="comma-separated layout names (default all)")
    parser.add_argument("--no-scans", action="store_true", help="text-layer PDFs only")
    parser.add_argument("--throughput-layouts", type=int, default=6,
                        help="how many layouts' 300 dpi scans part 2 reads")
    parser.add_argument("--line-height", type=float, default=None,
                        help="the clean-up's target text-line height in px for the whole run")
    parser.add_argument("--line-heights-ab", default="",
                        help="comma-separated target line heights compared in part 3")
    args = parser.parse_args()
    if args.line_height is not None:
        scan_cleanup.TARGET_LINE_HEIGHT = args.line_height
    wanted = {n for n in args.layouts.split(",") if n}
    selected = [lay for lay in layouts() if not wanted or lay.name in wanted]
    print(f"tesseract {pytesseract.get_tesseract_version()}, {len(selected)} layouts\n")
    corpus_table(selected, not args.no_scans)
    if not wanted:
        held_out_table(not args.no_scans)
    if not args.no_scans and args.repeats > 0:
        # One layout per producer and page count first, so a short run still mixes them.
        throughput(selected[::3][:args.throughput_layouts], args.repeats)
    if args.line_heights_ab and args.repeats > 0:
        heights = [float(v) for v in args.line_heights_ab.split(",") if v]
        line_height_ab(selected[::3][:args.throughput_layouts], heights, args.repeats)


if __name__ == "__main__":
    main()
