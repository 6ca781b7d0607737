"""Decoding native and compressed pixel data, and the bad files that must fail clearly."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless

from plugin.errors import InputError
from plugin.pipelines.imaging.pixels import decode_instance
from plugin.sandbox.synthetic.dicom_file import part10_bytes
from tests.support.dicom_builders import SliceSpec, gdcm_jpeg_lossless, jpeg_baseline_file, slice_dataset

PIXELS = (np.arange(64 * 48, dtype=np.uint16).reshape(64, 48) * 7) % 4096


def dataset():  # type: ignore[no-untyped-def]
    return slice_dataset(study_uid="1.2.3", series_uid="1.2.3.4", spec=SliceSpec(z=0.0, instance_number=1),
                         pixels=PIXELS)


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, RLELossless, JPEG2000Lossless])
def test_native_and_lossless_compressed_instances_decode_to_the_same_values(syntax: str) -> None:
    ds = dataset()
    if syntax != ExplicitVRLittleEndian:
        ds.BitsStored, ds.HighBit = 12, 11
        ds.compress(syntax, PIXELS, encoding_plugin="pylibjpeg", generate_instance_uid=False)
    decoded = decode_instance(part10_bytes(ds, syntax), source="t", max_pixels=10_000)
    assert decoded.frames.shape == (1, 64, 48)
    assert (decoded.frames[0] == PIXELS).all()


def test_jpeg_lossless_decodes_exactly() -> None:
    ds = dataset()
    ds.BitsStored, ds.HighBit = 12, 11
    data = gdcm_jpeg_lossless(part10_bytes(ds, ExplicitVRLittleEndian))
    decoded = decode_instance(data, source="t", max_pixels=10_000)
    assert str(decoded.dataset.file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2.4.70"
    assert (decoded.frames[0] == PIXELS).all()


def test_jpeg_baseline_decodes_close_to_the_original() -> None:
    gradient = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (32, 1))
    decoded = decode_instance(jpeg_baseline_file(gradient), source="t", max_pixels=10_000)
    assert decoded.frames.shape == (1, 32, 64)
    assert np.abs(decoded.frames[0].astype(int) - gradient).max() <= 4  # lossy, quality 95


def test_a_file_that_is_not_dicom_is_named_and_refused() -> None:
    with pytest.raises(InputError, match="not a DICOM Part-10 file") as caught:
        decode_instance(b"%PDF-1.7 " + b"x" * 200, source="DocumentReference/3 content[0]", max_pixels=10)
    assert caught.value.source == "DocumentReference/3 content[0]"


def test_a_truncated_dicom_file_is_refused() -> None:
    data = part10_bytes(dataset(), ExplicitVRLittleEndian)
    with pytest.raises(InputError, match="pixel data is .* bytes|cannot be read"):
        decode_instance(data[: len(data) // 2], source="t", max_pixels=10_000)


def test_missing_pixel_data_is_refused() -> None:
    ds = dataset()
    del ds.PixelData
    with pytest.raises(InputError, match="has no pixel data"):
        decode_instance(part10_bytes(ds, ExplicitVRLittleEndian), source="t", max_pixels=10_000)


def test_wrong_pixel_data_length_is_refused() -> None:
    ds = dataset()
    ds.PixelData = ds.PixelData[:-100]
    with pytest.raises(InputError, match=r"pixel data is 6044 bytes, the header implies 6144"):
        decode_instance(part10_bytes(ds, ExplicitVRLittleEndian), source="t", max_pixels=10_000)


def test_an_unsupported_transfer_syntax_is_refused_before_decoding() -> None:
    data = part10_bytes(dataset(), ExplicitVRLittleEndian)
    # A UID of the same length (so the file meta group length stays right) that no decoder knows.
    patched = data.replace(b"1.2.840.10008.1.2.1\x00", b"1.2.840.10008.1.2.9\x00", 1)
    with pytest.raises(InputError, match=r"unsupported transfer syntax 1.2.840.10008.1.2.9"):
        decode_instance(patched, source="t", max_pixels=10_000)


def test_too_many_pixels_fail_before_decompression() -> None:
    with pytest.raises(InputError, match="exceed the 1000-pixel limit"):
        decode_instance(part10_bytes(dataset(), ExplicitVRLittleEndian), source="t", max_pixels=1000)
