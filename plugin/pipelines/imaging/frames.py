"""Enhanced multi-frame CT and MR (what current scanners write): one instance holds the whole
series, each frame's geometry and values in its functional groups (PS3.3 C.7.6.16).

    frame_headers(header, item)       the instance's frames as one InstanceHeader each
    frame_dataset(header, data, ts)   a frame fetched by WADO-RS frame retrieval, as a data set
                                      pixels.decode_dataset can decode (budget checks included)

Each frame's attributes come from its Per-frame Functional Groups item, else the Shared one:
Plane Position (ImagePositionPatient), Plane Orientation (ImageOrientationPatient), Pixel
Measures (PixelSpacing), Pixel Value Transformation (RescaleSlope/Intercept) and Frame VOI LUT
(WindowCenter/Width). The instance's pixel description (bits, sign, photometric) applies to all.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import UID

from plugin.errors import InputError
from plugin.pipelines.imaging.instance_headers import InstanceHeader

SHARED_GROUPS = "52009229"
PER_FRAME_GROUPS = "52009230"
# functional group macro sequence -> {attribute tag: keyword}
_GROUPS = {
    "00209113": {"00200032": "ImagePositionPatient"},  # Plane Position (Patient)
    "00209116": {"00200037": "ImageOrientationPatient"},  # Plane Orientation (Patient)
    "00289110": {"00280030": "PixelSpacing"},  # Pixel Measures
    "00289145": {"00281053": "RescaleSlope", "00281052": "RescaleIntercept"},  # Pixel Value Transformation
    "00289132": {"00281050": "WindowCenter", "00281051": "WindowWidth"},  # Frame VOI LUT
}
# The instance-level pixel description a lone frame needs to be decoded.
PIXEL_TAGS = {"00280002": "SamplesPerPixel", "00280004": "PhotometricInterpretation",
              "00280100": "BitsAllocated", "00280101": "BitsStored", "00280102": "HighBit",
              "00280103": "PixelRepresentation"}


def has_functional_groups(item: dict[str, Any]) -> bool:
    return PER_FRAME_GROUPS in item or SHARED_GROUPS in item


def frame_headers(header: InstanceHeader, item: dict[str, Any], *, source: str) -> list[InstanceHeader]:
    """One header per frame of an enhanced instance (DICOM JSON `item`), numbered from 1, with
    the frame's position and orientation and, in `frame_attributes`, what decoding it needs."""
    per_frame = _items(item.get(PER_FRAME_GROUPS))
    shared = (_items(item.get(SHARED_GROUPS)) or [{}])[0]
    if len(per_frame) != header.frames:
        raise InputError(source, f"the instance has {header.frames} frames but {len(per_frame)} "
                                 "Per-frame Functional Groups items")
    pixel = {keyword: _value(item, tag) for tag, keyword in PIXEL_TAGS.items()}
    missing = [k for k, v in pixel.items() if v is None and k != "HighBit"]
    if missing:
        raise InputError(source, f"the metadata lacks {', '.join(missing)}, needed to decode a frame")
    found = []
    for number, groups in enumerate(per_frame, start=1):
        values = {**_group_values(shared), **_group_values(groups)}
        position = _floats(values.get("ImagePositionPatient"), 3)
        orientation = _floats(values.get("ImageOrientationPatient"), 6)
        attributes = {**pixel, **{k: v for k, v in values.items()
                                  if k not in ("ImagePositionPatient", "ImageOrientationPatient")}}
        found.append(replace(header, frame=number, position=position, orientation=orientation,
                             frame_attributes=tuple(sorted(attributes.items()))))
    return found


def frame_dataset(header: InstanceHeader, data: bytes, transfer_syntax: str) -> Dataset:
    """A frame's bytes as fetched (`transfer_syntax` as the PACS named it) as a one-frame data
    set with the instance's pixel description and the frame's own rescale and window."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = UID(transfer_syntax)
    ds.SOPInstanceUID = header.instance_uid
    ds.Modality = header.modality
    ds.Rows, ds.Columns = header.rows, header.columns
    ds.NumberOfFrames = 1
    for keyword, value in header.frame_attributes:
        if value is not None:
            setattr(ds, keyword, value)
    if "HighBit" not in ds:
        ds.HighBit = int(ds.BitsStored) - 1
    if UID(transfer_syntax).is_compressed:
        ds.PixelData = encapsulate([data])
        ds["PixelData"].VR = "OB"
    else:
        ds.PixelData = data
        ds["PixelData"].VR = "OW" if int(ds.BitsAllocated) > 8 else "OB"
    return ds


def _group_values(groups: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for sequence, attributes in _GROUPS.items():
        for entry in _items(groups.get(sequence))[:1]:
            for tag, keyword in attributes.items():
                value = entry.get(tag, {}).get("Value") if isinstance(entry.get(tag), dict) else None
                if value:
                    values[keyword] = value if len(value) > 1 else value[0]
    return values


def _items(element: Any) -> list[dict[str, Any]]:
    if not isinstance(element, dict):
        return []
    values = element.get("Value")
    return [v for v in values if isinstance(v, dict)] if isinstance(values, list) else []


def _value(item: dict[str, Any], tag: str) -> Any:
    element = item.get(tag)
    values = element.get("Value") if isinstance(element, dict) else None
    return values[0] if isinstance(values, list) and values else None


def _floats(value: Any, count: int) -> tuple[float, ...] | None:
    if not isinstance(value, list) or len(value) != count:
        return None
    try:
        return tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
