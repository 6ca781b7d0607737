"""The imaging pipeline's readers on real-world shapes made from pydicom's bundled files
(tests/support/real_dicom.py): broken codestreams, LUTs, orientations, enhanced multi-frame."""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from plugin.errors import InputError
from plugin.pipelines.imaging import preprocessing
from plugin.pipelines.imaging.pixels import decode_instance
from tests.support.real_dicom import bundled, damaged_codestream, with_modality_lut, with_voi_lut


@pytest.mark.parametrize("name", ["MR_small_jp2klossless.dcm", "MR_small_RLE.dcm"])
def test_an_undecodable_codestream_is_one_sentence_and_nothing_on_stderr(
        name: str, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    data = damaged_codestream(name)
    # A service's logging set-up: the root logger writes WARNING and above to stderr.
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    logging.getLogger().addHandler(handler)
    try:
        with caplog.at_level(logging.DEBUG, logger="plugin.pipelines.imaging.pixels"), \
                pytest.raises(InputError) as caught:
            decode_instance(data, source="instance 1.2.3.4", max_pixels=10**6)
    finally:
        logging.getLogger().removeHandler(handler)
    message = str(caught.value)
    assert message.startswith("instance 1.2.3.4: the ") and "pixel data cannot be decoded" in message
    assert "\n" not in message and "Traceback" not in message and "pylibjpeg" not in message
    assert capfd.readouterr().err == ""
    # The decoders' own messages are kept, at DEBUG, for whoever looks into it.
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG and r.name.endswith("pixels")]
    assert any("pydicom" in r.getMessage() for r in debug)


# ---- modality and VOI LUTs: pydicom's apply_modality_lut / apply_voi_lut semantics -----------

def _pydicom_display(ds: Dataset, low: float, high: float) -> np.ndarray:
    """What pydicom's own functions give, scaled from the VOI output range to 0..255."""
    modality = apply_modality_lut(ds.pixel_array, ds)
    if "VOILUTSequence" in ds:  # a LUT's input is integral; pydicom warns on floats
        modality = modality.astype(np.int64)
    values = apply_voi_lut(modality, ds, index=0)
    unit = np.clip((np.asarray(values, dtype=np.float64) - low) / (high - low), 0.0, 1.0)
    return np.floor(unit * 255.0 + 0.5).astype(np.uint8)


def test_a_voi_lut_is_applied_to_the_rescaled_values() -> None:
    ds = bundled("CT_small.dcm")  # signed 16-bit, RescaleSlope 1, RescaleIntercept -1024
    ds.RescaleSlope, ds.RescaleIntercept = 2, -1024
    hu = apply_modality_lut(ds.pixel_array, ds)
    first = int(hu.min())
    with_voi_lut(ds, first=first, entries=int(hu.max()) - first + 1)
    gray, display = preprocessing.projection_gray(ds.pixel_array, ds)
    assert display.voi == "VOI LUT"
    assert (gray == _pydicom_display(ds, 0, 4095)).all()
    # Indexing the LUT with the stored values (what was done before) gives another image.
    stored_indexed = apply_voi_lut(ds.pixel_array, ds, index=0).astype(np.float64) / 4095
    assert (np.floor(stored_indexed * 255 + 0.5).astype(np.uint8) != gray).mean() > 0.5


def test_a_modality_lut_sequence_replaces_the_rescale() -> None:
    ds = with_modality_lut(bundled("MR_small.dcm"))
    ds.WindowCenter, ds.WindowWidth = 2000, 3000
    gray, display = preprocessing.projection_gray(ds.pixel_array, ds)
    assert display.voi == "window C/W" and display.window == (2000.0, 3000.0)
    assert (gray == _pydicom_display(ds, 0, 65535)).all()
    values = preprocessing.modality_values(ds.pixel_array, ds, compact=True)
    assert (values == apply_modality_lut(ds.pixel_array, ds)).all()
    assert preprocessing.modality_range(ds.pixel_array, ds) == (float(values.min()), float(values.max()))


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_the_headers_window_function_is_used(function: str) -> None:
    ds = bundled("CT_small.dcm")
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = 40, 400, function
    gray, display = preprocessing.projection_gray(ds.pixel_array, ds)
    low, high = preprocessing.window_output_range(ds)
    assert (low, high) == (-32768 - 1024, 32767 - 1024)  # signed 16-bit stored range, rescaled
    assert (gray == _pydicom_display(ds, low, high)).all()
    assert display.voi == ("window C/W" if function == "LINEAR" else f"window C/W ({function})")
