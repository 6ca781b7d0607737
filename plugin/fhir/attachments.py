"""Turn a FHIR Attachment into its bytes: inline data, a Binary on the FHIR server, or an
allow-listed foreign url (fetched without the token). Checks the declared size and hash.

The url is normalised (plugin.fhir.urls) before it is compared with the FHIR base or the
allow-list: one with dot-segments, literal or percent-encoded, is refused outright.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from plugin.errors import AttachmentRefused, InputError
from plugin.fhir.client import FhirClient
from plugin.fhir.urls import UnsafeUrl, check_relative, normalise_url


def resolve_attachment(
    client: FhirClient,
    attachment: dict[str, Any],
    *,
    source: str,
    allowed_hosts: Iterable[str] = (),
) -> bytes:
    """Return the attachment's bytes.

    `source` names the attachment in errors (e.g. "DocumentReference/7 content[0]").
    `allowed_hosts` are foreign hosts (host or host:port) we may fetch from, never with the token.
    """
    content_type = attachment.get("contentType")
    if "data" in attachment:
        data = _decode_inline(attachment["data"], source, client.max_response_bytes)
    elif "url" in attachment:
        data = _fetch_url(client, attachment["url"], content_type, source, allowed_hosts)
    else:
        raise InputError(source, "attachment has neither data nor url")
    _check_declared(attachment, data, source)
    return data


def _decode_inline(encoded: str, source: str, limit: int) -> bytes:
    if len(encoded) * 3 // 4 > limit:
        raise InputError(source, f"inline data is larger than the {limit}-byte limit")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(source, "inline data is not valid base64") from None


def _fetch_url(
    client: FhirClient,
    url: str,
    content_type: str | None,
    source: str,
    allowed_hosts: Iterable[str],
) -> bytes:
    parts = urlsplit(url)
    if not parts.scheme:
        if parts.netloc or url.startswith("/"):
            raise InputError(source, f"attachment url {url!r} is neither relative nor absolute")
        try:
            check_relative(url)
        except UnsafeUrl as exc:
            raise AttachmentRefused(source, f"attachment url refused: {exc}") from None
        return client.read_binary(url, content_type)  # e.g. "Binary/123", relative to the base
    if parts.scheme not in {"http", "https"}:
        raise AttachmentRefused(source, f"attachment url scheme {parts.scheme!r} is not allowed")
    try:
        url = normalise_url(url)
    except UnsafeUrl as exc:
        raise AttachmentRefused(source, f"attachment url refused: {exc}") from None
    parts = urlsplit(url)
    if client.is_on_fhir_server(url):
        return client.read_binary(url, content_type)
    host = parts.netloc.lower()
    allowed = {h.lower() for h in allowed_hosts}
    if host in allowed or (parts.hostname or "").lower() in allowed:
        return client.fetch_unauthenticated(url, content_type)
    raise AttachmentRefused(
        source, f"attachment host {parts.hostname!r} is not the FHIR server and not allow-listed"
    )


def _check_declared(attachment: dict[str, Any], data: bytes, source: str) -> None:
    size = attachment.get("size")
    if size is not None and int(size) != len(data):
        raise InputError(source, f"attachment declares {size} bytes but has {len(data)}")
    declared_hash = attachment.get("hash")
    if declared_hash is not None:
        actual = base64.b64encode(hashlib.sha1(data, usedforsecurity=False).digest()).decode()
        if actual != declared_hash:
            raise InputError(source, "attachment hash (SHA-1) does not match its content")
