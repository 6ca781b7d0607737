"""The chart summary and "ask the chart" in a real browser, launched by the sandbox EHR in its
iframe: the summary with its citations, a citation opening the cited resource, a question
answered (streamed) with citations as links, nothing written until the clinician saves, then a
DocumentReference on the HAPI sandbox with the clinician as author and a Provenance."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from plugin.fhir import FhirClient
from plugin.jobs import JobState, JobStore
from plugin.pipelines.summary import EstimatedCounter, SummaryOptions, SummaryPipeline
from plugin.sandbox.seed import SeedReport, seed_chart
from plugin.sandbox.synthetic import DEMO_PATIENT
from smart_launch.chart_pages import READER
from tests.browser.conftest import Screenshot
from tests.integration.test_summary_sandbox import ANSWER, ScriptedEngine, run
from tests.support.smart_stack import SmartStack, smart_stack

pytestmark = pytest.mark.sandbox
CHART_ANSWER = "https://chartlight.dev/fhir/CodeSystem/document-kind|chart-answer"


class StreamingEngine(ScriptedEngine):
    """The scripted answer, handed out a few characters at a time as a streaming engine does."""

    def stream(self, parts: Sequence[Any], *, max_new_tokens: int = 1024) -> Iterator[str]:
        whole = self.generate(parts, max_new_tokens=max_new_tokens)
        for start in range(0, len(whole), 16):
            yield whole[start:start + 16]


@pytest.fixture
def chart_patient(fhir: FhirClient, run_id: str, tmp_path: Path) -> str:
    created = fhir.create({"resourceType": "Patient", "name": [{"family": f"Ask-{run_id[:8]}"}]})
    seed_chart(fhir, replace(DEMO_PATIENT, mrn=f"ASK-{run_id}"), SeedReport(created["id"]))
    job = run(JobStore(f"sqlite:///{tmp_path}/summary.db"), fhir, ScriptedEngine(ANSWER), created["id"])
    assert job.state is JobState.SUCCEEDED, job.error
    return str(created["id"])


@pytest.fixture
def stack(sandbox_url: str, tmp_path: Path) -> Iterator[SmartStack]:
    with smart_stack(sandbox_url, tmp_path) as stack:
        engine = StreamingEngine([
            ("Answer", "HbA1c went from 8.4 % to 7.1 % over the year.", ["Hemoglobin A1c"]),
            ("Answer", "Metformin 1000 mg twice daily continues.", ["Metformin"]),
            ("Answer", "It was 5.5 % in June.", ["Hemoglobin A1c"])])
        stack.app.extensions[READER] = SummaryPipeline(SummaryOptions(), engine, EstimatedCounter())
        yield stack


def test_summary_citations_and_ask_the_chart_then_save(page: Any, screenshot: Screenshot, stack: SmartStack,
                                                      chart_patient: str, fhir: FhirClient) -> None:
    page.goto(stack.ehr_page_url(chart_patient))
    app = page.frame_locator("iframe#app")
    app.locator('[data-testid="nav-summary"]').click()
    sentences = app.locator('[data-testid="summary-sentence"]')
    sentences.first.wait_for()
    assert sentences.count() == 4
    assert "HbA1c fell from 8.4 % to 7.1 %." in sentences.nth(1).inner_text()
    assert "2 sentence(s) of the model were withheld" in app.locator('[data-testid="withheld"]').inner_text()
    screenshot(page, "chart-summary")

    # A citation opens the cited resource at the cited version.
    citation = sentences.first.locator('[data-testid="citation"]').first
    cited = citation.inner_text().strip()
    assert cited.startswith("Condition/")
    citation.click()
    heading = app.locator('[data-testid="chart-resource"]')
    heading.wait_for()
    assert heading.inner_text() == cited
    assert "Type 2 diabetes mellitus" in app.locator('[data-testid="resource-json"]').inner_text()
    app.locator("a", has_text="Back to the chart summary").click()

    # Ask: the answer streams in, then comes back checked with citations as links.
    app.locator('[data-testid="ask-question"]').fill("How has the HbA1c changed this year?")
    app.locator('[data-testid="ask-button"]').click()
    answered = app.locator('[data-testid="answer-sentence"]')
    answered.first.wait_for()
    assert answered.count() == 2  # the 5.5 % is not in the chart: withheld
    assert '"cites"' in app.locator('[data-testid="ask-stream"]').inner_text()  # the raw stream was shown
    assert "1 sentence(s) withheld" in app.locator('[data-testid="ask-status"]').inner_text()
    links = answered.first.locator('[data-testid="answer-citation"]')
    assert links.count() == 4 and links.first.inner_text().startswith("Observation/")
    screenshot(page, "ask-the-chart")
    # Not written until saved.
    assert list(fhir.search("DocumentReference", {"patient": chart_patient, "type": CHART_ANSWER})) == []

    app.locator('[data-testid="ask-save"]').click()
    status = app.locator('[data-testid="ask-status"]')
    status.locator("text=Saved as").wait_for()
    (saved,) = fhir.search("DocumentReference", {"patient": chart_patient, "type": CHART_ANSWER})
    assert {"reference": stack.user} in saved["author"] and saved["docStatus"] == "preliminary"
    assert saved["meta"]["security"][0]["code"] == "AIAST"
    provenance = next(fhir.search("Provenance", {"target": f"DocumentReference/{saved['id']}"}))
    assert any(a["who"] == {"reference": stack.user} for a in provenance["agent"])
    assert provenance["agent"][0]["onBehalfOf"] == {"reference": stack.user}
    entities = {e["what"]["reference"] for e in provenance["entity"]}
    assert f"Patient/{chart_patient}/_history/1" in entities and len(entities) == 1 + 4 + 1
    text = json.dumps(saved)
    assert "How has the HbA1c changed this year?" not in text  # the text is base64 inside the attachment
