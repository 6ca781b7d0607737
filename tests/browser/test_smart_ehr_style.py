"""The EHR's look in a real browser: an EHR that sends `smart_style_url` and asks for the patient
banner, the app in its iframe. Colours and fonts must apply under the app's CSP (`style-src
'self'`): only a browser can tell."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from plugin.sandbox.ehr_server.server import STYLE
from tests.browser.conftest import Screenshot
from tests.support.smart_stack import smart_stack

pytestmark = pytest.mark.sandbox


def _rgb(hex_colour: str) -> str:
    value = hex_colour.lstrip("#")
    return "rgb({}, {}, {})".format(*(int(value[i:i + 2], 16) for i in (0, 2, 4)))


def test_the_ehrs_style_and_banner_apply_inside_the_iframe(
        page: Any, screenshot: Screenshot, sandbox_url: str, tmp_path: Path, demo_patient: str) -> None:
    with smart_stack(sandbox_url, tmp_path, ehr={"serve_style": True, "banner_on_ehr_launch": True},
                     run_jobs=False) as stack:
        page.goto(stack.ehr_page_url(demo_patient))
        app = page.frame_locator("iframe#app")
        app.locator('tr[data-testid="input-row"]').first.wait_for()
        assert app.locator('[data-testid="patient-banner"]').is_visible()
        frame = next(f for f in page.frames if "/smart/" in f.url)
        body = frame.evaluate("() => { const s = getComputedStyle(document.body);"
                              " return {bg: s.backgroundColor, font: s.fontFamily, size: s.fontSize}; }")
        heading = frame.evaluate("() => getComputedStyle(document.querySelector('h1')).fontFamily")
        screenshot(page, "ehr-style-and-banner")
    assert body["bg"] == _rgb(STYLE["color_background"])
    assert body["font"].startswith("Georgia") and body["size"] == STYLE["dim_font_size"]
    assert heading.startswith("HelveticaNeue-Light")
