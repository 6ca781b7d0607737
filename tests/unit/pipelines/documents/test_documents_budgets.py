"""The documents pipeline's budgets: text layers read in batches that release the pdfium lock, page
images and cleanup copies charged to the job's memory budget before they are decoded (and
released after), inline-image bombs refused before pdfium loads the page, no deskew of a page
without ink, and absurd page shapes refused with their reason."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from PIL import Image

from plugin.budget import MIB, BudgetExceeded, MemoryBudget
from plugin.errors import InputError
from plugin.pipelines.documents import pdf_text
from plugin.pipelines.documents.document_pages import PageLimits, model_images, read_pages
from plugin.pipelines.documents.image_files import image_pages
from plugin.pipelines.documents.pdf_text import PdfFile
from plugin.pipelines.documents.scan_cleanup import clean_page, measure_text
from tests.corpus.hostile import images as hostile_images
from tests.corpus.hostile import pdf as hostile_pdf
from tests.support.lab_documents import Seeded

LIMITS = PageLimits(ocr_dpi=300, max_page_pixels=60_000_000, max_pages=50)


class CountingLock:
    """A lock that counts how often it is taken and whether anyone waits on it too long."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.taken = 0

    def acquire(self) -> bool:
        self.taken += 1
        return self.lock.acquire()

    def release(self) -> None:
        self.lock.release()

    def locked(self) -> bool:
        return self.lock.locked()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def test_a_word_bomb_is_read_in_batches_that_let_other_pdf_jobs_in(monkeypatch: pytest.MonkeyPatch) -> None:
    lock = CountingLock()
    monkeypatch.setattr(pdf_text, "PDFIUM_LOCK", lock)
    with PdfFile(hostile_pdf.word_bomb(8000), source="x", max_page_pixels=10**6) as pdf:
        page = pdf.page_text(0)
    assert len(page.words) == 8000 and all(word.box is not None for word in page.words)
    # ~64,000 characters: one hold of the lock per 2,000 of them, never one hold for the page.
    assert lock.taken >= 64_000 // pdf_text.CHAR_BATCH and not lock.locked()


@pytest.mark.parametrize("make", [hostile_pdf.inline_image, hostile_pdf.inline_image_in_form],
                         ids=["on-the-page", "in-a-form"])
def test_an_inline_image_bomb_is_refused_before_pdfium_loads_the_page(make: Any) -> None:
    data = make(9000, 9000)  # 81 Mpx of grey, inflated by pdfium as the page loads
    with PdfFile(data, source="DocumentReference/5 content[0]", max_page_pixels=60_000_000) as pdf, \
            pytest.raises(InputError, match="holds a 9000x9000 inline image, over the 60000000"):
        pdf.page_text(0)


def test_inline_images_under_the_pixel_limit_are_charged_to_the_budget() -> None:
    data = hostile_pdf.inline_image(3000, 3000, count=4, colour=b"/RGB")
    budget = MemoryBudget("Binary/1", limit_bytes=64 * MIB)
    with PdfFile(data, source="Binary/1", max_page_pixels=60_000_000, budget=budget) as pdf, \
            pytest.raises(BudgetExceeded, match="page 1's inline images needs 103.0 MiB"):
        pdf.largest_image(0)


def test_pages_drawn_for_the_model_are_held_one_at_a_time(seeded: Seeded) -> None:
    budget = MemoryBudget("x", limit_bytes=64 * MIB)
    images = model_images(seeded.text_pdf, "pdf", source="x", limits=LIMITS, budget=budget)
    first = next(images)
    assert budget.held_bytes == first.width * first.height * 3
    second = next(images)
    assert budget.held_bytes == second.width * second.height * 3
    images.close()
    assert budget.held_bytes == 0


def test_a_many_frame_tiff_is_refused_by_the_budget_before_the_frame_is_decoded() -> None:
    data = hostile_images.frames_tiff(Image.new("L", (2000, 2000), 255), 20)
    budget = MemoryBudget("DocumentReference/3 content[0]", limit_bytes=32 * MIB)
    # Six pages of 3.8 MiB are held; the seventh's decoding copies would pass the 32 MiB.
    with pytest.raises(BudgetExceeded, match=r"decoding page 7 \(2000x2000 L\) needs 7.6 MiB"):
        image_pages(data, source=budget.source, max_pages=50, max_page_pixels=60_000_000,
                    budget=budget)
    assert budget.held_bytes == 0  # the frames decoded before are released with the failure


def test_a_png_header_is_charged_before_its_pixels_are_decoded() -> None:
    # 16 bytes of data for 25 Mpx: decoding would fail as truncated; the budget refuses first.
    budget = MemoryBudget("Media/1", limit_bytes=16 * MIB)
    with pytest.raises(BudgetExceeded, match=r"page 1 \(5000x5000 pixels\) needs 23.8 MiB"):
        image_pages(hostile_images.png_claiming(5000, 5000), source="Media/1", max_pages=1,
                    max_page_pixels=60_000_000, budget=budget)


def test_read_pages_releases_what_it_charged(seeded: Seeded) -> None:
    budget = MemoryBudget("photo", limit_bytes=512 * MIB)
    read_pages(seeded.photo_png, "png", source="photo", limits=LIMITS, budget=budget)
    assert budget.held_bytes == 0 and budget.peak_bytes > 0


@pytest.mark.parametrize("size", [(100_000, 1), (1, 65_500), (2000, 50)])
def test_a_page_without_ink_is_not_turned(size: tuple[int, int]) -> None:
    # Every angle scores zero on a blank page; the first one tried (-6.25) used to win.
    assert measure_text(Image.new("L", size, 255)) == (0.0, 0.0)


def test_a_strip_is_not_a_page_and_cleanup_copies_are_charged() -> None:
    budget = MemoryBudget("DocumentReference/8 content[0]", limit_bytes=8 * MIB)
    with pytest.raises(InputError, match="100000x1 pixels is not the shape of a page"):
        clean_page(Image.new("L", (100_000, 1), 0), budget)
    with pytest.raises(BudgetExceeded, match="cleaning a 1500x1500 page into 1500x1500 for OCR"):
        clean_page(Image.new("L", (1500, 1500), 255), budget)
    assert budget.held_bytes == 0
    cleaned = clean_page(Image.new("L", (3000, 200), 0), MemoryBudget("x"))
    assert cleaned.image.size == (3000, 200) and cleaned.skew_deg == 0.0


def test_a_corrupt_tiff_says_so_and_names_the_input() -> None:
    with pytest.raises(InputError) as raised:
        image_pages(hostile_images.damaged_strip_tiff(), source="DiagnosticReport/4 presentedForm[0]",
                    max_pages=5, max_page_pixels=60_000_000)
    assert str(raised.value) == ("DiagnosticReport/4 presentedForm[0]: corrupt TIFF (page 1 cannot "
                                 "be decoded: decoder error -2)")
