"""A dictation recorded in the browser, as the DocumentReference that holds its audio: the
clinician's own recording (not AI output), which the speech pipeline then transcribes."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime
from typing import Any

from plugin.errors import InputError
from plugin.pipelines.speech.inputs import is_audio_type

MAX_DICTATION_BYTES = 20 * 1024 * 1024  # about 20 minutes of Opus in WebM
LOINC = "http://loinc.org"
NAME = "dictation upload"


def dictation_source(data: bytes, content_type: str, *, subject: str, author: str | None,
                     now: datetime) -> dict[str, Any]:
    """The DocumentReference for the uploaded audio (inline, so no Binary write is needed)."""
    if not data:
        raise InputError(NAME, "no audio was received")
    if len(data) > MAX_DICTATION_BYTES:
        raise InputError(NAME, f"the recording is over the {MAX_DICTATION_BYTES}-byte limit")
    base_type = content_type.split(";", 1)[0].strip().lower()
    if not is_audio_type(base_type):
        raise InputError(NAME, f"the upload is {base_type or 'of no declared type'}, not audio")
    resource: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "status": "current",
        "docStatus": "final",
        "type": {"coding": [{"system": LOINC, "code": "34109-9", "display": "Note"}],
                 "text": "Dictation"},
        "subject": {"reference": subject},
        "date": now.isoformat(),
        "description": "Dictation recorded in chartlight",
        "content": [{"attachment": {
            "contentType": base_type,
            "data": base64.b64encode(data).decode("ascii"),
            "size": len(data),
            "hash": base64.b64encode(hashlib.sha1(data, usedforsecurity=False).digest()).decode(),
            "title": "Dictation audio",
        }}],
    }
    if author:
        resource["author"] = [{"reference": author}]
    return resource
