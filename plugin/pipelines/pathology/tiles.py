"""Tiles of a pyramid level: which frames cover a region, fetching them (WADO-RS frame retrieval,
within the budgets) and decoding them into that region's pixels.

    frames_for_region(level, region)      {(column, row) tile: 1-based frame number or None}
    TileReader(client, study_uid, ...)    .region(level, region) -> RGB uint8 array

Budgets are checked before the work: the frame count before any request, each frame's bytes
while it is read (DicomWebClient cuts the body off), its decoded size from the codestream's
header before its pixels are decoded, and the job's memory budget before each allocation.
A tile absent from a TILED_SPARSE level is background (the scanner found nothing there): it
is painted white, not fetched.
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from plugin.budget import MemoryBudget
from plugin.errors import InputError
from plugin.pipelines.imaging.dicomweb import NATIVE_SYNTAX, DicomWebClient
from plugin.pipelines.pathology.slide import PyramidLevel
from plugin.results import Box

# Codestreams Pillow decodes: JPEG baseline/extended (the WSI norm) and JPEG 2000.
JPEG_SYNTAXES = ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51")
JPEG2000_SYNTAXES = ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
                     "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203")
EMPTY = 255  # a sparse level's absent tile: white glass


def tiles_for_region(level: PyramidLevel, region: Box) -> list[tuple[int, int]]:
    """The (column, row) tiles a region [x0,x1) x [y0,y1) of the level's matrix touches."""
    x0, y0, x1, y1 = int(region.x0), int(region.y0), int(region.x1), int(region.y1)
    if not (0 <= x0 < x1 <= level.total_columns and 0 <= y0 < y1 <= level.total_rows):
        raise ValueError(f"region {x0},{y0}-{x1},{y1} is not inside the {level.total_columns} x "
                         f"{level.total_rows} matrix")
    return [(col, row) for row in range(y0 // level.tile_rows, (y1 - 1) // level.tile_rows + 1)
            for col in range(x0 // level.tile_columns, (x1 - 1) // level.tile_columns + 1)]


def frame_index(level: PyramidLevel) -> dict[tuple[int, int], int]:
    """(column, row) tile -> 1-based frame number: TILED_FULL row by row (first focal plane and
    optical path); TILED_SPARSE from the frames' positions (the first frame at a place wins)."""
    if level.organization == "TILED_SPARSE":
        index: dict[tuple[int, int], int] = {}
        for number, tile in enumerate(level.sparse_tiles, start=1):
            index.setdefault(tile, number)
        return index
    across = level.tiles_across
    return {(col, row): row * across + col + 1 for row in range(level.tiles_down) for col in range(across)}


def frames_for_region(level: PyramidLevel, region: Box,
                      index: dict[tuple[int, int], int] | None = None) -> dict[tuple[int, int], int | None]:
    """The tiles of a region and the frame holding each (None: absent from a sparse level)."""
    index = index if index is not None else frame_index(level)
    return {tile: index.get(tile) for tile in tiles_for_region(level, region)}


@dataclass
class FetchRecord:
    """What was fetched, for the choices record and the benchmark."""

    frames: int = 0
    frame_bytes: int = 0
    decode_s: float = 0.0
    transfer_syntaxes: set[str] = field(default_factory=set)
    digests: dict[tuple[str, int], str] = field(default_factory=dict)  # (instance, frame) -> sha256


class TileReader:
    """Fetches and decodes frames of one series' levels, each frame at most once."""

    def __init__(self, client: DicomWebClient, study_uid: str, *, where: str, budget: MemoryBudget,
                 max_frames: int, max_frame_bytes: int, workers: int = 4) -> None:
        self.client, self.study_uid, self.where, self.budget = client, study_uid, where, budget
        self.max_frames, self.max_frame_bytes, self.workers = max_frames, max_frame_bytes, workers
        self.record = FetchRecord()
        self._lock = threading.Lock()
        self._indexes: dict[str, dict[tuple[int, int], int]] = {}

    def index(self, level: PyramidLevel) -> dict[tuple[int, int], int]:
        if level.instance_uid not in self._indexes:
            self._indexes[level.instance_uid] = frame_index(level)
        return self._indexes[level.instance_uid]

    def reserve(self, count: int, what: str) -> None:
        """Refuse, before any request, fetching `count` more frames past the frame budget."""
        if self.record.frames + count > self.max_frames:
            raise InputError(self.where, f"{what} needs {count} frames and {self.record.frames} were "
                                         f"already fetched: over the {self.max_frames}-frame limit "
                                         "(pathology_max_frames_fetched)")

    def read_region(self, level: PyramidLevel, region: Box) -> np.ndarray:
        """The RGB pixels of `region` of `level` (uint8, rows x columns x 3). The caller owns the
        memory charge of the result (width x height x 3 bytes) and releases it."""
        x0, y0, x1, y1 = int(region.x0), int(region.y0), int(region.x1), int(region.y1)
        tiles = frames_for_region(level, region, self.index(level))
        wanted = sorted({f for f in tiles.values() if f is not None})
        self.reserve(len(wanted), f"region {x0},{y0}-{x1},{y1} of instance {level.instance_uid}")
        size = (y1 - y0) * (x1 - x0) * 3
        self.budget.charge(size, "a slide region's pixels")
        try:
            canvas = np.full((y1 - y0, x1 - x0, 3), EMPTY, dtype=np.uint8)
            decoded = dict(zip(wanted, self._fetch_all(level, wanted), strict=True))
            tw, th = level.tile_columns, level.tile_rows
            for (col, row), number in tiles.items():
                if number is None:
                    continue
                tile = decoded[number]
                tx0, ty0 = col * tw, row * th
                # The overlap of this tile and the region, in matrix pixels.
                ox0, oy0 = max(x0, tx0), max(y0, ty0)
                ox1, oy1 = min(x1, tx0 + tw), min(y1, ty0 + th)
                canvas[oy0 - y0:oy1 - y0, ox0 - x0:ox1 - x0] = tile[oy0 - ty0:oy1 - ty0, ox0 - tx0:ox1 - tx0]
            return canvas
        except BaseException:
            self.budget.release(size)
            raise

    def _fetch_all(self, level: PyramidLevel, numbers: list[int]) -> list[np.ndarray]:
        tile_bytes = level.tile_columns * level.tile_rows * 3
        with self.budget.held(tile_bytes * len(numbers), f"{len(numbers)} decoded tiles"):
            if self.workers <= 1 or len(numbers) <= 1:
                return [self._fetch(level, n) for n in numbers]
            with ThreadPoolExecutor(min(self.workers, len(numbers))) as pool:
                return list(pool.map(lambda n: self._fetch(level, n), numbers))

    def _fetch(self, level: PyramidLevel, number: int) -> np.ndarray:
        where = f"{self.where} instance {level.instance_uid} frame {number}"
        try:
            data, syntax = self.client.frame(self.study_uid, level.series_uid, level.instance_uid, number,
                                             max_bytes=self.max_frame_bytes)
        except InputError as exc:
            raise InputError(where, f"the frame could not be retrieved ({exc.reason})") from None
        with self._lock:
            self.record.frames += 1
            self.record.frame_bytes += len(data)
            self.record.transfer_syntaxes.add(syntax)
            self.record.digests[(level.instance_uid, number)] = hashlib.sha256(data).hexdigest()
        started = time.perf_counter()
        pixels = decode_frame(data, syntax, level, where=where)
        with self._lock:
            self.record.decode_s += time.perf_counter() - started
        return pixels

    def digest(self, frames: Iterable[tuple[str, int]]) -> str:
        """sha256 over the fetched frames' own digests, in the order given."""
        combined = hashlib.sha256()
        for key in frames:
            combined.update(self.record.digests[key].encode())
        return combined.hexdigest()


def decode_frame(data: bytes, syntax: str, level: PyramidLevel, *, where: str) -> np.ndarray:
    """One frame as RGB uint8 (tile rows x tile columns x 3). The codestream's own size is checked
    against the tile's before its pixels are decoded."""
    tw, th = level.tile_columns, level.tile_rows
    if syntax == NATIVE_SYNTAX or syntax == "1.2.840.10008.1.2":
        if len(data) < tw * th * 3:
            raise InputError(where, f"a native frame of {len(data)} bytes is too short for a {tw} x {th} "
                                    "RGB tile")
        pixels = np.frombuffer(data[:tw * th * 3], dtype=np.uint8).reshape(th, tw, 3)
        if level.photometric.startswith("YBR_FULL"):
            return np.asarray(Image.frombytes("YCbCr", (tw, th), pixels.tobytes()).convert("RGB"))
        return pixels
    if syntax not in JPEG_SYNTAXES + JPEG2000_SYNTAXES:
        raise InputError(where, f"frames in transfer syntax {syntax} cannot be decoded here (JPEG "
                                "baseline/extended, JPEG 2000 and native are)")
    try:
        image = Image.open(io.BytesIO(data))  # reads the header only
        if image.size != (tw, th):
            raise InputError(where, f"the frame's codestream is {image.size[0]} x {image.size[1]}, not "
                                    f"the {tw} x {th} tile the header declares")
        return np.asarray(image.convert("RGB"))
    except InputError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(where, f"the frame's {syntax} codestream could not be decoded "
                                f"({type(exc).__name__})") from None
