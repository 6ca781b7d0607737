"""Document reading speed (and what it buys) on this machine: text-layer PDFs, and OCR of the
seeded scan against a naive Tesseract loop, measured in the same run.

Variants (the same page images for every OCR variant; rendering is not timed):
  text layer   pypdf text + pdfium word boxes of the 2-page text PDF
  naive        pytesseract.image_to_string one page at a time, Tesseract's defaults (its OpenMP
               threads, automatic page segmentation), no image cleanup
  naive-1t     the same with OMP_THREAD_LIMIT=1
  ours-1       the pipeline's OCR (sheet/deskew/size/binarise cleanup, --psm 4, word boxes),
               OMP_THREAD_LIMIT=1, one page at a time
  ours         the same, pages as parallel Tesseract processes (one per CPU)
Each repeat runs every variant once, interleaved, and medians are reported: the machine is
shared. "values" counts the report's lab values the layout rules verify from each variant's
text (the scan is repeated to make the document longer, so values are counted per copy).

Run: .venv/bin/python bench/documents.py [--copies 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time
from collections.abc import Callable
from decimal import Decimal

import pypdf
import pytesseract
from PIL import Image

from fhir_mappers.units import normalise_unit
from plugin.pipelines.documents import layout_extractor
from plugin.pipelines.documents.document_pages import PageLimits, read_pages
from plugin.pipelines.documents.ocr import OcrRequest, ocr_pages, tesseract_version
from plugin.pipelines.documents.pages import PageText
from plugin.pipelines.documents.pdf_text import PdfFile
from plugin.pipelines.documents.pipeline import verified_values
from plugin.sandbox.synthetic import DEMO_LAB_REPORT, scanned_pdf, text_pdf

LIMITS = PageLimits(ocr_dpi=300, max_page_pixels=60_000_000, max_pages=200)


def repeated(pdf: bytes, copies: int) -> bytes:
    writer = pypdf.PdfWriter()
    for _ in range(copies):
        writer.append(io.BytesIO(pdf))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def correct_values(pages: list[PageText], copies: int) -> float:
    """Lab values (of the report's 32) read right, per copy of the report."""
    reading = layout_extractor.read_lab_rows(pages)
    values, _ = verified_values(reading.rows, tuple(pages), reading.collected)
    right = 0
    for line in DEMO_LAB_REPORT.lines:
        right += sum(1 for v in values if v.name.lower() == line.name.lower()
                     and v.value == Decimal(line.value)
                     and normalise_unit(v.unit).ucum == normalise_unit(line.unit).ucum)
    return right / copies


def with_thread_limit(limit: str | None, run: Callable[[], list[PageText]]) -> list[PageText]:
    # pytesseract starts tesseract with this process's environment.
    if limit is None:
        os.environ.pop("OMP_THREAD_LIMIT", None)
    else:
        os.environ["OMP_THREAD_LIMIT"] = limit
    return run()


def naive(images: list[tuple[Image.Image, float]]) -> list[PageText]:
    return [PageText(i + 1, pytesseract.image_to_string(image), "ocr")
            for i, (image, _) in enumerate(images)]


def ours(images: list[tuple[Image.Image, float]], workers: int) -> list[PageText]:
    requests = [OcrRequest(i + 1, image, page_scale=72 / dpi, dpi=dpi)
                for i, (image, dpi) in enumerate(images)]
    return [r for r in ocr_pages(requests, workers=workers) if isinstance(r, PageText)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=2, help="copies of the 2-page scan")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cpus = os.cpu_count() or 1

    text = text_pdf(DEMO_LAB_REPORT)
    scan = repeated(scanned_pdf(DEMO_LAB_REPORT, seed=7), args.copies)
    with PdfFile(scan, source="bench scan", max_page_pixels=LIMITS.max_page_pixels) as pdf:
        images = [pdf.render(i, 200) for i in range(pdf.page_count)]  # the scan's own 200 dpi

    def text_layer() -> list[PageText]:
        return list(read_pages(text, "pdf", source="bench text", limits=LIMITS).pages)

    variants: dict[str, tuple[int, Callable[[], list[PageText]]]] = {
        "text layer": (2, text_layer),
        "naive": (len(images), lambda: with_thread_limit(None, lambda: naive(images))),
        "naive-1t": (len(images), lambda: with_thread_limit("1", lambda: naive(images))),
        "ours-1": (len(images), lambda: with_thread_limit("1", lambda: ours(images, 1))),
        "ours": (len(images), lambda: with_thread_limit("1", lambda: ours(images, cpus))),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    accuracy: dict[str, float] = {}
    for _ in range(args.repeats):
        for name, (_, run) in variants.items():
            start = time.perf_counter()
            pages = run()
            times[name].append(time.perf_counter() - start)
            copies = 1 if name == "text layer" else args.copies
            accuracy[name] = correct_values(pages, copies)

    print(f"tesseract {tesseract_version()}, {cpus} CPUs, {len(images)} scanned pages at 200 dpi "
          f"({args.copies} copies of the seeded scan), medians of {args.repeats} repeats\n")
    print(f"{'variant':<12} {'pages':>5} {'median s':>9} {'pages/s':>8} {'values/32':>9}")
    for name, (pages, _) in variants.items():
        median = statistics.median(times[name])
        print(f"{name:<12} {pages:>5} {median:>9.2f} {pages / median:>8.2f} "
              f"{accuracy[name]:>9.1f}")
    ratio = statistics.median(times["naive"]) / statistics.median(times["ours"])
    print(f"\nOCR throughput, ours / naive: {ratio:.1f}x")


if __name__ == "__main__":
    main()
