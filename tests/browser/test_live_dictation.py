"""Live dictation in Chromium with a fake microphone that plays an espeak-ng WAV (the conftest's
launch flags): the words so far appear while the clinician speaks, stopping gives the final
transcript, which is the batch transcript of the stored recording, and the recording goes on to
review and sign-off as an uploaded one does. The page measures each audio block's delay, from
reaching the page to the transcript that includes it being shown (Performance API measures);
the test prints their median and 95th percentile (docs/speech.md records them)."""

from __future__ import annotations

import base64
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from plugin.engines.test_models.tiny_medasr import tiny_engine
from plugin.fhir import FhirClient
from plugin.pipelines import speech
from plugin.pipelines.registry import InstalledPipeline
from plugin.pipelines.speech.audio import decode_audio
from plugin.pipelines.speech.formatting import format_transcript
from smart_launch.live import LiveLimits, LiveRecordings
from tests.browser.conftest import Screenshot
from tests.support.smart_stack import SmartStack, smart_stack

pytestmark = pytest.mark.sandbox

SPEAK_S = 12.0  # how long the test "speaks" (the fake microphone loops its WAV)


@pytest.fixture
def stack(sandbox_url: str, tmp_path: Path, demo_patient: str) -> Iterator[SmartStack]:
    """The SMART stack with the tiny MedASR at the product's default windows (20 s, 2 s stride,
    4 per batch), for live dictation and the recording's transcription job alike."""
    engine = tiny_engine()
    pipeline = speech.SpeechPipeline(speech.SpeechOptions(), engine=engine)
    with smart_stack(sandbox_url, tmp_path) as stack:
        pipelines = dict(stack.app.extensions["chartlight.pipelines"])
        pipelines["speech"] = InstalledPipeline(speech.PIPELINE, "dictation (tiny test MedASR)",
                                                speech.find_sources, pipeline, engine=engine)
        stack.use_pipelines(pipelines)
        stack.app.extensions["chartlight.smart.live"] = LiveRecordings(
            tmp_path / "live", LiveLimits(max_duration_s=600, memory_bytes=1 << 30, idle_s=60,
                                          max_recordings=4))
        yield stack


def _frame(page: Any) -> Any:
    return next(f for f in page.frames if "/smart/" in f.url)


def test_live_dictation_partials_while_speaking_then_the_batch_transcript_for_review(
        page: Any, screenshot: Screenshot, stack: SmartStack, demo_patient: str, fhir: FhirClient) -> None:
    page.goto(stack.ehr_page_url(demo_patient))
    app = page.frame_locator("iframe#app")
    app.locator("nav a", has_text="Dictation").click()
    app.locator('[data-testid="record"]').click()
    app.locator('[data-testid="dictation-status"]', has_text="recording").wait_for()
    partial = app.locator('[data-testid="live-transcript"]')

    # While "speaking": the words so far come and grow.
    seen: list[str] = []
    deadline = time.monotonic() + SPEAK_S
    while time.monotonic() < deadline:
        text = partial.text_content() or ""
        if text and (not seen or text != seen[-1]):
            seen.append(text)
        page.wait_for_timeout(250)
    assert len(seen) >= 3, seen
    assert app.locator('[data-testid="live-test-weights"]').is_visible()  # test weights, said so
    screenshot(page, "dictation-live")
    frame = _frame(page)
    delays = frame.evaluate(
        "() => performance.getEntriesByName('chartlight-live-delay').map((e) => e.duration)")
    assert len(delays) > SPEAK_S * 10  # every 50 ms block was shown

    app.locator('[data-testid="stop"]').click()
    final = app.locator('[data-testid="live-transcript"][data-final="true"]')
    final.wait_for(timeout=120_000)
    final_text = final.text_content() or ""
    assert final_text

    # The recording is stored and transcribed as an upload is; its review page opens.
    app.locator('audio[data-testid="audio"]').wait_for(timeout=180_000)
    source = _frame(page).url.rsplit("/", 1)[-1]
    recording = fhir.read("DocumentReference", source)
    attachment = recording["content"][0]["attachment"]
    assert attachment["contentType"] == "audio/wav"
    samples = decode_audio(base64.b64decode(attachment["data"]), source="test",
                           max_duration_s=600).samples
    assert len(samples) / 16_000 > SPEAK_S - 1
    # The live final transcript is the batch transcript of the same audio, exactly ...
    engine = stack.app.extensions["chartlight.pipelines"]["speech"].engine
    assert final_text == format_transcript(engine.transcribe(samples).text)
    # ... and the transcript the job wrote for review says the same.
    actions = app.locator(".transcript > .review-actions")  # the note below has its own
    written = fhir.read(*actions.get_attribute("data-ref").split("/"))
    assert base64.b64decode(written["content"][0]["attachment"]["data"]).decode() == final_text
    assert written["context"]["related"][0]["reference"] == f"DocumentReference/{source}"
    actions.locator('button[data-testid="approve"]').click()
    actions.locator('[data-testid="result-state"]', has_text="approved").wait_for()

    ordered = sorted(delays)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    print(f"\nlive dictation delay, audio block reaching the page -> partial shown "
          f"({len(ordered)} blocks of 50 ms, {SPEAK_S:.0f} s): median {statistics.median(ordered):.0f} ms, "
          f"p95 {p95:.0f} ms, max {ordered[-1]:.0f} ms")
