"""Tiles of a pyramid level: which frames cover a region, fetching them (WADO-RS frame retrieval,
within the budgets) and decoding them into that region's pixels.

    frames_for_region(level, region)      {(column, row) tile: 1-based frame number or None}
    TileReader(client, study_uid, ...)    .read_region(s)(level, ...) -> RGB uint8 arrays

Frames go FRAMES_PER_REQUEST to a request. Budgets are checked before the work: the frame count
before any request, a request's body while it is read (cut off past its frames' count times
one frame's limit: the tile's raw size, at most max_frame_bytes), each frame's bytes once the
body is split, a frame's decoded size from its codestream's header before its pixels are decoded, and
the job's memory budget before each allocation.
A tile absent from a TILED_SPARSE level is background (the scanner found nothing there): it
is painted white, not fetched.
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
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
# Frames asked for in one WADO-RS request (`frames/1,2,3`): Orthanc 1.10's cost per request grows
# with the instance's size, not with the frames asked (docs/pathology.md "Orthanc 1.10 notes").
FRAMES_PER_REQUEST = 64


def tiles_for_region(level: PyramidLevel, region: Box) -> list[tuple[int, int]]:
    """The (column, row) tiles a region [x0,x1) x [y0,y1) of the level's matrix touches."""
    x0, y0, x1, y1 = int(region.x0), int(region.y0), int(region.x1), int(region.y1)
    if not (0 <= x0 < x1 <= level.total_columns and 0 <= y0 < y1 <= level.total_rows):
        raise ValueError(f"region {x0},{y0}-{x1},{y1} is not inside the {level.total_columns} x "
                         f"{level.total_rows} matrix")
    return [(col, row) for row in range(y0 // level.tile_rows, (y1 - 1) // level.tile_rows + 1)
            for col in range(x0 // level.tile_columns, (x1 - 1) // level.tile_columns + 1)]


class _FullTiling(Mapping[tuple[int, int], int]):
    """TILED_FULL's (column, row) -> frame number, computed (row by row, first focal plane and
    optical path) rather than stored: a level's tile count is not bounded by anything read yet."""

    def __init__(self, across: int, down: int) -> None:
        self.across, self.down = across, down

    def __getitem__(self, tile: tuple[int, int]) -> int:
        col, row = tile
        if not (0 <= col < self.across and 0 <= row < self.down):
            raise KeyError(tile)
        return row * self.across + col + 1

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((col, row) for row in range(self.down) for col in range(self.across))

    def __len__(self) -> int:
        return self.across * self.down


def frame_index(level: PyramidLevel) -> Mapping[tuple[int, int], int]:
    """(column, row) tile -> 1-based frame number: TILED_FULL row by row (first focal plane and
    optical path); TILED_SPARSE from the frames' positions (the first frame at a place wins)."""
    if level.organization == "TILED_SPARSE":
        index: dict[tuple[int, int], int] = {}
        for number, tile in enumerate(level.sparse_tiles, start=1):
            index.setdefault(tile, number)
        return index
    return _FullTiling(level.tiles_across, level.tiles_down)


def frames_for_region(level: PyramidLevel, region: Box, index: Mapping[tuple[int, int], int] | None = None
                      ) -> dict[tuple[int, int], int | None]:
    """The tiles of a region and the frame holding each (None: absent from a sparse level)."""
    index = index if index is not None else frame_index(level)
    return {tile: index.get(tile) for tile in tiles_for_region(level, region)}


@dataclass
class FetchRecord:
    """What was fetched, for the choices record and the benchmark."""

    frames: int = 0
    requests: int = 0
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
        self._indexes: dict[str, Mapping[tuple[int, int], int]] = {}

    def index(self, level: PyramidLevel) -> Mapping[tuple[int, int], int]:
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
        return self.read_regions(level, [region], f"region {x0},{y0}-{x1},{y1} of instance "
                                                  f"{level.instance_uid}")[0]

    def read_regions(self, level: PyramidLevel, regions: list[Box], what: str) -> list[np.ndarray]:
        """The pixels of several regions of one level, their frames fetched together (each once,
        FRAMES_PER_REQUEST to a request). The caller owns the memory charge of the results."""
        index = self.index(level)
        maps = [frames_for_region(level, region, index) for region in regions]
        wanted = sorted({f for tiles in maps for f in tiles.values() if f is not None})
        self.reserve(len(wanted), what)
        size = sum(int(r.x1 - r.x0) * int(r.y1 - r.y0) * 3 for r in regions)
        self.budget.charge(size, "slide regions' pixels")
        try:
            decoded = dict(zip(wanted, self._fetch_all(level, wanted), strict=True))
            return [_assemble(level, region, tiles, decoded)
                    for region, tiles in zip(regions, maps, strict=True)]
        except BaseException:
            self.budget.release(size)
            raise

    def _fetch_all(self, level: PyramidLevel, numbers: list[int]) -> list[np.ndarray]:
        tile_bytes = level.tile_columns * level.tile_rows * 3
        chunks = [numbers[i:i + FRAMES_PER_REQUEST] for i in range(0, len(numbers), FRAMES_PER_REQUEST)]
        with self.budget.held(tile_bytes * len(numbers), f"{len(numbers)} decoded tiles"):
            if self.workers <= 1 or len(chunks) <= 1:
                done = [self._fetch(level, chunk) for chunk in chunks]
            else:
                with ThreadPoolExecutor(min(self.workers, len(chunks))) as pool:
                    done = list(pool.map(lambda chunk: self._fetch(level, chunk), chunks))
        return [tile for chunk in done for tile in chunk]

    def _fetch(self, level: PyramidLevel, numbers: list[int]) -> list[np.ndarray]:
        """One request for `numbers` (WADO-RS takes a list of frames), then each frame decoded."""
        plural = "s" if len(numbers) > 1 else ""
        instance = f"{self.where} instance {level.instance_uid}"
        where = f"{instance} frame{plural} {','.join(map(str, numbers))}"
        # A frame's codestream is no larger than its raw pixels (with room for headers): capping
        # each frame there keeps a request of 64 frames (and 4 of them side by side) to tens of MB,
        # not 64 x pathology_max_frame_bytes.
        each = min(self.max_frame_bytes, level.tile_columns * level.tile_rows * 3 + 64 * 1024)
        try:
            parts, syntax = self.client.frames(self.study_uid, level.series_uid, level.instance_uid, numbers,
                                               max_bytes_each=each)
        except InputError as exc:
            raise InputError(where, f"the frame{plural} could not be retrieved ({exc.reason})") from None
        with self._lock:
            self.record.frames += len(numbers)
            self.record.requests += 1
            self.record.frame_bytes += sum(len(part) for part in parts)
            self.record.transfer_syntaxes.add(syntax)
            for number, part in zip(numbers, parts, strict=True):
                self.record.digests[(level.instance_uid, number)] = hashlib.sha256(part).hexdigest()
        started = time.perf_counter()
        pixels = [decode_frame(part, syntax, level, where=f"{instance} frame {n}")
                  for n, part in zip(numbers, parts, strict=True)]
        with self._lock:
            self.record.decode_s += time.perf_counter() - started
        return pixels

    def digest(self, frames: Iterable[tuple[str, int]]) -> str:
        """sha256 over the fetched frames' own digests, in the order given."""
        combined = hashlib.sha256()
        for key in frames:
            combined.update(self.record.digests[key].encode())
        return combined.hexdigest()


def _assemble(level: PyramidLevel, region: Box, tiles: dict[tuple[int, int], int | None],
              decoded: dict[int, np.ndarray]) -> np.ndarray:
    """The region's pixels from its decoded tiles; absent (sparse) tiles stay white."""
    x0, y0, x1, y1 = int(region.x0), int(region.y0), int(region.x1), int(region.y1)
    canvas = np.full((y1 - y0, x1 - x0, 3), EMPTY, dtype=np.uint8)
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
