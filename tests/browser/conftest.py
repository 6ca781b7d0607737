"""Browser tests of the SMART app: Playwright for Python driving Debian's Chromium (never a browser
Playwright downloads), against the whole stack on loopback (tests.support.smart_stack: the sandbox
EHR with its FHIR proxy in front of the HAPI sandbox, and the chartlight service).

The speech pipeline runs the tiny random-weight MedASR (plugin.engines.test_models.tiny_medasr): its
transcript is noise, marked as test weights, which the pages must show. Dictation uses Chromium's
fake microphone, fed a WAV that espeak-ng speaks."""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from plugin.fhir import FhirClient
from plugin.pipelines import speech
from plugin.pipelines.registry import InstalledPipeline
from plugin.sandbox.seed import seed_demo_patient
from plugin.sandbox.synthetic import DEMO_PATIENT, espeak_wav

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
DICTATED = "findings colon there is a solid nodule in the right lower lobe period no pleural effusion period"


@pytest.fixture(scope="session")
def dictation_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("audio") / "dictation.wav"
    path.write_bytes(espeak_wav(DICTATED))
    return path


@pytest.fixture(scope="session")
def chromium(dictation_wav: Path) -> Iterator[Any]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (make deps does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[*CHROMIUM_FLAGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                  f"--use-file-for-fake-audio-capture={dictation_wav}"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(60_000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


@pytest.fixture(scope="session")
def demo_patient(sandbox_url: str) -> str:
    """The synthetic patient and their inputs, under an MRN of these tests' own: what the
    browser tests approve must not be the demo patient other tests expect unreviewed."""
    patient = replace(DEMO_PATIENT, mrn="CL-004418")
    return seed_demo_patient(FhirClient(sandbox_url, timeout_s=120), patient).patient_id


@pytest.fixture(scope="session")
def tiny_speech() -> InstalledPipeline:
    """The speech pipeline on the tiny random-weight MedASR (its transcripts are noise, marked)."""
    from plugin.engines.test_models.tiny_medasr import tiny_engine

    pipeline = speech.SpeechPipeline(speech.SpeechOptions(), engine=tiny_engine())
    return InstalledPipeline(speech.PIPELINE, "dictation audio -> transcript (tiny test MedASR)",
                             speech.find_sources, pipeline)


Screenshot = Callable[..., None]


@pytest.fixture(scope="session")
def screenshot(tmp_path_factory: pytest.TempPathFactory) -> Screenshot:
    """screenshot(page, name, full_page=False) saves <name>.png, reduced to a 96-colour palette to
    keep the docs small: into docs/screenshots when CHARTLIGHT_UPDATE_SCREENSHOTS=1 (how the
    docs' images are made), else into a temporary folder, so a test run leaves the checkout as
    it was."""
    folder = SCREENSHOTS if os.environ.get("CHARTLIGHT_UPDATE_SCREENSHOTS") == "1" else \
        tmp_path_factory.mktemp("screenshots")

    def take(page: Any, name: str, *, full_page: bool = False) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        image = Image.open(io.BytesIO(page.screenshot(full_page=full_page))).convert("RGB")
        image.quantize(colors=96, method=Image.Quantize.MEDIANCUT).save(folder / f"{name}.png", optimize=True)
    return take
