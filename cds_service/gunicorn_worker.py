"""The gunicorn worker `cds-service serve` runs, and what it puts in front of the app.

Why gevent and not threads: with the threaded worker a client that sends its
headers or body one byte at a time holds a thread until it finishes, and
8 such clients held every request slot of two workers (issue 10). Here each
connection is a greenlet: a slow sender costs a socket and a few kilobytes,
and the app only ever sees requests that have fully arrived. psycopg (>= 3.1.14)
and requests cooperate with gevent once the worker has monkey-patched the
standard library, which gunicorn's gevent worker does before the app loads.

What this module adds to gunicorn's gevent worker:
- `RequestGate`, WSGI middleware: the whole body is received before the app
  runs, within CDS_BODY_TIMEOUT_SECONDS (408 after it), and handed to the
  app as it came (no second copy); then at most
  CDS_THREADS requests per worker are inside the app at once, and of these at
  most one with a body over LARGE_BODY_BYTES, so the memory of parsed bodies
  stays bounded: a parsed chart takes about 4.5 times its size, and a worker
  holds one long chart at a time (a call only gives way to another while it
  waits for the database, and computing two long charts in turns in one
  process finishes neither sooner). A long chart declared by its
  Content-Length also waits its turn before its body is read (for at most
  LARGE_TURN_WAIT_SECONDS), so the next one stays in the client's socket
  rather than in the worker's memory while the current one is computed: a
  waiting 10,000-resource body is 8 MB on top of the running call's peak.
  The turn is taken before the body arrives, so a client sending slowly
  holds it; waiting is bounded so that such a client delays other long
  charts by that much at most, after which they are read as before. The
  headers are bounded
  by gunicorn itself: under gevent a request's headers must arrive within
  CDS_KEEPALIVE_SECONDS.
- The probes and /metrics (`OPERATIONS_PATHS`) do not wait for a slot: a
  GET or HEAD to one of them with no body goes straight to the app. The
  slots bound the memory of parsed bodies, and these have none; they must
  answer while every slot is held by calls waiting on a slow FHIR server or
  database, or the liveness probe restarts a pod that is merely busy
  (ops16). Nothing else is exempt: discovery, guidance pages and CORS
  preflights go with the calls they precede. A flood of them costs what any
  connection costs (gunicorn's CDS_WORKER_CONNECTIONS bounds the greenlets);
  one that declares a body (Content-Length above 0, any Transfer-Encoding)
  is received and queued like every other request. /readyz's database check
  runs once at a time per worker (cds_service.protocol.health).
- The gate keeps the saturation metrics (cds_service/metrics.py): requests
  in flight (holding a slot) of the slots, requests queued for one, and how
  long each waited, which the app adds to the request's duration.
- gunicorn's own error answers (malformed request, 431 oversized header,
  400 duplicated Host, ...) come out as the service's JSON error shape, not as
  gunicorn's HTML page.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from gunicorn import glogging, util
from gunicorn.workers.ggevent import GeventWorker

from cds_service.logs import JsonFormatter

# status -> (error code, message) for answers gunicorn writes itself, before
# any request reaches the app. Fixed texts: gunicorn's own message may quote
# the offending request line or header.
GUNICORN_ERRORS = {
    400: ("bad_request", "malformed HTTP request (request line or headers)"),
    403: ("forbidden", "request refused"),
    414: ("uri_too_long", "request line too long"),
    417: ("expectation_failed", "unsupported Expect header"),
    431: ("header_fields_too_large", "request headers too large or too many"),
    500: ("internal_error", "the service failed to handle this request"),
    501: ("not_implemented", "unsupported transfer coding"),
}


def json_error_bytes(status: int, reason: str, code: str, message: str) -> bytes:
    body = json.dumps({"error": code, "message": message}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode("latin-1") + body


def write_json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """Stands in for gunicorn.util.write_error (its only caller is the worker's
    handle_error, which picks the status and logs the problem)."""
    code, message = GUNICORN_ERRORS.get(status_int, ("error", reason))
    util.write_nonblock(sock, json_error_bytes(status_int, reason, code, message))


class CdsWorker(GeventWorker):
    """gunicorn's gevent worker, answering its own errors as JSON."""

    def init_process(self) -> None:
        util.write_error = write_json_error  # this worker process only
        super().init_process()


class JsonLogger(glogging.Logger):
    """gunicorn's logger with every line as one JSON object, like the app's."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(JsonFormatter())


class BodyTimeout(Exception):
    pass


# About 1,200 prefetched resources; a 10,000-resource chart is 8 MB.
LARGE_BODY_BYTES = 1 << 20

# How long a long chart waits for the one before it before its body is read
# anyway (see the module docstring). A 10,000-resource call takes about a
# second; a turn not had in this time is a queue, or a slow sender.
LARGE_TURN_WAIT_SECONDS = 5.0


StartResponse = Callable[..., Any]

# Answered without waiting for a request slot (see the module docstring).
OPERATIONS_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def _bodiless_operations_request(environ: dict[str, Any]) -> bool:
    return (environ.get("PATH_INFO") in OPERATIONS_PATHS
            and environ.get("REQUEST_METHOD") in ("GET", "HEAD")
            and environ.get("CONTENT_LENGTH") in (None, "", "0")
            and "HTTP_TRANSFER_ENCODING" not in environ)


class RequestGate:
    """Receive the whole request, then let at most `concurrency` requests into
    the app at once (see the module docstring). Runs under gevent only."""

    def __init__(self, app: Callable[..., Iterable[bytes]], *, concurrency: int,
                 body_timeout: float, max_body_bytes: int):
        from gevent.lock import BoundedSemaphore

        # Imported here, in the worker: prometheus_client's multiprocess files are per process.
        from cds_service import metrics

        self.app = app
        self.in_flight, self.queued, self.queue_wait = metrics.IN_FLIGHT, metrics.QUEUED, metrics.QUEUE_WAIT
        self.queue_key = metrics.QUEUE_SECONDS
        metrics.SLOTS.set(concurrency)
        self.slots = BoundedSemaphore(concurrency)
        self.large_slot = BoundedSemaphore(1)
        self.large_turn = BoundedSemaphore(1)
        self.body_timeout = body_timeout
        self.max_body_bytes = max_body_bytes

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if _bodiless_operations_request(environ):
            return self.app(environ, start_response)
        length = environ.get("CONTENT_LENGTH")  # gunicorn has checked it is a number
        turn, waited = False, 0.0
        if bool(length) and LARGE_BODY_BYTES < int(length) <= self.max_body_bytes:
            started = time.perf_counter()
            self.queued.inc()
            try:
                turn = self.large_turn.acquire(timeout=LARGE_TURN_WAIT_SECONDS)
            finally:
                self.queued.dec()
                waited = time.perf_counter() - started
        try:
            return self._received_then_run(environ, start_response, waited)
        finally:
            if turn:
                self.large_turn.release()

    def _received_then_run(self, environ: dict[str, Any], start_response: StartResponse,
                           waited: float) -> Iterable[bytes]:
        try:
            received = self._receive_body(environ)
        except BodyTimeout:
            body = json.dumps({"error": "request_timeout",
                               "message": f"the request body did not arrive within {self.body_timeout:g} s"})
            start_response("408 Request Timeout", [("Content-Type", "application/json"),
                                                   ("Content-Length", str(len(body)))])
            return [body.encode()]
        large = received > LARGE_BODY_BYTES
        # Waiting for the slots, counted and timed: the received request is queued.
        started = time.perf_counter()
        held: list[Any] = []
        self.queued.inc()
        try:
            for semaphore in ((self.large_slot, self.slots) if large else (self.slots,)):
                semaphore.acquire()
                held.append(semaphore)
        except BaseException:
            for semaphore in reversed(held):
                semaphore.release()
            raise
        finally:
            self.queued.dec()
        waited += time.perf_counter() - started
        self.queue_wait.observe(waited)
        environ[self.queue_key] = waited  # the app adds it to the request's duration
        self.in_flight.inc()
        try:
            return self.app(environ, start_response)
        finally:
            self.in_flight.dec()
            for semaphore in reversed(held):
                semaphore.release()

    def _receive_body(self, environ: dict[str, Any]) -> int:
        """Read the body into memory; how many bytes came (0: left to the app)."""
        import gevent

        # Imported here, in the worker after gevent has patched the standard
        # library: gunicorn's master imports this module before any patching.
        from cds_service.protocol.requests_json import RECEIVED_BODY

        length = environ.get("CONTENT_LENGTH")
        if length:
            limit = int(length)  # gunicorn has checked it is a number
            if limit > self.max_body_bytes:
                return 0  # the app answers 413 without reading it
        elif "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            limit = self.max_body_bytes + 1  # one byte more lets the app see it is too large
        else:
            return 0
        stream, chunks, received = environ["wsgi.input"], [], 0
        with gevent.Timeout(self.body_timeout, BodyTimeout):
            while received < limit:
                # All that is missing in one read: gunicorn then fills one
                # buffer and hands it over (a single piece is joined without
                # a copy). Reading 64 KiB at a time copied the rest of each
                # received megabyte twice per read, and left the pieces in
                # the heap after the join. A short read (client gone, chunked
                # body ended) ends the loop: the app sees what came.
                chunk = stream.read(limit - received)
                if not chunk:
                    break
                chunks.append(chunk)
                received += len(chunk)
        body = b"".join(chunks)
        del chunks
        environ["wsgi.input"] = io.BytesIO(body)  # shares `body`, no copy
        if length and received == limit:
            # The whole body, for the app to parse without reading the stream
            # into yet another copy (a 10,000-resource chart is 8 MB).
            environ[RECEIVED_BODY] = body
        return received
