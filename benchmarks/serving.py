"""The serving arrangement under stress, in one command (issues 10 and 15).

    python benchmarks/serving.py                    # both checks, about 1.5 minutes
    python benchmarks/serving.py --check balance    # or: slow-clients
    python benchmarks/serving.py --compare-gthread  # also the old threaded arrangement

Both run the production server (cds_service/server.py, 2 workers, JWT off,
SQLite) on a loopback port with 100-resource patient-view requests, each for
another patient (benchmarks/generate.py):

- balance: `wrk -t1 -c4` (a small keep-alive pool, as an EHR holds) for 5 s,
  5 times; each run reports the CPU time each worker used (/proc). Passes when
  both workers carry at least 35 % of the work in every run. Without wrk
  (`apt-get install wrk`) a Python load generator with 4 keep-alive
  connections stands in.
- slow-clients: 50 slow connections are opened and kept open (half trickle
  their headers, half their body, one byte every 5 s; a dropped one
  reconnects), then normal patient-view calls are made one after another, each
  on a new connection, for 20 s. Passes when at least 99 % of them answer 200
  within 1 s.

Exit status 1 when a check fails. Loopback only; every loop is bounded in time.
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.generate import patient_view_request  # noqa: E402
from benchmarks.run import ENDPOINT, Server, load_python, load_wrk, post_once, worker_cpu  # noqa: E402

MIN_SHARE = 0.35
SLOW_CONNECTIONS = 50
WITHIN_SECONDS = 1.0
MIN_SUCCESS = 0.99


def balance(server: Server, raw: bytes, workdir: Path, runs: int, seconds: float) -> dict[str, Any]:
    body = workdir / "body.json"
    body.write_bytes(raw)
    use_wrk = shutil.which("wrk") is not None
    results = []
    for _ in range(runs):
        before = worker_cpu(server)
        load = load_wrk(server.port, body, 4, seconds, workdir) if use_wrk else load_python(server.port, raw, 4, seconds)
        after = worker_cpu(server)
        used = [after[pid] - before.get(pid, 0.0) for pid in sorted(after)]
        total = sum(used) or 1.0
        results.append({"shares": [round(u / total, 3) for u in used], "rps": round(load["rps"], 1),
                        "non_2xx": load["non_2xx"], "socket_errors": load.get("socket_errors", ""),
                        "cpu_ms_per_request": round(total * 1000 / load["requests"], 2) if load["requests"] else None})
    passed = all(len(r["shares"]) == 2 and min(r["shares"]) >= MIN_SHARE for r in results)
    return {"tool": "wrk -t1 -c4" if use_wrk else "python, 4 keep-alive connections", "seconds": seconds,
            "runs": results, "passed": passed}


def _trickle(port: int, kind: str, stop: threading.Event, body_length: int) -> None:
    head = (f"POST {ENDPOINT} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {body_length}\r\n")
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                if kind == "body":
                    sock.sendall((head + "\r\n").encode())
                    data = b"{" * body_length
                else:
                    data = (head + "X-Slow: " + "a" * 4000).encode()
                for byte in data:
                    sock.send(bytes([byte]))
                    if stop.wait(5.0):
                        return
        except OSError:
            stop.wait(0.5)  # dropped by the server: open another one


def slow_clients(server: Server, raw: bytes, seconds: float) -> dict[str, Any]:
    stop = threading.Event()
    slow = [threading.Thread(target=_trickle, args=(server.port, ("headers", "body")[i % 2], stop, len(raw)),
                             daemon=True) for i in range(SLOW_CONNECTIONS)]
    for thread in slow:
        thread.start()
    latencies: list[float] = []
    failures = 0
    try:
        time.sleep(2.0)  # every slow connection open and mid-request
        deadline = time.monotonic() + seconds
        n = 0
        while time.monotonic() < deadline:
            n += 1
            body = raw.replace(b"bench-patient-1", f"slow-{n}".encode())
            started = time.monotonic()
            try:
                status, _ = post_once(server.port, body, timeout=WITHIN_SECONDS)
            except (OSError, http.client.HTTPException):
                status = None
            elapsed = time.monotonic() - started
            latencies.append(elapsed)
            failures += not (status == 200 and elapsed <= WITHIN_SECONDS)
    finally:
        stop.set()
        for thread in slow:
            thread.join(10)
    latencies.sort()
    calls = len(latencies)
    success = (calls - failures) / calls if calls else 0.0
    return {"slow_connections": SLOW_CONNECTIONS, "seconds": seconds, "calls": calls,
            "within_1s": calls - failures, "success_rate": round(success, 4),
            "p50_ms": round(latencies[calls // 2] * 1000, 1) if calls else None,
            "p99_ms": round(latencies[min(calls - 1, int(calls * 0.99))] * 1000, 1) if calls else None,
            "max_ms": round(latencies[-1] * 1000, 1) if calls else None,
            "passed": success >= MIN_SUCCESS}


def run(which: str, checks: list[str], runs: int, seconds: float, slow_seconds: float) -> dict[str, Any]:
    raw = json.dumps(patient_view_request(100)).encode()
    workdir = Path(tempfile.mkdtemp(prefix="cds-serving-"))
    server = Server(which, workdir, {"CDS_WORKERS": "2"})
    out: dict[str, Any] = {"server": which}
    try:
        server.wait_ready()
        status, answer = post_once(server.port, raw)
        if status != 200:
            raise SystemExit(f"serving benchmark: the server answered {status}: {answer[:300]!r}")
        load_python(server.port, raw, 4, 1.0, max_requests=40)  # warm both workers
        if "balance" in checks:
            out["balance"] = balance(server, raw, workdir, runs, seconds)
        if "slow-clients" in checks:
            out["slow_clients"] = slow_clients(server, raw, slow_seconds)
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return out


def markdown(result: dict[str, Any]) -> str:
    lines = []
    if "balance" in result:
        b = result["balance"]
        shares = "; ".join(f"{'/'.join(f'{s * 100:.0f}' for s in r['shares'])} % ({r['rps']:.0f} req/s, "
                           f"{r['cpu_ms_per_request']} ms CPU/req)" for r in b["runs"])
        lines.append(f"- {result['server']}, per-worker CPU share under {b['tool']} ({b['seconds']:g} s x "
                     f"{len(b['runs'])}): {shares} -> {'pass' if b['passed'] else 'FAIL'} (each >= 35 %)")
    if "slow_clients" in result:
        s = result["slow_clients"]
        lines.append(f"- {result['server']}, {s['slow_connections']} slow connections open: {s['within_1s']} of "
                     f"{s['calls']} patient-view calls answered 200 within 1 s ({s['success_rate'] * 100:.1f} %), "
                     f"p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms, max {s['max_ms']} ms -> "
                     f"{'pass' if s['passed'] else 'FAIL'} (>= 99 %)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", choices=("balance", "slow-clients"), action="append",
                        help="run only this check (repeatable; default both)")
    parser.add_argument("--runs", type=int, default=5, help="balance runs (default 5)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one balance run (default 5)")
    parser.add_argument("--slow-seconds", type=float, default=20.0, help="slow-clients measuring time (default 20)")
    parser.add_argument("--compare-gthread", action="store_true",
                        help="also run the old arrangement (gunicorn gthread) for comparison; not checked")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    checks = args.check or ["balance", "slow-clients"]
    results = [run("service", checks, args.runs, args.seconds, args.slow_seconds)]
    if args.compare_gthread:
        results.append(run("service-gthread", checks, args.runs, args.seconds, args.slow_seconds))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print("\n".join(markdown(r) for r in results))
    current = results[0]
    passed = all(current[key]["passed"] for key in ("balance", "slow_clients") if key in current)
    print("serving benchmark: " + ("passed" if passed else "FAILED"), file=sys.stderr)
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
