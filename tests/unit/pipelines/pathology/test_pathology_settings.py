"""The pathology_* settings: read from the environment into PathologyOptions (with the imaging
allow-lists, timeout and memory budget imaging uses), and bad values refused at start-up. What
each one changes on a real slide: tests/integration/test_pathology_slides_sandbox.py."""

from __future__ import annotations

import pytest

from plugin.config import load_settings
from plugin.errors import ConfigError
from plugin.pipelines.pathology.prepare import PathologyOptions, pathology_options

BASE = {"CHARTLIGHT_FHIR_BASE_URL": "https://ehr.example.org/fhir"}


def test_settings_reach_the_options() -> None:
    settings = load_settings(environ={
        **BASE, "CHARTLIGHT_PATHOLOGY_TARGET_UM_PER_PX": "1.0", "CHARTLIGHT_PATHOLOGY_PATCHES": "5",
        "CHARTLIGHT_PATHOLOGY_PATCH_PX": "512", "CHARTLIGHT_PATHOLOGY_MAX_BASE_PIXELS": "1000000",
        "CHARTLIGHT_PATHOLOGY_MAX_FRAMES_FETCHED": "33", "CHARTLIGHT_FHIR_TIMEOUT_S": "7",
        "CHARTLIGHT_IMAGING_ALLOWED_ENDPOINTS": "https://pacs.example.org/dicom-web",
        "CHARTLIGHT_IMAGING_TRUSTED_ENDPOINTS": "https://pacs2.example.org/dicom-web",
        "CHARTLIGHT_JOB_MEMORY_BYTES": "123456789"})
    options = pathology_options(settings)
    assert (options.target_um_per_px, options.patches, options.patch_px, options.max_base_pixels,
            options.max_frames_fetched) == (1.0, 5, 512, 1_000_000, 33)
    assert options.timeout_s == 7 and options.memory_bytes == 123456789
    assert options.allowed_endpoints == ("https://pacs.example.org/dicom-web",)
    assert options.trusted_endpoints == ("https://pacs2.example.org/dicom-web",)


def test_defaults_match_the_options_defaults() -> None:
    options, defaults = pathology_options(load_settings(environ=BASE)), PathologyOptions()
    assert (options.target_um_per_px, options.patches, options.patch_px, options.max_base_pixels,
            options.max_frames_fetched) == (defaults.target_um_per_px, defaults.patches, defaults.patch_px,
                                            defaults.max_base_pixels, defaults.max_frames_fetched)


@pytest.mark.parametrize(("name", "value", "message"), [
    ("PATHOLOGY_PATCH_PX", "20000", "pathology_patch_px must be 64 to 4096, got 20000"),
    ("PATHOLOGY_PATCHES", "0", "pathology_patches must be positive"),
    ("PATHOLOGY_TARGET_UM_PER_PX", "-1", "pathology_target_um_per_px must be positive"),
    ("PATHOLOGY_MAX_BASE_PIXELS", "0", "pathology_max_base_pixels must be positive"),
    ("PATHOLOGY_MAX_FRAMES_FETCHED", "0", "pathology_max_frames_fetched must be positive"),
])
def test_bad_values_are_refused(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(environ={**BASE, f"CHARTLIGHT_{name}": value})
