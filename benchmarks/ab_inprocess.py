"""Two source trees of the service, in turns, on the same in-process call:

    git archive main | tar -x -C /tmp/before
    python -m benchmarks.ab_inprocess /tmp/before --size 100 --calls 400 --rounds 3

Each round starts a fresh interpreter per tree (this checkout and the other
one, alternately), builds the app as benchmarks/run.py does (production
settings, JWT off, SQLite), warms it, and times `--calls` patient-view calls
for a new patient each, with the request of this checkout's
benchmarks/generate.py for both. Prints the median CPU time per call of each
round: on a machine shared with other work, turns are fairer than two runs an
hour apart.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Run with the tree under test first on sys.path; the request comes from this checkout.
_CHILD = """
import json, logging, os, statistics, sys, tempfile, time, importlib.util
tree, size, calls, generate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
sys.path.insert(0, tree)
spec = importlib.util.spec_from_file_location("bench_generate", generate)
gen = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gen)
import cds_service.app as service_app
from cds_service.logs import JsonFormatter
from cds_service.server import prepare_worker
tmp = tempfile.mkdtemp()
app = service_app.create_app({"CDS_DATABASE_URL": f"sqlite:///{tmp}/ab.db", "CDS_AUTH_REQUIRED": "false",
                              "CDS_PATIENT_HASH_SECRET": "benchmark-patient-hash-secret-0123456789"})
devnull = open(os.devnull, "w")
for handler in logging.getLogger().handlers:
    if isinstance(handler.formatter, JsonFormatter):
        handler.setStream(devnull)
prepare_worker()
client = app.test_client()
parts = json.dumps(gen.patient_view_request(size)).encode().split(gen.PATIENT_ID.encode())
path = "/cds-services/osteoporosis-patient-view"
for i in range(20):
    client.post(path, data=f"warm-{i}".encode().join(parts), content_type="application/json")
cpu = []
for i in range(calls):
    data = f"ab-{i}".encode().join(parts)
    started = time.thread_time()
    response = client.post(path, data=data, content_type="application/json")
    cpu.append(time.thread_time() - started)
    assert response.status_code == 200, response.status_code
print(json.dumps({"cpu_ms": statistics.median(cpu) * 1000}))
"""


def one(tree: Path, size: int, calls: int) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    with tempfile.TemporaryDirectory() as cwd:
        out = subprocess.run([sys.executable, "-c", _CHILD, str(tree), str(size), str(calls),
                              str(ROOT / "benchmarks" / "generate.py")],
                             cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["cpu_ms"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("other", type=Path, help="the other source tree (e.g. an export of main)")
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[float]] = {"other": [], "this": []}
    started = time.monotonic()
    for _ in range(args.rounds):
        results["other"].append(one(args.other.resolve(), args.size, args.calls))
        results["this"].append(one(ROOT, args.size, args.calls))
    for name, label in (("other", str(args.other)), ("this", f"this checkout ({ROOT})")):
        rounds = ", ".join(f"{v:.2f}" for v in results[name])
        print(f"{label}: {rounds} ms CPU per call (median of each round; median {statistics.median(results[name]):.2f})")
    change = statistics.median(results["this"]) / statistics.median(results["other"]) - 1
    print(f"{args.size} resources: {change * 100:+.0f} % ({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
