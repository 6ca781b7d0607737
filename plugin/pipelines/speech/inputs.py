"""Which of a patient's resources hold dictation audio, and which attachment of each to use.

Audio lives in R4 Media (one `content` attachment) and in DocumentReference (`content[]`).
Our own AI output (meta.security AIAST) is never an input, even when it carries audio.
"""

from __future__ import annotations

from typing import Any

from fhir_mappers import AIAST_CODE
from fhir_mappers.systems import V3_OBSERVATION_VALUE
from plugin.errors import InputError
from plugin.fhir import FhirClient

Resource = dict[str, Any]
MEDIA_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/media-type"
# Content types some systems give audio that do not start with "audio/".
AUDIO_ALIASES = frozenset({"application/ogg", "video/webm", "application/x-flac"})


def is_audio_type(content_type: str | None) -> bool:
    base = (content_type or "").split(";", 1)[0].strip().lower()
    return base.startswith("audio/") or base in AUDIO_ALIASES


def is_ai_output(resource: Resource) -> bool:
    return any(label.get("system") == V3_OBSERVATION_VALUE and label.get("code") == AIAST_CODE
               for label in resource.get("meta", {}).get("security", []))


def audio_attachment(resource: Resource) -> tuple[Resource, str]:
    """The audio attachment of a Media or DocumentReference and a name for it in errors
    ("Media/5 content", "DocumentReference/7 content[1]")."""
    name = f"{resource.get('resourceType')}/{resource.get('id')}"
    if resource.get("resourceType") == "Media":
        attachment = resource.get("content") or {}
        declared = attachment.get("contentType")
        if not attachment or (declared and not is_audio_type(declared)) or (
                not declared and not _media_is_audio(resource)):
            raise InputError(f"{name} content", f"is not audio (content type {declared!r})")
        return attachment, f"{name} content"
    if resource.get("resourceType") == "DocumentReference":
        for index, content in enumerate(resource.get("content", [])):
            attachment = content.get("attachment") or {}
            if is_audio_type(attachment.get("contentType")):
                return attachment, f"{name} content[{index}]"
        raise InputError(name, "has no audio attachment (no content with an audio/* type)")
    raise InputError(name, "speech input must be a Media or a DocumentReference")


def find_sources(client: FhirClient, patient_id: str) -> list[Resource]:
    """The patient's Media with audio content and DocumentReferences with an audio attachment,
    excluding anything AI-written."""
    subject = f"Patient/{patient_id.removeprefix('Patient/')}"
    found = []
    for resource_type in ("Media", "DocumentReference"):
        for resource in client.search(resource_type, {"subject": subject, "_count": 100}):
            if is_ai_output(resource) or resource.get("status") == "entered-in-error":
                continue
            try:
                audio_attachment(resource)
            except InputError:
                continue
            found.append(resource)
    return found


def _media_is_audio(media: Resource) -> bool:
    return any(c.get("system") == MEDIA_TYPE_SYSTEM and c.get("code") == "audio"
               for c in media.get("type", {}).get("coding", []))
