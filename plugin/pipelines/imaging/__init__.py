"""Imaging: an ImagingStudy (CT/MRI volume, chest X-ray) -> MedGemma findings, answers,
comparisons with the prior study and boxes, traced to series, instance and frame."""

from plugin.pipelines.imaging.boxes import BoxError, to_pixel_box
from plugin.pipelines.imaging.comparison import find_prior_study
from plugin.pipelines.imaging.pipeline import PIPELINE, PIPELINE_VERSION, ImagingPipeline
from plugin.pipelines.imaging.prepared import PreparedImage, PreparedStudy
from plugin.pipelines.imaging.prompts import PROMPT_VERSION
from plugin.pipelines.imaging.tasks import TASK_KINDS, ImagingTask

__all__ = [
    "PIPELINE",
    "PIPELINE_VERSION",
    "PROMPT_VERSION",
    "TASK_KINDS",
    "BoxError",
    "ImagingPipeline",
    "ImagingTask",
    "PreparedImage",
    "PreparedStudy",
    "find_prior_study",
    "to_pixel_box",
]
