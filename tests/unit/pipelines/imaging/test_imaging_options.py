"""ImagingOptions from the settings, and the settings' own checks."""

from __future__ import annotations

import pytest

from plugin.config import load_settings
from plugin.errors import ConfigError
from plugin.pipelines.imaging.prepare import ImagingOptions, imaging_options


def test_options_follow_the_imaging_settings() -> None:
    settings = load_settings(environ={
        "CHARTLIGHT_IMAGING_TRUSTED_ENDPOINTS": "https://pacs.example.org/dicom-web/,https://b.example.org/wado",
        "CHARTLIGHT_IMAGING_MAX_SLICES": "40",
        "CHARTLIGHT_IMAGING_MAX_INSTANCE_BYTES": "1000",
        "CHARTLIGHT_ATTACHMENT_ALLOWED_HOSTS": "files.example.org",
    })
    options = imaging_options(settings)
    assert options.trusted_endpoints == ("https://pacs.example.org/dicom-web/", "https://b.example.org/wado")
    assert options.max_slices == 40 and options.max_instance_bytes == 1000 == options.max_metadata_bytes
    assert options.attachment_allowed_hosts == ("files.example.org",)
    assert imaging_options(load_settings(environ={})) == ImagingOptions()  # defaults agree: 85 slices


@pytest.mark.parametrize(("name", "value", "message"), [
    ("CHARTLIGHT_IMAGING_MAX_SLICES", "0", "imaging_max_slices must be positive"),
    ("CHARTLIGHT_IMAGING_TRUSTED_ENDPOINTS", "pacs.example.org", "imaging_trusted_endpoints must be an http"),
    ("CHARTLIGHT_PACS_PORT", "-1", "pacs_port must be positive"),
])
def test_bad_imaging_settings_are_refused(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(environ={name: value})


def test_options_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        ImagingOptions(max_slices=0)
