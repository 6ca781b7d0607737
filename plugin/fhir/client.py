"""A FHIR R4 REST client over requests.Session: reads, searches with paging, writes, Binary.

The session is injectable (tests may pass one with their own adapter). Every call has a timeout;
bodies are streamed and cut off at `max_response_bytes`; only idempotent requests (GET, HEAD, PUT,
DELETE) are retried, and only on 429/502/503/504 or a connection failure. The access token is sent
under the FHIR base and nowhere else: every URL is normalised and refused when it has dot-segments
(plugin.fhir.urls) before that check. A search follows at most `max_pages` pages and stops at a
`next` link it has already followed.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from plugin.errors import (
    FhirError,
    FhirResponseError,
    FhirTransportError,
    ResponseTooLarge,
)
from plugin.fhir.urls import UnsafeUrl, check_relative, is_under, normalise_url
from plugin.scopes import GrantedScopes

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
RETRY_STATUSES = frozenset({429, 502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE"})
# Pages one search may follow (setting fhir_max_pages): a server whose `next` links never end
# would otherwise keep a job fetching for ever.
DEFAULT_MAX_PAGES = 200
_CHUNK = 64 * 1024

Resource = dict[str, Any]


class FhirClient:
    """Talks to one FHIR server on behalf of one user (one token)."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        session: requests.Session | None = None,
        timeout_s: float = 30.0,
        max_retries: int = 3,
        retry_backoff_s: float = 0.5,
        max_response_bytes: int = 64 * 1024 * 1024,
        max_pages: int = DEFAULT_MAX_PAGES,
        sleep: Callable[[float], None] = time.sleep,
        granted_scopes: GrantedScopes | None = None,
    ) -> None:
        if max_pages < 1:
            raise ValueError("max_pages must be at least 1")
        self.base_url = base_url.rstrip("/")
        # What the token was granted, when known (SMART session, hook, fhir_token_scopes): what
        # plugin.writeback may write with this client. None: not known, the server decides.
        self.granted_scopes = granted_scopes
        self._token = token
        self._session = session or requests.Session()
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.retry_backoff_s = retry_backoff_s
        self.max_response_bytes = max_response_bytes
        self.max_pages = max_pages
        self._sleep = sleep

    def __repr__(self) -> str:  # never show the token
        return f"FhirClient({self.base_url!r})"

    @property
    def access_token(self) -> str | None:
        """The bearer token sent to this FHIR server, for the one caller allowed to forward it: a
        DICOMweb endpoint configured as trusted (plugin.pipelines.imaging.sources). Never log it.
        A session that attaches the token itself (a SMART session's, refreshed as needed) is
        asked for its current one."""
        if self._token is None and hasattr(self._session, "current_access_token"):
            token: str = self._session.current_access_token()
            return token
        return self._token

    # ---- reads -------------------------------------------------------------------------------

    def capabilities(self) -> Resource:
        return self._json("GET", "metadata")

    def read(self, resource_type: str, resource_id: str) -> Resource:
        return self._json("GET", f"{resource_type}/{resource_id}")

    def vread(self, resource_type: str, resource_id: str, version: str) -> Resource:
        return self._json("GET", f"{resource_type}/{resource_id}/_history/{version}")

    def search_pages(
        self, resource_type: str, params: Mapping[str, str | int] | None = None
    ) -> Iterator[Resource]:
        """Yield each Bundle page of a search, following `next` links exactly as the server gave
        them. Identical searches may be cached by the server, so freshness is asked for.

        Raises FhirError when a `next` link repeats one already followed (a loop) or when the
        search would need more than `max_pages` pages; a link off the FHIR base (or with
        dot-segments) is refused by _request before anything is sent."""
        url: str | None = self._url(resource_type)
        query: Mapping[str, str | int] | None = params
        followed: set[str] = set()
        pages = 0
        while url is not None:
            page = self._json("GET", url, params=query, headers={"Cache-Control": "no-cache"})
            pages += 1
            yield page
            link = _next_link(page)
            if link is None:
                return
            url = self._url(link)
            if url in followed:
                raise FhirError(f"search {resource_type}: the server's next link repeats a page "
                                f"already read (a paging loop) after {pages} page(s)",
                                method="GET", url=url)
            if pages >= self.max_pages:
                raise FhirError(f"search {resource_type}: more than {self.max_pages} pages "
                                "(the fhir_max_pages limit); the search was stopped",
                                method="GET", url=url)
            followed.add(url)
            query = None

    def search(
        self, resource_type: str, params: Mapping[str, str | int] | None = None
    ) -> Iterator[Resource]:
        """Yield the matching resources (search mode 'match') across all pages."""
        for page in self.search_pages(resource_type, params):
            for entry in page.get("entry", []):
                if entry.get("search", {}).get("mode", "match") == "match":
                    yield entry["resource"]

    # ---- writes ------------------------------------------------------------------------------

    def create(self, resource: Resource, *, if_none_exist: str | None = None) -> Resource:
        """POST a resource. With `if_none_exist` (a search query such as
        `identifier=sys|val`) the server returns the existing match instead of creating."""
        headers = {"Prefer": "return=representation"}
        if if_none_exist:
            headers["If-None-Exist"] = if_none_exist
        return self._json("POST", resource["resourceType"], body=resource, headers=headers)

    def update(self, resource: Resource, *, if_match: str | None = None) -> Resource:
        """PUT a resource by id. `if_match` is the version id the change was based on."""
        headers = {"Prefer": "return=representation"}
        if if_match is not None:
            headers["If-Match"] = f'W/"{if_match}"'
        path = f"{resource['resourceType']}/{resource['id']}"
        return self._json("PUT", path, body=resource, headers=headers)

    def transaction(self, bundle: Resource) -> Resource:
        """POST a transaction Bundle to the base; the server applies all of it or none."""
        if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "transaction":
            raise ValueError("transaction() takes a Bundle of type 'transaction'")
        return self._json("POST", self.base_url, body=bundle)

    def delete(self, resource_type: str, resource_id: str) -> None:
        self._request("DELETE", f"{resource_type}/{resource_id}", accept=FHIR_JSON)

    # ---- Binary --------------------------------------------------------------------------------

    def create_binary(self, data: bytes, content_type: str) -> Resource:
        """Store raw bytes as a Binary without base64 (the server keeps the content type)."""
        response = self._request(
            "POST", "Binary", data=data, headers={"Content-Type": content_type}, accept=FHIR_JSON
        )
        body = _read_limited(response, self.max_response_bytes, "POST", response.url)
        return json.loads(body) if body else _id_from_location(response)

    def read_binary(self, url: str, content_type: str | None) -> bytes:
        """Read a Binary's bytes. Asks for the raw content type first; when the server answers
        with FHIR JSON instead (or refuses the type), decodes the Binary resource's `data`."""
        accept = content_type or "application/octet-stream"
        try:
            response = self._request("GET", url, accept=accept)
        except FhirResponseError as exc:
            if exc.status not in (406, 415):
                raise
            response = self._request("GET", url, accept=FHIR_JSON)
        body = _read_limited(response, self.max_response_bytes, "GET", response.url)
        returned_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        if returned_type in {FHIR_JSON, "application/json"} and accept not in returned_type:
            return _binary_json_data(body, url)
        return body

    def fetch_unauthenticated(self, url: str, accept: str | None) -> bytes:
        """GET an absolute url on an allow-listed foreign host. Never carries the token."""
        headers = {"Accept": accept or "*/*"}
        response = self._send("GET", url, headers=headers, authenticated=False)
        return _read_limited(response, self.max_response_bytes, "GET", url)

    # ---- plumbing ----------------------------------------------------------------------------

    def is_on_fhir_server(self, url: str) -> bool:
        """True when `url` lies under the FHIR base (same scheme, host, port and whole path
        segments), judged after normalisation; a URL with dot-segments is never on it."""
        try:
            return is_under(url, self.base_url)
        except UnsafeUrl:
            return False

    def _url(self, path_or_url: str) -> str:
        """The absolute, normalised URL of a path under the base or of an absolute URL; a
        FhirError when it is unsafe (dot-segments, even encoded ones, credentials, ...)."""
        try:
            if "://" in path_or_url:
                return normalise_url(path_or_url)
            check_relative(path_or_url)
            return normalise_url(urljoin(self.base_url + "/", path_or_url.lstrip("/")))
        except UnsafeUrl as exc:
            raise FhirError(f"refusing the URL {_redacted(path_or_url)}: {exc}", method="GET",
                            url=_redacted(path_or_url)) from None

    def _json(
        self,
        method: str,
        path_or_url: str,
        *,
        body: Resource | None = None,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Resource:
        data = json.dumps(body).encode() if body is not None else None
        all_headers = dict(headers or {})
        if data is not None:
            all_headers["Content-Type"] = f"{FHIR_JSON}; charset=utf-8"
        response = self._request(
            method, path_or_url, params=params, data=data, headers=all_headers, accept=FHIR_JSON
        )
        raw = _read_limited(response, self.max_response_bytes, method, response.url)
        if not raw:
            return {}
        try:
            parsed: Resource = json.loads(raw)
        except ValueError:
            raise FhirError(
                f"{method} {response.url}: the server's answer is not JSON", method=method,
                url=response.url,
            ) from None
        return parsed

    def _request(
        self,
        method: str,
        path_or_url: str,
        *,
        accept: str,
        params: Mapping[str, str | int] | None = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        url = self._url(path_or_url)
        if not self.is_on_fhir_server(url):
            # Every authenticated call goes to the FHIR base; anything else is a bug upstream.
            raise FhirError(f"refusing to send credentials outside {self.base_url}", method=method,
                            url=url)
        all_headers = {"Accept": accept, **(headers or {})}
        response = self._send(method, url, params=params, data=data, headers=all_headers,
                              authenticated=True)
        if response.status_code >= 400:
            raise _response_error(response, method, url, self.max_response_bytes)
        return response

    def _send(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        authenticated: bool,
        params: Mapping[str, str | int] | None = None,
        data: bytes | None = None,
    ) -> requests.Response:
        if authenticated and self._token:
            headers = {**headers, "Authorization": f"Bearer {self._token}"}
        retries = self.max_retries if method in IDEMPOTENT_METHODS else 0
        attempt = 0
        while True:
            try:
                response = self._session.request(
                    method, url, params=params, data=data, headers=headers,
                    timeout=self.timeout_s, stream=True, allow_redirects=False,
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt >= retries:
                    raise FhirTransportError(
                        f"{method} {url}: no answer ({type(exc).__name__})", method=method, url=url
                    ) from exc
                delay = self.retry_backoff_s * 2**attempt
            else:
                log.debug("%s %s -> %s", method, urlsplit(url).path, response.status_code)
                if response.status_code not in RETRY_STATUSES or attempt >= retries:
                    return response
                delay = _retry_after(response) or self.retry_backoff_s * 2**attempt
                response.close()
            attempt += 1
            log.info("retrying %s %s in %.1fs (attempt %d)", method, urlsplit(url).path, delay,
                     attempt + 1)
            self._sleep(delay)


def _read_limited(response: requests.Response, limit: int, method: str, url: str) -> bytes:
    declared = response.headers.get("Content-Length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        response.close()
        raise ResponseTooLarge(method=method, url=url, limit=limit)
    chunks, size = [], 0
    for chunk in response.iter_content(_CHUNK):
        size += len(chunk)
        if size > limit:
            response.close()
            raise ResponseTooLarge(method=method, url=url, limit=limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _response_error(
    response: requests.Response, method: str, url: str, limit: int
) -> FhirResponseError:
    try:
        body = _read_limited(response, min(limit, 1024 * 1024), method, url)
    except ResponseTooLarge:
        body = b""
    outcome = None
    try:
        parsed = json.loads(body) if body else None
        if isinstance(parsed, dict) and parsed.get("resourceType") == "OperationOutcome":
            outcome = parsed
    except ValueError:
        pass
    excerpt = "" if outcome else body[:300].decode("utf-8", "replace")
    return FhirResponseError(
        method=method, url=url, status=response.status_code, outcome=outcome, body_excerpt=excerpt
    )


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    return min(float(value), 30.0) if value.isdigit() else None


def _next_link(bundle: Resource) -> str | None:
    for link in bundle.get("link", []):
        if link.get("relation") == "next":
            url: str = link["url"]
            return url
    return None


def _redacted(url: str) -> str:
    """A URL for an error message: without its query (search values can be patient data)."""
    return url.split("?", 1)[0][:300]


def _binary_json_data(body: bytes, url: str) -> bytes:
    try:
        resource = json.loads(body)
    except ValueError:
        raise FhirError(f"{url}: answer is neither the raw content nor a Binary", method="GET",
                        url=url) from None
    if resource.get("resourceType") != "Binary":
        raise FhirError(f"{url}: expected a Binary, got {resource.get('resourceType')}",
                        method="GET", url=url)
    return base64.b64decode(resource.get("data", ""))


def _id_from_location(response: requests.Response) -> Resource:
    # e.g. .../Binary/123/_history/1
    parts = urlsplit(response.headers.get("Location", "")).path.split("/")
    if "_history" in parts:
        i = parts.index("_history")
        return {"resourceType": parts[i - 2], "id": parts[i - 1], "meta": {"versionId": parts[i + 1]}}
    return {"resourceType": parts[-2], "id": parts[-1]} if len(parts) >= 2 else {}
