"""The fetch path: every chart of fhir_fixtures/realworld/<corpus> through
patient-view with nothing prefetched, so the service fetches all of it from a
loopback FHIR server (tests/fhir_test_server.py) that pages at 20 and waits
`--latency-ms` before each answer, as a server across a network would. Each
chart is timed once per CDS_FHIR_CONCURRENCY value.

    .venv/bin/python -m benchmarks.fetch_path                     # 1 and 4, 20 ms
    .venv/bin/python -m benchmarks.fetch_path --concurrency 1,2,4,8 --latency-ms 50

Prints, per setting: statuses, median / p95 / max time of one call, and the
FHIR requests per call.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path


def measure(corpus: str, concurrency: int, latency: float, page_size: int) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from fhir_test_server import FhirTestServer

    from cds_service import fixtures as fx
    from cds_service.app import create_app

    class SlowServer(FhirTestServer):
        def get(self, path_and_query):
            time.sleep(latency)
            return super().get(path_and_query)

    today = dt.date.today()
    timings, statuses, requests_per_call = [], collections.Counter(), []
    with tempfile.TemporaryDirectory() as tmp, SlowServer([], page_size=page_size) as server:
        app = create_app({"CDS_DATABASE_URL": f"sqlite:///{tmp}/cds.db", "CDS_AUTH_REQUIRED": "false",
                          "CDS_LOG_LEVEL": "ERROR", "CDS_ALLOWED_FHIR_SERVERS": server.base,
                          "CDS_ALLOW_LOOPBACK_HTTP": "true", "CDS_FHIR_CONCURRENCY": str(concurrency)})
        client = app.test_client()
        for path in fx.realworld_paths(corpus):
            resources = fx.load_realworld(path, today=today)
            pid = next(r["id"] for r in resources if r["resourceType"] == "Patient")
            server.set_resources(resources)
            before = len(server.requests)
            started = time.perf_counter()
            resp = client.post("/cds-services/osteoporosis-patient-view", json={
                "hookInstance": str(uuid.uuid4()), "hook": "patient-view", "fhirServer": server.base,
                "context": {"patientId": pid, "userId": "Practitioner/example"}, "prefetch": {}})
            timings.append(time.perf_counter() - started)
            statuses[resp.status_code] += 1
            requests_per_call.append(len(server.requests) - before)
    ordered = sorted(timings)
    return {"concurrency": concurrency, "charts": len(timings), "statuses": dict(statuses),
            "median_ms": 1000 * statistics.median(ordered), "p95_ms": 1000 * ordered[int(0.95 * (len(ordered) - 1))],
            "max_ms": 1000 * ordered[-1], "fhir_requests_median": statistics.median(requests_per_call),
            "fhir_requests_max": max(requests_per_call)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="synthea")
    parser.add_argument("--concurrency", default="1,4", help="comma-separated CDS_FHIR_CONCURRENCY values")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="the server's wait before each answer")
    parser.add_argument("--page-size", type=int, default=20, help="most entries the server sends a page")
    args = parser.parse_args()
    print(f"Corpus `{args.corpus}`, fetch path, server latency {args.latency_ms:g} ms, pages of "
          f"{args.page_size}.\n")
    print("| CDS_FHIR_CONCURRENCY | Charts | Statuses | Median | p95 | Max | FHIR requests per call (median / max) |")
    print("|---|---|---|---|---|---|---|")
    for value in (int(v) for v in args.concurrency.split(",")):
        r = measure(args.corpus, value, args.latency_ms / 1000, args.page_size)
        print(f"| {value} | {r['charts']} | {r['statuses']} | {r['median_ms']:.0f} ms | {r['p95_ms']:.0f} ms | "
              f"{r['max_ms']:.0f} ms | {r['fhir_requests_median']:g} / {r['fhir_requests_max']} |")


if __name__ == "__main__":
    main()
