"""The EHR's look applied to the app (SMART App Launch 2.2 "Styling": the token response's
`smart_style_url`). The style JSON is fetched by the server — never by the browser — only from the
EHR's own host (its FHIR base's or token endpoint's scheme, host and port), with a timeout and a size
limit, and cached briefly. Only the known keys are read, each value must match a strict pattern
(hex or rgb colours, plain lengths, font-family lists of plain names), and the app serves the result
as CSS custom properties from its own origin (/smart/app/style.css), so nothing the EHR writes
becomes CSS rules, a selector or a URL on the page, and the page's CSP stays `style-src 'self'`."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

import requests

from smart_launch.http_json import BodyError, request_json

log = logging.getLogger(__name__)
MAX_STYLE_BYTES = 16 * 1024
STYLE_CACHE_S = 600.0
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}

# SMART style key -> the app's CSS custom property (smart_launch/static/app.css uses them).
COLOURS = {"color_text": "--ink", "color_highlight": "--accent", "color_background": "--page-bg",
           "color_error": "--bad", "color_success": "--ok"}
LENGTHS = {"dim_font_size": "--font-size", "dim_border_radius": "--radius"}
FONTS = {"font_family_body": "--font-body", "font_family_heading": "--font-heading"}

_HEX = re.compile(r"#(?:[0-9a-fA-F]{3,4}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})")
_RGB = re.compile(r"rgba?\(\s*\d{1,3}\s*,\s*\d{1,3}\s*,\s*\d{1,3}\s*(?:,\s*(?:0|1|0?\.\d{1,3})\s*)?\)")
_LENGTH = re.compile(r"\d{1,3}(?:\.\d{1,3})?(?:px|em|rem)")
_FAMILY = re.compile(r"[A-Za-z0-9][A-Za-z0-9 \-]{0,60}")


def style_allowed(url: str, ehr_urls: tuple[str, ...]) -> bool:
    """Whether `url` is on the EHR's own origin (scheme, host and port of one of `ehr_urls`), over
    https or loopback http, with no user info."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.username or parts.password:
        return False
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
        return False
    origin = (parts.scheme, parts.netloc.lower())
    return any((urlsplit(u).scheme, urlsplit(u).netloc.lower()) == origin for u in ehr_urls)


def fetch_style(session: requests.Session, url: str, *, timeout_s: float) -> dict[str, str]:
    """The usable properties of the style JSON at `url` (empty when it cannot be read)."""
    try:
        answer = request_json(session, "GET", url, max_bytes=MAX_STYLE_BYTES, timeout_s=timeout_s)
    except BodyError as exc:
        log.info("the EHR's style could not be read: %s", exc.reason)
        return {}
    if answer.status != 200 or not isinstance(answer.body, dict):
        log.info("the EHR's style answered HTTP %s without a JSON object", answer.status)
        return {}
    return style_properties(answer.body)


def style_properties(style: Mapping[str, object]) -> dict[str, str]:
    """CSS custom property -> value for each known key whose value passes its pattern; everything
    else is left out."""
    found: dict[str, str] = {}
    for key, value in style.items():
        if not isinstance(value, str):
            continue
        value = value.strip()
        if key in COLOURS and (_HEX.fullmatch(value) or _RGB.fullmatch(value)):
            found[COLOURS[key]] = value
        elif key in LENGTHS and _LENGTH.fullmatch(value):
            found[LENGTHS[key]] = value
        elif key in FONTS:
            families = _font_families(value)
            if families:
                found[FONTS[key]] = families
    return found


def _font_families(value: str) -> str:
    """A font-family list rebuilt from plain names (quoted or not), or "" if any part is not one.
    One trailing ";" is forgiven (smart-launcher-v2's style ends its heading font with one)."""
    names = []
    for part in value.removesuffix(";").split(","):
        name = part.strip()
        if len(name) >= 2 and name[0] == name[-1] and name[0] in "'\"":
            name = name[1:-1]
        if not _FAMILY.fullmatch(name):
            return ""
        names.append(f'"{name}"' if " " in name or name[0].isdigit() else name)
    return ", ".join(names[:8])


def style_sheet(properties: Mapping[str, str]) -> str:
    """The CSS the app serves: one `:root` rule of custom properties, values already checked."""
    lines = [f"  {name}: {value};" for name, value in sorted(properties.items())]
    return ":root {\n" + "\n".join(lines) + "\n}\n"
