"""A small FHIR R4 REST client for prefetch fallback.

Only GETs, only to the request's own fhirServer (which must be on the
allowlist), with the EHR's access token, per-request timeouts, a time budget
for the whole hook call, bounded retries on transient failures, Bundle
paging up to a page limit, and redirects followed only when they stay under
the same fhirServer. The token never goes anywhere else.

One client serves all the queries of one hook call, from several threads at
once (prefetch.py): it holds nothing that changes after construction, and
the time budget is one deadline they all share.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

if TYPE_CHECKING:
    import requests

from cds_service.fhir.allowlist import FhirServerAllowlist, NotAllowed, Origin, malformed

_TRANSIENT_STATUS = {429, 500, 502, 503, 504}
_REDIRECT_STATUS = {301, 302, 303, 307, 308}
_MAX_REDIRECTS = 3


class FhirError(Exception):
    """A FHIR read failed. `kind` is a short code; the message never holds data."""

    def __init__(self, kind: str, message: str, status: int | None = None):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status


class FhirClient:
    def __init__(
        self,
        base_url: str,
        *,
        access_token: str | None,
        allowlist: FhirServerAllowlist,
        timeout: float,
        total_timeout: float,
        retries: int,
        max_pages: int,
        max_url_length: int = 8192,
        session: requests.Session | None = None,
        sleep=time.sleep,
    ):
        # Raises NotAllowed before any network call if the server is not allowed.
        self.origin: Origin = allowlist.check(base_url)
        self.base = self.origin.url()
        self.allowlist = allowlist
        self.access_token = access_token
        self.timeout = timeout
        self.deadline = time.monotonic() + total_timeout
        self.retries = retries
        self.max_pages = max_pages
        self.max_url_length = max_url_length
        if session is None:
            import requests  # here, not at module level: see cds_service.app.LazySession

            session = requests.Session()
        self.session = session
        self.sleep = sleep

    def url_for(self, relative: str) -> str:
        """The absolute URL of a read or search such as `Patient/123` or
        `Condition?patient=123`. Appended to the base, never resolved against
        it, and refused if a path segment is empty or a dot segment: the
        filled-in values must not be able to change which resource is read
        (`Patient/..` would otherwise read the base, a search over everyone)."""
        path, _, query = relative.partition("?")
        if any(segment in ("", ".", "..") for segment in path.split("/")):
            raise FhirError("bad_request", "the query's path has an empty or dot segment")
        return f"{self.base}/{relative}"

    # The only place a URL is turned into a network call: every URL passes
    # the same-server check here, whatever produced it.
    def _check_target(self, url: str, what: str) -> None:
        try:
            target = self.allowlist.check(url, allow_query=True, max_length=self.max_url_length, what="the URL")
        except NotAllowed as exc:
            raise FhirError("not_allowed", f"refused to follow {what}: {exc}") from None
        if not self.origin.contains(target):
            raise FhirError("not_allowed", f"refused to follow {what}: it leads outside the request's fhirServer")

    def _resolve(self, current: str, reference: Any, what: str) -> str:
        """A URL from an answer (Location, `next` link), made absolute."""
        if not isinstance(reference, str) or not reference:
            raise FhirError("bad_response", f"{what} is not a URL")
        problem = malformed(reference)
        if problem:
            raise FhirError("bad_response", f"{what} {problem}")
        return urljoin(current, reference)

    def _remaining(self) -> float:
        return self.deadline - time.monotonic()

    def _get_once(self, url: str, what: str) -> requests.Response:
        import requests

        headers = {"Accept": "application/fhir+json, application/json"}
        if self.access_token:
            headers["Authorization"] = f"Bearer {self.access_token}"
        for _ in range(_MAX_REDIRECTS + 1):
            self._check_target(url, what)
            remaining = self._remaining()
            if remaining <= 0:
                raise FhirError("timeout", "the time budget for FHIR requests ran out")
            timeout = min(self.timeout, remaining)
            try:
                response = self.session.get(url, headers=headers, timeout=(timeout, timeout),
                                            allow_redirects=False)
            except requests.RequestException:
                raise
            except ValueError:
                # requests parses a redirect's Location even with redirects
                # off (to offer it as `response.next`), and raises on a
                # malformed one; nothing has been contacted for it yet.
                raise FhirError("bad_response", "a redirect is not a well-formed URL") from None
            if response.status_code in _REDIRECT_STATUS and response.headers.get("Location"):
                url = self._resolve(url, response.headers["Location"], "a redirect")
                what = "a redirect"
                continue
            return response
        raise FhirError("bad_response", "too many redirects from the FHIR server")

    def _get_json(self, url: str, what: str) -> dict[str, Any]:
        import requests

        attempt = 0
        while True:
            try:
                response = self._get_once(url, what)
            except requests.Timeout:
                error = FhirError("timeout", "the FHIR server did not answer in time")
            except requests.RequestException:
                error = FhirError("unavailable", "the FHIR server could not be reached")
            else:
                status = response.status_code
                if status in (401, 403):
                    raise FhirError("unauthorized", f"the FHIR server refused the access token ({status})", status)
                if status == 404:
                    raise FhirError("not_found", "the FHIR server has no such resource (404)", status)
                if status in _TRANSIENT_STATUS:
                    error = FhirError("unavailable", f"the FHIR server answered {status}", status)
                elif status >= 400:
                    raise FhirError("bad_response", f"the FHIR server answered {status}", status)
                else:
                    try:
                        body = response.json()
                    except (ValueError, json.JSONDecodeError):
                        raise FhirError("bad_response", "the FHIR server sent something that is not JSON") from None
                    if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
                        raise FhirError("bad_response", "the FHIR server sent JSON that is not a FHIR resource")
                    return body
            attempt += 1
            if attempt > self.retries or self._remaining() <= 0:
                raise error
            # Short, growing pause; bounded by the remaining budget.
            self.sleep(min(0.2 * attempt, max(self._remaining(), 0)))

    def read(self, relative: str) -> dict[str, Any]:
        """GET a read or search relative to the base; a search Bundle comes
        back with every page's entries merged (up to max_pages pages)."""
        url = self.url_for(relative)
        first = self._get_json(url, "the query")
        if first.get("resourceType") != "Bundle":
            return first
        return self._all_pages(first, url)

    def rest_of(self, bundle: dict[str, Any]) -> dict[str, Any]:
        """A search Bundle the CDS client sent, with the pages its `next`
        links lead to merged in (same rules as for fetched pages)."""
        return self._all_pages(bundle, self.base + "/")

    def _all_pages(self, first: dict[str, Any], url: str) -> dict[str, Any]:
        entries = _entries(first)
        page, page_url = first, url
        pages = 1
        while True:
            next_ref = next_link(page)
            if next_ref is None:
                break
            if pages >= self.max_pages:
                # Deciding on a partial medication or fracture list could
                # suggest the wrong thing, so an incomplete search is an error.
                raise FhirError("too_many_pages", f"the search has more than {self.max_pages} pages "
                                                  "(CDS_FHIR_MAX_PAGES)")
            page_url = self._resolve(page_url, next_ref, "a Bundle next link")
            page = self._get_json(page_url, "a Bundle next link")
            if page.get("resourceType") != "Bundle":
                raise FhirError("bad_response", "a Bundle page was not a Bundle")
            entries.extend(_entries(page))
            pages += 1
        merged = {k: v for k, v in first.items() if k not in ("entry", "link")}
        merged["entry"] = entries
        merged["total"] = len(entries)
        return merged


def next_link(bundle: Any) -> Any:
    """The url of a Bundle's `next` link (not necessarily a string), or None."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        return None
    links = bundle.get("link")
    return next((link.get("url") for link in (links if isinstance(links, list) else [])
                 if isinstance(link, dict) and link.get("relation") == "next"), None)


def _entries(page: dict[str, Any]) -> list[Any]:
    entries = page.get("entry")
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise FhirError("bad_response", "a Bundle's entry is not an array")
    return list(entries)
