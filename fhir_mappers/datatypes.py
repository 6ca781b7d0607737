"""FHIR datatypes built from Python values, the same way every time: decimals as exact JSON
numbers, dateTime/instant strings, Coding/CodeableConcept, inline Attachments.

Resources are plain dicts that `json.dumps` can write; nothing here holds a Decimal or a datetime.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
from datetime import datetime
from decimal import Decimal
from typing import Any

JsonDict = dict[str, Any]

_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def json_number(value: Decimal | float | int) -> int | float:
    """A number `json.dumps` writes with the same value: integral decimals without a fraction
    part become ints, others floats whose shortest repr is the decimal's digits. A decimal a
    double cannot carry exactly (over ~15 significant digits) is refused rather than rounded."""
    if isinstance(value, bool):
        raise TypeError("a boolean is not a FHIR decimal")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value!r} is not a FHIR decimal")
        return value
    if not value.is_finite():
        raise ValueError(f"{value!r} is not a FHIR decimal")
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent >= 0:
        return int(value)
    as_float = float(value)
    if Decimal(repr(as_float)) != value:
        raise ValueError(f"{value} has more digits than a JSON number keeps exactly")
    return as_float


def number_text(value: float | int | Decimal) -> str:
    """A number as short text for extension strings (12.0 -> "12", 12.5 -> "12.5")."""
    number = json_number(value)
    if isinstance(number, float) and number.is_integer():
        return str(int(number))
    return repr(number) if isinstance(number, float) else str(number)


def fhir_datetime(value: datetime) -> str:
    """A FHIR dateTime. FHIR needs a zone whenever a time is given, and none can be invented
    here, so a naive datetime keeps only its date."""
    if value.tzinfo is None or value.utcoffset() is None:
        return value.date().isoformat()
    return _with_zone(value)


def fhir_instant(value: datetime) -> str:
    """A FHIR instant (a time with a zone, to the second)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("a FHIR instant needs a timezone-aware datetime")
    return _with_zone(value)


def _with_zone(value: datetime) -> str:
    # UTC as "Z", the form FHIR servers and libraries write back, so round trips compare equal.
    text = value.isoformat(timespec="seconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def coding(system: str, code: str, display: str = "") -> JsonDict:
    result: JsonDict = {"system": system, "code": code}
    if display:
        result["display"] = display
    return result


def concept(*codings: JsonDict, text: str = "") -> JsonDict:
    result: JsonDict = {}
    if codings:
        result["coding"] = list(codings)
    if text.strip():
        result["text"] = text.strip()
    return result


def reference(target: str) -> JsonDict:
    return {"reference": target}


def attachment(data: bytes, content_type: str, *, title: str = "") -> JsonDict:
    """An inline Attachment: base64 data, its size and its SHA-1 (base64, as FHIR defines
    Attachment.hash). An empty body carries no data element (FHIR forbids empty values)."""
    result: JsonDict = {"contentType": content_type}
    if data:
        result["data"] = base64.b64encode(data).decode("ascii")
    result["size"] = len(data)
    digest = hashlib.sha1(data, usedforsecurity=False).digest()
    result["hash"] = base64.b64encode(digest).decode("ascii")
    if title.strip():
        result["title"] = title.strip()
    return result


def fhir_string(text: str) -> str | None:
    """Text for a FHIR string element, or None when it would be empty (FHIR forbids empty
    strings, and whitespace-only ones are as good as empty)."""
    return text if text.strip() else None


def is_fhir_id(value: str) -> bool:
    """Whether `value` is a valid FHIR `id` (also the type FHIR uses for DICOM UIDs)."""
    return _FHIR_ID.fullmatch(value) is not None
