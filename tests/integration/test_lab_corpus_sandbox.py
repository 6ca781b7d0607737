"""The documents pipeline over the lab corpus (tests/corpus/labs: layouts by reportlab, Chromium and
fpdf2 that the reader did not draw, and scans and photos of them), run as jobs against the real
HAPI sandbox; the Observations on the server are scored against the layouts' truth.

Zero wrong values is a hard requirement (issue 13): every written value, unit, range, flag, page,
date and LOINC code must be what the page prints under that name — also on the held-out layouts
(a producer the reader was not tuned on, with all its scans). Recall (≥ 0.95 text layer, ≥ 0.90
scans) is measured on the corpus the reader was developed on.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from fhir_mappers.systems import EXT_EVIDENCE_TEXT, LOINC, SID_RESULT
from plugin.fhir import FhirClient
from plugin.jobs import JobRunner, JobState, JobStore
from plugin.pipelines.documents import PIPELINE, DocumentsOptions, DocumentsPipeline
from tests.corpus.labs import LabLayout, ReadValue, Score, held_out, layouts, scans, score

pytestmark = pytest.mark.sandbox

Resource = dict[str, Any]
UCUM = "http://unitsofmeasure.org"
SCAN_KINDS = ("scan-300dpi", "scan-200dpi-jpeg", "photo")


@dataclass(frozen=True)
class Outcome:
    layout: LabLayout
    kind: str  # "text" or a scan variant
    score: Score
    wrong_dates: tuple[str, ...]
    error: str
    held_out: bool = False


def read_value(observation: Resource) -> ReadValue:
    """What an Observation on the server says, as the corpus's scorer reads it."""
    code = observation["code"]
    loinc = next((c["code"] for c in code.get("coding", []) if c.get("system") == LOINC), None)
    quantity = observation.get("valueQuantity")
    value: Decimal | str
    unit, ucum, comparator = "", None, ""
    if quantity is not None:
        value = Decimal(str(quantity["value"]))
        unit = quantity.get("unit", "")
        ucum = quantity.get("code") if quantity.get("system") == UCUM else None
        comparator = quantity.get("comparator", "")
    else:
        value = str(observation.get("valueString", ""))
    reference = (observation.get("referenceRange") or [{}])[0]
    low = reference.get("low", {}).get("value")
    high = reference.get("high", {}).get("value")
    flags = [c["code"] for concept in observation.get("interpretation", [])
             for c in concept.get("coding", [])]
    pages = [part["valueInteger"] for e in observation.get("extension", [])
             if e["url"] == EXT_EVIDENCE_TEXT for part in e["extension"] if part["url"] == "page"]
    return ReadValue(code.get("text", ""), value, unit, ucum,
                     Decimal(str(low)) if low is not None else None,
                     Decimal(str(high)) if high is not None else None,
                     flags[0] if flags else None, pages[0] if pages else None, loinc, comparator)


def _inputs() -> list[tuple[LabLayout, str, bytes, str]]:
    """Every layout's text-layer PDF and all its scans and photos: the issue's targets are on
    the whole corpus (one scan per layout, taken in turn, read 0.88 where all of them read 0.91:
    the photos of the hardest layouts fall to a few of them)."""
    found = []
    for lab in (*layouts(), *held_out()):
        found.append((lab, "text", lab.render(), "application/pdf"))
        found += [(lab, s.name.rsplit("/", 1)[1], s.data, s.content_type) for s in scans(lab)]
    return found


@pytest.fixture(scope="module")
def outcomes(sandbox_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Outcome]]:
    fhir = FhirClient(sandbox_url, timeout_s=120, retry_backoff_s=0.05)
    patient = fhir.create({"resourceType": "Patient", "name": [{"family": "LabCorpus"}]})
    subject = f"Patient/{patient['id']}"
    store = JobStore(f"sqlite:///{tmp_path_factory.mktemp('corpus')}/jobs.db")
    submitted = []
    for lab, kind, data, content_type in _inputs():
        document = fhir.create({
            "resourceType": "DocumentReference", "status": "current",
            "subject": {"reference": subject}, "description": f"{lab.name} {kind}",
            "content": [{"attachment": {"contentType": content_type, "title": f"{lab.name} {kind}",
                                        "data": base64.b64encode(data).decode()}}]})
        job = store.submit(pipeline=PIPELINE, source_type="DocumentReference",
                           source_id=document["id"], source_version=document["meta"]["versionId"],
                           subject=subject, fhir_base_url=fhir.base_url)
        submitted.append((lab, kind, document["id"], job))
    runner = JobRunner(store, {PIPELINE: DocumentsPipeline(DocumentsOptions(engine="layout"))},
                       lambda job: FhirClient(job.fhir_base_url, timeout_s=120))
    runner.run_until_idle(timeout_s=1500)

    written: dict[str, list[Resource]] = {}
    for observation in fhir.search("Observation", {"subject": subject, "_count": 200}):
        if not any(i.get("system") == SID_RESULT for i in observation.get("identifier", [])):
            continue
        source = observation["derivedFrom"][0]["reference"].split("/")[1]
        written.setdefault(source, []).append(observation)
    found = []
    for lab, kind, document_id, job in submitted:
        done = store.get(job.id)
        observations = written.get(document_id, [])
        dates = tuple(o["effectiveDateTime"] for o in observations if "effectiveDateTime" in o
                      and not o["effectiveDateTime"].startswith(lab.collected.date().isoformat()))
        error = "" if done.state is JobState.SUCCEEDED else done.error or done.state.value
        found.append(Outcome(lab, kind, score(lab.truth, [read_value(o) for o in observations]),
                             dates, error, lab in held_out()))
    yield found


def _report(outcomes: list[Outcome]) -> str:
    return "\n".join(
        f"{o.layout.name} {o.kind}: recall {o.score.recall:.2f}, {len(o.score.wrong)} wrong"
        + "".join(f"\n    {w.reason}" for w in (*o.score.wrong, *o.score.codes_wrong))
        + "".join(f"\n    date {d} is not the collection date" for d in o.wrong_dates)
        for o in outcomes)


def _recall(outcomes: list[Outcome]) -> float:
    truth = sum(o.score.truth for o in outcomes)
    return sum(len(o.score.correct) for o in outcomes) / truth


@pytest.mark.parametrize("kinds", [("text",), SCAN_KINDS], ids=["text-layer", "scans"])
def test_no_wrong_value_is_ever_written(outcomes: list[Outcome], kinds: tuple[str, ...]) -> None:
    chosen = [o for o in outcomes if o.kind in kinds]
    assert chosen and any(o.held_out for o in chosen)
    wrong = [o for o in chosen if o.score.wrong or o.score.codes_wrong or o.wrong_dates]
    assert not wrong, _report(wrong)
    # A job that failed wrote nothing (its transaction is all or nothing).
    assert all(o.score.written == 0 for o in chosen if o.error)


@pytest.mark.parametrize("kinds, target", [
    pytest.param(("text",), 0.95, id="text-layer"),
    # Measured 0.91 over all 60 scans and photos (bench/documents.py: 300 dpi 0.96, 200 dpi
    # JPEG 0.92, photos 0.84).
    pytest.param(SCAN_KINDS, 0.90, id="scans"),
])
def test_recall_reaches_the_issue_target(outcomes: list[Outcome], kinds: tuple[str, ...],
                                         target: float) -> None:
    chosen = [o for o in outcomes if o.kind in kinds and not o.held_out]
    assert _recall(chosen) >= target, _report(chosen)
