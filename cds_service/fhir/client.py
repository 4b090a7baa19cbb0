"""A small FHIR R4 REST client for prefetch fallback.

Only GETs, only to the request's own fhirServer (which must be on the
allowlist), with the EHR's access token, per-request timeouts, a time budget
for the whole hook call, bounded retries on transient failures, Bundle
paging up to a page limit, and redirects followed only when they stay under
the same fhirServer. The token never goes anywhere else.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any
from urllib.parse import urljoin

import requests

from cds_service.fhir.allowlist import FhirServerAllowlist, NotAllowed, Origin

log = logging.getLogger(__name__)

_TRANSIENT_STATUS = {429, 500, 502, 503, 504}
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
        session: requests.Session | None = None,
        sleep=time.sleep,
    ):
        # Raises NotAllowed before any network call if the server is not allowed.
        self.origin: Origin = allowlist.check(base_url)
        self.base = self.origin.url() + "/"
        self.allowlist = allowlist
        self.access_token = access_token
        self.timeout = timeout
        self.deadline = time.monotonic() + total_timeout
        self.retries = retries
        self.max_pages = max_pages
        self.session = session or requests.Session()
        self.sleep = sleep

    # The only place a URL is turned into a network call: every URL passes
    # the same-server check here, whatever produced it.
    def _check_target(self, url: str) -> None:
        try:
            target = self.allowlist.check(url, allow_query=True)
        except NotAllowed as exc:
            raise FhirError("not_allowed", f"refused to follow a URL off the allowlist: {exc}") from None
        if not self.origin.contains(target):
            raise FhirError("not_allowed", "refused to follow a URL outside the request's fhirServer")

    def _remaining(self) -> float:
        return self.deadline - time.monotonic()

    def _get_once(self, url: str) -> requests.Response:
        headers = {"Accept": "application/fhir+json, application/json"}
        if self.access_token:
            headers["Authorization"] = f"Bearer {self.access_token}"
        for _ in range(_MAX_REDIRECTS + 1):
            self._check_target(url)
            remaining = self._remaining()
            if remaining <= 0:
                raise FhirError("timeout", "the time budget for FHIR requests ran out")
            timeout = min(self.timeout, remaining)
            response = self.session.get(url, headers=headers, timeout=(timeout, timeout), allow_redirects=False)
            if response.status_code in (301, 302, 303, 307, 308) and response.headers.get("Location"):
                url = urljoin(url, response.headers["Location"])
                continue
            return response
        raise FhirError("bad_response", "too many redirects from the FHIR server")

    def _get_json(self, url: str) -> dict[str, Any]:
        attempt = 0
        while True:
            try:
                response = self._get_once(url)
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
        url = urljoin(self.base, relative.lstrip("/"))
        first = self._get_json(url)
        if first.get("resourceType") != "Bundle":
            return first
        entries = list(first.get("entry") or [])
        page = first
        pages = 1
        while True:
            next_url = next(
                (link.get("url") for link in page.get("link") or []
                 if isinstance(link, dict) and link.get("relation") == "next" and link.get("url")),
                None,
            )
            if not next_url:
                break
            if pages >= self.max_pages:
                # Deciding on a partial medication or fracture list could
                # suggest the wrong thing, so an incomplete search is an error.
                raise FhirError("too_many_pages", f"the search has more than {self.max_pages} pages")
            page = self._get_json(urljoin(url, next_url))
            if page.get("resourceType") != "Bundle":
                raise FhirError("bad_response", "a Bundle page was not a Bundle")
            entries.extend(page.get("entry") or [])
            pages += 1
        merged = {k: v for k, v in first.items() if k not in ("entry", "link")}
        merged["entry"] = entries
        merged["total"] = len(entries)
        return merged
