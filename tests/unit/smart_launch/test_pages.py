"""The SMART pages' view-models, without a server: results and their evidence read back from the
resources fhir_mappers writes, input status, the banner, dictation uploads, evidence rendering."""

from __future__ import annotations

import base64
import io
import json
from datetime import UTC, datetime

import pytest
from PIL import Image

from fhir_mappers import item_identifier, to_device, to_document_reference, to_observation
from plugin.errors import InputError
from plugin.jobs import Job, JobState
from plugin.results import AudioEvidence, Box, Narrative, SourceRef
from plugin.review import EXT_AI_ORIGINAL
from plugin.sandbox import synthetic
from smart_launch.session import SmartSession
from smart_launch.views.context import Abilities
from smart_launch.views.dictation import MAX_DICTATION_BYTES, dictation_source
from smart_launch.views.evidence import PAGE_DPI, SourceBytes, TtlCache, page_png
from smart_launch.views.inputs import InputRow, Status, job_status, job_statuses, statuses
from smart_launch.views.patient import to_banner
from smart_launch.views.results import (
    AudioSpan,
    ImageSpot,
    TextSpan,
    evidence_of,
    parse_box,
    review_items,
    transcript_words,
)
from tests.support.pipelines import fixed_result

SOURCE = SourceRef("DocumentReference", "5", "1")
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def written(status: str = "preliminary") -> list[dict]:  # type: ignore[type-arg]
    """The fixed result's Observations as the server would hold them (ids, versions, a status)."""
    result = fixed_result(SOURCE)
    resources = []
    for n, item in enumerate(i for i in result.items if i.key in ("glucose", "potassium", "hba1c")):
        observation = to_observation(item, subject="Patient/1", source=SOURCE,  # type: ignore[arg-type]
                                     identifier=item_identifier(result, item.key), model=result.model,
                                     device="Device/9")
        resources.append({**observation, "id": str(10 + n), "status": status,
                          "meta": {**observation["meta"], "versionId": "1"}})
    return resources


def device() -> dict:  # type: ignore[type-arg]
    return {**to_device(fixed_result(SOURCE).model), "id": "9"}


def test_results_carry_their_text_evidence_in_source_order() -> None:
    items = review_items(written(), [device()], "1")
    assert [i.result.name for i in items][:2] == ["Glucose", "Potassium"]  # page 1 before page 2
    glucose = items[0]
    assert glucose.evidence == (TextSpan(page=1, start=120, end=147, quote="Glucose 112 mg/dL 70-99 H",
                                         box=None),)
    assert glucose.state == "awaiting review" and glucose.editable_value == "112"
    assert glucose.test_weights and glucose.model is not None and glucose.model.test_weights
    assert glucose.reference == "Observation/10" and glucose.version == "1"


def test_review_states() -> None:
    approved, edited, rejected = written("final"), written("final"), written("entered-in-error")
    edited[0]["extension"].append({"url": EXT_AI_ORIGINAL, "valueQuantity": {"value": 112, "unit": "mg/dL"}})
    assert {i.state for i in review_items(approved, [], "1")} == {"approved"}
    states = [i.state for i in review_items(edited, [], "1")]
    assert states[0] == "edited" and review_items(edited, [], "1")[0].ai_original == "112 mg/dL"
    assert {i.state for i in review_items(rejected, [], "1")} == {"rejected"}
    assert review_items(written(), [], "2") == []  # another patient's results are not shown


def test_evidence_extensions_of_every_kind_and_malformed_ones_skipped() -> None:
    resource = {"extension": [
        {"url": "https://chartlight.dev/fhir/StructureDefinition/evidence-text", "extension": [
            {"url": "page", "valueInteger": 2}, {"url": "start", "valueInteger": 5},
            {"url": "end", "valueInteger": 9}, {"url": "box", "valueString": "1,2,30.5,40"}]},
        {"url": "https://chartlight.dev/fhir/StructureDefinition/evidence-audio", "extension": [
            {"url": "start", "valueDecimal": 1.5}, {"url": "end", "valueDecimal": 2.25},
            {"url": "quote", "valueString": "nodule"}]},
        {"url": "https://chartlight.dev/fhir/StructureDefinition/evidence-image", "extension": [
            {"url": "study", "valueId": "1.2"}, {"url": "series", "valueId": "1.2.3"},
            {"url": "instance", "valueId": "1.2.3.4"}, {"url": "frame", "valueInteger": 1},
            {"url": "box", "valueString": "10,20,30,40"}]},
        {"url": "https://chartlight.dev/fhir/StructureDefinition/evidence-text", "extension": [
            {"url": "page", "valueString": "one"}]},
    ]}
    assert evidence_of(resource) == (
        TextSpan(2, 5, 9, "", Box(1, 2, 30.5, 40)), AudioSpan(1.5, 2.25, "nodule"),
        ImageSpot("1.2", "1.2.3", "1.2.3.4", 1, None, Box(10, 20, 30, 40)))
    assert parse_box("5,5,1,1") is None and parse_box("a,b") is None and parse_box(None) is None


def test_transcript_words_from_the_json_companion() -> None:
    details = {"words": [{"text": "no", "start_s": 0.2, "end_s": 0.4},
                         {"text": "effusion", "start_s": 0.5, "end_s": 1.1}]}
    narrative = Narrative(key="transcript", kind="transcript", title="Transcript of dictation",
                          text="No effusion.", dictated=True, details_json=json.dumps(details),
                          evidence=(AudioEvidence(0.0, 1.2),))
    resource = to_document_reference(narrative, subject="Patient/1", source=SOURCE, identifier={
        "system": "s", "value": "v"}, model=fixed_result(SOURCE).model, date=None)
    words = transcript_words(resource)
    assert [(w.text, w.start_s, w.end_s) for w in words] == [("no", 0.2, 0.4), ("effusion", 0.5, 1.1)]
    assert transcript_words({"content": resource["content"][:1]}) == ()


def _job(job_id: int, state: JobState, version: str = "1", **changes: object) -> Job:
    values: dict = {"id": job_id, "pipeline": "documents", "source_type": "DocumentReference",  # type: ignore[type-arg]
                    "source_id": "5", "source_version": version, "subject": "Patient/1",
                    "fhir_base_url": "http://ehr/fhir", "state": state, "progress": 0.4,
                    "progress_text": "reading page 2", "attempts": 1, "next_attempt_at": NOW,
                    "error": "", "summary": {}, "created_at": NOW, "updated_at": NOW}
    values.update(changes)
    return Job(**values)


def test_status_of_each_input() -> None:
    row = InputRow("document", "DocumentReference/5", "2", "Lab", "", "documents", "")
    other = InputRow("recording", "Media/6", "1", "Audio", "", "speech", "MedASR is not available")
    assert statuses([row, other], [], {})[row.key] == Status("not analysed")
    assert statuses([row, other], [], {})[other.key].state == "unavailable"
    # Only jobs of the input's current version count.
    assert statuses([row], [_job(1, JobState.SUCCEEDED, "1")], {})[row.key].state == "not analysed"
    running = statuses([row], [_job(1, JobState.FAILED, "2"), _job(2, JobState.RUNNING, "2")], {})
    assert running[row.key] == Status("running", 0.4, "reading page 2")
    # A run started from the app (in memory) says more than the store.
    assert statuses([row], [_job(2, JobState.RUNNING, "2")], {row.key: Status("done", 1.0, "x")})[
        row.key].state == "done"
    done = job_status(_job(3, JobState.SUCCEEDED, summary={
        "created": ["Observation/1/_history/1"], "unchanged": ["Observation/2/_history/1"],
        "model": {"test_weights": True}}))
    assert done.state == "done" and "1 result(s) written, 1 already there" in done.text
    assert "not clinical" in done.text
    assert job_status(_job(4, JobState.FAILED, error="the PDF is encrypted")).text == "the PDF is encrypted"
    # The pages' live updates: the newest job per source, under the row's key.
    live = job_statuses([_job(1, JobState.SUCCEEDED, "1"), _job(2, JobState.RUNNING, "2")])
    assert live == {row.key: Status("running", 0.4, "reading page 2")}


def _session(scopes: str, user: str | None = "Practitioner/7") -> SmartSession:
    return SmartSession(id="s1", ehr="ehr", fhir_base="http://ehr/fhir", patient_id="1", encounter_id=None,
                        user=user, scopes=frozenset(scopes.split()), need_patient_banner=True,
                        smart_style_url=None, csrf_token="t")


def test_what_the_granted_scopes_let_the_app_do() -> None:
    full = ("patient/Observation.crus patient/DiagnosticReport.crus patient/DocumentReference.crus "
            "patient/Provenance.crs")
    assert Abilities.of(_session(full)) == Abilities(True, True, "", "")
    no_user = Abilities.of(_session(full, user=None))
    assert no_user.write and not no_user.sign and "fhirUser" in no_user.why_not_sign
    read_only = Abilities.of(_session(full.replace(".crus", ".rs")))
    assert not read_only.write and not read_only.sign
    assert "not written" in read_only.why_not_write and "Observation" in read_only.why_not_write
    assert Abilities.of(_session("patient/*.cruds")).write
    # Documents and Provenance only: results are written, as one document (plugin.writeback).
    documents_only = Abilities.of(_session(full.replace("Observation.crus", "Observation.rs")))
    assert documents_only.write and documents_only.sign
    assert "as one document" in documents_only.why_not_write and "Observation" in documents_only.why_not_write


def test_banner() -> None:
    banner = to_banner({"resourceType": "Patient", "name": [{"use": "official", "family": "Lindqvist",
                                                              "given": ["Maren"]}],
                        "birthDate": "1962-06-18", "gender": "female",
                        "identifier": [{"system": "https://hospital.example/mrn", "value": "CL-4417"}]})
    assert (banner.name, banner.birth_date, banner.gender) == ("Maren Lindqvist", "1962-06-18", "female")
    assert banner.identifier == "CL-4417 (mrn)"
    assert to_banner({"resourceType": "Patient"}).name == "(no name)"


def test_dictation_source_holds_the_audio_inline() -> None:
    doc = dictation_source(b"RIFF....WAVE", "audio/webm;codecs=opus", subject="Patient/1",
                           author="Practitioner/7", now=NOW)
    attachment = doc["content"][0]["attachment"]
    assert attachment["contentType"] == "audio/webm"
    assert base64.b64decode(attachment["data"]) == b"RIFF....WAVE"
    assert doc["author"] == [{"reference": "Practitioner/7"}] and "meta" not in doc  # not AI output
    with pytest.raises(InputError, match="no audio"):
        dictation_source(b"", "audio/webm", subject="Patient/1", author=None, now=NOW)
    with pytest.raises(InputError, match="not audio"):
        dictation_source(b"<html>", "text/html", subject="Patient/1", author=None, now=NOW)
    with pytest.raises(InputError, match="limit"):
        dictation_source(b"x" * (MAX_DICTATION_BYTES + 1), "audio/webm", subject="Patient/1", author=None,
                         now=NOW)


def test_page_png_highlights_the_box() -> None:
    pdf = synthetic.text_pdf(synthetic.DEMO_LAB_REPORT)
    box = Box(100.0, 200.0, 300.0, 212.0)  # PDF points
    page = Image.open(io.BytesIO(page_png(SourceBytes(pdf, "application/pdf"), page=1, boxes=(box,),
                                          view="page", source="DocumentReference/5"))).convert("RGB")
    scale = PAGE_DPI / 72  # boxes are PDF points; the page is rendered at PAGE_DPI
    assert page.width == round(612 * scale)  # US letter
    inside = page.getpixel((round(200 * scale), round(206 * scale)))
    outline = page.getpixel((round(200 * scale), round((200 - 2) * scale)))
    assert inside[2] < inside[0] - 40  # yellow wash: less blue than red
    assert outline[0] > 150 and outline[1] < 120  # the red outline
    crop = Image.open(io.BytesIO(page_png(SourceBytes(pdf, "application/pdf"), page=1, boxes=(box,),
                                          view="crop", source="DocumentReference/5")))
    assert crop.width == page.width and crop.height < page.height / 3
    with pytest.raises(InputError, match="no page 9"):
        page_png(SourceBytes(pdf, "application/pdf"), page=9, boxes=(), view="page", source="d")


def test_ttl_cache_expires_and_bounds() -> None:
    now = [0.0]
    cache = TtlCache(ttl_s=10, max_entries=2, clock=lambda: now[0])
    made = []
    assert cache.get_or_make("a", lambda: made.append("a") or 1) == 1
    assert cache.get_or_make("a", lambda: made.append("a") or 2) == 1
    now[0] = 11
    assert cache.get_or_make("a", lambda: made.append("a") or 3) == 3
    cache.get_or_make("b", lambda: 4)
    cache.get_or_make("c", lambda: 5)
    assert len(cache) == 2 and made == ["a", "a"]
