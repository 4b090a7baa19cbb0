"""The probes and /metrics answer while every request slot is held (ops16 H1).

A real production server on loopback (1 worker, CDS_THREADS=2) whose hook
calls fetch their missing prefetch from a FHIR server that holds every
request until the test lets it go. With both slots held, /healthz, /readyz
and /metrics still answer, and they answer before the held calls are
released: the assertion is on order, not on a time. Discovery (not an
operations path) and a probe that declares a body still queue behind the
held calls, as before."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.requests_for_tests import PATIENT_ID, hook_request
from tests.test_server import _stop
from tests.test_serving import PV, REAL_APP, _serve

THREADS = 2


class HangingFhir:
    """A FHIR server whose every request waits for `release`; `arrived`
    counts the requests that reached it."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.arrived = threading.Semaphore(0)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                outer.arrived.release()
                outer.release.wait(60)
                body = json.dumps({"resourceType": "Bundle", "type": "searchset", "total": 0}).encode()
                if self.path.split("?")[0].endswith(f"/Patient/{PATIENT_ID}"):
                    body = json.dumps({"resourceType": "Patient", "id": PATIENT_ID, "gender": "female",
                                       "birthDate": "1950-01-01"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/fhir"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def held(tmp_path):
    """(port, fhir, events): a server with all THREADS slots held by calls
    waiting on the FHIR server; `events` records what finished, in order."""
    fhir = HangingFhir()
    proc, port = _serve(REAL_APP, tmp_path, CDS_WORKERS="1", CDS_THREADS=str(THREADS),
                        CDS_ALLOWED_FHIR_SERVERS=fhir.base, CDS_ALLOW_LOOPBACK_HTTP="true",
                        CDS_FHIR_TIMEOUT_SECONDS="60", CDS_FHIR_TOTAL_TIMEOUT_SECONDS="60",
                        CDS_REQUEST_TIMEOUT_SECONDS="120")
    events: list[str] = []
    lock = threading.Lock()

    def call(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=90)
        # No prefetch at all: the service fetches the patient's chart from the FHIR server.
        conn.request("POST", PV, body=json.dumps(hook_request(prefetch={}, fhir_server=fhir.base, token="t")),
                     headers={"Content-Type": "application/json"})
        status = conn.getresponse().status
        with lock:
            events.append(f"call{i}:{status}")

    callers = [threading.Thread(target=call, args=(i,), daemon=True) for i in range(THREADS)]
    for thread in callers:
        thread.start()
    try:
        for _ in range(THREADS):  # each call is inside the app, waiting on the FHIR server
            assert fhir.arrived.acquire(timeout=30), "the calls never reached the FHIR server"
        yield port, fhir, events, lock, callers
    finally:
        fhir.release.set()
        for thread in callers:
            thread.join(60)
        fhir.close()
        _stop(proc)


def _get(port: int, path: str, events: list[str], lock: threading.Lock, **request: object) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request(request.pop("method", "GET"), path, **request)  # type: ignore[arg-type]
    status = conn.getresponse().status
    with lock:
        events.append(f"{path}:{status}")


def test_probes_and_metrics_answer_while_every_slot_waits_on_the_fhir_server(held):
    port, fhir, events, lock, callers = held
    for path in ("/healthz", "/readyz", "/metrics"):
        _get(port, path, events, lock)
    _get(port, "/healthz", events, lock, method="HEAD")
    # All answered while the calls still wait: none of them has finished.
    assert events == ["/healthz:200", "/readyz:200", "/metrics:200", "/healthz:200"]
    fhir.release.set()
    _get(port, "/cds-services", events, lock)
    for thread in callers:
        thread.join(60)
    assert sorted(events[4:]) == ["/cds-services:200", "call0:200", "call1:200"]


def test_other_requests_and_probes_with_a_body_still_wait_for_a_slot(held):
    """Control: the gate still holds everything else (discovery), and a
    probe that sends a body is received and queued like any request."""
    port, fhir, events, lock, callers = held
    waiting = [threading.Thread(target=_get, args=(port, "/cds-services", events, lock), daemon=True),
               threading.Thread(target=_get, args=(port, "/healthz", events, lock),
                                kwargs={"body": b"x" * 100, "headers": {"Content-Type": "text/plain"}},
                                daemon=True)]
    for thread in waiting:
        thread.start()
    for thread in waiting:
        thread.join(1.0)  # not answered: both wait behind the held calls
    _get(port, "/healthz", events, lock)  # a plain probe overtakes them
    assert events == ["/healthz:200"]
    fhir.release.set()
    for thread in [*waiting, *callers]:
        thread.join(60)
    assert sorted(events[1:]) == ["/cds-services:200", "/healthz:200", "call0:200", "call1:200"]


def test_a_flood_of_readiness_probes_makes_one_database_check_at_a_time(make_app):
    """/readyz skips the slots, so concurrent probes share the check that is
    running when they arrive instead of each taking a database connection."""
    from cds_service.db_schema import HEAD, SchemaState
    from cds_service.protocol import health
    from cds_service.protocol.runtime import runtime

    app = make_app()
    check = health.SharedCheck()
    app.extensions["cds_ready_check"] = check
    waiting, entered, checks = threading.Semaphore(0), threading.Event(), []

    class CountingLock:
        """The check's lock, counting requests that wait for it (they have noted their arrival)."""

        def __init__(self, lock):
            self.lock = lock

        def acquire(self, timeout):
            waiting.release()
            return self.lock.acquire(timeout=timeout)

        def release(self):
            self.lock.release()

    check._lock = CountingLock(check._lock)
    others = 6

    def slow_state():
        checks.append(1)
        if len(checks) == 1:  # held until every probe waits: the first one's own wait, then the others'
            entered.set()
            for _ in range(others + 1):
                assert waiting.acquire(timeout=10)
        return SchemaState(HEAD)

    runtime(app).store.schema_state = slow_state
    answers = []

    def probe():
        answers.append(app.test_client().get("/readyz").status_code)

    first = threading.Thread(target=probe)
    first.start()
    assert entered.wait(10)
    rest = [threading.Thread(target=probe) for _ in range(others)]
    for thread in rest:
        thread.start()
    for thread in [first, *rest]:
        thread.join(20)
    assert answers == [200] * (others + 1)
    assert len(checks) == 1
    # Control: a probe arriving after that check ended makes its own.
    probe()
    assert len(checks) == 2 and answers[-1] == 200


def _scrape(port: int) -> dict[str, float]:
    """/metrics as {series (name and labels as written): value}."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    series = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            series[name] = float(value)
    return series


def _until(port: int, wanted: Callable[[dict[str, float]], bool], timeout: float = 30) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        found = _scrape(port)
        if wanted(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_metrics_show_the_requests_in_flight_queued_and_their_wait(held):
    """The README says /metrics shows the queue: with both slots held the
    gauges say 2 in flight of 2 slots, a third request waiting shows as
    queued, and once it runs the time it waited is in the queue histogram and
    in its duration. Control: the two calls that found a free slot waited
    (almost) nothing, and nothing is in flight or queued at the end."""
    port, fhir, events, lock, callers = held
    now = _scrape(port)
    assert now["cds_http_request_slots"] == THREADS
    assert now["cds_http_requests_in_flight"] == THREADS
    assert now["cds_http_requests_queued"] == 0
    assert now["cds_http_request_queue_seconds_count"] == THREADS
    assert now['cds_http_request_queue_seconds_bucket{le="0.01"}'] == THREADS  # no wait for a free slot
    waiting = threading.Thread(target=_get, args=(port, "/cds-services", events, lock), daemon=True)
    waiting.start()
    queued = _until(port, lambda m: m["cds_http_requests_queued"] == 1)
    assert queued["cds_http_requests_queued"] == 1 and queued["cds_http_requests_in_flight"] == THREADS
    time.sleep(0.5)
    fhir.release.set()
    for thread in [waiting, *callers]:
        thread.join(60)
    assert sorted(events) == ["/cds-services:200", "call0:200", "call1:200"]
    done = _until(port, lambda m: m["cds_http_request_queue_seconds_count"] == THREADS + 1)
    assert done["cds_http_requests_in_flight"] == 0 and done["cds_http_requests_queued"] == 0
    assert done["cds_http_request_queue_seconds_count"] == THREADS + 1
    assert done["cds_http_request_queue_seconds_sum"] >= 0.5  # discovery waited for a slot
    assert done['cds_http_request_queue_seconds_bucket{le="0.01"}'] == THREADS
    # Discovery itself takes milliseconds; its duration includes the wait.
    assert done['cds_http_request_duration_seconds_sum{method="GET",service="/cds-services"}'] >= 0.5
