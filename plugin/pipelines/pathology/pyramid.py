"""A slide's pyramid from its series metadata (DICOM JSON, one WADO-RS call): the resolution levels,
the thumbnail, the slide's context, and the checks that the geometry is consistent.

    read_pyramid(items, where=..., max_base_pixels=...)   -> Pyramid, or InputError

A level is one VL Whole Slide Microscopy instance whose ImageType's third value is VOLUME (or
THUMBNAIL); its frames are tiles of the total pixel matrix (PS3.3 C.8.12.4.1). TILED_FULL: frame
n (1-based) is the tile at column (n-1) % across, row (n-1) // across, for the first focal plane
and optical path. TILED_SPARSE: each frame's place comes from its Plane Position (Slide) item
(Column/RowPositionInTotalImagePixelMatrix, 1-based pixels).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from plugin.errors import InputError
from plugin.pipelines.pathology.slide import PyramidLevel, SlideContext

DicomJson = dict[str, Any]
WSI_STORAGE = "1.2.840.10008.5.1.4.1.1.77.1.6"
RESOLUTION_TYPES = ("VOLUME", "THUMBNAIL")
OTHER_TYPES = ("LABEL", "OVERVIEW")
# A level's pixel spacing may differ from base spacing x size ratio by this much (rounding of
# odd sizes, scanners' own rounding); more is an inconsistent level.
SPACING_TOLERANCE = 0.05
USING_SUBSTANCE = "424361007"  # SCT "Using substance": a staining step's substance

T = {
    "ImageType": "00080008", "SOPClassUID": "00080016", "SOPInstanceUID": "00080018",
    "StudyInstanceUID": "0020000D", "SeriesInstanceUID": "0020000E", "Modality": "00080060",
    "Rows": "00280010", "Columns": "00280011", "NumberOfFrames": "00280008",
    "Photometric": "00280004", "TotalColumns": "00480006", "TotalRows": "00480007",
    "Organization": "00209311", "FocalPlanes": "00480303", "OpticalPaths": "00480302",
    "OpticalPathSequence": "00480105", "OpticalPathIdentifier": "00480106",
    "Shared": "52009229", "PerFrame": "52009230", "PixelMeasures": "00289110", "PixelSpacing": "00280030",
    "PlanePositionSlide": "0048021A", "ColumnPosition": "0048021E", "RowPosition": "0048021F",
    "ImagedVolumeWidth": "00480001", "TransferSyntax": "00020010", "Container": "00400512",
    "SpecimenDescription": "00400560", "SpecimenIdentifier": "00400551",
    "SpecimenShort": "00400600", "SpecimenDetailed": "00400602", "AnatomicStructure": "00082228",
    "CodeMeaning": "00080104", "CodeValue": "00080100", "Preparation": "00400610",
    "PreparationStep": "00400612", "ConceptName": "0040A043", "ConceptCode": "0040A168",
    "TextValue": "0040A160", "BodyPartExamined": "00180015", "PlanarConfiguration": "00280006",
}


@dataclass(frozen=True)
class Pyramid:
    levels: tuple[PyramidLevel, ...]  # VOLUME levels, base (largest) first
    thumbnails: tuple[PyramidLevel, ...]  # THUMBNAIL images
    context: SlideContext
    others: tuple[str, ...]  # LABEL / OVERVIEW instance descriptions (not used for pixels)

    @property
    def base(self) -> PyramidLevel:
        return self.levels[0]

    def scale(self, level: PyramidLevel) -> tuple[float, float]:
        """Base pixels per pixel of `level`, (x, y)."""
        return self.base.total_columns / level.total_columns, self.base.total_rows / level.total_rows

    def um_per_px(self, level: PyramidLevel) -> float:
        """The level's column spacing in µm: its own Pixel Measures, else the base's scaled."""
        if level.pixel_spacing_mm is not None:
            return level.pixel_spacing_mm[1] * 1000.0
        assert self.base.pixel_spacing_mm is not None  # read_pyramid refuses a base without one
        return self.base.pixel_spacing_mm[1] * 1000.0 * self.scale(level)[0]

    def find(self, instance_uid: str) -> PyramidLevel | None:
        return next((lv for lv in self.levels + self.thumbnails if lv.instance_uid == instance_uid), None)


def read_pyramid(items: list[DicomJson], *, where: str, max_base_pixels: int,
                 max_tile_pixels: int) -> Pyramid:
    """The pyramid of one series' metadata. InputError (naming the series or instance) for a
    series with no resolution level, a base level over `max_base_pixels`, a tile over
    `max_tile_pixels`, or a level with inconsistent geometry."""
    levels: list[PyramidLevel] = []
    thumbnails: list[PyramidLevel] = []
    others: list[str] = []
    for item in items:
        image_type = [str(v).upper() for v in _values(item, T["ImageType"])]
        flavour = image_type[2] if len(image_type) > 2 else ""
        uid = str(_first(item, T["SOPInstanceUID"]) or "?")
        if flavour in OTHER_TYPES:
            others.append(f"{flavour} {uid}")
            continue
        if flavour not in RESOLUTION_TYPES or _first(item, T["TotalColumns"]) is None:
            continue  # not a tiled image of the slide (e.g. an SR, a presentation state)
        level = _level(item, flavour, where=f"{where} instance {uid}", max_tile_pixels=max_tile_pixels)
        (levels if flavour == "VOLUME" else thumbnails).append(level)
    if not levels:
        found = f" (found: {', '.join(others)})" if others else ""
        raise InputError(where, f"the series has no VOLUME image of the slide (ImageType "
                                f"…\\VOLUME with a total pixel matrix){found}")
    levels.sort(key=lambda lv: lv.total_columns * lv.total_rows, reverse=True)
    thumbnails.sort(key=lambda lv: lv.total_columns * lv.total_rows)
    base = levels[0]
    pixels = base.total_columns * base.total_rows
    if pixels > max_base_pixels:
        raise InputError(f"{where} instance {base.instance_uid}",
                         f"the base level is {base.total_columns} x {base.total_rows} pixels "
                         f"({pixels:,}), over the {max_base_pixels:,}-pixel limit "
                         "(pathology_max_base_pixels)")
    if base.pixel_spacing_mm is None:
        raise InputError(f"{where} instance {base.instance_uid}",
                         "the base level has no pixel spacing (Shared Functional Groups Pixel Measures "
                         "or ImagedVolumeWidth), so no level can be chosen by resolution")
    for level in levels[1:] + thumbnails:
        _check_spacing(base, level, where=f"{where} instance {level.instance_uid}")
    return Pyramid(tuple(levels), tuple(thumbnails), slide_context(items), tuple(others))


def _level(item: DicomJson, flavour: str, *, where: str, max_tile_pixels: int) -> PyramidLevel:
    total_columns, total_rows = _int(item, "TotalColumns", where), _int(item, "TotalRows", where)
    tile_columns, tile_rows = _int(item, "Columns", where), _int(item, "Rows", where)
    frames = _count(item, "NumberOfFrames", where)
    if _count(item, "PlanarConfiguration", where, default=0) != 0:
        # Colour-by-plane native frames would be read as interleaved pixels: wrong colours, shown
        # to the model. JPEG frames are always interleaved; refuse the rest rather than guess.
        raise InputError(where, "PlanarConfiguration 1 (colour by plane) is not read; frames must be "
                                "colour-by-pixel")
    if min(total_columns, total_rows, tile_columns, tile_rows, frames) < 1:
        raise InputError(where, f"inconsistent geometry: total pixel matrix {total_columns} x {total_rows}, "
                                f"tile {tile_columns} x {tile_rows}, {frames} frames")
    if tile_columns * tile_rows > max_tile_pixels:
        raise InputError(where, f"a tile of {tile_columns} x {tile_rows} pixels is over the "
                                f"{max_tile_pixels:,}-pixel tile limit")
    organization = str(_first(item, T["Organization"]) or "TILED_FULL").upper()
    if organization not in ("TILED_FULL", "TILED_SPARSE"):
        raise InputError(where, f"DimensionOrganizationType {organization} is not TILED_FULL or TILED_SPARSE")
    shared = (_items(item, T["Shared"]) or [{}])[0]
    spacing = _spacing(shared, item, total_columns)
    paths = _items(item, T["OpticalPathSequence"])
    level = PyramidLevel(
        instance_uid=str(_first(item, T["SOPInstanceUID"])),
        series_uid=str(_first(item, T["SeriesInstanceUID"])),
        image_type=flavour, total_columns=total_columns, total_rows=total_rows, tile_columns=tile_columns,
        tile_rows=tile_rows, frames=frames, organization=organization,  # type: ignore[arg-type]
        pixel_spacing_mm=spacing, transfer_syntax=str(_first(item, T["TransferSyntax"]) or ""),
        photometric=str(_first(item, T["Photometric"]) or ""),
        optical_path=str(_first(paths[0], T["OpticalPathIdentifier"]) or "") if paths else "")
    across, down = level.tiles_across, level.tiles_down
    if organization == "TILED_FULL":
        planes = _count(item, "FocalPlanes", where) * _count(item, "OpticalPaths", where)
        if frames != across * down * planes:
            raise InputError(where, f"inconsistent geometry: {frames} frames, but a {total_columns} x "
                                    f"{total_rows} matrix in {tile_columns} x {tile_rows} tiles is {across} "
                                    f"across x {down} down{f' x {planes} planes/paths' if planes > 1 else ''}"
                                    f" = {across * down * planes} tiles (TILED_FULL)")
        return level
    return _with_sparse_tiles(level, item, where=where)


def _with_sparse_tiles(level: PyramidLevel, item: DicomJson, *, where: str) -> PyramidLevel:
    per_frame = _items(item, T["PerFrame"])
    if len(per_frame) != level.frames:
        raise InputError(where, f"inconsistent geometry: TILED_SPARSE with {level.frames} frames but "
                                f"{len(per_frame)} Per-frame Functional Groups items")
    tiles: list[tuple[int, int]] = []
    for number, groups in enumerate(per_frame, start=1):
        position = (_items(groups, T["PlanePositionSlide"]) or [{}])[0]
        column, row = _first(position, T["ColumnPosition"]), _first(position, T["RowPosition"])
        if column is None or row is None:
            raise InputError(where, f"TILED_SPARSE frame {number} has no Plane Position (Slide) "
                                    "Column/RowPositionInTotalImagePixelMatrix")
        x, y = _whole(column, f"frame {number}'s ColumnPositionInTotalImagePixelMatrix", where) - 1, \
            _whole(row, f"frame {number}'s RowPositionInTotalImagePixelMatrix", where) - 1
        if x % level.tile_columns or y % level.tile_rows or not (
                0 <= x < level.total_columns and 0 <= y < level.total_rows):
            raise InputError(where, f"inconsistent geometry: TILED_SPARSE frame {number} at pixel "
                                    f"({x + 1}, {y + 1}) is not on the {level.tile_columns} x "
                                    f"{level.tile_rows} tile grid of the {level.total_columns} x "
                                    f"{level.total_rows} matrix")
        tiles.append((x // level.tile_columns, y // level.tile_rows))
    return replace(level, sparse_tiles=tuple(tiles))


def _spacing(shared: DicomJson, item: DicomJson, total_columns: int) -> tuple[float, float] | None:
    measures = (_items(shared, T["PixelMeasures"]) or [{}])[0]
    values = _values(measures, T["PixelSpacing"])
    if len(values) == 2 and all(isinstance(v, int | float) and v > 0 for v in values):
        return float(values[0]), float(values[1])
    width = _first(item, T["ImagedVolumeWidth"])  # mm: the scanned area across the matrix
    if isinstance(width, int | float) and width > 0:
        return float(width) / total_columns, float(width) / total_columns
    return None


def _check_spacing(base: PyramidLevel, level: PyramidLevel, *, where: str) -> None:
    if level.pixel_spacing_mm is None or base.pixel_spacing_mm is None:
        return
    ratio = base.total_columns / level.total_columns
    expected = base.pixel_spacing_mm[1] * ratio
    actual = level.pixel_spacing_mm[1]
    if abs(actual / expected - 1.0) > SPACING_TOLERANCE:
        raise InputError(where, f"inconsistent geometry: pixel spacing {actual * 1000:.4g} µm, but the "
                                f"level is 1/{ratio:.4g} of the base's {base.total_columns} columns at "
                                f"{base.pixel_spacing_mm[1] * 1000:.4g} µm, which makes "
                                f"{expected * 1000:.4g} µm")


def slide_context(items: list[DicomJson]) -> SlideContext:
    """Specimen, stain and body site as the header writes them (the first instance that has each)."""
    specimen = stain = site = container = ""
    for item in items:
        container = container or str(_first(item, T["Container"]) or "")
        for description in _items(item, T["SpecimenDescription"]):
            specimen = specimen or "; ".join(str(v) for v in (
                _first(description, T["SpecimenShort"]), _first(description, T["SpecimenDetailed"]),
                _first(description, T["SpecimenIdentifier"])) if v)
            site = site or ", ".join(_meanings(_items(description, T["AnatomicStructure"])))
            if not stain:
                substances = []
                for step in _items(description, T["Preparation"]):
                    for content in _items(step, T["PreparationStep"]):
                        names = [_first(c, T["CodeValue"]) for c in _items(content, T["ConceptName"])]
                        if USING_SUBSTANCE in names:
                            substances += _meanings(_items(content, T["ConceptCode"]))
                            text = _first(content, T["TextValue"])
                            substances += [str(text)] if text else []
                stain = ", ".join(dict.fromkeys(substances))
        site = site or str(_first(item, T["BodyPartExamined"]) or "")
    return SlideContext(specimen=specimen, stain=stain, body_site=site, container=container)


def _meanings(codes: list[DicomJson]) -> list[str]:
    return [str(m) for m in (_first(c, T["CodeMeaning"]) for c in codes) if m]


def _values(item: DicomJson, tag: str) -> list[Any]:
    element = item.get(tag)
    return list(element.get("Value") or []) if isinstance(element, dict) else []


def _first(item: DicomJson, tag: str) -> Any:
    values = _values(item, tag)
    return values[0] if values else None


def _items(item: DicomJson, tag: str) -> list[DicomJson]:
    return [v for v in _values(item, tag) if isinstance(v, dict)]


def _count(item: DicomJson, name: str, where: str, *, default: int = 1) -> int:
    """A whole-number attribute that may be absent (then `default`)."""
    value = _first(item, T[name])
    return default if value is None else _whole(value, f"{name} (tag {T[name]})", where)


def _whole(value: Any, what: str, where: str) -> int:
    """A whole number as DICOM JSON gives it (a number, or an IS string); InputError otherwise."""
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value)
    if isinstance(value, int | float) and not isinstance(value, bool) and float(value).is_integer():
        return int(value)
    raise InputError(where, f"{what} is not a whole number: {str(value)[:20]!r}")


def _int(item: DicomJson, name: str, where: str) -> int:
    value = _first(item, T[name])
    if value is None:
        raise InputError(where, f"the metadata has no {name} (tag {T[name]})")
    return _whole(value, f"{name} (tag {T[name]})", where)
