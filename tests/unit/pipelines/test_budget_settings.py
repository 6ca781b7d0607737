"""The settings job_memory_bytes and speech_max_duration_s reach the documents and speech jobs
that installed_pipelines builds, and change what a job may do."""

from __future__ import annotations

import base64

import pytest

from plugin.budget import DEFAULT_JOB_MEMORY_BYTES, MIB, BudgetExceeded
from plugin.config import load_settings
from plugin.engines.test_models.tiny_medasr import tiny_engine
from plugin.errors import ConfigError, InputError
from plugin.pipelines.registry import installed_pipelines
from plugin.pipelines.speech import SpeechPipeline
from tests.corpus.hostile.audio import wav
from tests.corpus.hostile.images import encode, lab_page
from tests.support.audio_formats import tone
from tests.support.lab_documents import document_reference, offline_context

SMALL = {"CHARTLIGHT_JOB_MEMORY_BYTES": str(4 * MIB), "CHARTLIGHT_SPEECH_MAX_DURATION_S": "2"}


def test_the_defaults_are_the_budget_modules() -> None:
    pipelines = installed_pipelines(load_settings(environ={}))
    assert pipelines["documents"].run.options.job_memory_bytes == DEFAULT_JOB_MEMORY_BYTES  # type: ignore[attr-defined]
    assert pipelines["speech"].run.options.max_duration_s == 3600.0  # type: ignore[attr-defined]


def test_job_memory_bytes_decides_whether_a_scan_is_read() -> None:
    page = document_reference(encode(lab_page(), "PNG"), "image/png", resource_id="scan-1")
    read = installed_pipelines(load_settings(environ={}))["documents"].run(offline_context(page))
    assert read.source.reference == "DocumentReference/scan-1"
    small = installed_pipelines(load_settings(environ=SMALL))["documents"].run
    with pytest.raises(BudgetExceeded, match=r"content\[0\]: cleaning a 850x366 page .* of its "
                                             r"4.0 MiB memory budget"):
        small(offline_context(page))


def test_speech_settings_reach_the_speech_job() -> None:
    options = installed_pipelines(load_settings(environ=SMALL))["speech"].run.options  # type: ignore[attr-defined]
    assert (options.job_memory_bytes, options.max_duration_s) == (4 * MIB, 2.0)
    media = {"resourceType": "Media", "id": "m7", "meta": {"versionId": "1"}, "status": "completed",
             "content": {"contentType": "audio/wav",
                         "data": base64.b64encode(wav(tone(16_000, 1, 3.0)[:, 0], 16_000)).decode()}}
    context = offline_context(media)
    with pytest.raises(InputError, match="Media/m7 content: the recording is 3 s long, over the 2 s"):
        SpeechPipeline(options, engine=tiny_engine())(context)


def test_budget_settings_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="job_memory_bytes must be positive"):
        load_settings(environ={"CHARTLIGHT_JOB_MEMORY_BYTES": "0"})
