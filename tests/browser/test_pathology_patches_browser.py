"""The whole-slide patch view in a real browser (Debian's Chromium), launched by the sandbox EHR:
a pathology result written by the pipeline for a synthetic slide in Orthanc
(tests/support/slide_results.py); the review page shows each finding's patches beside the slide
overview, the marks are drawn where overview.json places them, and clicking a patch highlights
its place on the slide."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from plugin.fhir import FhirClient
from tests.browser.conftest import Screenshot
from tests.support.slide_results import slide_with_result
from tests.support.smart_stack import smart_stack

pytestmark = pytest.mark.sandbox


def test_clicking_a_patch_highlights_its_place_on_the_slide(
        page: Any, screenshot: Screenshot, fhir: FhirClient, sandbox_url: str, pacs_url: str,
        tmp_path: Path) -> None:
    case = slide_with_result(fhir, pacs_url, tmp_path)
    with smart_stack(sandbox_url, tmp_path, run_jobs=False,
                     settings_extra={"imaging_allowed_endpoints": (pacs_url,)}) as stack:
        page.goto(stack.ehr_page_url(case.patient))
        app = page.frame_locator("iframe#app")
        row = app.locator('tr[data-testid="input-row"]', has_text="Colon biopsy slide (H&E)")
        row.locator('a[data-testid="review-link"]').click()
        app.locator('[data-testid="slide-overview"]').wait_for()
        frame = next(f for f in page.frames if "/smart/" in f.url)
        frame.wait_for_function(
            "() => document.querySelectorAll('.overview-frame .mark').length === 3"
            " && [...document.querySelectorAll('.patch img, .overview-frame img')]"
            ".every(i => i.complete && i.naturalWidth > 0)")
        marks = frame.evaluate(
            "async () => (await (await fetch(document.querySelector('.slide-overview').dataset.marksUrl,"
            " {credentials: 'same-origin'})).json())")
        patch = app.locator('[data-testid="patch"][data-patch="2"]').first
        patch.click()
        active = app.locator(".overview-frame .mark.active")
        assert active.count() == 1 and active.get_attribute("data-patch") == "2"
        assert app.locator('.patch.active[data-patch="2"]').count() == 2  # cited by both findings
        # Drawn where overview.json places it, relative to the overview's own pixels.
        drawn = active.evaluate(
            "m => { const f = m.parentElement.getBoundingClientRect(), r = m.getBoundingClientRect();"
            " return [(r.left - f.left) / f.width, (r.top - f.top) / f.height]; }")
        box = next(m["box"] for m in marks["marks"] if m["number"] == 2)
        assert abs(drawn[0] - box[0] / marks["width"]) < 0.01
        assert abs(drawn[1] - box[1] / marks["height"]) < 0.01
        screenshot(page, "review-pathology-patches")
