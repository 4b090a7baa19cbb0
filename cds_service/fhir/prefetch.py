"""Complete a hook call's prefetch: use what the client sent, fetch the rest.

CDS Hooks semantics: a key the client sent as null (or as an empty Bundle)
means "there is no such data"; a key left out means "not prefetched", and the
service must fetch it from fhirServer itself. A read (`patient`:
Patient/{{context.patientId}}) sent as null is taken as left out: the patient
in context always exists, so null there is data the client did not get. The public sandbox leaves out
every key whose query failed, and sends nothing about the user we do not ask
for, so only keys the rules truly need can lead to 412. Other clients send an
OperationOutcome, or a Bundle that says its search failed: fetched too, never
read as "no data" (client.search_problem)."""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from itertools import repeat
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from cds_service.config import Settings
from cds_service.fhir.allowlist import FhirServerAllowlist, NotAllowed
from cds_service.fhir.client import FhirClient, FhirError, next_link, search_problem

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)

_TOKEN = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")


class PrefetchError(Exception):
    """The data the rules need cannot be had (HTTP 412)."""

    def __init__(self, missing: dict[str, str], kinds: tuple[str, ...] = (),
                 failed: dict[str, str] | None = None, failed_kinds: dict[str, str] | None = None):
        super().__init__("required prefetch data is missing")
        self.missing = missing  # required key -> reason
        self.failed = failed if failed is not None else dict(missing)  # every key that failed -> reason
        self.kinds = kinds  # FhirError kinds met on the way, for metrics
        # every key that failed -> a fixed label (a FhirError kind, "no_fhir_server", ...), for the log line
        self.failed_kinds = failed_kinds if failed_kinds is not None else {}


class PrefetchInvalid(Exception):
    """The client sent prefetch data that is not usable (HTTP 400)."""

    def __init__(self, message: str, key: str):
        super().__init__(message)
        self.message = message
        self.key = key


class TooMuchData(Exception):
    """More resources than CDS_MAX_PREFETCH_RESOURCES (HTTP 413)."""

    def __init__(self, count: int, limit: int):
        super().__init__(f"the prefetch holds {count} resources; the limit is {limit}")
        self.count = count
        self.limit = limit


@dataclasses.dataclass(frozen=True)
class PrefetchResult:
    data: dict[str, Any]  # key -> resource, Bundle or None
    fetched: tuple[str, ...]  # keys fetched from fhirServer
    unavailable: dict[str, str]  # optional keys that could not be had -> reason
    resource_count: int
    error_kinds: tuple[str, ...] = ()


def render_template(template: str, context: Mapping[str, Any]) -> str | None:
    """Fill {{context.x}} tokens; None if a token has no usable value.

    Each value is percent-encoded whole, so it stays one path segment or one
    query value whatever it holds; a value of only dots is refused, since
    "." and ".." are path steps, not names, however they are encoded."""
    failed = False

    def fill(match: re.Match[str]) -> str:
        nonlocal failed
        token = match.group(1)
        if token.startswith("context."):
            value = context.get(token[len("context."):])
            if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip("."):
                return quote(str(value), safe="")
        failed = True
        return ""

    rendered = _TOKEN.sub(fill, template)
    return None if failed else rendered


def count_resources(value: Any) -> int:
    """The resources the record reads in one prefetch value: 1 for a resource, a Bundle's
    entries, and the entries of a Bundle within an entry too, however deep (the record
    reads it as a Bundle of its own; no search of ours can answer with one, but counting
    only the top level let 60,000 nested resources pass a limit of 20,000). An entry kept
    as text (fhir.deferred) counts as one: a Bundle that could hold a Bundle is never kept
    so."""
    if not isinstance(value, dict):
        return 0
    if value.get("resourceType") != "Bundle":
        return 1
    entries = value.get("entry")
    if not isinstance(entries, list):
        return 0
    if not _may_nest(entries):
        return len(entries)
    total, bundles = 0, [value]
    while bundles:  # a loop, not recursion: a Bundle may nest past Python's limit
        entries = bundles.pop().get("entry")
        if not isinstance(entries, list):
            continue
        total += len(entries)
        for entry in entries:
            if type(entry) is dict:
                resource = entry.get("resource")
                if type(resource) is dict and resource.get("resourceType") == "Bundle":
                    bundles.append(resource)
    return total


def _may_nest(entries: list) -> bool:
    """Whether an entry's resource may be a Bundle, answered in C for the usual entries
    (dicts whose resource is a dict): walking them in Python cost 1.2 % of a 100-resource
    call. Any other entry (an odd one, or one kept as text) is walked by the caller."""
    try:
        return "Bundle" in map(dict.get, map(dict.get, entries, repeat("resource")), repeat("resourceType"))
    except TypeError:
        return True


def _check_sent_value(key: str, value: Any, context: Mapping[str, Any]) -> Any:
    """Return the usable value of a sent key, or raise PrefetchInvalid.

    An OperationOutcome in place of data means the client's own query failed:
    treated as "not prefetched" so the service fetches it (returns ...), as is
    a search Bundle that says its search failed (client.search_problem)."""
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
        raise PrefetchInvalid(f"prefetch.{key} must be a FHIR resource (an object with resourceType) or null", key)
    if value["resourceType"] == "OperationOutcome":
        return ...
    if value["resourceType"] == "Bundle" and "entry" in value and not isinstance(value["entry"], list):
        raise PrefetchInvalid(f"prefetch.{key}.entry must be an array", key)
    if key == "patient":
        if value["resourceType"] != "Patient":
            raise PrefetchInvalid("prefetch.patient must be a Patient resource", key)
        sent_id = value.get("id")
        if sent_id is None:
            # Binding reads a Patient only by its id: one without would pass unread, its
            # deceased flag and age lost. Taking it for the context patient would trust an
            # unnamed record to be this patient's; the client can send it with its id.
            raise PrefetchInvalid("prefetch.patient has no id; it must be the Patient context.patientId "
                                  "names, with that id", key)
        if sent_id != context.get("patientId"):
            # Mixing two patients' data is the one mistake a CDS service must not make.
            raise PrefetchInvalid("prefetch.patient.id does not match context.patientId", key)
    return value


def resolve_prefetch(
    *,
    templates: Mapping[str, str],
    required: frozenset[str],
    body: Mapping[str, Any],
    settings: Settings,
    allowlist: FhirServerAllowlist,
    session: requests.Session | None = None,
) -> PrefetchResult:
    context = body.get("context") or {}
    sent = body.get("prefetch") or {}
    data: dict[str, Any] = {}
    to_fetch: list[str] = []
    to_complete: list[str] = []  # sent first pages of a longer search
    sent_failed: dict[str, FhirError] = {}  # sent keys whose client query failed: fetched instead
    for key in templates:
        if key in sent:
            value = _check_sent_value(key, sent[key], context)
            if value is None and "?" not in templates[key]:
                # null is "no data" for a search (CDS Hooks), but a read of the context
                # patient always finds them: null there is data not had, as a key left out.
                sent_failed[key] = FhirError("sent_null", "the CDS client sent null for a read "
                                                          "(Patient/{patientId} always exists)")
                value = ...
            if value is ... and key not in sent_failed:
                sent_failed[key] = FhirError("search_failed", "the CDS client sent an OperationOutcome "
                                                              "(its query failed)")
            elif "?" in templates[key] and isinstance(value, dict) \
                    and value.get("resourceType") == "Bundle":
                problem = search_problem(value)
                if problem is not None:
                    sent_failed[key] = problem
                    value = ...
            if value is not ...:
                data[key] = value
                if next_link(value) is not None:
                    to_complete.append(key)
                continue
        to_fetch.append(key)

    fetched: list[str] = []
    failures: dict[str, str] = {}
    failed_kinds: dict[str, str] = {}  # key -> a fixed label of why (logged)
    kinds: list[str] = []  # counted in cds_fhir_fetch_errors_total
    if to_fetch or to_complete:
        client, why_not, why_kind = _client_for(body, settings, allowlist, session)
        if why_kind == "server_not_allowed":
            kinds.extend(why_kind for _ in range(len(to_fetch) + len(to_complete)))
        jobs: dict[str, Callable[[], Any]] = {}
        for key in to_fetch:
            relative = render_template(templates[key], context)
            was = sent_failed.get(key)
            if client is None:
                failures[key] = (f"the prefetched value is unusable ({was.message}), and {why_not}"
                                 if was else f"not prefetched, and {why_not}")
                failed_kinds[key] = was.kind if was else why_kind
            elif relative is None:
                failures[key] = "the context has no usable value for its query"
                failed_kinds[key] = "no_context_value"
            else:
                jobs[key] = functools.partial(_read, client, relative)
        for key in to_complete:
            # Its next links must be pages of the search its template asks for.
            relative = render_template(templates[key], context)
            if client is None:
                # The first page stays: for a key the rules can do without,
                # part of the list is better than none.
                failures[key] = f"the prefetched Bundle has more pages (a next link), and {why_not}"
                failed_kinds[key] = why_kind
            elif relative is None:
                failures[key] = ("the prefetched Bundle has more pages (a next link), and the context "
                                 "has no usable value for its query")
                failed_kinds[key] = "no_context_value"
            else:
                jobs[key] = functools.partial(client.rest_of, data[key], relative)
        # Each key is tried whatever happens to the others, several at a
        # time; all share the client's time budget.
        for key, outcome in _run_all(jobs, settings.fhir_concurrency).items():
            if isinstance(outcome, FhirError):
                failures[key] = outcome.message
                failed_kinds[key] = outcome.kind
                kinds.append(outcome.kind)
            else:
                data[key] = outcome
                fetched.append(key)

    missing = {k: v for k, v in failures.items() if k in required}
    if missing:
        raise PrefetchError(missing, tuple(kinds), failed=failures, failed_kinds=failed_kinds)
    for key in failures:
        data.setdefault(key, None)
        log.warning("optional prefetch key unavailable",
                    extra={"prefetch_key": key, "problem": failed_kinds.get(key)})

    total = sum(count_resources(v) for v in data.values())
    if total > settings.max_prefetch_resources:
        raise TooMuchData(total, settings.max_prefetch_resources)
    return PrefetchResult(
        data=data,
        fetched=tuple(fetched),
        unavailable={k: v for k, v in failures.items() if k not in required},
        resource_count=total,
        error_kinds=tuple(kinds),
    )


def _run_all(jobs: Mapping[str, Callable[[], Any]], concurrency: int) -> dict[str, Any]:
    """key -> what its job returned, or the FhirError it met."""
    if not jobs:
        return {}

    def run(job: Callable[[], Any]) -> Any:
        try:
            return job()
        except FhirError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=min(concurrency, len(jobs)), thread_name_prefix="fhir-fetch") as pool:
        futures = {key: pool.submit(run, job) for key, job in jobs.items()}
    return {key: future.result() for key, future in futures.items()}


def _read(client: FhirClient, relative: str) -> dict[str, Any]:
    return _checked_read(relative, client.read(relative))


def _checked_read(relative: str, resource: dict[str, Any]) -> dict[str, Any]:
    """A read (`Type/id`) must answer with that very resource: a server that
    sends another resource (a merged or wrong record, or a search Bundle)
    would have the rules decide about someone else."""
    path, _, query = relative.partition("?")
    parts = path.split("/")
    if query or len(parts) != 2:
        return resource
    rtype, rid = parts[0], unquote(parts[1])
    if resource.get("resourceType") != rtype:
        raise FhirError("wrong_resource", f"asked for a {rtype}, the FHIR server sent a "
                                          f"{str(resource.get('resourceType'))[:64]}")
    if resource.get("id") != rid:
        raise FhirError("wrong_resource", f"asked for {rtype} {rid}, the FHIR server sent a {rtype} with another id")
    return resource


def _client_for(body, settings, allowlist, session) -> tuple[FhirClient | None, str, str]:
    """A client for the request's fhirServer, or None, why not and a fixed label for it."""
    server = body.get("fhirServer")
    if not server:
        return None, "the request names no fhirServer to fetch it from", "no_fhir_server"
    auth = body.get("fhirAuthorization") or {}
    try:
        return FhirClient(
            server,
            access_token=auth.get("access_token"),
            allowlist=allowlist,
            timeout=settings.fhir_timeout_seconds,
            total_timeout=settings.fhir_total_timeout_seconds,
            retries=settings.fhir_retries,
            max_pages=settings.fhir_max_pages,
            max_url_length=settings.fhir_max_url_length,
            max_bytes=settings.max_body_bytes,
            session=session,
        ), "", ""
    except NotAllowed as exc:
        return None, str(exc), "server_not_allowed"
