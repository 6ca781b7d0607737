"""What series selection needs to know about one DICOM instance, read without its pixel data:
from WADO-RS series metadata (DICOM JSON) or from a Part-10 file's header."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO

from plugin.budget import MemoryBudget
from plugin.errors import InputError
from plugin.pipelines.imaging.deflated import inflate, is_deflated, read_meta

_UID_TAGS = {"StudyInstanceUID": "0020000D", "SeriesInstanceUID": "0020000E", "SOPInstanceUID": "00080018"}
_TAGS = {
    "Modality": "00080060", "InstanceNumber": "00200013", "Rows": "00280010", "Columns": "00280011",
    "NumberOfFrames": "00280008", "ImagePositionPatient": "00200032", "ImageOrientationPatient": "00200037",
    "ImageType": "00080008", "SeriesDescription": "0008103E", "SeriesNumber": "00200011",
    "BodyPartExamined": "00180015", "ViewPosition": "00185101",
}


@dataclass(frozen=True)
class InstanceHeader:
    """One instance's identity and geometry (patient coordinates, mm)."""

    study_uid: str
    series_uid: str
    instance_uid: str
    modality: str
    instance_number: int | None
    rows: int
    columns: int
    frames: int
    position: tuple[float, ...] | None  # ImagePositionPatient (x, y, z)
    orientation: tuple[float, ...] | None  # ImageOrientationPatient (6 direction cosines)
    image_type: tuple[str, ...] = ()
    series_description: str = ""
    series_number: int | None = None
    body_part: str = ""
    view_position: str = ""
    # One frame of an enhanced multi-frame instance (1-based; plugin.pipelines.imaging.frames),
    # None for the instance as a whole. A frame's header carries the frame's own position and
    # orientation, and in `frame_attributes` the keywords and values decoding it needs.
    frame: int | None = None
    frame_attributes: tuple[tuple[str, Any], ...] = ()

    @property
    def is_localizer(self) -> bool:
        return "LOCALIZER" in self.image_type


def header_from_dataset(ds: Dataset, *, source: str) -> InstanceHeader:
    """The header of a pydicom data set (pixel data not needed)."""
    try:
        return InstanceHeader(
            study_uid=str(ds.StudyInstanceUID),
            series_uid=str(ds.SeriesInstanceUID),
            instance_uid=str(ds.SOPInstanceUID),
            modality=str(ds.get("Modality", "")).upper(),
            instance_number=_int_or_none(ds.get("InstanceNumber")),
            rows=int(ds.get("Rows") or 0),
            columns=int(ds.get("Columns") or 0),
            frames=int(ds.get("NumberOfFrames") or 1),
            position=_floats(ds.get("ImagePositionPatient"), 3),
            orientation=_floats(ds.get("ImageOrientationPatient"), 6),
            image_type=tuple(str(v).upper() for v in _list(ds.get("ImageType"))),
            series_description=str(ds.get("SeriesDescription", "")),
            series_number=_int_or_none(ds.get("SeriesNumber")),
            body_part=str(ds.get("BodyPartExamined", "")),
            view_position=str(ds.get("ViewPosition", "")).upper(),
        )
    except AttributeError as exc:  # a UID the DICOM standard makes mandatory is missing
        raise InputError(source, f"DICOM header lacks a required attribute ({exc})") from None
    except (TypeError, ValueError) as exc:
        raise InputError(source, f"DICOM header has an unreadable value ({exc})") from None


def header_from_json(item: dict[str, Any], *, source: str) -> InstanceHeader:
    """The header of one data set of WADO-RS metadata (DICOM JSON, PS3.18 F.2).

    Only the attributes needed are read, straight from the JSON (pydicom's Dataset.from_json
    builds every element and took 3 ms an instance); pixel data stays on the server.
    """
    def values(tag: str) -> list[Any]:
        element = item.get(tag)
        if not isinstance(element, dict):
            return []
        found = element.get("Value")
        return found if isinstance(found, list) else []

    def text(tag: str) -> str:
        found = values(tag)
        return str(found[0]) if found and found[0] is not None else ""

    try:
        uids = {name: text(tag) for name, tag in _UID_TAGS.items()}
        missing = [name for name, uid in uids.items() if not uid]
        if missing:
            raise InputError(source, f"series metadata lacks {', '.join(missing)}")
        frames = text(_TAGS["NumberOfFrames"])
        return InstanceHeader(
            study_uid=uids["StudyInstanceUID"],
            series_uid=uids["SeriesInstanceUID"],
            instance_uid=uids["SOPInstanceUID"],
            modality=text(_TAGS["Modality"]).upper(),
            instance_number=_int_or_none(text(_TAGS["InstanceNumber"])),
            rows=int(text(_TAGS["Rows"]) or 0),
            columns=int(text(_TAGS["Columns"]) or 0),
            frames=int(frames) if frames else 1,
            position=_floats(values(_TAGS["ImagePositionPatient"]), 3),
            orientation=_floats(values(_TAGS["ImageOrientationPatient"]), 6),
            image_type=tuple(str(v).upper() for v in values(_TAGS["ImageType"])),
            series_description=text(_TAGS["SeriesDescription"]),
            series_number=_int_or_none(text(_TAGS["SeriesNumber"])),
            body_part=text(_TAGS["BodyPartExamined"]),
            view_position=text(_TAGS["ViewPosition"]).upper(),
        )
    except (TypeError, ValueError) as exc:
        raise InputError(source, f"series metadata has an unreadable value ({exc})") from None


def header_from_part10(data: bytes, *, source: str, budget: MemoryBudget | None = None) -> InstanceHeader:
    """The header of a Part-10 file; the pixel data is not parsed (nor, when deflated, inflated)."""
    budget = budget or MemoryBudget(source)
    held = budget.held_bytes
    try:
        return header_from_dataset(read_part10(data, source=source, stop_before_pixels=True,
                                               budget=budget), source=source)
    finally:
        budget.release(budget.held_bytes - held)


def read_part10(data: bytes, *, source: str, stop_before_pixels: bool = False,
                budget: MemoryBudget | None = None) -> Dataset:
    """A Part-10 file as a data set; anything that is not one is an InputError.

    The data set's size is charged to `budget` (a fresh default one when None) and stays
    charged: the caller releases it when it drops the data set. A deflated data set is inflated
    here within the budget (plugin.pipelines.imaging.deflated), never by pydicom."""
    if len(data) < 132 or data[128:132] != b"DICM":
        raise InputError(source, "not a DICOM Part-10 file (no DICM preamble)")
    budget = budget or MemoryBudget(source)
    meta, offset = read_meta(data, source=source)
    if is_deflated(meta):
        data = inflate(data, meta, offset, source=source, budget=budget, header_only=stop_before_pixels)
    else:
        # pydicom copies each value out of the buffer: the data set is about the file's size.
        budget.charge(0 if stop_before_pixels else len(data), "reading the DICOM file")
    try:
        return dcmread(DicomBytesIO(data), stop_before_pixels=stop_before_pixels)
    except (InvalidDicomError, EOFError, ValueError, KeyError, OSError) as exc:
        raise InputError(source, f"DICOM file cannot be read ({type(exc).__name__}: {exc})") from None


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    try:
        return list(value)
    except TypeError:
        return [value]


def _floats(value: Any, count: int) -> tuple[float, ...] | None:
    items = _list(value)
    if len(items) != count:
        return None
    return tuple(float(v) for v in items)


def _int_or_none(value: Any) -> int | None:
    if value is None or value == "":
        return None
    return int(value)
