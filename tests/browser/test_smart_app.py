"""The SMART app in a real browser, launched by the sandbox EHR inside an iframe as an EHR embeds
apps: inputs listed, analysis run with visible progress, results beside their evidence, review
decisions landing in the FHIR sandbox. Screenshots of each view go to docs/screenshots/."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from fhir_mappers.systems import CS_REVIEW_DECISION, SID_RESULT
from plugin.fhir import FhirClient
from plugin.jobs import JobContext
from plugin.pipelines.registry import InstalledPipeline
from plugin.results import PipelineResult
from tests.browser.conftest import Screenshot
from tests.support.smart_stack import SmartStack, smart_stack

pytestmark = pytest.mark.sandbox

LAB_PDF_TITLE = "Outside laboratory report, text PDF"
PAUSE_TEXT = "reading (paused by the test)"


def paused(pipeline: InstalledPipeline) -> InstalledPipeline:
    """The pipeline, holding still for a moment at 30 % so the page's progress can be seen."""
    def run(context: JobContext) -> PipelineResult:
        context.report_progress(0.3, PAUSE_TEXT)
        time.sleep(2.0)
        return pipeline.run(context)
    return replace(pipeline, run=run)


@pytest.fixture
def stack(sandbox_url: str, tmp_path: Path, demo_patient: str,
          tiny_speech: InstalledPipeline) -> Iterator[SmartStack]:
    with smart_stack(sandbox_url, tmp_path) as stack:
        pipelines = dict(stack.app.extensions["chartlight.pipelines"])
        pipelines["speech"] = tiny_speech
        pipelines["documents"] = paused(pipelines["documents"])
        stack.use_pipelines(pipelines)
        yield stack


def _app(page: Any) -> Any:
    """The app inside the EHR page's iframe."""
    return page.frame_locator("iframe#app")


def _frame(page: Any) -> Any:
    """The app's frame (another origin than the EHR page: reached through Playwright, not the DOM)."""
    return next(f for f in page.frames if "/smart/" in f.url)


def _lab_row(app: Any) -> Any:
    return app.locator('tr[data-testid="input-row"]', has_text=LAB_PDF_TITLE)


def _ours(fhir: FhirClient, resource_type: str, patient: str) -> list[dict]:  # type: ignore[type-arg]
    return [r for r in fhir.search(resource_type, {"subject": f"Patient/{patient}",
                                                    "identifier": f"{SID_RESULT}|"})]


def test_ehr_launch_in_iframe_analyse_review_and_approve(
        page: Any, screenshot: Screenshot, stack: SmartStack, demo_patient: str, fhir: FhirClient) -> None:
    page.goto(stack.ehr_page_url(demo_patient))
    app = _app(page)
    row = _lab_row(app)
    row.wait_for()
    # The patient's inputs of every kind are listed, each with its analysis status.
    for title in ("Documents", "Imaging studies", "Recordings"):
        assert app.locator("section.group h2", has_text=title).count() == 1
    # Inside the EHR's chart the EHR shows the patient: the token did not ask for a banner.
    assert app.locator('[data-testid="patient-banner"]').count() == 0
    assert app.locator('tr[data-testid="input-row"]').count() >= 5
    screenshot(page, "ehr-launch-inputs")

    row.locator("button[data-analyze]").click()
    # Visible progress while the pipeline runs (paused by the test), then the page shows the results.
    running = app.locator('tr[data-state="running"]', has_text=PAUSE_TEXT)
    running.wait_for()
    assert running.locator("progress").is_visible()
    assert 0 < float(running.locator("progress").evaluate("p => p.value")) < 1
    screenshot(page, "analysis-progress")
    app.locator('tr[data-state="done"]', has_text=LAB_PDF_TITLE).wait_for(timeout=180_000)
    row = _lab_row(app)
    assert "32 result(s)" in row.inner_text() or "result(s)" in row.inner_text()
    screenshot(page, "inputs-analysed")

    row.locator('a[data-testid="review-link"]').click()
    values = app.locator('tr[data-testid="value-row"]')
    values.first.wait_for()
    assert values.count() == 32
    glucose = values.filter(has_text="Glucose").first
    glucose.locator("td.name").click()
    quote = app.locator('[data-testid="evidence-quote"]').inner_text()
    assert "Glucose" in quote
    crop = app.locator('img[data-testid="evidence-crop"]')
    reference = glucose.get_attribute("data-ref")
    _frame(page).wait_for_function(
        "id => ['crop', 'page'].every(role => { const i = document.querySelector(`img[data-role=${role}]`);"
        " return i.complete && i.naturalWidth > 100 && i.src.includes(`/${id}/`); })",
        arg=reference.split("/")[1])
    assert crop.evaluate("i => i.naturalWidth") > 100
    screenshot(page, "review-lab-values-with-evidence")

    glucose.locator('button[data-testid="approve"]').click()
    glucose.locator('[data-testid="result-state"]', has_text="approved").wait_for()

    observation = fhir.read(*reference.split("/"))
    assert observation["status"] == "final"
    provenances = [p for p in fhir.search("Provenance", {"target": reference})
                   if p.get("activity", {}).get("coding", [{}])[0].get("system") == CS_REVIEW_DECISION]
    assert len(provenances) == 1
    agent = provenances[0]["agent"][0]
    assert agent["type"]["coding"][0]["code"] == "verifier"
    assert agent["who"]["reference"] == stack.user
    # The write Provenance names the clinician the analysis ran for.
    writes = [p for p in fhir.search("Provenance", {"target": reference})
              if p.get("activity", {}).get("coding", [{}])[0].get("code") == "CREATE"]
    assert writes and writes[0]["agent"][0]["onBehalfOf"]["reference"] == stack.user

    # Edit: the clinician's value becomes final; the AI's stays in the history and in the resource.
    potassium = values.filter(has_text="Potassium").first
    potassium_ref = potassium.get_attribute("data-ref")
    ai_value = fhir.read(*potassium_ref.split("/"))["valueQuantity"]["value"]
    potassium.locator('button[data-testid="edit"]').click()
    potassium.locator(".edit-form input[name=value]").fill("4.6")
    potassium.locator(".edit-form input[name=comment]").fill("re-read from the analyser printout")
    potassium.locator(".edit-form button[type=submit]").click()
    potassium.locator('[data-testid="result-state"]', has_text="edited").wait_for()
    assert potassium.locator('[data-testid="value"]').inner_text().startswith("4.6")
    assert f"AI read: {ai_value}" in potassium.locator('[data-testid="ai-original"]').inner_text()
    screenshot(page, "review-edit")
    edited = fhir.read(*potassium_ref.split("/"))
    assert edited["status"] == "final" and edited["valueQuantity"]["value"] == 4.6
    first = fhir.vread("Observation", potassium_ref.split("/")[1], "1")
    assert first["valueQuantity"]["value"] == ai_value and first["status"] == "preliminary"


def test_standalone_launch_lists_the_patients_inputs(
        page: Any, screenshot: Screenshot, sandbox_url: str, tmp_path: Path, demo_patient: str) -> None:
    with smart_stack(sandbox_url, tmp_path, run_jobs=False, standalone_patient=demo_patient) as stack:
        page.goto(stack.standalone_url())
        page.wait_for_url("**/smart/app")
        _lab_row(page).wait_for()
        assert page.locator('tr[data-testid="input-row"]').count() >= 5
        assert page.locator('[data-testid="no-write-notice"]').count() == 0
        # No EHR chart around a standalone app: the token asked for the patient banner.
        assert "Lindqvist" in page.locator('[data-testid="patient-banner"]').inner_text()
        screenshot(page, "standalone-launch")


def read_only(scopes: str) -> tuple[str, frozenset[str]]:
    """The scopes split into their read and write halves, and the write halves (to be refused)."""
    requested, writes = [], set()
    for scope in scopes.split():
        base, _, letters = scope.rpartition(".")
        if not base or not set(letters) <= set("cruds"):
            requested.append(scope)
            continue
        read, write = "".join(c for c in letters if c in "rs"), "".join(c for c in letters if c in "cud")
        requested += [f"{base}.{part}" for part in (read, write) if part]
        if write:
            writes.add(f"{base}.{write}")
    return " ".join(requested), frozenset(writes)


def test_refused_write_scope_shows_results_and_writes_nothing(
        page: Any, screenshot: Screenshot, sandbox_url: str, tmp_path: Path, demo_patient: str,
        fhir: FhirClient, caplog: pytest.LogCaptureFixture) -> None:
    from plugin.config import SMART_DEFAULT_SCOPES

    scopes, writes = read_only(SMART_DEFAULT_SCOPES)
    with smart_stack(sandbox_url, tmp_path, run_jobs=False, scopes=scopes, refused_scopes=writes) as stack:
        before = {t: len(_ours(fhir, t, demo_patient)) for t in ("Observation", "DocumentReference")}
        provenances = len(list(fhir.search("Provenance", {"_count": 1000})))
        page.goto(stack.ehr_page_url(demo_patient))
        app = _app(page)
        notice = app.locator('[data-testid="no-write-notice"]')
        notice.wait_for()
        assert "not written" in notice.inner_text()
        caplog.clear()
        _lab_row(app).locator("button[data-analyze]").click()
        # (The row may say "done" already: an earlier test's results for this input are on the record.)
        row = _lab_row(app)
        row.locator(".status-text", has_text="shown, not written").wait_for(timeout=180_000)
        assert row.get_attribute("data-state") == "done"
        screenshot(page, "no-write-scope")
        row.locator('a[data-testid="review-link"]').click()
        values = app.locator('tr[data-testid="value-row"]')
        values.first.wait_for()
        assert values.count() == 32
        assert app.locator('button[data-testid="approve"]').count() == 0  # nothing to sign
        _frame(page).wait_for_function(
            "() => { const i = document.querySelector('img[data-testid=evidence-crop]');"
            " return i && i.complete && i.naturalWidth > 100; }")
        # No write reached the EHR's FHIR endpoint: no POST/PUT/PATCH/DELETE through its proxy.
        proxied = [r.getMessage() for r in caplog.records if '/fhir' in r.getMessage()]
        assert proxied and not [m for m in proxied
                                if any(f'"{verb} /fhir' in m for verb in ("POST", "PUT", "PATCH", "DELETE"))]
    assert {t: len(_ours(fhir, t, demo_patient)) for t in before} == before
    assert len(list(fhir.search("Provenance", {"_count": 1000}))) == provenances


def test_dictation_recorded_transcribed_reviewed_and_signed(
        page: Any, screenshot: Screenshot, stack: SmartStack, demo_patient: str, fhir: FhirClient) -> None:
    page.goto(stack.ehr_page_url(demo_patient))
    app = _app(page)
    app.locator("nav a", has_text="Dictation").click()
    app.locator('[data-testid="record"]').click()
    app.locator('[data-testid="dictation-status"]', has_text="recording").wait_for()
    page.wait_for_timeout(3000)
    screenshot(page, "dictation-recording")
    app.locator('[data-testid="stop"]').click()
    # Uploaded, transcribed by the speech pipeline, then the review page of the recording opens.
    audio = app.locator('audio[data-testid="audio"]')
    audio.wait_for(timeout=180_000)
    assert app.locator('[data-testid="test-weights"]').first.is_visible()  # random test weights, said so
    words = app.locator(".words .word")
    assert words.count() > 0
    frame = _frame(page)
    frame.wait_for_function("() => document.querySelector('audio').readyState >= 1")
    # The words follow the audio: moving the player to a word's start highlights that word.
    last = words.nth(words.count() - 1)
    start = float(last.get_attribute("data-start"))
    audio.evaluate(f"a => {{ a.currentTime = {start + 0.01}; a.dispatchEvent(new Event('timeupdate')); }}")
    frame.wait_for_function("() => document.querySelector('.word.speaking') !== null")
    assert "speaking" in (last.get_attribute("class") or "")
    screenshot(page, "dictation-transcript-review", full_page=True)

    source = frame.url.rsplit("/", 1)[-1]
    recording = fhir.read("DocumentReference", source)
    assert recording["content"][0]["attachment"]["contentType"].startswith("audio/")
    actions = app.locator(".transcript > .review-actions")  # the note below has its own
    transcript_ref = actions.get_attribute("data-ref")
    actions.locator('button[data-testid="approve"]').click()
    actions.locator('[data-testid="result-state"]', has_text="approved").wait_for()
    signed = fhir.read(*transcript_ref.split("/"))
    assert signed["docStatus"] == "final" and signed["authenticator"]["reference"] == stack.user
    assert signed["context"]["related"][0]["reference"] == f"DocumentReference/{source}"


def _study(fhir: FhirClient, patient: str, description: str) -> dict:  # type: ignore[type-arg]
    return next(s for s in fhir.search("ImagingStudy", {"patient": patient})
                if s.get("description") == description)


def test_imaging_finding_with_boxes_over_the_image_and_the_prior_beside(
        page: Any, screenshot: Screenshot, stack: SmartStack, demo_patient: str, fhir: FhirClient) -> None:
    """An imaging result as the imaging pipeline writes it (a Finding with ImageEvidence and the prior
    study among the sources) for the seeded chest X-rays."""
    from datetime import UTC, datetime

    from plugin.results import Box, Finding, ImageEvidence, ModelInfo, SourceRef
    from plugin.writeback import write_result

    current = _study(fhir, demo_patient, "Chest X-ray PA (current)")
    prior = _study(fhir, demo_patient, "Chest X-ray PA (prior)")
    series = current["series"][0]
    from plugin.sandbox.synthetic.chest_xray import nodule_centre_pixel

    row_px, col_px = nodule_centre_pixel()
    box = Box(col_px - 40.0, row_px - 40.0, col_px + 40.0, row_px + 40.0)  # around the seeded opacity
    finding = Finding(key="nodule", text="Right lower zone nodule, larger than on the prior study",
                      body_site="right lower lobe", change="worsened", abnormal=True,
                      evidence=(ImageEvidence(
                          study_uid=current["identifier"][1]["value"].removeprefix("urn:oid:"),
                          series_uid=series["uid"], instance_uid=series["instance"][0]["uid"], frame=1,
                          box=box),))
    result = PipelineResult(
        pipeline="imaging", pipeline_version="test", model=ModelInfo(
            "chartlight-test/fixed-imaging", "1", ("Vision-Language-Models",), test_weights=True),
        source=SourceRef("ImagingStudy", current["id"], current["meta"]["versionId"]),
        other_sources=(SourceRef("ImagingStudy", prior["id"], prior["meta"]["versionId"]),),
        items=(finding,))
    write_result(fhir, result, subject=f"Patient/{demo_patient}", now=datetime.now(UTC))

    page.goto(stack.ehr_page_url(demo_patient))
    app = _app(page)
    row = app.locator('tr[data-testid="input-row"]', has_text="Chest X-ray PA (current)")
    row.locator('a[data-testid="review-link"]').click()
    article = app.locator('article[data-testid="finding"]')
    article.wait_for()
    frame = _frame(page)
    frame.wait_for_function(
        "() => [...document.querySelectorAll('.image-pair img')].every(i => i.complete && i.naturalWidth > 0)"
        " && document.querySelector('.image-frame .box') !== null")
    size = article.locator('[data-testid="current-image"] img').evaluate(
        "i => [i.naturalWidth, i.naturalHeight]")
    assert size[0] > box.x1 and size[1] > box.y1  # the frame at its own pixel size
    # The box is drawn where the evidence says, relative to the image's own pixels.
    drawn = article.locator(".image-frame .box").evaluate(
        "b => { const f = b.parentElement.getBoundingClientRect(), r = b.getBoundingClientRect();"
        " return [(r.left - f.left) / f.width, (r.top - f.top) / f.height]; }")
    assert abs(drawn[0] - box.x0 / size[0]) < 0.01 and abs(drawn[1] - box.y0 / size[1]) < 0.01
    assert article.locator('[data-testid="prior-image"]').is_visible()
    assert article.locator('[data-testid="test-weights"]').is_visible()
    screenshot(page, "review-imaging-boxes-and-prior")
