"""A small FHIR R4 server for tests: reads and the searches our prefetch
templates use, over real HTTP on loopback, with paging.

It answers `Type/id` reads and `Type?param=...` searches over an in-memory
list of resources, with the search parameters the prefetch templates use
(`patient`/`subject`, `code`, `type`, `status`, `category`, `date`, `_count`).
An unknown parameter is a 400, as strict servers answer, so a template
that drifts from what servers support fails loudly here.

Pages hold at most `page_size` entries whatever `_count` asks for, and
`next` links come in two styles seen on real servers: "short" (an opaque
page token, HAPI's `_getpages`) and "repeat" (the whole query again with an
offset, which makes long URLs when the code list is long).
"""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

SUBJECT_FIELDS = ("subject", "patient")
DATE_FIELDS = ("effectiveDateTime", "authoredOn", "performedDateTime", "onsetDateTime", "recordedDate",
               "occurrenceDateTime")
KNOWN_PARAMS = {"patient", "subject", "code", "type", "status", "category", "date", "_count", "_offset"}


class SearchError(Exception):
    pass


def _codings(concept: Any) -> list[tuple[str, str]]:
    if not isinstance(concept, dict):
        return []
    return [(c.get("system", ""), c.get("code", "")) for c in concept.get("coding") or () if isinstance(c, dict)]


def _token_match(concepts: list[Any], tokens: str) -> bool:
    pairs = [p for concept in concepts for p in _codings(concept)]
    for token in tokens.split(","):
        system, _, code = token.rpartition("|") if "|" in token else (None, "", token)
        for s, c in pairs:
            if c == code and (system is None or system == s):
                return True
    return False


def _date_of(res: dict) -> str | None:
    for field in DATE_FIELDS:
        if isinstance(res.get(field), str):
            return res[field][:10]
    for field in ("effectivePeriod", "performedPeriod", "period"):
        if isinstance(res.get(field), dict) and res[field].get("start"):
            return res[field]["start"][:10]
    return None


def _date_match(res: dict, expr: str) -> bool:
    prefix, value = (expr[:2], expr[2:]) if expr[:2] in ("ge", "le", "gt", "lt", "eq") else ("eq", expr)
    when = _date_of(res)
    if when is None:
        return False
    value = value[:10]
    return {"ge": when >= value, "le": when <= value, "gt": when > value, "lt": when < value,
            "eq": when == value}[prefix]


class FhirStore:
    def __init__(self, resources: list[dict], *, page_size: int = 20) -> None:
        self.resources = resources
        self.page_size = page_size

    def read(self, rtype: str, rid: str) -> dict | None:
        return next((r for r in self.resources if r.get("resourceType") == rtype and r.get("id") == rid), None)

    def search(self, rtype: str, params: list[tuple[str, str]]) -> list[dict]:
        hits = [r for r in self.resources if r.get("resourceType") == rtype]
        for name, value in params:
            if name not in KNOWN_PARAMS:
                raise SearchError(f"unknown search parameter {name}")
            if name in ("patient", "subject"):
                ref = value if "/" in value else f"Patient/{value}"
                hits = [r for r in hits if any((r.get(f) or {}).get("reference") == ref for f in SUBJECT_FIELDS)]
            elif name == "code":
                hits = [r for r in hits if _token_match([r.get("code")], value)]
            elif name == "type":  # Encounter.type: a list of CodeableConcepts
                hits = [r for r in hits if _token_match(list(r.get("type") or []), value)]
            elif name == "category":
                hits = [r for r in hits if _token_match(list(r.get("category") or []), value)]
            elif name == "status":
                hits = [r for r in hits if r.get("status") in value.split(",")]
            elif name == "date":
                hits = [r for r in hits if _date_match(r, value)]
        return hits

    def answer(self, relative: str) -> dict | None:
        """The full answer to a relative read or search, unpaged (what a CDS
        client's prefetch would hold)."""
        parts = urlsplit(relative)
        path = parts.path.strip("/").split("/")
        if len(path) == 2:
            return self.read(path[0], path[1])
        hits = self.search(path[0], [p for p in parse_qsl(parts.query) if p[0] not in ("_count", "_offset")])
        return searchset(hits)


def searchset(resources: list[dict], *, base: str = "", total: int | None = None,
              next_url: str | None = None) -> dict:
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset",
                              "total": len(resources) if total is None else total,
                              "entry": [{"fullUrl": f"{base}/{r['resourceType']}/{r.get('id')}" if base else None,
                                         "resource": r, "search": {"mode": "match"}} for r in resources]}
    for entry in bundle["entry"]:
        if entry["fullUrl"] is None:
            del entry["fullUrl"]
    if next_url:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    return bundle


class FhirTestServer:
    """`with FhirTestServer(resources, next_style="short") as server:` then
    `server.base` is http://127.0.0.1:<port>/fhir."""

    def __init__(self, resources: list[dict], *, page_size: int = 20, next_style: str = "short") -> None:
        assert next_style in ("short", "repeat")
        self.store = FhirStore(resources, page_size=page_size)
        self.next_style = next_style
        self.requests: list[str] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._lock = threading.Condition()
        self._rendezvous = 0
        self._patience = 0.0
        self._pages: dict[str, tuple[str, list[dict]]] = {}
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self._httpd.server_address[1]}/fhir"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> FhirTestServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def hold_until(self, in_flight: int, patience: float = 3.0) -> None:
        """Make the first requests wait (at most `patience` s) until `in_flight`
        are being served at once: a client that asks one at a time then shows
        as max_in_flight == 1, with no timing assertion."""
        self._rendezvous, self._patience = in_flight, patience

    def set_resources(self, resources: list[dict]) -> None:
        self.store.resources = resources
        self._pages.clear()

    # --- answering ---------------------------------------------------------
    def _page(self, rtype: str, hits: list[dict], offset: int, count: int, query: list[tuple[str, str]],
              token: str | None) -> dict:
        size = min(count, self.store.page_size)
        nxt = None
        if offset + size < len(hits):
            if self.next_style == "short":
                nxt = f"{self.base}?" + urlencode({"_getpages": token, "_getpagesoffset": offset + size,
                                                   "_count": size, "_bundletype": "searchset"})
            else:
                rest = [p for p in query if p[0] != "_offset"] + [("_offset", str(offset + size))]
                nxt = f"{self.base}/{rtype}?" + urlencode(rest, safe="|,:")
        return searchset(hits[offset:offset + size], base=self.base, total=len(hits), next_url=nxt)

    def get(self, path_and_query: str) -> tuple[int, dict]:
        parts = urlsplit(path_and_query)
        path = parts.path[len("/fhir"):].strip("/").split("/") if parts.path.startswith("/fhir") else None
        query = parse_qsl(parts.query, keep_blank_values=True)
        params = dict(query)
        if path == [""] and "_getpages" in params:
            rtype, hits = self._pages.get(params["_getpages"], ("", []))
            return 200, self._page(rtype, hits, int(params["_getpagesoffset"]), int(params["_count"]), [],
                                   params["_getpages"])
        if not path or path == [""]:
            return 404, outcome("not-found", "no such endpoint")
        if len(path) == 2:
            res = self.store.read(path[0], path[1])
            return (200, res) if res else (404, outcome("not-found", f"{path[0]}/{path[1]} is not known"))
        try:
            hits = self.store.search(path[0], [p for p in query if p[0] not in ("_count", "_offset")])
        except SearchError as exc:
            return 400, outcome("not-supported", str(exc))
        token = uuid.uuid4().hex
        self._pages[token] = (path[0], hits)
        return 200, self._page(path[0], hits, int(params.get("_offset", 0)),
                               int(params.get("_count", self.store.page_size)), query, token)

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                with server._lock:
                    server.requests.append(self.path)
                    server._in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server._in_flight)
                    if server._in_flight >= server._rendezvous:
                        server._rendezvous = 0  # met once: nobody waits after that
                        server._lock.notify_all()
                    else:
                        server._lock.wait_for(lambda: server._rendezvous == 0, timeout=server._patience)
                try:
                    status, body = server.get(self.path)
                finally:
                    with server._lock:
                        server._in_flight -= 1
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        return Handler


def outcome(code: str, text: str) -> dict:
    return {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code, "diagnostics": text}]}
