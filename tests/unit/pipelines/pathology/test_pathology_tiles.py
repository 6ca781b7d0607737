"""Region -> frames math for TILED_FULL and TILED_SPARSE levels, frame decoding checks before
decoding, the frame budget checked before any request, and a PACS's 404 for a frame named."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from plugin.budget import MemoryBudget
from plugin.errors import InputError
from plugin.pipelines.imaging.dicomweb import DicomWebClient
from plugin.pipelines.pathology.slide import PyramidLevel
from plugin.pipelines.pathology.tiles import (
    TileReader,
    decode_frame,
    frame_index,
    frames_for_region,
    tiles_for_region,
)
from plugin.results import Box
from tests.support.loopback import ServerState, loopback_server

FULL = PyramidLevel(instance_uid="1.2.3", series_uid="1.2", image_type="VOLUME", total_columns=1000,
                    total_rows=700, tile_columns=256, tile_rows=256, frames=4 * 3, organization="TILED_FULL",
                    pixel_spacing_mm=(0.0005, 0.0005))


def test_tiled_full_frames_run_row_by_row_columns_fastest() -> None:
    index = frame_index(FULL)
    assert (FULL.tiles_across, FULL.tiles_down) == (4, 3)
    assert index[(0, 0)] == 1 and index[(3, 0)] == 4 and index[(0, 1)] == 5 and index[(3, 2)] == 12


def test_a_region_needs_exactly_the_tiles_it_touches() -> None:
    assert tiles_for_region(FULL, Box(0, 0, 256, 256)) == [(0, 0)]  # x1/y1 exclusive
    assert tiles_for_region(FULL, Box(255, 255, 257, 257)) == [(0, 0), (1, 0), (0, 1), (1, 1)]
    assert frames_for_region(FULL, Box(512, 256, 1000, 700)) == {(2, 1): 7, (3, 1): 8, (2, 2): 11, (3, 2): 12}
    with pytest.raises(ValueError, match="not inside"):
        tiles_for_region(FULL, Box(900, 0, 1001, 10))


def test_sparse_levels_map_tiles_by_position_and_report_absent_ones() -> None:
    sparse = replace(FULL, organization="TILED_SPARSE", frames=2, sparse_tiles=((1, 1), (0, 0)))
    assert frames_for_region(sparse, Box(0, 0, 512, 300)) == {
        (0, 0): 2, (1, 0): None, (0, 1): None, (1, 1): 1}


def _jpeg(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 100, 150)).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_a_frame_whose_codestream_is_not_the_tile_size_is_refused_before_decoding() -> None:
    assert decode_frame(_jpeg(256, 256), "1.2.840.10008.1.2.4.50", FULL, where="f").shape == (256, 256, 3)
    with pytest.raises(InputError, match="the frame's codestream is 300 x 256, not the 256 x 256 tile"):
        decode_frame(_jpeg(300, 256), "1.2.840.10008.1.2.4.50", FULL, where="f")
    with pytest.raises(InputError, match="frames in transfer syntax 1.2.840.10008.1.2.5 cannot be decoded"):
        decode_frame(b"x", "1.2.840.10008.1.2.5", FULL, where="f")
    native = np.arange(256 * 256 * 3, dtype=np.uint8).tobytes()
    assert decode_frame(native, "1.2.840.10008.1.2.1", FULL, where="f").tobytes() == native


def test_the_frame_budget_refuses_before_any_request() -> None:
    state = ServerState()
    with loopback_server(state) as base:
        reader = TileReader(DicomWebClient(base), "1.9", where="series S", budget=MemoryBudget("s"),
                            max_frames=3, max_frame_bytes=10**6)
        with pytest.raises(InputError, match=r"needs 4 frames and 0 were already fetched: over the 3-frame "
                                             r"limit \(pathology_max_frames_fetched\)"):
            reader.read_region(FULL, Box(200, 200, 300, 300))
    assert state.seen == []


def test_a_frame_the_pacs_answers_404_for_is_named() -> None:
    state = ServerState(fail_first=10, fail_status=404)
    with loopback_server(state) as base:
        reader = TileReader(DicomWebClient(base), "1.9", where="series S", budget=MemoryBudget("s"),
                            max_frames=10, max_frame_bytes=10**6, workers=1)
        with pytest.raises(InputError) as caught:
            reader.read_region(FULL, Box(0, 0, 10, 10))
    assert caught.value.source == "series S instance 1.2.3 frame 1"
    assert caught.value.reason == "the frame could not be retrieved (the PACS answered HTTP 404)"
    assert [seen.path for seen in state.seen] == ["/studies/1.9/series/1.2/instances/1.2.3/frames/1"]
