"""A FHIR server on loopback for tests that need real HTTP (concurrency,
timing of overlapping requests): answers come from a function, and it
counts how many requests it is serving at once."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Answer = Callable[[str, dict[str, list[str]]], tuple[int, Any]]


class LocalFhirServer:
    """`answer(path, query)` -> (status, JSON body). `hold_until(n)` makes the
    first requests wait (at most `patience` seconds) until n are in flight at
    once, so a client that fetches one at a time shows as max_in_flight == 1
    without any timing assertion."""

    def __init__(self, answer: Answer):
        self.answer = answer
        self.paths: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._rendezvous = 0
        self._patience = 0.0
        self._cond = threading.Condition()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/fhir"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def hold_until(self, in_flight: int, patience: float = 3.0) -> None:
        self._rendezvous, self._patience = in_flight, patience

    def __enter__(self) -> "LocalFhirServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(10)

    def _arrive(self, path: str) -> None:
        with self._cond:
            self.paths.append(path)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if self.in_flight >= self._rendezvous:
                self._rendezvous = 0  # met once: nobody waits after that
                self._cond.notify_all()
            else:
                self._cond.wait_for(lambda: self._rendezvous == 0, timeout=self._patience)

    def _leave(self) -> None:
        with self._cond:
            self.in_flight -= 1

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                url = urlsplit(self.path)
                server._arrive(self.path)
                try:
                    status, body = server.answer(url.path, parse_qs(url.query))
                finally:
                    server._leave()
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):  # keep test output quiet
                pass

        return Handler
