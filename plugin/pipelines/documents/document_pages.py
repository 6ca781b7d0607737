"""Every page of a PDF or image attachment as text — the text layer where it is usable, OCR where
it is not — and the page images a vision-language model is shown.

Page images are charged to the job's memory budget while they are held and released once OCR or
the model is done with them, so the total a document holds is bounded, not only each page.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass

from PIL import Image

from plugin.budget import MemoryBudget
from plugin.results import InputProblem

from .image_files import image_bytes, image_pages
from .inputs import DocumentKind
from .ocr import OcrFailure, OcrRequest, ocr_pages
from .pages import PageText
from .pdf_text import PageImageInfo, PdfFile, has_usable_text
from .text_layer_check import CHECK_DPI, text_coverage

Progress = Callable[[float, str], None]

MIN_OCR_DPI = 200  # scans below this are rendered up to it; cleanup then sizes the text for OCR
MODEL_IMAGE_DPI = 150  # the model sees pages at 896x896: more detail than this is thrown away
MODEL_IMAGE_PIXELS = 8_000_000  # so a large page is drawn for it at less (a tabloid page: 4 Mpx)
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
               progress: Progress | None = None,
               budget: MemoryBudget | None = None) -> DocumentPages:
    report = progress or (lambda fraction, text: None)
    budget = budget if budget is not None else MemoryBudget(source)
    if kind == "pdf":
        return _read_pdf(data, source, limits, report, budget)
    frames, count = image_pages(data, source=source, max_pages=limits.max_pages,
                                max_page_pixels=limits.max_page_pixels, budget=budget)
    try:
        report(0.15, f"OCR of {len(frames)} image page(s)")
        results = ocr_pages([OcrRequest(i + 1, frame) for i, frame in enumerate(frames)],
                            workers=limits.ocr_workers, budget=budget)
    finally:
        budget.release(sum(image_bytes(frame) for frame in frames))
    return _collect(count, results, limits)


def model_images(data: bytes, kind: DocumentKind, *, source: str, limits: PageLimits,
                 budget: MemoryBudget | None = None) -> Generator[Image.Image, None, None]:
    """The pages (up to `max_pages`) as RGB images for a vision-language model, one at a time:
    each is released from the budget when the next is asked for."""
    budget = budget if budget is not None else MemoryBudget(source)
    if kind != "pdf":
        frames, _ = image_pages(data, source=source, max_pages=limits.max_pages,
                                max_page_pixels=limits.max_page_pixels, budget=budget)
        pending = deque(frames)
        del frames
        try:
            while pending:
                frame = pending.popleft()
                budget.charge(frame.width * frame.height * 3, "a page in colour for the model")
                image = frame.convert("RGB")
                budget.release(image_bytes(frame))
                del frame
                try:
                    yield image
                finally:
                    budget.release(image_bytes(image))
        finally:
            budget.release(sum(image_bytes(frame) for frame in pending))
        return
    with PdfFile(data, source=source, max_page_pixels=limits.max_page_pixels,
                 budget=budget) as pdf:
        for index in range(min(pdf.page_count, limits.max_pages)):
            image, _ = pdf.render(index, MODEL_IMAGE_DPI, grayscale=False,
                                  max_pixels=MODEL_IMAGE_PIXELS)
            try:
                yield image
            finally:
                budget.release(image_bytes(image))


def _read_pdf(data: bytes, source: str, limits: PageLimits, report: Progress,
              budget: MemoryBudget) -> DocumentPages:
    results: list[PageText | OcrFailure] = []
    with PdfFile(data, source=source, max_page_pixels=limits.max_page_pixels,
                 budget=budget) as pdf:
        wanted = min(pdf.page_count, limits.max_pages)
        pending: list[OcrRequest] = []

        def read_pending() -> None:
            try:
                results.extend(ocr_pages(pending, workers=limits.ocr_workers, budget=budget))
            finally:
                budget.release(sum(image_bytes(request.image) for request in pending))
                pending.clear()

        try:
            for index in range(wanted):
                text = pdf.page_text(index)
                picture = pdf.largest_image(index)  # refuses an oversized image before decoding
                if has_usable_text(text) and not _is_scan(text, picture) \
                        and not _partial(pdf, index, text, budget):
                    results.append(text)
                    continue
                image, dpi = pdf.render(index, _ocr_dpi(picture, limits.ocr_dpi))
                pending.append(OcrRequest(index + 1, image, page_scale=72 / dpi, dpi=dpi))
                if len(pending) >= OCR_BATCH:
                    report(0.1 + 0.5 * index / wanted, f"OCR up to page {index + 1} of {wanted}")
                    read_pending()
            if pending:
                report(0.35, f"OCR of {len(pending)} page(s) without a usable text layer")
                read_pending()
        finally:
            budget.release(sum(image_bytes(request.image) for request in pending))
        count = pdf.page_count
    results.sort(key=lambda r: r.number)
    return _collect(count, results, limits)


def _partial(pdf: PdfFile, index: int, text: PageText, budget: MemoryBudget) -> bool:
    """Whether ink on the page lies outside every word of its text layer (a page partly text,
    partly a picture of text): measured on a small rendering, released at once."""
    check, dpi = pdf.render(index, CHECK_DPI)
    try:
        return text_coverage(text, check, dpi).partial
    finally:
        budget.release(image_bytes(check))


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
