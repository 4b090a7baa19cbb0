"""A small FHIR R4 REST client for prefetch fallback.

Only GETs, only to the request's own fhirServer (which must be on the
allowlist), with the EHR's access token, per-request timeouts, a time budget
for the whole hook call, bounded retries on transient failures, Bundle
paging up to a page limit, and redirects followed only when they stay under
the same fhirServer. The token never goes anywhere else.

A hostile (or broken) server cannot hold a hook call past its budget, nor
fill a worker's memory: the time budget is a hard deadline for every request,
headers and body included (fhir/deadline.py), the bytes of all replies of a
call together are capped (CDS_MAX_BODY_BYTES, the most a client may send), and
a reply is read as a sent prefetch is (no NaN, deep nesting refused). A
`next` link is followed only if it is a page of the same search: the same
resource type's search on this fhirServer for the same patient, or the
server's opaque page form (`[base]?_getpages=...`, HAPI's).

One client serves all the queries of one hook call, from several threads at
once (prefetch.py): it holds nothing that changes after construction but
the byte budget (under a lock), and the time budget is one deadline they all
share.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urljoin, urlsplit

if TYPE_CHECKING:
    import requests

from cds_service.fhir.allowlist import FhirServerAllowlist, NotAllowed, Origin, malformed
from cds_service.protocol.requests_json import NotFhirJson, parse_fhir_reply

log = logging.getLogger(__name__)

_TRANSIENT_STATUS = {429, 500, 502, 503, 504}
_REDIRECT_STATUS = {301, 302, 303, 307, 308}
_MAX_REDIRECTS = 3
_CHUNK = 64 * 1024
# The parameters of a search that name whose data it reads: a page must name the same.
_PATIENT_PARAMS = ("patient", "subject", "_has")
# HAPI's paging form, `[base]?_getpages=<search id>&_getpagesoffset=20&_count=20&...`:
# the search id stands for the original search, kept by the server.
_OPAQUE_PAGE_PARAMS = {"_getpages", "_getpagesoffset", "_count", "_bundletype", "_pretty", "_format"}


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
        max_bytes: int | None = None,
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
        # Bytes still allowed in replies, shared by the call's threads (None: no cap).
        self.bytes_left = max_bytes
        self._bytes_lock = threading.Lock()
        if session is None:
            import requests  # here, not at module level: see cds_service.app.LazySession

            from cds_service.fhir import deadline

            session = deadline.mount(requests.Session())
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
    def _check_target(self, url: str, what: str) -> Origin:
        try:
            target = self.allowlist.check(url, allow_query=True, max_length=self.max_url_length, what="the URL")
        except NotAllowed as exc:
            raise FhirError("not_allowed", f"refused to follow {what}: {exc}") from None
        if not self.origin.contains(target):
            raise FhirError("not_allowed", f"refused to follow {what}: it leads outside the request's fhirServer")
        return target

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
        """The response to a GET, redirects followed; its body not read yet."""
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
                                            allow_redirects=False, stream=True)
            except requests.RequestException:
                raise
            except ValueError:
                # requests parses a redirect's Location even with redirects
                # off (to offer it as `response.next`), and raises on a
                # malformed one; nothing has been contacted for it yet.
                raise FhirError("bad_response", "a redirect is not a well-formed URL") from None
            if response.status_code in _REDIRECT_STATUS and response.headers.get("Location"):
                response.close()
                url = self._resolve(url, response.headers["Location"], "a redirect")
                what = "a redirect"
                continue
            return response
        raise FhirError("bad_response", "too many redirects from the FHIR server")

    def _read_body(self, response: requests.Response) -> bytes:
        """The body, read a chunk at a time within the time budget and the byte cap."""
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and self.bytes_left is not None and int(declared) > self.bytes_left:
            raise _too_large()  # refused unread
        chunks = []
        # Counted as decoded: a compressed reply is capped by what it unpacks to.
        for chunk in response.iter_content(_CHUNK):
            if self._remaining() <= 0:
                raise FhirError("timeout", "the FHIR server did not answer in time")
            self._take_bytes(len(chunk))
            chunks.append(chunk)
        return b"".join(chunks)

    def _take_bytes(self, count: int) -> None:
        with self._bytes_lock:
            if self.bytes_left is None:
                return
            if count > self.bytes_left:
                self.bytes_left = 0  # the call's other requests stop too
                raise _too_large()
            self.bytes_left -= count

    def _get_json(self, url: str, what: str) -> dict[str, Any]:
        import requests

        from cds_service.fhir import deadline

        attempt = 0
        while True:
            with deadline.watching(self.deadline) as watch:
                try:
                    body = self._get_json_once(url, what)
                except requests.Timeout:
                    error = FhirError("timeout", "the FHIR server did not answer in time")
                except requests.RequestException:
                    error = FhirError("unavailable", "the FHIR server could not be reached")
                except FhirError as exc:
                    if exc.kind != "unavailable" and not watch.fired:
                        raise
                    error = exc
                else:
                    error = None
            if watch.fired:
                # Cut at the deadline: whatever came of it (a connection error,
                # headers or a body cut short) is a timeout.
                raise FhirError("timeout", "the FHIR server did not answer in time")
            if error is None:
                return body
            attempt += 1
            if attempt > self.retries or self._remaining() <= 0:
                raise error
            # Short, growing pause; bounded by the remaining budget.
            self.sleep(min(0.2 * attempt, max(self._remaining(), 0)))

    def _get_json_once(self, url: str, what: str) -> dict[str, Any]:
        """One try: the parsed resource, or FhirError (kind "unavailable": worth a retry)."""
        response = self._get_once(url, what)
        try:
            status = response.status_code
            if status in (401, 403):
                raise FhirError("unauthorized", f"the FHIR server refused the access token ({status})", status)
            if status == 404:
                raise FhirError("not_found", "the FHIR server has no such resource (404)", status)
            if status in _TRANSIENT_STATUS:
                raise FhirError("unavailable", f"the FHIR server answered {status}", status)
            if status >= 400:
                raise FhirError("bad_response", f"the FHIR server answered {status}", status)
            raw = self._read_body(response)
        finally:
            response.close()
        return _parse_resource(raw)

    def read(self, relative: str) -> dict[str, Any]:
        """GET a read or search relative to the base; a search Bundle comes
        back with every page's entries merged (up to max_pages pages)."""
        url = self.url_for(relative)
        first = self._get_json(url, "the query")
        if "?" not in relative:
            return first  # a read answered with a Bundle is refused by the caller, unpaged
        if first.get("resourceType") != "Bundle":
            raise search_problem(first)  # e.g. a 200 with an OperationOutcome: the search failed
        return self._all_pages(first, url, relative)

    def rest_of(self, bundle: dict[str, Any], relative: str) -> dict[str, Any]:
        """A search Bundle the CDS client sent for the search `relative`, with
        the pages its `next` links lead to merged in (same rules as for
        fetched pages)."""
        return self._all_pages(bundle, self.base + "/", relative)

    def _all_pages(self, first: dict[str, Any], url: str, relative: str) -> dict[str, Any]:
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
            self._check_page_of(relative, page_url)
            page = self._get_json(page_url, "a Bundle next link")
            if page.get("resourceType") != "Bundle":
                raise FhirError("bad_response", "a Bundle page was not a Bundle")
            if page.get("type", "searchset") != "searchset":
                raise search_problem(page)
            entries.extend(_entries(page))
            pages += 1
        merged = {k: v for k, v in first.items() if k not in ("entry", "link")}
        merged["entry"] = entries
        # Every page's outcome entries, the first page's type and total, against all the matches.
        problem = search_problem(merged)
        if problem is not None:
            raise problem
        merged["total"] = len(entries)
        return merged

    def _check_page_of(self, relative: str, url: str) -> None:
        """Refuse a next link that is not a page of the search `relative`:
        it would be read with the EHR's token, and another patient's search
        (or a whole-server one) is not this call's to read. Its data would
        be filtered out later, but the reading itself is the harm."""
        target = self._check_target(url, "a Bundle next link")  # off the server: that refusal first
        path, _, query = relative.partition("?")
        link_params = parse_qsl(urlsplit(url).query, keep_blank_values=True)
        if target.path == f"{self.origin.path}/{path}":
            if _patient_params(link_params) == _patient_params(parse_qsl(query, keep_blank_values=True)):
                return
            why = "it names another patient, or none"
        elif target.path == self.origin.path:
            names = {name for name, _ in link_params}
            if "_getpages" in names and names <= _OPAQUE_PAGE_PARAMS:
                return
            why = "it is not a page of the search"
        else:
            why = "it is not a page of the search"
        # Counted (cds_fhir_fetch_errors_total{kind="next_link_refused"}) and logged
        # without the link, which holds ids.
        log.warning("refused a Bundle next link", extra={"resource_type": path, "problem": why})
        raise FhirError("next_link_refused", f"refused to follow a Bundle next link: {why} "
                                             f"(a {path} search for this patient was asked for)")


_FAILED_SEVERITIES = ("error", "fatal")


def search_problem(answer: Any) -> FhirError | None:
    """Why a search's answer (fetched, or sent as prefetch) is no search result, or None.

    A server may answer a failed search with 200 (FHIR R4 3.1.0.1.1, 3.1.1.4): an
    OperationOutcome instead of a Bundle, or a searchset whose entry with search.mode
    `outcome` holds an OperationOutcome of severity error or fatal (warning and
    information ones come beside real results: fine). Also no result: a Bundle of
    another type (transaction-response, batch-response, ...; a Bundle without `type`,
    invalid FHIR, is read as a searchset), and a searchset whose `total`, the number of
    matches (outcome and include entries not counted), is more than the matches it
    carries with no `next` link to the rest: read as "no data", any of them would lose
    what the rules need (a pregnancy test, a dialysis, a bone drug).

    Entries kept as text (fhir.deferred) are counted as matches unread: deferred.py
    keeps no entry array that could hold an outcome entry as text."""
    if not isinstance(answer, dict) or answer.get("resourceType") != "Bundle":
        rtype = answer.get("resourceType") if isinstance(answer, dict) else None
        if rtype == "OperationOutcome":
            return FhirError("search_failed", "the FHIR server answered the search with an OperationOutcome "
                                              "(the search failed)")
        return FhirError("bad_response", f"the FHIR server answered a search with a {str(rtype)[:64]}, "
                                         "not a Bundle")
    btype = answer.get("type", "searchset")
    if btype != "searchset":
        return FhirError("bad_response", f"a search answered with a Bundle of type {str(btype)[:64]}, "
                                         "not a searchset")
    entries = answer.get("entry")
    matches = 0
    for entry in entries if isinstance(entries, list) else ():
        if type(entry) is dict:
            search = entry.get("search")
            mode = search.get("mode") if type(search) is dict else None
            if mode == "outcome":
                if _failed_outcome(entry.get("resource")):
                    return FhirError("search_failed", "the search's Bundle carries an OperationOutcome of "
                                                      "severity error or fatal (the search failed)")
                continue
            if mode == "include":
                continue
        matches += 1
    total = answer.get("total")
    if type(total) is int and total > matches and next_link(answer) is None:
        return FhirError("incomplete_search", f"the search's Bundle says {total} matches but carries "
                                              f"{matches}, with no next link to the rest")
    return None


def _failed_outcome(resource: Any) -> bool:
    if not isinstance(resource, dict) or resource.get("resourceType") != "OperationOutcome":
        return False
    issues = resource.get("issue")
    return any(isinstance(issue, dict) and issue.get("severity") in _FAILED_SEVERITIES
               for issue in (issues if isinstance(issues, list) else ()))


def _too_large() -> FhirError:
    return FhirError("too_large", "the FHIR server's replies are larger than this service accepts "
                                  "for one hook call (CDS_MAX_BODY_BYTES)")


def _patient_params(params: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The parameters that say whose data a search reads, comparable: a
    patient named `Patient/x` is patient `x`."""
    found = []
    for name, value in params:
        if name.split(":")[0].split(".")[0].lower() in _PATIENT_PARAMS:
            found.append((name, value.removeprefix("Patient/")))
    return sorted(found)


def _parse_resource(raw: bytes) -> dict[str, Any]:
    """A reply's body as a FHIR resource, read as a sent prefetch is read
    (requests_json.parse_fhir_reply: no NaN, no RecursionError on deep nesting)."""
    try:
        body = parse_fhir_reply(raw)
    except NotFhirJson as exc:
        raise FhirError("bad_response", f"the FHIR server {exc}") from None
    if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
        raise FhirError("bad_response", "the FHIR server sent JSON that is not a FHIR resource")
    return body


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
