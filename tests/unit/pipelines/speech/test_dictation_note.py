"""The structured note read from hand-written model answers: well-formed, with made-up citations,
with numbers the dictation never said, cut off; and the note without a model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fhir_mappers import TEST_WEIGHTS_DISPLAY, item_identifier
from plugin.pipelines.speech import note as notes
from plugin.pipelines.speech.dictation_note import READER, note_result
from plugin.pipelines.speech.transcript_words import TimedWord, segments_of
from plugin.results import MeasuredValue, ModelInfo, Narrative, SourceRef

DICTATION = ("patient seen in clinic today for hypertension {period} blood pressure one twenty "
             "eight over eighty two {period} sats ninety four percent on room air {period} "
             "continue amlodipine five milligrams {period} follow up in two weeks {period}")
WORDS = tuple(TimedWord(w, round(i * 0.4, 3), round(i * 0.4 + 0.3, 3))
              for i, w in enumerate(DICTATION.split()))
SEGMENTS = segments_of(WORDS)
TRANSCRIPT = SourceRef("DocumentReference", "7", "1", "abc")
MEDGEMMA = ModelInfo("google/medgemma-1.5-4b-it", "rev1", ("Large-Language-Models",))

WELL_FORMED = """```json
{"sections": [
 {"title": "Subjective", "sentences": [{"text": "Seen for hypertension.", "cites": ["s1"]}]},
 {"title": "Objective", "sentences": [
   {"text": "Blood pressure 128/82 mmHg.", "cites": ["s2"]},
   {"text": "SpO2 94% on room air.", "cites": ["s3"]}]},
 {"title": "Plan", "sentences": [
   {"text": "Continue amlodipine 5 mg.", "cites": ["s4"]},
   {"text": "Follow up in two weeks.", "cites": ["s5"]}]}
]}
```"""


def read(answer: str) -> notes.StructuredNote:
    return notes.read_note(answer, kind="clinic", segments=SEGMENTS, words=WORDS)


def test_segments_follow_the_spoken_sentences() -> None:
    assert [s.id for s in SEGMENTS] == ["s1", "s2", "s3", "s4", "s5"]
    assert SEGMENTS[1].text == "Blood pressure one twenty eight over eighty two."
    assert (SEGMENTS[1].start_s, SEGMENTS[1].end_s) == (WORDS[SEGMENTS[1].first].start_s,
                                                         WORDS[SEGMENTS[1].last].end_s)


def test_a_well_formed_answer_keeps_every_sentence_with_its_time_range() -> None:
    note = read(WELL_FORMED)
    assert note.structured and not note.withheld
    assert [(s.section, s.text) for s in note.sentences] == [
        ("Subjective", "Seen for hypertension."), ("Objective", "Blood pressure 128/82 mmHg."),
        ("Objective", "SpO2 94% on room air."), ("Plan", "Continue amlodipine 5 mg."),
        ("Plan", "Follow up in two weeks.")]
    assert note.sentences[1].ranges == ((SEGMENTS[1].start_s, SEGMENTS[1].end_s),)


def test_made_up_citations_are_withheld() -> None:
    answer = json.dumps({"sections": [{"title": "Objective", "sentences": [
        {"text": "Heart rate was normal.", "cites": ["s17"]},
        {"text": "Afebrile.", "cites": []},
        {"text": "Blood pressure 128/82.", "cites": ["s2"]}]}]})
    note = read(answer)
    assert [s.text for s in note.sentences] == ["Blood pressure 128/82."]
    assert [w.reason for w in note.withheld] == ["it cites segments that do not exist: s17",
                                                 "it cites no transcript segment"]


def test_numbers_not_spoken_in_the_cited_segments_are_withheld() -> None:
    answer = json.dumps({"sections": [{"title": "Objective", "sentences": [
        {"text": "Blood pressure 138/82.", "cites": ["s2"]},
        {"text": "SpO2 94%.", "cites": ["s2"]},  # said, but in s3, not the segment cited
        {"text": "Amlodipine 10 mg.", "cites": ["s4"]},
        {"text": "Saturation ninety four percent.", "cites": ["s3"]}]}]})
    note = read(answer)
    assert [s.text for s in note.sentences] == ["Saturation ninety four percent."]
    assert [w.reason for w in note.withheld] == [
        "138 is not spoken in the cited segments s2", "94 is not spoken in the cited segments s2",
        "10 is not spoken in the cited segments s4"]


def test_a_section_outside_the_note_kind_is_withheld() -> None:
    answer = json.dumps({"sections": [{"title": "Impression", "sentences": [
        {"text": "Hypertension.", "cites": ["s1"]}]}]})
    note = read(answer)
    assert not note.sentences and "not one of Subjective" in note.withheld[0].reason


def test_a_truncated_answer_structures_nothing_and_says_why() -> None:
    note = read(WELL_FORMED[:200])
    assert not note.structured and not note.sentences
    assert note.reason.startswith("the model's answer could not be read")


def test_prose_without_json_structures_nothing() -> None:
    note = read("The patient has hypertension and should follow up.")
    assert not note.structured and "not structured" in note.reason


def test_the_kind_comes_from_the_type_then_from_the_words() -> None:
    assert notes.choose_kind(["18748-4", "Diagnostic imaging study"], WORDS) == "radiology"
    assert notes.choose_kind([], WORDS) == "clinic"
    ct = tuple(TimedWord(w, 0, 1) for w in ["ct", "chest", "without", "contrast", "findings", "a", "nodule"])
    assert notes.choose_kind([], ct) == "radiology"
    assert notes.choose_kind(["Progress note"], ct) == "clinic"


def test_the_prompt_lists_every_segment_and_the_kinds_sections() -> None:
    prompt = notes.note_prompt("radiology", SEGMENTS)
    assert "Findings, Impression, Recommendations" in prompt
    assert all(f"[{s.id}] {s.text}" in prompt for s in SEGMENTS)


def test_the_result_holds_the_note_and_the_verified_vital_signs() -> None:
    result = note_result(WORDS, transcript=TRANSCRIPT, recording=SourceRef("Media", "3", "2"),
                         model=MEDGEMMA, note=read(WELL_FORMED), type_texts=[])
    note, *values = result.items
    assert isinstance(note, Narrative) and note.kind == "clinic-note" and note.dictated
    assert note.media_type == "text/markdown" and "## Objective" in note.text
    assert "- Blood pressure 128/82 mmHg. [0:03.2]" in note.text  # s2 starts at word 8, 3.2 s
    details = json.loads(note.details_json)
    assert details["structured"] is True
    assert details["sections"][1]["sentences"][0]["segments"] == ["s2"]
    assert all(isinstance(v, MeasuredValue) for v in values)
    bp, sats = values
    assert isinstance(bp, MeasuredValue) and isinstance(sats, MeasuredValue)
    assert bp.code is not None and bp.code.code == "85354-9"
    assert [(c.code.code if c.code else "", c.value) for c in bp.components] == [
        ("8480-6", 128), ("8462-4", 82)]
    assert sats.code is not None and sats.code.code == "59408-5" and sats.unit == "%"
    assert result.other_sources == (SourceRef("Media", "3", "2"),)
    assert "amlodipine" not in json.dumps([v.name for v in values])  # the dose is not a vital


def test_without_a_model_the_vital_signs_are_read_and_the_note_says_it_was_not_structured() -> None:
    result = note_result(WORDS, transcript=TRANSCRIPT, recording=None, model=READER, note=None,
                         type_texts=[], unstructured_reason="no MedGemma engine is configured: "
                                                            "the note was not structured")
    note = result.items[0]
    assert isinstance(note, Narrative)
    assert note.text.startswith("**The note was not structured.** no MedGemma engine")
    assert "## Subjective" not in note.text and json.loads(note.details_json)["sections"] == []
    assert len(result.items) == 3 and result.model.kinds == ("Deterministic-AI",)
    assert any(p.where == "note" for p in result.problems)


def test_test_weights_output_is_marked_in_the_note() -> None:
    model = ModelInfo("chartlight-test/tiny-medgemma", "t", ("Large-Language-Models",), test_weights=True)
    result = note_result(WORDS, transcript=TRANSCRIPT, recording=None, model=model,
                         note=read(WELL_FORMED), type_texts=[])
    note = result.items[0]
    assert isinstance(note, Narrative) and note.text.startswith(f"> {TEST_WEIGHTS_DISPLAY}")


def test_the_example_in_speech_md_prints_what_it_says(capsys: pytest.CaptureFixture[str]) -> None:
    doc = (Path(__file__).resolve().parents[4] / "docs" / "speech.md").read_text("utf-8")
    section = doc.split("## Structured notes and spoken vital signs", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "docs/speech.md", "exec"), {})  # noqa: S102 -- our own documentation
    expected = [line[2:].split("     (")[0] for line in code.splitlines() if line.startswith("# ")]
    assert capsys.readouterr().out.splitlines() == expected


def test_a_transcript_version_that_only_a_review_made_keeps_the_same_note_identifiers() -> None:
    first, signed = (note_result(WORDS, transcript=SourceRef("DocumentReference", "7", version, "abc"),
                                 recording=None, model=MEDGEMMA, note=read(WELL_FORMED), type_texts=[])
                     for version in ("1", "2"))
    keys = [item.key for item in first.items]
    assert [item_identifier(first, k) for k in keys] == [item_identifier(signed, k) for k in keys]
    assert signed.source.versioned_reference == "DocumentReference/7/_history/2"  # Provenance's entity
