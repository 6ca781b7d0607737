"""One rule for every URL that comes from FHIR data (attachment urls, Endpoint addresses, search
`next` links) before it meets an allow-list: normalise it, and refuse what a server could read
differently from the check.

    normalise_url(url)        -> the URL with scheme/host lower-cased and default port dropped,
                                 or UnsafeUrl when it has dot-segments, credentials, a backslash...
    check_relative(reference) -> the same refusal for a relative reference ("Binary/7")
    is_under(url, prefix)     -> whether `url` lies under `prefix` (whole path segments only)

Why refuse instead of resolving: `…/tenant-a/fhir/../../tenant-b/x` passes a path-prefix check
made on the raw text, and urllib3 (or a proxy, or the server after percent-decoding `%2e%2e`)
then resolves it to another tenant that receives the token. A legitimate FHIR server never
hands out such links, so one that does gets nothing.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit, urlunsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}
# Percent-decoding is repeated (%252e -> %2e -> .) this many times; more layers are refused.
_MAX_DECODES = 3


class UnsafeUrl(ValueError):
    """A URL that must not be contacted: the message says why (never includes a token)."""


def normalise_url(url: str) -> str:
    """The absolute http(s) `url` in one canonical spelling: scheme and host lower-cased, the
    default port dropped, the fragment removed. Raises UnsafeUrl for dot-segments (also encoded:
    `%2e%2e`, `.%2E`, `%252e%252e`), an encoded `/` or `\\` in a segment, a backslash, control
    characters or whitespace, credentials (`user@host`), or a scheme other than http(s)."""
    _check_characters(url)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise UnsafeUrl(f"scheme {parts.scheme or 'none'!r} is not http or https")
    if "@" in parts.netloc:
        raise UnsafeUrl("credentials in the URL (user@host) are not allowed")
    host = (parts.hostname or "").lower()
    if not host:
        raise UnsafeUrl("the URL has no host")
    try:
        port = parts.port
    except ValueError:
        raise UnsafeUrl("the URL's port is not a number from 0 to 65535") from None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    _check_path(parts.path)
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


def check_relative(reference: str) -> None:
    """Raise UnsafeUrl when a relative reference (e.g. `Binary/7`) would leave its base once
    resolved: dot-segments (literal or encoded), backslashes, control characters."""
    _check_characters(reference)
    _check_path(urlsplit(reference).path)


def is_under(url: str, prefix: str) -> bool:
    """Whether `url` lies under `prefix`: same scheme, host and port, and the path equal to the
    prefix's or continuing it after a `/` (so `https://pacs/dicom` does not cover
    `https://pacs/dicom-other` or `https://pacs.example.org`). Both are normalised first; an
    unsafe `url` raises UnsafeUrl, an unsafe prefix (configuration) is never matched."""
    target = urlsplit(normalise_url(url))
    try:
        base = urlsplit(normalise_url(prefix))
    except UnsafeUrl:
        return False
    if (target.scheme, target.netloc) != (base.scheme, base.netloc):
        return False
    base_path = base.path.rstrip("/")
    return target.path.rstrip("/") == base_path or target.path.startswith(base_path + "/")


def _check_characters(text: str) -> None:
    if "\\" in text:
        raise UnsafeUrl("a backslash in the URL (some servers read it as '/')")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in text):
        raise UnsafeUrl("whitespace or control characters in the URL")


def _check_path(path: str) -> None:
    for segment in path.split("/"):
        decoded = segment
        for _ in range(_MAX_DECODES):
            if decoded in (".", ".."):
                raise UnsafeUrl("a dot-segment ('.' or '..') in the URL path, literal or encoded")
            if "/" in decoded or "\\" in decoded:
                raise UnsafeUrl("an encoded '/' or '\\' inside a URL path segment")
            undone = unquote(decoded)
            if undone == decoded:
                break
            decoded = undone
        else:
            raise UnsafeUrl(f"a URL path segment is percent-encoded more than {_MAX_DECODES} times")
        if decoded in (".", ".."):
            raise UnsafeUrl("a dot-segment ('.' or '..') in the URL path, literal or encoded")
