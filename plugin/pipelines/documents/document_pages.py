"""Every page of a PDF or image attachment as text — the text layer where it is usable, OCR where
it is not — and the page images a vision-language model is shown."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

from plugin.results import InputProblem

from .image_files import image_pages
from .inputs import DocumentKind
from .ocr import OcrFailure, OcrRequest, ocr_pages
from .pages import PageText
from .pdf_text import PageImageInfo, PdfFile, has_usable_text
from .text_layer_check import CHECK_DPI, text_coverage

Progress = Callable[[float, str], None]

MIN_OCR_DPI = 200  # scans below this are rendered up to it; cleanup then sizes the text for OCR
MODEL_IMAGE_DPI = 150  # the model sees pages at 896x896: more detail than this is thrown away
OCR_BATCH = 8  # pages rendered at a time, to bound memory on long documents
# A page that is mostly one picture and has little text is a scan with a stamp or header on top.
SCAN_COVERAGE, SCAN_TEXT_LETTERS = 0.5, 200


@dataclass(frozen=True)
class PageLimits:
    ocr_dpi: int
    max_page_pixels: int
    max_pages: int
    ocr_workers: int | None = None


@dataclass(frozen=True)
class DocumentPages:
    page_count: int  # pages in the file, read or not
    pages: tuple[PageText, ...]  # the pages read, in order
    problems: tuple[InputProblem, ...]  # pages that could not be read or were left out


def read_pages(data: bytes, kind: DocumentKind, *, source: str, limits: PageLimits,
               progress: Progress | None = None) -> DocumentPages:
    report = progress or (lambda fraction, text: None)
    if kind == "pdf":
        return _read_pdf(data, source, limits, report)
    frames, count = image_pages(data, source=source, max_pages=limits.max_pages,
                                max_page_pixels=limits.max_page_pixels)
    report(0.15, f"OCR of {len(frames)} image page(s)")
    results = ocr_pages([OcrRequest(i + 1, frame) for i, frame in enumerate(frames)],
                        workers=limits.ocr_workers)
    return _collect(count, results, limits)


def model_images(data: bytes, kind: DocumentKind, *, source: str,
                 limits: PageLimits) -> list[Image.Image]:
    """The pages as RGB images for a vision-language model (up to `max_pages`)."""
    if kind != "pdf":
        frames, _ = image_pages(data, source=source, max_pages=limits.max_pages,
                                max_page_pixels=limits.max_page_pixels)
        return [frame.convert("RGB") for frame in frames]
    with PdfFile(data, source=source, max_page_pixels=limits.max_page_pixels) as pdf:
        return [pdf.render(i, MODEL_IMAGE_DPI, grayscale=False)[0]
                for i in range(min(pdf.page_count, limits.max_pages))]


def _read_pdf(data: bytes, source: str, limits: PageLimits, report: Progress) -> DocumentPages:
    results: list[PageText | OcrFailure] = []
    with PdfFile(data, source=source, max_page_pixels=limits.max_page_pixels) as pdf:
        wanted = min(pdf.page_count, limits.max_pages)
        pending: list[OcrRequest] = []
        for index in range(wanted):
            text = pdf.page_text(index)
            picture = pdf.largest_image(index)  # refuses an oversized image before decoding it
            if has_usable_text(text) and not _is_scan(text, picture):
                coverage = text_coverage(text, *pdf.render(index, CHECK_DPI))
                if not coverage.partial:
                    results.append(text)
                    continue
            image, dpi = pdf.render(index, _ocr_dpi(picture, limits.ocr_dpi))
            pending.append(OcrRequest(index + 1, image, page_scale=72 / dpi, dpi=dpi))
            if len(pending) >= OCR_BATCH:
                report(0.1 + 0.5 * index / wanted, f"OCR up to page {index + 1} of {wanted}")
                results += ocr_pages(pending, workers=limits.ocr_workers)
                pending = []
        if pending:
            report(0.35, f"OCR of {len(pending)} page(s) without a usable text layer")
            results += ocr_pages(pending, workers=limits.ocr_workers)
        count = pdf.page_count
    results.sort(key=lambda r: r.number)
    return _collect(count, results, limits)


def _is_scan(text: PageText, picture: PageImageInfo | None) -> bool:
    letters = sum(c.isalnum() for c in text.text)
    return picture is not None and picture.page_fraction >= SCAN_COVERAGE and \
        letters < SCAN_TEXT_LETTERS


def _ocr_dpi(picture: PageImageInfo | None, ocr_dpi: int) -> float:
    """A scan is rendered at its own resolution (more adds no detail, less loses it), but at
    least MIN_OCR_DPI and at most `ocr_dpi`; a page without a picture at `ocr_dpi`."""
    if picture is None or picture.page_fraction < SCAN_COVERAGE:
        return float(ocr_dpi)
    return float(min(max(picture.dpi, MIN_OCR_DPI), ocr_dpi))


def _collect(count: int, results: list[PageText | OcrFailure],
             limits: PageLimits) -> DocumentPages:
    pages = tuple(r for r in results if isinstance(r, PageText))
    problems = [InputProblem(f"page {r.number}", r.reason) for r in results
                if isinstance(r, OcrFailure)]
    if count > limits.max_pages:
        problems.append(InputProblem(
            f"pages {limits.max_pages + 1}-{count}",
            f"not read: the document has {count} pages and at most {limits.max_pages} are read"))
    return DocumentPages(count, pages, tuple(problems))
