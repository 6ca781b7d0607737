"""The seeded lab reports, each read once per session (OCR is the slow part)."""

from __future__ import annotations

import pytest

from plugin.pipelines.documents.document_pages import DocumentPages, PageLimits, read_pages
from tests.support.lab_documents import Seeded, seeded_files

LIMITS = PageLimits(ocr_dpi=300, max_page_pixels=60_000_000, max_pages=50)


@pytest.fixture(scope="session")
def seeded() -> Seeded:
    return seeded_files()


@pytest.fixture(scope="session")
def read_text_pdf(seeded: Seeded) -> DocumentPages:
    return read_pages(seeded.text_pdf, "pdf", source="text PDF", limits=LIMITS)


@pytest.fixture(scope="session")
def read_scan(seeded: Seeded) -> DocumentPages:
    return read_pages(seeded.scan_pdf, "pdf", source="scanned PDF", limits=LIMITS)


@pytest.fixture(scope="session")
def read_photo(seeded: Seeded) -> DocumentPages:
    return read_pages(seeded.photo_png, "png", source="photo", limits=LIMITS)
