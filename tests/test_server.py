"""The production server (gunicorn as a library) in a real subprocess."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from cds_service.config import SettingsError, load_settings
from cds_service.server import gunicorn_options

ROOT = Path(__file__).resolve().parents[1]

# A stand-in WSGI app: /slow answers after a pause, so a request can be in
# flight when SIGTERM arrives.
STAND_IN = textwrap.dedent("""
    import sys, time
    from cds_service.config import load_settings
    from cds_service.server import run_production

    def factory():
        def app(environ, start_response):
            if environ["PATH_INFO"] == "/slow":
                time.sleep(1.5)
                body = b"slow done"
            else:
                body = b"ok"
            start_response("200 OK", [("Content-Type", "text/plain"),
                                      ("Content-Length", str(len(body)))])
            return [body]
        return app

    run_production(load_settings(), app_factory=factory)
""")

DEFAULT_APP = textwrap.dedent("""
    from cds_service.config import load_settings
    from cds_service.server import run_production
    run_production(load_settings())
""")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(script: str, tmp_path: Path, **env: str) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    full_env = {**os.environ, "CDS_HOST": "127.0.0.1", "CDS_PORT": str(port),
                "CDS_WORKERS": "1", "CDS_THREADS": "2", "CDS_GRACEFUL_TIMEOUT_SECONDS": "10",
                "CDS_PATIENT_HASH_SECRET": "test-patient-hash-secret-0123456789abcdef",
                "TMPDIR": str(tmp_path), "PYTHONPATH": str(ROOT), **env}
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return proc, port


def _wait_until_answers(proc: subprocess.Popen, url: str, timeout: float = 15.0) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early: {proc.stdout.read().decode()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.read()
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"server did not answer {url} within {timeout}s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(5)


def test_serves_and_finishes_in_flight_request_on_sigterm(tmp_path):
    proc, port = _start(STAND_IN, tmp_path)
    try:
        assert _wait_until_answers(proc, f"http://127.0.0.1:{port}/") == b"ok"

        result: dict[str, object] = {}

        def slow_call():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/slow", timeout=10) as r:
                    result["status"], result["body"] = r.status, r.read()
            except Exception as exc:  # recorded, asserted below
                result["error"] = exc

        caller = threading.Thread(target=slow_call)
        caller.start()
        time.sleep(0.5)  # the request is now inside the app's sleep
        proc.send_signal(signal.SIGTERM)
        caller.join(10)

        assert result.get("error") is None, result
        assert result == {"status": 200, "body": b"slow done"}
        assert proc.wait(10) == 0
        output = proc.stdout.read().decode()
        # Access log is off by default: gunicorn printed no request lines.
        assert "GET /slow" not in output
        # Nothing listens any more.
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
    finally:
        _stop(proc)


def test_access_log_can_be_switched_on(tmp_path):
    proc, port = _start(STAND_IN, tmp_path, CDS_ACCESS_LOG="true")
    try:
        _wait_until_answers(proc, f"http://127.0.0.1:{port}/probe-path")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert "GET /probe-path" in proc.stdout.read().decode()
    finally:
        _stop(proc)


def test_access_log_has_the_path_only(tmp_path):
    """gunicorn's default access line has the raw request URI and the Referer:
    a query string (?patient=...) or the EHR page that made the call may name
    the patient. The line keeps the method, path and status (control)."""
    proc, port = _start(STAND_IN, tmp_path, CDS_ACCESS_LOG="true")
    try:
        _wait_until_answers(proc, f"http://127.0.0.1:{port}/healthz")
        request = urllib.request.Request(f"http://127.0.0.1:{port}/probe-path?patient=PT-SENTINEL-4711&mrn=8899",
                                         headers={"Referer": "https://ehr.example.org/chart/PT-SENTINEL-4711"})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        output = proc.stdout.read().decode()
        (line,) = [line for line in output.splitlines() if "/probe-path" in line]
        assert '"GET /probe-path HTTP/1.1" 200' in json.loads(line)["message"]
        assert "PT-SENTINEL-4711" not in output and "8899" not in output and "ehr.example.org" not in output
    finally:
        _stop(proc)


def test_serves_the_real_app(tmp_path):
    proc, port = _start(DEFAULT_APP, tmp_path,
                        CDS_DATABASE_URL=f"sqlite:///{tmp_path / 'feedback.db'}")
    try:
        _wait_until_answers(proc, f"http://127.0.0.1:{port}/healthz")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        _stop(proc)


def test_options_follow_settings():
    settings = load_settings({"CDS_WORKERS": "3", "CDS_WORKER_CONNECTIONS": "50", "CDS_REQUEST_TIMEOUT_SECONDS": "45",
                              "CDS_GRACEFUL_TIMEOUT_SECONDS": "25", "CDS_KEEPALIVE_SECONDS": "7"},
                             environ={})
    options = gunicorn_options(settings, host="0.0.0.0")
    assert options["bind"] == ["0.0.0.0:8080"]
    assert options["worker_class"] == "cds_service.gunicorn_worker.CdsWorker"
    assert (options["workers"], options["worker_connections"], options["timeout"],
            options["graceful_timeout"], options["keepalive"]) == (3, 50, 45, 25, 7)
    assert options["accesslog"] is None
    assert gunicorn_options(settings, host="::1", port=9000)["bind"] == ["[::1]:9000"]


@pytest.mark.parametrize("env", [{"CDS_WORKERS": "0"}, {"CDS_PORT": "70000"},
                                 {"CDS_GRACEFUL_TIMEOUT_SECONDS": "-1"}, {"CDS_THREADS": "many"}])
def test_bad_server_settings_are_refused(env):
    with pytest.raises(SettingsError):
        load_settings(environ=env)


def test_metrics_dir_is_emptied_before_workers_start(tmp_path):
    metrics_dir = tmp_path / "prom"
    metrics_dir.mkdir()
    (metrics_dir / "counter_12345.db").write_bytes(b"stale")
    proc, port = _start(STAND_IN, tmp_path, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    try:
        _wait_until_answers(proc, f"http://127.0.0.1:{port}/")
        assert not (metrics_dir / "counter_12345.db").exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        _stop(proc)


# A worker as production prepares it, answering the same 1000-resource chart
# (about 840 kB of JSON) for new patients: prints the minor page faults of the
# last calls, each.
PAGE_FAULTS = textwrap.dedent("""
    import datetime as dt, json, resource, sys, tempfile
    from benchmarks.generate import patient_view_request
    from benchmarks.run import ENDPOINT, Rotating, service_client
    from pathlib import Path

    rotating = Rotating(json.dumps(patient_view_request(1000, today=dt.date.today())).encode())
    client = service_client(Path(tempfile.mkdtemp()))
    bodies = [rotating(i) for i in range(8)]
    for body in bodies[:3]:
        assert client.post(ENDPOINT, data=body, content_type="application/json").status_code == 200
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for body in bodies[3:]:
        assert client.post(ENDPOINT, data=body, content_type="application/json").status_code == 200
    print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings; Linux only")
def test_worker_reuses_memory_for_a_long_chart_instead_of_page_faulting(tmp_path):
    """prepare_worker's malloc thresholds: the body and blocks of a 1000-resource
    call come from memory the worker already has. At glibc's 128 KiB mmap
    threshold each call mapped them anew: about 400 page faults per call."""
    done = subprocess.run([sys.executable, "-c", PAGE_FAULTS], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(done.stdout.split()[-1]) < 40


DEV_APP = textwrap.dedent("""
    from cds_service.app import create_app
    from cds_service.config import load_settings
    from cds_service.server import run_development
    settings = load_settings()
    run_development(create_app(), settings.host, settings.port)
""")


def test_development_server_request_lines_have_the_path_only(tmp_path):
    """werkzeug's request line (the development server) quoted the query
    string too. Control: the method, path and status are there."""
    proc, port = _start(DEV_APP, tmp_path, CDS_PROFILE="development",
                        CDS_DATABASE_URL=f"sqlite:///{tmp_path / 'dev.db'}")
    try:
        _wait_until_answers(proc, f"http://127.0.0.1:{port}/healthz")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/guidance?patient=PT-SENTINEL-4711", timeout=5) as r:
            assert r.status == 200
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
        output = proc.stdout.read().decode()
        (line,) = [json.loads(line) for line in output.splitlines() if "GET /guidance" in line]
        assert '"GET /guidance HTTP/1.1" 200' in line["message"]
        assert "PT-SENTINEL-4711" not in output
    finally:
        _stop(proc)
