"""Benchmark of the patient-view hook, in one command.

    python benchmarks/run.py            # full run (about 8 minutes)
    python benchmarks/run.py --quick    # shorter (about 4 minutes)
    python benchmarks/run.py --smoke    # tiny sizes, seconds (used by the tests)

For each size (prefetched resources besides the Patient; 10, 100, 1000, 10000)
it builds one synthetic patient-view request (benchmarks/generate.py), sent
for a new patient on every call, and measures:

1. in-process: the whole request through the Flask test client (production
   settings but JWT off, SQLite card store holding other patients' quieting
   feedback, logging formatted as in production but written to /dev/null):
   p50/p95/p99 after warm-up, bounded in calls and seconds; the same for a
   bare Flask app that only parses the body (benchmarks/baseline.py); plain
   json.loads / json.dumps of the body; and the main phases of the service
   (schema check, record building, rules and cards) for profiling;
2. over HTTP: the production server (cds_service.server: gunicorn's gevent
   worker, the request gate, workers from the settings; migrated first, as
   `cds-service serve` does) in a subprocess on a loopback port, loaded by
   `wrk -c4` when it is installed (`apt-get install wrk`), else by a bounded
   Python load generator (4 keep-alive connections), HTTP_RUNS times per size;
   the bare app under the same server; each worker's CPU time and peak RSS.

Writes a JSON file (--out, default benchmarks/results.json) and prints a
Markdown summary to paste into benchmarks/RESULTS.md, with the targets of
issue 15. Loopback only; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import http.client
import json
import logging
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.generate import PATIENT_ID, patient_view_request, resource_count  # noqa: E402

ENDPOINT = "/cds-services/osteoporosis-patient-view"
BENCH_SECRET = "benchmark-patient-hash-secret-0123456789"  # production profile needs one

# (warm-up calls, most measured calls, most seconds) per size, in-process;
# seconds and runs of each HTTP load.
PROFILES: dict[str, dict[str, Any]] = {
    "full": {"sizes": (10, 100, 1000, 10000), "http_seconds": 8.0, "http_runs": 3, "inproc_seconds": 20.0,
             "calls": {10: 2000, 100: 1000, 1000: 300, 10000: 30}, "warmup": 20},
    "quick": {"sizes": (10, 100, 1000, 10000), "http_seconds": 4.0, "http_runs": 3, "inproc_seconds": 6.0,
              "calls": {10: 300, 100: 300, 1000: 100, 10000: 10}, "warmup": 5},
    "smoke": {"sizes": (5, 20), "http_seconds": 0.5, "http_runs": 1, "inproc_seconds": 1.0,
              "calls": {5: 10, 20: 10}, "warmup": 2},
}

# Targets of issue 15, against the bare Flask app measured in the same run.
TARGETS = {
    "p50_vs_bare_100": 3.0,        # in-process p50, service / bare Flask, 100 resources
    "p50_vs_bare_1000": 2.0,       # the same at 1000 resources
    "p99_vs_p50_100": 3.0,         # in-process p99 / p50 at 100 resources
    "http_cpu_vs_bare_100": 2.0,   # server CPU per request, service / bare, 100 resources (median of runs)
    "rss_mb_per_worker_10000": 150.0,  # peak RSS of a worker with 10,000-resource bodies under wrk -c4
}
HTTP_CONNECTIONS = 4  # wrk -c4: a small keep-alive pool, as an EHR holds (and benchmarks/serving.py)


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------

def percentiles(samples: list[float]) -> dict[str, float]:
    """p50/p95/p99/mean/max in milliseconds (nearest-rank percentiles)."""
    if not samples:
        return {"n": 0}
    ordered = sorted(samples)

    def rank(p: float) -> float:
        index = max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))
        return ordered[index] * 1000

    return {"n": len(ordered), "p50": rank(50), "p95": rank(95), "p99": rank(99),
            "mean": statistics.fmean(ordered) * 1000, "max": ordered[-1] * 1000}


def timed_loop(call, *, warmup: int, calls: int, seconds: float, prepare=None) -> list[float]:
    """Run `call` warmup times unmeasured, then up to `calls` times or until
    `seconds` have passed (at least 3 measured calls). With `prepare`, each
    call gets prepare(i), made outside the measured time."""
    for i in range(warmup):
        call(prepare(i)) if prepare else call()
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(samples) < calls and (len(samples) < 3 or time.perf_counter() < deadline):
        arg = prepare(warmup + len(samples)) if prepare else None
        started = time.perf_counter()
        call(arg) if prepare else call()
        samples.append(time.perf_counter() - started)
    return samples


class Rotating:
    """The same request for a different patient each call: PATIENT_ID swapped
    for "bp-<i>" everywhere (context, Patient, subject references), so that
    nothing cached per patient (e.g. validated suggested orders) is reused."""

    def __init__(self, raw: bytes):
        self.parts = raw.split(PATIENT_ID.encode())

    def __call__(self, i: int) -> bytes:
        return f"bp-{i}".encode().join(self.parts)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    details = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key in ("model name", "cpu family", "model", "stepping", "cpu mhz") and key not in details:
                details[key] = value.strip()
        cpu = details.get("model name", cpu)
        if "cpu family" in details:
            cpu += (f" (family {details['cpu family']}, model {details['model']}, stepping "
                    f"{details.get('stepping', '?')}, {float(details.get('cpu mhz', 0)):.0f} MHz)")
    mem_mb = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_mb = int(line.split()[1]) // 1024
    versions = {}
    for package in ("flask", "werkzeug", "gunicorn", "jsonschema", "sqlalchemy"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions[package] = version(package)
    commit = ""
    with contextlib.suppress(Exception):
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, timeout=5).stdout.strip()
    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": cpu,
        "memory_mb": mem_mb,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "git_commit": commit,
    }


# ---------------------------------------------------------------------------
# In-process
# ---------------------------------------------------------------------------

def _quiet_logging() -> None:
    """Keep production's log formatting (its cost is real) but write to /dev/null."""
    from cds_service.logs import JsonFormatter

    devnull = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and isinstance(handler.formatter, JsonFormatter):
            handler.setStream(devnull)


QUIETED_ROWS = 20_000  # other patients' quieting feedback: the per-call lookup reads a real index


def seed_quieted_cards(database_url: str, rows: int = QUIETED_ROWS) -> None:
    """Fill quieted_cards with feedback on other patients' cards, as a store
    in use holds: the benchmark's patients (new on every call) match none of
    it, so every card still shows, but the lookup searches a full index."""
    from cds_service.store import Store, quieted_cards

    store = Store.from_url(database_url)
    now = dt.datetime.now(dt.timezone.utc)
    try:
        with store.engine.begin() as conn:
            conn.execute(quieted_cards.insert(), [
                {"patient_key": f"{i:064x}", "card_id": ("C-SUPP-CAVD", "C-TX-BP", "C-EXERCISE")[i % 3],
                 "indicator": "info", "issued_at": now - dt.timedelta(days=40 + i % 90),
                 "decided_at": now - dt.timedelta(days=30 + i % 90)} for i in range(rows)])
    finally:
        store.engine.dispose()


def service_client(workdir: Path):
    """A test client of the service as production runs it (JWT off, SQLite card
    store in `workdir` with other patients' quieting feedback in it, logs
    formatted but written to /dev/null, the worker start-up of production)."""
    import cds_service.app as service_app

    # Older commits (to compare before/after) lack this: then a no-op.
    try:
        from cds_service.server import prepare_worker
    except ImportError:
        def prepare_worker() -> None:
            return None

    app = service_app.create_app(_overrides(workdir))
    seed_quieted_cards(_overrides(workdir)["CDS_DATABASE_URL"])
    _quiet_logging()
    prepare_worker()  # as production's app factory does (cds_service.server)
    return app.test_client()


def _overrides(workdir: Path) -> dict[str, str]:
    return {"CDS_DATABASE_URL": f"sqlite:///{workdir}/inprocess.db", "CDS_AUTH_REQUIRED": "false",
            "CDS_PATIENT_HASH_SECRET": BENCH_SECRET}


def in_process(raws: dict[int, bytes], profile: dict, workdir: Path) -> dict[str, Any]:
    from benchmarks.baseline import create_bare_app
    from cds_service import engine
    from cds_service.card_policy import CardPolicy
    from cds_service.config import load_settings
    from cds_service.protocol import schemas
    from cds_service.record import build_record
    from cds_service.rules.settings import ClinicalSettings

    client = service_client(workdir)
    settings = load_settings(_overrides(workdir))
    bare = create_bare_app(settings)
    bare_client = bare.test_client()
    clinical = ClinicalSettings.from_settings(settings)
    policy = CardPolicy(info_budget=settings.info_card_budget, routine_budget=settings.routine_card_budget)
    today = dt.date.today()

    out: dict[str, Any] = {}
    for n, raw in raws.items():
        # Parsed here and dropped after: big parsed bodies kept alive would slow
        # every later garbage collection, which a server does not suffer.
        body = json.loads(raw)
        calls = profile["calls"].get(n, 10)
        loop = {"warmup": profile["warmup"], "calls": calls, "seconds": profile["inproc_seconds"]}

        first = client.post(ENDPOINT, data=raw, content_type="application/json")
        if first.status_code != 200:
            raise RuntimeError(f"patient-view with {n} resources answered {first.status_code}: "
                               f"{first.get_data(as_text=True)[:300]}")
        cards = [c["source"]["topic"]["code"] for c in first.get_json()["cards"]]

        def service_call(data: bytes) -> None:
            response = client.post(ENDPOINT, data=data, content_type="application/json")
            assert response.status_code == 200, response.status_code

        def bare_call(data: bytes) -> None:
            response = bare_client.post(ENDPOINT, data=data, content_type="application/json")
            assert response.status_code == 200, response.status_code

        record = build_record(body["prefetch"], today=today, settings=clinical)
        phases = {
            "json_loads": percentiles(timed_loop(lambda raw=raw: json.loads(raw), **loop)),
            "json_dumps": percentiles(timed_loop(lambda body=body: json.dumps(body), **loop)),
            "schema_check": percentiles(timed_loop(
                lambda body=body: schemas.errors("PatientViewRequest", body), **loop)),
            "build_record": percentiles(timed_loop(
                lambda body=body: build_record(body["prefetch"], today=today, settings=clinical), **loop)),
            # As a call decides: the production card budget, nothing quieted
            # (the benchmark's patients have no feedback). Suggested orders are
            # validated once per content, with every patient reference written
            # as one (fhir.validation), so a new patient's call finds them
            # validated too: the cache is left warm, as in the service.
            "rules_and_cards": percentiles(timed_loop(
                lambda record=record: engine.decide("patient-view", record, today, clinical, policy=policy),
                **loop)),
        }
        out[str(n)] = {
            "cards": cards,
            "service": percentiles(timed_loop(service_call, prepare=Rotating(raw), **loop)),
            "bare_flask": percentiles(timed_loop(bare_call, prepare=Rotating(raw), **loop)),
            "phases": phases,
        }
        del body, record
        gc.collect()
        print(f"  in-process {n:>6} resources: p50 {out[str(n)]['service']['p50']:.2f} ms, "
              f"p99 {out[str(n)]['service']['p99']:.2f} ms (bare {out[str(n)]['bare_flask']['p50']:.2f} ms)",
              file=sys.stderr)
    return out


# ---------------------------------------------------------------------------
# Over HTTP
# ---------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`python -m benchmarks.serve <app> <port>` in a subprocess we own."""

    def __init__(self, which: str, workdir: Path, env_overrides: dict[str, str]):
        self.which = which
        self.port = free_port()
        self.log_path = workdir / f"server-{which}.log"
        metrics_dir = workdir / f"prometheus-{which}"
        metrics_dir.mkdir(exist_ok=True)
        env = dict(os.environ)
        env.update({
            "PYTHONPATH": str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
            "CDS_DATABASE_URL": f"sqlite:///{workdir}/http-{which}.db",
            "CDS_AUTH_REQUIRED": "false",
            "CDS_PATIENT_HASH_SECRET": BENCH_SECRET,
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),  # as the Helm chart sets it
        })
        env.update(env_overrides)
        self.database_url = env["CDS_DATABASE_URL"]
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        if which != "bare":
            # As `cds-service serve` does: migrate once, in a process of its own,
            # then start gunicorn whose workers do not migrate (nor load Alembic).
            subprocess.run([sys.executable, "-m", "cds_service.cli", "migrate"], cwd=ROOT, env=env,
                           stdout=self._log, stderr=subprocess.STDOUT, timeout=120, check=True)
            env["CDS_AUTO_MIGRATE"] = "false"
        self.proc = subprocess.Popen([sys.executable, "-m", "benchmarks.serve", which, str(self.port)],
                                     cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.which} server exited: {self.log_tail()}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200 and len(self.worker_pids()) > 0:
                    conn.close()
                    return
                conn.close()
            time.sleep(0.1)
        raise RuntimeError(f"{self.which} server not ready after {timeout} s: {self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        self._log.flush()
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def worker_pids(self) -> list[int]:
        try:
            text = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except OSError:
            return []
        return [int(p) for p in text.split()]

    def worker_memory(self) -> list[dict[str, float]]:
        """Peak (VmHWM) and current (VmRSS) resident memory of each worker, MB,
        and its current PSS (pages shared with other processes divided among
        them; Linux keeps no peak of it)."""
        out = []
        for pid in self.worker_pids():
            fields = {}
            with contextlib.suppress(OSError):
                for name in ("status", "smaps_rollup"):
                    for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
                        key, _, value = line.partition(":")
                        if key in ("VmHWM", "VmRSS", "Pss"):
                            fields[key] = int(value.split()[0]) / 1024
            if fields:
                out.append({"pid": pid, "peak_rss_mb": round(fields.get("VmHWM", 0), 1),
                            "rss_mb": round(fields.get("VmRSS", 0), 1), "pss_mb": round(fields.get("Pss", 0), 1)})
        return out

    def worker_cpu_seconds(self) -> float:
        """User + system CPU time used so far by the live workers."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for pid in self.worker_pids():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


def post_once(port: int, raw: bytes, timeout: float = 60.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", ENDPOINT, body=raw, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def load_wrk(port: int, body_path: Path, connections: int, seconds: float, workdir: Path) -> dict[str, Any]:
    script = workdir / "post.lua"
    # Each request for another patient (see Rotating): the body is split on
    # the patient id once, and joined with "bp-<counter>" per request.
    script.write_text(f"""
local f = io.open("{body_path}", "rb")
local body = f:read("*a")
f:close()
local parts, start = {{}}, 1
while true do
  local i, j = string.find(body, "{PATIENT_ID}", start, true)
  if not i then break end
  parts[#parts + 1] = string.sub(body, start, i - 1)
  start = j + 1
end
parts[#parts + 1] = string.sub(body, start)
local headers = {{["Content-Type"] = "application/json"}}
local counter = 0
request = function()
  counter = counter + 1
  return wrk.format("POST", nil, headers, table.concat(parts, "bp-w" .. counter))
end
""")
    duration = max(1, int(round(seconds)))
    command = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{duration}s", "--timeout", "30s",
               "--latency", "-s", str(script), f"http://127.0.0.1:{port}{ENDPOINT}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60)
    text = result.stdout
    if result.returncode != 0:
        raise RuntimeError(f"wrk failed: {result.stderr.strip()[:300]}")

    def ms(value: str) -> float:
        number, unit = re.match(r"([\d.]+)(us|ms|s|m)", value).groups()  # type: ignore[union-attr]
        return float(number) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]

    latency = {f"p{p}": ms(v) for p, v in re.findall(r"^\s+(50|90|99)(?:\.\d+)?%\s+(\S+)", text, re.M)}
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+)", text)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    socket_errors = re.search(r"Socket errors: (.*)", text)
    return {
        "tool": "wrk",
        "command": " ".join(command),
        "requests": int(total.group(1)) if total else 0,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),  # type: ignore[union-attr]
        "latency_ms": latency,
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1).strip() if socket_errors else "",
    }


def load_python(port: int, raw: bytes, connections: int, seconds: float, max_requests: int = 200_000) -> dict[str, Any]:
    """Bounded closed-loop load: `connections` threads, each with one
    keep-alive connection, until `seconds` pass or max_requests are sent."""
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds
    headers = {"Content-Type": "application/json"}
    rotating = Rotating(raw)
    counter = iter(range(10**9))  # next() on it is atomic enough under the GIL

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine: list[float] = []
        bad = 0
        while time.perf_counter() < deadline and len(latencies) + len(mine) < max_requests:
            body = rotating(next(counter))
            started = time.perf_counter()
            try:
                conn.request("POST", ENDPOINT, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                ok = False
            mine.append(time.perf_counter() - started)
            bad += not ok
        conn.close()
        with lock:
            latencies.extend(mine)
            failures[0] += bad

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 120)
    elapsed = time.perf_counter() - started
    stats = percentiles(latencies)
    return {
        "tool": "python (threads, keep-alive http.client)",
        "requests": len(latencies),
        "rps": len(latencies) / elapsed if elapsed else 0.0,
        "latency_ms": {k: stats[k] for k in ("p50", "p95", "p99") if k in stats},
        "non_2xx": failures[0],
        "socket_errors": "",
    }


def _spread(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"median": statistics.median(ordered), "min": ordered[0], "max": ordered[-1]}


def worker_cpu(server: Server) -> dict[int, float]:
    """CPU seconds (user + system) each live worker has used so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in server.worker_pids():
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[pid] = (int(fields[11]) + int(fields[12])) / ticks
    return out


def over_http(raws: dict[int, bytes], profile: dict, workdir: Path, loadgen: str) -> dict[str, Any]:
    from cds_service.config import load_settings
    from cds_service.server import gunicorn_options

    settings = load_settings()  # workers and the request gate as production reads them
    use_wrk = loadgen == "wrk" or (loadgen == "auto" and shutil.which("wrk"))
    runs = profile["http_runs"]
    out: dict[str, Any] = {"workers": settings.workers, "threads": settings.threads,
                           "worker_class": gunicorn_options(settings)["worker_class"],
                           "connections": HTTP_CONNECTIONS, "runs": runs, "results": {}}
    for which in ("service", "bare"):
        server = Server(which, workdir, {})
        try:
            server.wait_ready()
            if which == "service":
                seed_quieted_cards(server.database_url)
            for n, raw in raws.items():
                status, answer = post_once(server.port, raw)
                if status != 200:
                    raise RuntimeError(f"{which} server answered {status} for {n} resources: {answer[:300]!r}")
                # Warm every worker before measuring.
                load_python(server.port, raw, HTTP_CONNECTIONS, min(1.0, profile["http_seconds"] / 4),
                            max_requests=HTTP_CONNECTIONS * 4)
                body_path = workdir / f"body-{n}.json"
                body_path.write_bytes(raw)
                measured = []
                for _ in range(runs):
                    before = worker_cpu(server)
                    if use_wrk:
                        result = load_wrk(server.port, body_path, HTTP_CONNECTIONS, profile["http_seconds"], workdir)
                    else:
                        result = load_python(server.port, raw, HTTP_CONNECTIONS, profile["http_seconds"])
                    after = worker_cpu(server)
                    # Server CPU per request: steadier than req/s when other work shares the machine.
                    used = [after[pid] - before.get(pid, 0.0) for pid in sorted(after)]
                    total = sum(used)
                    result["worker_cpu_ms_per_request"] = (round(total * 1000 / result["requests"], 3)
                                                           if result["requests"] else None)
                    result["worker_cpu_shares"] = [round(u / total, 3) for u in used] if total else []
                    measured.append(result)
                summary = {
                    "tool": measured[0]["tool"], "runs": measured,
                    "rps": _spread([r["rps"] for r in measured]),
                    "cpu_ms_per_request": _spread([r["worker_cpu_ms_per_request"] or 0.0 for r in measured]),
                    "p50_ms": _spread([r["latency_ms"].get("p50", 0.0) for r in measured]),
                    "p99_ms": _spread([r["latency_ms"].get("p99", 0.0) for r in measured]),
                    "errors": sum(r["non_2xx"] for r in measured),
                    "requests": sum(r["requests"] for r in measured),
                    # VmHWM only grows: after each size it covers that size and every smaller one.
                    "workers_memory_after": server.worker_memory(),
                }
                out["results"].setdefault(str(n), {})[which] = summary
                print(f"  http {which:>7} {n:>6} resources: {summary['rps']['median']:.1f} req/s, "
                      f"{summary['cpu_ms_per_request']['median']:.2f} ms CPU/req (median of {runs})", file=sys.stderr)
            out[f"{which}_peak_rss_mb"] = max((w["peak_rss_mb"] for w in server.worker_memory()), default=None)
        finally:
            server.stop()
    return out


# ---------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------

def evaluate_targets(results: dict[str, Any]) -> dict[str, Any]:
    inproc = results.get("in_process", {})
    http_results = (results.get("http") or {}).get("results", {})
    found: dict[str, Any] = {}

    def add(name: str, value: float | None) -> None:
        if value is not None:
            found[name] = {"value": round(value, 2), "limit": TARGETS[name], "met": value <= TARGETS[name]}

    for n in ("100", "1000"):
        if n in inproc:
            add(f"p50_vs_bare_{n}", inproc[n]["service"]["p50"] / inproc[n]["bare_flask"]["p50"])
    if "100" in inproc:
        add("p99_vs_p50_100", inproc["100"]["service"]["p99"] / inproc["100"]["service"]["p50"])
    if {"service", "bare"} <= set(http_results.get("100", {})):
        service_cpu = http_results["100"]["service"]["cpu_ms_per_request"]["median"]
        bare_cpu = http_results["100"]["bare"]["cpu_ms_per_request"]["median"]
        if service_cpu and bare_cpu:
            add("http_cpu_vs_bare_100", service_cpu / bare_cpu)
    if "service" in http_results.get("10000", {}):
        add("rss_mb_per_worker_10000",
            max(w["peak_rss_mb"] for w in http_results["10000"]["service"]["workers_memory_after"]))
    # Linear cost: the per-resource cost from 1000 to 10000 resources should
    # stay within 1.5x of the per-resource cost from 100 to 1000.
    if {"100", "1000", "10000"} <= set(inproc):
        p = {n: inproc[str(n)]["service"]["p50"] for n in (100, 1000, 10000)}
        low = (p[1000] - p[100]) / 900
        high = (p[10000] - p[1000]) / 9000
        found["linear_cost"] = {"value": round(high / low, 2) if low > 0 else None, "limit": 1.5,
                                "met": low > 0 and high / low <= 1.5,
                                "us_per_resource_100_1000": round(low * 1000, 1),
                                "us_per_resource_1000_10000": round(high * 1000, 1)}
    return found


def _loads(values: Any) -> str:
    return "/".join(f"{v:.2f}" for v in values) if values else "?"


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"Command: `{results['command']}`  ",
        f"Date: {results['date']}; commit {m['git_commit'] or '?'}  ",
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory_mb']} MB RAM, Python {m['python']}, "
        f"{m['platform']}  ",
        f"Load average (1/5/15 min) at start {_loads(results.get('loadavg_start'))}, at end "
        f"{_loads(results.get('loadavg_end'))}: above the CPU count means other work shared the machine.",
        "",
        "In-process (Flask test client, whole request; ms):",
        "",
        "| resources | body kB | cards | p50 | p95 | p99 | n | bare Flask p50 | json.loads p50 | json.dumps p50 "
        "| p50 / bare | schema | record | rules+cards |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, r in results.get("in_process", {}).items():
        s, b, ph = r["service"], r["bare_flask"], r["phases"]
        lines.append(
            f"| {n} | {results['bodies'][n]['bytes'] / 1024:.0f} | {len(r['cards'])} | {s['p50']:.2f} | "
            f"{s['p95']:.2f} | {s['p99']:.2f} | {s['n']} | {b['p50']:.2f} | {ph['json_loads']['p50']:.2f} | "
            f"{ph['json_dumps']['p50']:.2f} | {s['p50'] / b['p50']:.1f}x | {ph['schema_check']['p50']:.2f} | "
            f"{ph['build_record']['p50']:.2f} | {ph['rules_and_cards']['p50']:.2f} |")
    http_part = results.get("http")
    if http_part:
        tools = {r[w]["tool"] for r in http_part["results"].values() for w in r}

        def spread(value: dict, digits: int = 1) -> str:
            return (f"{value['median']:.{digits}f} ({value['min']:.{digits}f}–{value['max']:.{digits}f})"
                    if value["max"] != value["min"] else f"{value['median']:.{digits}f}")

        def peak(result: dict) -> str:
            workers = result.get("workers_memory_after") or []
            return f"{max(w['peak_rss_mb'] for w in workers):.0f}" if workers else "?"

        lines += [
            "",
            f"Over HTTP (production server: gunicorn {http_part['worker_class'].rsplit('.', 1)[-1]}, "
            f"{http_part['workers']} workers, at most {http_part['threads']} requests in the app per worker; "
            f"{http_part['connections']} kept-alive connections, load: {', '.join(sorted(tools))}). "
            f"Each figure is the median of {http_part['runs']} runs, with the lowest and highest in brackets; "
            "latency in ms, CPU is the workers' user+system time per request:",
            "",
            "| resources | service req/s | bare req/s | service CPU ms/req | bare CPU ms/req | CPU service/bare "
            "| service p50 | service p99 | bare p50 | errors | worker CPU shares (service) "
            "| service peak RSS MB | bare peak RSS MB |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
        ]
        for n, r in http_part["results"].items():
            sv, bv = r["service"], r["bare"]
            ratio = (f"{sv['cpu_ms_per_request']['median'] / bv['cpu_ms_per_request']['median']:.2f}x"
                     if bv["cpu_ms_per_request"]["median"] else "?")
            shares = "; ".join("/".join(f"{x * 100:.0f}" for x in run["worker_cpu_shares"]) for run in sv["runs"])
            lines.append(
                f"| {n} | {spread(sv['rps'])} | {spread(bv['rps'])} | {spread(sv['cpu_ms_per_request'], 2)} | "
                f"{spread(bv['cpu_ms_per_request'], 2)} | {ratio} | {spread(sv['p50_ms'])} | {spread(sv['p99_ms'])} | "
                f"{spread(bv['p50_ms'])} | {sv['errors'] + bv['errors']} | {shares} % | {peak(sv)} | {peak(bv)} |")
        lines += ["", "Peak RSS per worker is VmHWM, the larger of the two workers, which only grows: the figure "
                      "after a size covers it and every smaller one. After all sizes: service "
                      f"{http_part['service_peak_rss_mb']} MB, bare Flask {http_part['bare_peak_rss_mb']} MB."]
    targets = results.get("targets") or {}
    if targets:
        lines += ["", "| target | value | limit | met |", "|---|---:|---:|---|"]
        for name, t in targets.items():
            lines.append(f"| {name} | {t['value']} | {t['limit']} | {'yes' if t['met'] else 'NO'} |")
        if "linear_cost" in targets:
            lc = targets["linear_cost"]
            lines.append("")
            lines.append(f"Marginal cost per resource: {lc['us_per_resource_100_1000']} us (100 to 1000), "
                         f"{lc['us_per_resource_1000_10000']} us (1000 to 10000).")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="shorter run (about a minute)")
    mode.add_argument("--smoke", action="store_true", help="tiny sizes and durations (tests)")
    parser.add_argument("--sizes", help="comma-separated resource counts (default 10,100,1000,10000)")
    parser.add_argument("--no-http", action="store_true", help="skip the gunicorn/HTTP part")
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto",
                        help="HTTP load generator (auto: wrk when installed)")
    parser.add_argument("--http-seconds", type=float, help="seconds of each HTTP load run")
    parser.add_argument("--http-runs", type=int, help="HTTP load runs per size and app (default 3)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results.json"), help="JSON results file")
    args = parser.parse_args(argv)

    profile = dict(PROFILES["smoke" if args.smoke else "quick" if args.quick else "full"])
    sizes = tuple(int(s) for s in args.sizes.split(",")) if args.sizes else profile["sizes"]
    if args.http_seconds:
        profile["http_seconds"] = args.http_seconds
    if args.http_runs:
        profile["http_runs"] = args.http_runs

    today = dt.date.today()
    raws, counts = {}, {}
    for n in sizes:
        body = patient_view_request(n, today=today)
        raws[n], counts[n] = json.dumps(body).encode(), resource_count(body)
    del body
    gc.collect()
    results: dict[str, Any] = {
        "command": "python benchmarks/run.py" + ("" if argv is None and len(sys.argv) == 1 else " "
                                                + " ".join(sys.argv[1:] if argv is None else argv)),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "loadavg_start": os.getloadavg(),
        "bodies": {str(n): {"resources": counts[n], "bytes": len(raws[n])} for n in sizes},
    }
    with tempfile.TemporaryDirectory(prefix="cds-bench-") as tmp:
        workdir = Path(tmp)
        print("in-process ...", file=sys.stderr)
        results["in_process"] = in_process(raws, profile, workdir)
        gc.collect()
        if not args.no_http:
            print("over HTTP ...", file=sys.stderr)
            results["http"] = over_http(raws, profile, workdir, args.loadgen)
    results["loadavg_end"] = os.getloadavg()
    results["targets"] = evaluate_targets(results)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))
    print(f"(results written to {out})", file=sys.stderr)
    return results


if __name__ == "__main__":
    main()
