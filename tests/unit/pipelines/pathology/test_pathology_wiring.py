"""Pathology's place among the pipelines: installed as `pathology` with the settings that reach it
(the SR write-back and UID root of imaging, the job time limit of imaging), sent to the imaging
(GPU) queue, and the only pipeline that takes a study whose series are all whole slides (SM):
imaging skips those."""

from __future__ import annotations

from typing import Any

from plugin.config import Settings
from plugin.jobs import JobLimits
from plugin.jobs.dispatch import queue_of
from plugin.pipelines.imaging import ImagingTask
from plugin.pipelines.imaging.pipeline import is_slide_only, task_sources
from plugin.pipelines.pathology.pipeline import PathologyPipeline
from plugin.pipelines.pathology.prepare import pathology_options
from plugin.pipelines.registry import installed_pipelines


def study(study_id: str, *modalities: str, series: bool = True) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "ImagingStudy", "id": study_id,
                                "modality": [{"code": m} for m in dict.fromkeys(modalities)]}
    if series:
        resource["series"] = [{"uid": f"1.2.{n}", "modality": {"code": m}}
                              for n, m in enumerate(modalities, 1)]
    return resource


def test_imaging_skips_studies_of_whole_slides_only() -> None:
    slides = study("slides", "SM", "SM")
    listed_only = study("listed", "SM", series=False)
    mixed = study("mixed", "SM", "CR")
    chest = study("chest", "CR")
    assert [is_slide_only(s) for s in (slides, listed_only, mixed, chest, {"id": "bare"})] == [
        True, True, False, False, False]
    for task in (ImagingTask(), ImagingTask(kind="question", question="Any fracture?")):
        kept = task_sources(task, [slides, listed_only, mixed, chest])
        assert [s["id"] for s in kept] == ["mixed", "chest"]


def test_pathology_is_installed_with_imaging_s_write_back_settings() -> None:
    settings = Settings(imaging_write_back_dicom=True,
                        imaging_dicom_write_endpoints=("https://pacs.example.org/dicom-web",),
                        dicom_uid_root="1.2.826.0.1.3680043.99", job_timeout_imaging_s=1234.0)
    installed = installed_pipelines(settings)["pathology"]
    pipeline = installed.run
    assert isinstance(pipeline, PathologyPipeline)
    write = pipeline.dicom_write
    assert write is not None
    assert (write.enabled, write.write_endpoints, write.uid_root) == (
        True, ("https://pacs.example.org/dicom-web",), "1.2.826.0.1.3680043.99")
    # the slide options are built from these very settings when a job runs
    assert pipeline.preparation == pathology_options(settings)
    assert queue_of("pathology") == "imaging"
    assert JobLimits.from_settings(settings).time_limit("pathology") == 1234.0
