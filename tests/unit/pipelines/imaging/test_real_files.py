"""The imaging pipeline's readers on real-world shapes made from pydicom's bundled files
(tests/support/real_dicom.py): broken codestreams, LUTs, orientations, enhanced multi-frame."""

from __future__ import annotations

import logging
import sys

import pytest

from plugin.errors import InputError
from plugin.pipelines.imaging.pixels import decode_instance
from tests.support.real_dicom import damaged_codestream


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
