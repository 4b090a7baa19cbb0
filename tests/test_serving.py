"""The production serving arrangement, through a real server on loopback:
slow clients cannot starve it, gunicorn's own errors are JSON, a request is
received whole before the app runs, kept-alive connections spread over the
workers. (The timed figures — 99 % of calls within 1 s with 50 slow clients,
per-worker CPU under wrk -c4 — are in benchmarks/serving.py.)"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from benchmarks.generate import patient_view_request
from tests.test_server import ROOT, _free_port, _stop, _wait_until_answers

PV = "/cds-services/osteoporosis-patient-view"

# A stand-in app for placement and concurrency: /burn spends CPU like a hook
# call and names the worker; /hold stays inside the app a while and reports
# how many requests were inside at once.
STAND_IN = textwrap.dedent("""
    import os, time
    from cds_service.config import load_settings
    from cds_service.server import run_production

    inside = [0, 0]  # now, most seen

    def factory():
        def app(environ, start_response):
            if environ["PATH_INFO"] == "/burn":
                end = time.process_time() + 0.004
                while time.process_time() < end:
                    pass
                body = str(os.getpid()).encode()
            elif environ["PATH_INFO"] == "/hold":
                inside[0] += 1
                inside[1] = max(inside)
                time.sleep(0.3)
                inside[0] -= 1
                body = str(inside[1]).encode()
            else:
                body = b"ok"
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
            return [body]
        return app

    run_production(load_settings(), app_factory=factory)
""")

REAL_APP = "from cds_service.config import load_settings\nfrom cds_service.server import run_production\n" \
           "run_production(load_settings())\n"


def _serve(script: str, tmp_path: Path, **env: str) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    full_env = {**{k: v for k, v in os.environ.items() if not k.startswith(("CDS_", "PROMETHEUS_"))},
                "CDS_HOST": "127.0.0.1", "CDS_PORT": str(port), "CDS_AUTH_REQUIRED": "false",
                "CDS_DATABASE_URL": f"sqlite:///{tmp_path / 'cds.db'}", "CDS_GRACEFUL_TIMEOUT_SECONDS": "2",
                "CDS_PATIENT_HASH_SECRET": "test-patient-hash-secret-0123456789abcdef",
                # serve's metrics folder lands here, even when a test kills the server
                "TMPDIR": str(tmp_path), "PYTHONPATH": str(ROOT), **env}
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    _wait_until_answers(proc, f"http://127.0.0.1:{port}/healthz", timeout=30)
    return proc, port


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """The real service under the production server: 2 workers, short timeouts."""
    tmp_path = tmp_path_factory.mktemp("serving")
    proc, port = _serve(REAL_APP, tmp_path, CDS_WORKERS="2", CDS_KEEPALIVE_SECONDS="2",
                        CDS_BODY_TIMEOUT_SECONDS="2")
    yield port
    _stop(proc)


def _raw(port: int, data: bytes, timeout: float = 10) -> bytes:
    """Send raw bytes, read the whole answer (the server closes after an error)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _json_error(answer: bytes) -> tuple[int, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"content-type: application/json" in head.lower(), head
    return status, json.loads(body)


@pytest.mark.parametrize("request_bytes, status, code", [
    (b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431, "header_fields_too_large"),
    (b"GET /healthz HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(200)) + b"Host: a\r\n\r\n",
     431, "header_fields_too_large"),
    (b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "bad_request"),
    (b"NOT HTTP AT ALL\r\n\r\n", 400, "bad_request"),
    (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414, "uri_too_long"),
])
def test_servers_own_errors_are_json(service, request_bytes, status, code):
    got_status, body = _json_error(_raw(service, request_bytes))
    assert (got_status, body["error"]) == (status, code)
    assert body["message"]


def test_body_must_arrive_within_the_body_timeout(service):
    # Headers announce 100 bytes, 10 come; the server answers 408 after
    # CDS_BODY_TIMEOUT_SECONDS (2 s here), in the JSON error shape.
    answer = _raw(service, f"POST {PV} HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
                           f"Content-Length: 100\r\n\r\n{{\"hook\": \"".encode())
    status, body = _json_error(answer)
    assert (status, body["error"]) == (408, "request_timeout")


def test_headers_must_arrive_within_the_keepalive_time(service):
    with socket.create_connection(("127.0.0.1", service), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\n")  # never finished
        assert sock.recv(1024) == b""  # closed by the server (after 2 s), not by our timeout


def _trickle(port: int, kind: str, stop: threading.Event) -> None:
    """A slow client: headers or body one byte at a time; reconnects when the
    server drops it, so it stays open until `stop`."""
    head = f"POST {PV} HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n"
    data = (head + "X-Slow: " + "a" * 5000).encode() if kind == "headers" else (head + "\r\n" + "{" * 5000).encode()
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                if kind == "body":
                    sock.sendall(data[:len(head) + 2])
                    data = data[len(head) + 2:]
                for byte in data:
                    if stop.wait(0.5):
                        return
                    sock.send(bytes([byte]))
        except OSError:
            stop.wait(0.2)


def test_fifty_slow_clients_do_not_starve_the_service(service):
    body = json.dumps(patient_view_request(20)).encode()
    stop = threading.Event()
    slow = [threading.Thread(target=_trickle, args=(service, ("headers", "body")[i % 2], stop), daemon=True)
            for i in range(50)]
    for thread in slow:
        thread.start()
    try:
        time.sleep(1.5)  # every slow connection open and mid-request
        statuses = []
        for _ in range(30):
            conn = http.client.HTTPConnection("127.0.0.1", service, timeout=10)
            conn.request("POST", PV, body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            statuses.append(response.status)
            assert "cards" in json.loads(response.read())
            conn.close()
        assert statuses == [200] * 30
    finally:
        stop.set()
        for thread in slow:
            thread.join(5)


def test_kept_alive_connection_is_closed_after_the_request_limit(tmp_path):
    proc, port = _serve(STAND_IN, tmp_path, CDS_WORKERS="1", CDS_MAX_REQUESTS_PER_CONNECTION="3")
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        answers = []
        for _ in range(3):
            conn.request("GET", "/")
            response = conn.getresponse()
            response.read()
            answers.append(response.getheader("Connection"))
        assert answers == ["keep-alive", "keep-alive", "close"]
        conn.close()
    finally:
        _stop(proc)


def test_at_most_threads_requests_are_inside_the_app_at_once(tmp_path):
    proc, port = _serve(STAND_IN, tmp_path, CDS_WORKERS="1", CDS_THREADS="2")
    try:
        def hold(_: int) -> int:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
            conn.request("GET", "/hold")
            return int(conn.getresponse().read())

        with ThreadPoolExecutor(6) as pool:
            most_inside = max(pool.map(hold, range(6)))
        assert most_inside == 2
    finally:
        _stop(proc)


def test_at_most_one_long_chart_is_inside_the_app_at_once(tmp_path):
    """Large bodies take turns (a parsed chart is several times its size in
    memory) and close their connection; small ones still share the
    CDS_THREADS slots."""
    from cds_service.gunicorn_worker import LARGE_BODY_BYTES

    proc, port = _serve(STAND_IN, tmp_path, CDS_WORKERS="1", CDS_THREADS="2")
    try:
        def hold(size: int) -> int:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("POST", "/hold", body=b"x" * size, headers={"Content-Type": "application/json"})
            return int(conn.getresponse().read())

        with ThreadPoolExecutor(4) as pool:
            assert max(pool.map(hold, [LARGE_BODY_BYTES + 1] * 4)) == 1
        # ... and do not keep their connection: the next one may go to the other worker.
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", "/hold", body=b"x" * (LARGE_BODY_BYTES + 1), headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        assert response.getheader("Connection") == "close"
        conn.request("POST", "/hold", body=b"x" * 1000, headers={"Content-Type": "application/json"})
        response = conn.getresponse()  # a new connection: http.client reopens it
        response.read()
        assert response.getheader("Connection") == "keep-alive"
        with ThreadPoolExecutor(4) as pool:
            assert max(pool.map(hold, [1000] * 4)) == 2
    finally:
        _stop(proc)


def test_keep_alive_clients_spread_over_both_workers(tmp_path):
    """Four kept-alive connections (an EHR's small pool, or wrk -c4) each
    sending CPU-bound calls: both workers serve a fair share (issue 15)."""
    proc, port = _serve(STAND_IN, tmp_path, CDS_WORKERS="2")
    try:
        def client(_: int) -> Counter:
            served: Counter = Counter()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
            for _ in range(100):
                conn.request("GET", "/burn")
                served[conn.getresponse().read()] += 1
            conn.close()
            return served

        with ThreadPoolExecutor(4) as pool:
            total = sum(pool.map(client, range(4)), Counter())
        assert len(total) == 2, total
        assert min(total.values()) >= 0.35 * 400, total
    finally:
        _stop(proc)


def test_metrics_sum_both_workers_without_any_setup(service):
    """`serve` sets up prometheus_client's multiprocess mode itself: /metrics
    counts the requests every worker answered, whichever worker is scraped."""
    import re

    for _ in range(20):
        conn = http.client.HTTPConnection("127.0.0.1", service, timeout=10)  # new connection: either worker
        conn.request("GET", "/cds-services")
        assert conn.getresponse().status == 200
        conn.close()
    for _ in range(3):
        conn = http.client.HTTPConnection("127.0.0.1", service, timeout=10)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        conn.close()
        counted = sum(float(v) for v in re.findall(
            r'^cds_http_requests_total\{[^}]*service="/cds-services"[^}]*status="200"[^}]*\} (\S+)$', text, re.M))
        assert counted == 20


def test_serve_warns_in_json_and_announces_discovery_after_start(tmp_path):
    """`cds-service serve` in production: unsafe settings are warned about,
    every log line is one JSON object, and the discovery line comes once the
    first worker has loaded the app."""
    port = _free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("CDS_", "PROMETHEUS_"))},
           "PYTHONPATH": str(ROOT), "CDS_AUTH_REQUIRED": "false", "CDS_DATABASE_URL": f"sqlite:///{tmp_path}/c.db",
           "CDS_PATIENT_HASH_SECRET": "test-patient-hash-secret-0123456789abcdef", "TMPDIR": str(tmp_path)}
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "cds_service.cli", "serve", "--port", str(port)],
                                cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_until_answers(proc, f"http://127.0.0.1:{port}/healthz", timeout=30)
        deadline = time.monotonic() + 20
        while "CDS discovery" not in log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        proc.terminate()
        proc.wait(20)
        lines = [json.loads(line) for line in log_path.read_text().splitlines()]  # every line is JSON
        messages = [entry["message"] for entry in lines]
        warning = next(e for e in lines if e.get("event") == "configuration_warning")
        assert warning["level"] == "warning" and warning["message"].startswith("CDS_AUTH_REQUIRED='false': ")
        ready = next(i for i, m in enumerate(messages) if m.startswith("CDS discovery: "))
        assert messages[ready] == f"CDS discovery: http://127.0.0.1:{port}/cds-services (profile: production)"
        assert ready > next(i for i, m in enumerate(messages) if m.startswith("Booting worker"))
    finally:
        _stop(proc)
