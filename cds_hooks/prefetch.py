"""Prefetch (CDS Hooks 2.0.1, Providing FHIR Resources to a CDS Service): fill each of a
service's prefetch templates from what the EHR sent, else fetch it from `fhirServer` with
`fhirAuthorization`, else fail with 412. A query the token's SMART scopes do not grant (v1
`.read` or v2 `.r`/`.s`) is not sent: it fails with 412 and the reason.

What the EHR sent for a key is used as is when it is a resource or Bundle; `null` means "no
data". An OperationOutcome in a key (the EHR's prefetch failed) or a missing key means the
service fetches the query itself. A prefetched Bundle the EHR paginated is completed from the
server when the service may reach it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from cds_hooks.errors import PrefetchUnavailable
from plugin.errors import FhirError, FhirResponseError
from plugin.fhir import FhirClient

Resource = dict[str, Any]
MAX_PAGES = 10  # of a prefetch search: 10 pages of up to 200 results is far more than a card shows
_TOKEN = re.compile(r"\{\{\s*([A-Za-z0-9_.]+)\s*\}\}")
# Prefetch tokens identifying the user: derived from context.userId ("Practitioner/123").
_USER_TOKENS = {
    "userPractitionerId": "Practitioner",
    "userPractitionerRoleId": "PractitionerRole",
    "userPatientId": "Patient",
    "userRelatedPersonId": "RelatedPerson",
}


def render(template: str, context: Mapping[str, Any]) -> str | None:
    """The template with its tokens replaced (URL-encoded), or None when a token has no value
    in this context (then the query cannot be run)."""
    missing = False

    def value(match: re.Match[str]) -> str:
        nonlocal missing
        name = match[1]
        found: Any = None
        if name.startswith("context."):
            found = context.get(name.removeprefix("context."))
        elif name in _USER_TOKENS:
            user_type, _, user_id = str(context.get("userId", "")).partition("/")
            found = user_id if user_type == _USER_TOKENS[name] and user_id else None
        # Only primitive, top-level context fields are prefetch tokens.
        if isinstance(found, bool) or not isinstance(found, str | int | float) or found == "":
            missing = True
            return ""
        return quote(str(found), safe="")

    rendered = _TOKEN.sub(value, template)
    return None if missing else rendered


def resolve(
    templates: Mapping[str, str],
    prefetch: Mapping[str, Any] | None,
    context: Mapping[str, Any],
    client: FhirClient | None,
) -> dict[str, Resource | None]:
    """Every template key's data: a resource, a searchset Bundle, or None for "no data"."""
    prefetch = prefetch or {}
    data: dict[str, Resource | None] = {}
    for key, template in templates.items():
        sent = prefetch.get(key, _MISSING)
        if sent is None:
            data[key] = None
        elif _usable(sent):
            data[key] = _complete_pages(sent, client) if client is not None else sent
        else:
            data[key] = _fetch(key, template, context, client)
    return data


_MISSING = object()


def _usable(sent: Any) -> bool:
    return (sent is not _MISSING and isinstance(sent, dict) and isinstance(sent.get("resourceType"), str)
            and sent["resourceType"] != "OperationOutcome")


def _fetch(key: str, template: str, context: Mapping[str, Any],
           client: FhirClient | None) -> Resource | None:
    if client is None:
        raise PrefetchUnavailable(key, "not prefetched, and no usable fhirServer/fhirAuthorization")
    url = render(template, context)
    if url is None:
        raise PrefetchUnavailable(key, "the context lacks a value its query needs")
    resource_type, resource_id, params = split_query(url)
    granted = client.granted_scopes
    if granted is not None and not granted.can_read(resource_type):
        # The server would refuse it: say why without sending the token on a doomed request.
        raise PrefetchUnavailable(key, f"the token's scopes (fhirAuthorization.scope) grant no read of "
                                       f"{resource_type}")
    try:
        if resource_id is not None:
            return client.read(resource_type, resource_id)
        return _merged(client.search_pages(resource_type, params))
    except FhirResponseError as exc:
        if resource_id is not None and exc.status in (404, 410):
            return None
        raise PrefetchUnavailable(key, f"the FHIR server answered HTTP {exc.status}") from exc
    except FhirError as exc:
        raise PrefetchUnavailable(key, f"the FHIR server could not be read ({type(exc).__name__})") from exc


def split_query(relative_url: str) -> tuple[str, str | None, dict[str, str]]:
    """("Observation", None, {"patient": "1"}) for "Observation?patient=1";
    ("Patient", "1", {}) for "Patient/1"."""
    parts = urlsplit(relative_url)
    segments = [s for s in parts.path.split("/") if s]
    if not segments or len(segments) > 2 or parts.scheme or parts.netloc:
        raise ValueError(f"not a relative FHIR read or search: {relative_url!r}")
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    return segments[0], segments[1] if len(segments) == 2 else None, params


def _complete_pages(sent: Resource, client: FhirClient) -> Resource:
    """A paginated prefetch Bundle with the rest of its pages, fetched from the server (a next
    link off the FHIR base is refused by the client, so the token goes nowhere else)."""
    link = _next_link(sent) if sent.get("resourceType") == "Bundle" else None
    if link is None:
        return sent
    pages = [sent]
    try:
        for page in client.search_pages(link):
            pages.append(page)
            if len(pages) >= MAX_PAGES:
                break
    except FhirError:
        pass  # what the EHR sent is still the data it chose to send
    return _merged(iter(pages))


def _merged(pages: Any) -> Resource:
    entries: list[Resource] = []
    for count, page in enumerate(pages, start=1):
        entries.extend(e for e in page.get("entry", [])
                       if e.get("search", {}).get("mode", "match") == "match")
        if count >= MAX_PAGES:
            break
    return {"resourceType": "Bundle", "type": "searchset", "entry": entries}


def _next_link(bundle: Resource) -> str | None:
    for link in bundle.get("link", []):
        if link.get("relation") == "next" and isinstance(link.get("url"), str):
            url: str = link["url"]
            return url
    return None


def resources(data: Resource | None, resource_type: str) -> list[Resource]:
    """The resources of `resource_type` in one prefetch value (a resource or a Bundle)."""
    if data is None:
        return []
    if data.get("resourceType") == "Bundle":
        return [e["resource"] for e in data.get("entry", [])
                if isinstance(e.get("resource"), dict) and e["resource"].get("resourceType") == resource_type]
    return [data] if data.get("resourceType") == resource_type else []
