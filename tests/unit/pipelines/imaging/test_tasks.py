"""The imaging tasks: what each asks for, how its answer is read, what is refused; the prior-study
lookup; the prompt each task builds (parts in the order MedGemma was trained on)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from PIL import Image

from plugin.engines.answers import AnswerFormatError
from plugin.errors import ConfigError
from plugin.pipelines.imaging.comparison import find_prior_study
from plugin.pipelines.imaging.prepared import PreparedImage, PreparedStudy
from plugin.pipelines.imaging.prompts import task_parts
from plugin.pipelines.imaging.tasks import ImagingTask, ReadBox, ReadFinding, read_answer
from plugin.results import SourceRef

FINDINGS = ImagingTask()
COMPARE = ImagingTask("compare")


# ---- the tasks -----------------------------------------------------------------------------------

def test_each_task_has_its_own_key_and_job_queue_name() -> None:
    assert (FINDINGS.key, FINDINGS.job_pipeline) == ("findings", "imaging")
    assert (COMPARE.key, COMPARE.job_pipeline) == ("compare", "imaging-compare")
    one = ImagingTask("question", question="Is there a pneumothorax?")
    other = ImagingTask("question", question="Is the heart enlarged?")
    assert one.key.startswith("question-") and one.key != other.key
    assert one.key == ImagingTask("question", question="  Is there a pneumothorax? ").key
    boxes = ImagingTask("localize", find=("heart", "left lung"))
    assert boxes.job_pipeline == f"imaging-{boxes.key}" and len(boxes.job_pipeline) <= 40


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"kind": "segment"}, "must be one of"),
    ({"kind": "question"}, "needs a question"),
    ({"kind": "localize", "find": (" ",)}, "at least one"),
    ({"kind": "findings", "question": "why?"}, "only asked by the question task"),
    ({"kind": "compare", "find": ("heart",)}, "only used by the localize task"),
])
def test_a_task_without_what_it_needs_is_a_config_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ImagingTask(**kwargs)  # type: ignore[arg-type]


# ---- reading answers ---------------------------------------------------------------------------

def test_findings_are_read_from_a_fenced_object_after_the_thinking() -> None:
    answer = ('<unused94>thinking about the slices [not json<unused95>Here you go:\n```json\n'
              '{"findings": [{"finding": "Nodule  in the right lower lobe", "body_site": "right lung",'
              ' "abnormal": true, "slices": [12, "SLICE 13"]},'
              ' {"finding": "Heart size normal", "body_site": "heart", "abnormal": false},],'
              ' "impression": "Solitary nodule."}\n```')
    reading = read_answer(FINDINGS, answer)
    assert reading.findings == (
        ReadFinding("Nodule in the right lower lobe", "right lung", True, None, (12, 13)),
        ReadFinding("Heart size normal", "heart", False, None, ()),
    )
    assert reading.impression == "Solitary nodule." and reading.unusable == ()


def test_a_bare_list_is_read_and_unusable_items_are_reported_one_by_one() -> None:
    reading = read_answer(FINDINGS, '[{"text": "Small effusion", "location": "left"}, "oops", '
                                    '{"body_site": "lung"}]')
    assert reading.findings == (ReadFinding("Small effusion", "left"),)
    assert [u.split(":")[0] for u in reading.unusable] == ["finding #2 is not an object",
                                                           "finding #3 has no text"]


def test_comparison_changes_are_coded_and_an_unknown_change_is_not_guessed() -> None:
    answer = ('{"findings": [{"finding": "Opacity", "change": "Worsened"},'
              ' {"finding": "Effusion", "change": "unchanged"},'
              ' {"finding": "Line", "change": "moved"}], "impression": "Opacity larger."}')
    reading = read_answer(COMPARE, answer)
    assert [(f.text, f.change) for f in reading.findings] == [("Opacity", "worsened"),
                                                               ("Effusion", "stable")]
    assert len(reading.unusable) == 1 and "moved" in reading.unusable[0]


def test_boxes_keep_their_label_and_raw_coordinates() -> None:
    task = ImagingTask("localize", find=("heart",))
    reading = read_answer(task, '[{"box_2d": [100, 200, 600, 700], "label": "heart"}, '
                                '{"label": "aorta"}, {"box_2d": [1, 2, 3, 4]}]')
    assert reading.boxes == (ReadBox("heart", [100, 200, 600, 700]),)
    assert [u.split(":")[0] for u in reading.unusable] == ["box #2 has no box_2d",
                                                           "box #3 has no label"]


def test_a_question_is_answered_in_text_without_the_thinking() -> None:
    task = ImagingTask("question", question="Is there a pneumothorax?")
    reading = read_answer(task, "<unused94>look at apices<unused95>No pneumothorax.<end_of_turn>")
    assert reading.answer == "No pneumothorax."
    with pytest.raises(AnswerFormatError, match="empty"):
        read_answer(task, "<unused94>still thinking when the tokens ran out")


@pytest.mark.parametrize("answer", [
    "", "lorem ipsum dolor", '{"findings": [{"finding": "cut off', '{"verdict": "normal"}', '"text"',
    "<unused94>only thoughts<unused95>",
])
def test_unreadable_answers_raise_instead_of_being_guessed(answer: str) -> None:
    with pytest.raises(AnswerFormatError):
        read_answer(FINDINGS, answer)


# ---- the prior study -----------------------------------------------------------------------------

def study(study_id: str, started: str | None, modality: str = "CR", site: str | None = "51185008",
          uid: str = "") -> dict[str, object]:
    series: dict[str, object] = {"uid": f"{study_id}.1", "modality": {"code": modality}}
    if site:
        series["bodySite"] = {"system": "http://snomed.info/sct", "code": site}
    resource: dict[str, object] = {"resourceType": "ImagingStudy", "id": study_id,
                                   "modality": [{"code": modality}], "series": [series],
                                   "identifier": [{"system": "urn:dicom:uid",
                                                   "value": f"urn:oid:{uid or study_id}"}]}
    if started:
        resource["started"] = started
    return resource


def test_the_prior_is_the_newest_earlier_study_of_the_same_modality_and_body_part() -> None:
    current = study("cur", "2026-06-01T09:00:00Z")
    studies = [
        current,
        study("later", "2026-07-01T09:00:00Z"),
        study("other-site", "2026-05-30T09:00:00Z", site="69536005"),
        study("ct", "2026-05-29T09:00:00Z", modality="CT"),
        study("dx", "2026-03-01T09:00:00+02:00", modality="DX"),  # DX and CR compare
        study("old", "2025-01-01"),
        study("undated", None),
        study("same-uid", "2026-01-01T00:00:00Z", uid="cur"),
    ]
    assert find_prior_study(current, studies)["id"] == "dx"  # type: ignore[index]
    assert find_prior_study(current, [s for s in studies if s["id"] != "dx"])["id"] == "old"  # type: ignore[index]


def test_no_prior_without_a_date_body_part_or_an_earlier_study() -> None:
    assert find_prior_study(study("cur", None), [study("old", "2025-01-01")]) is None
    assert find_prior_study(study("cur", "2026-01-01", site=None), [study("old", "2025-01-01")]) is None
    assert find_prior_study(study("cur", "2026-01-01"), [study("new", "2026-02-01")]) is None


# ---- prompts -----------------------------------------------------------------------------------

def prepared(kind: str, count: int, modality: str = "CT") -> PreparedStudy:
    volume = kind != "projection"
    images = tuple(PreparedImage(image=Image.new("RGB", (8, 8), n), series_uid="1.2", frame=1,
                                 instance_uid=f"1.2.{n}", label=f"SLICE {n + 1}" if volume else "",
                                 original_size=(8, 8), slice_index=n * 3 if volume else None)
                   for n in range(count))
    return PreparedStudy(source=SourceRef("ImagingStudy", kind, "1"), study_uid="1", kind=kind,  # type: ignore[arg-type]
                         modality=modality, body_part="CHEST", started=datetime(2026, 1, 1, tzinfo=UTC),
                         images=images)


def test_a_volume_turn_is_instruction_then_each_slice_and_its_label_then_the_question() -> None:
    volume = prepared("ct-volume", 3)
    parts = task_parts(FINDINGS, volume)
    assert isinstance(parts[0], str) and "CT study of the chest: 3 axial slices" in parts[0]
    assert parts[1:7] == [volume.images[0].image, "SLICE 1", volume.images[1].image, "SLICE 2",
                          volume.images[2].image, "SLICE 3"]
    assert isinstance(parts[-1], str) and '"slices"' in parts[-1] and len(parts) == 8


def test_a_radiograph_turn_is_the_image_then_the_question() -> None:
    xray = prepared("projection", 1, modality="CR")
    question = ImagingTask("question", question="Is there a pneumothorax?")
    parts = task_parts(question, xray)
    assert parts[0] is xray.images[0].image and isinstance(parts[1], str)
    assert parts[1].endswith("Is there a pneumothorax?")
    assert parts[1].startswith("The image above is an X-ray of the chest.")
    boxes = task_parts(ImagingTask("localize", find=("heart", "left lung")), xray)
    assert boxes[0] is xray.images[0].image and '"heart", "left lung"' in str(boxes[1])
    assert "box_2d" in str(boxes[1]) and "0-1000" in str(boxes[1])


def test_a_comparison_turn_is_the_prior_image_then_the_current_then_the_question() -> None:
    current, prior = prepared("projection", 1, "CR"), prepared("projection", 1, "DX")
    parts = task_parts(COMPARE, current, prior)
    assert parts[0] is prior.images[0].image and parts[1] is current.images[0].image
    assert isinstance(parts[2], str) and '"improved"' in parts[2] and len(parts) == 3
    volumes = task_parts(COMPARE, prepared("ct-volume", 2), prepared("ct-volume", 2))
    assert [p for p in volumes if isinstance(p, str) and "SLICE" in p] == [
        "PRIOR SLICE 1", "PRIOR SLICE 2", "CURRENT SLICE 1", "CURRENT SLICE 2"]
    with pytest.raises(ValueError, match="prior"):
        task_parts(COMPARE, current)


def test_an_mri_turn_says_mri_and_has_no_ct_windows() -> None:
    parts = task_parts(FINDINGS, prepared("mr-volume", 2, modality="MR"))
    assert isinstance(parts[0], str)
    assert parts[0].startswith("You are shown an MRI study of the chest: 2 slices")
    assert "HU" not in parts[0] and parts[2] == "SLICE 1" and parts[4] == "SLICE 2"
