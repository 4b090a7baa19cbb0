"""The two database calls of every patient-view, timed on their own:

    python -m benchmarks.store_calls [--postgres URL] [--calls N]

the quieting lookup (Store.quiet_marks, one indexed query) and recording the
issued cards (Store.record_cards, 3 cards), on a SQLite file and, with
--postgres (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test), on a
schema of its own in that database (dropped after). Prints CPU and wall time
per call (median of N). The quieted_cards table holds 20,000 rows of other
patients, as in benchmarks/run.py.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from benchmarks.run import seed_quieted_cards  # noqa: E402
from cds_service.store import IssuedCard, Store  # noqa: E402

QUIET_DAYS = {"info": 180, "warning": 365}


def timed(call, calls: int) -> tuple[float, float]:
    cpu, wall = [], []
    for i in range(calls):
        c, w = time.thread_time(), time.perf_counter()
        call(i)
        cpu.append(time.thread_time() - c)
        wall.append(time.perf_counter() - w)
    return statistics.median(cpu) * 1e6, statistics.median(wall) * 1e6


def measure(url: str, label: str, calls: int) -> None:
    store = Store.from_url(url)
    store.create_schema()
    seed_quieted_cards(url)
    for i in range(20):  # warm the pool and the statement cache
        store.quiet_marks(f"warm-{i}", QUIET_DAYS)
    quiet = timed(lambda i: store.quiet_marks(f"{i:064x}"[::-1], QUIET_DAYS), calls)
    record = timed(lambda i: store.record_cards([
        IssuedCard(str(uuid.uuid4()), "osteoporosis-patient-view", "C-SUPP-CAVD", "info", str(uuid.uuid4()),
                   ("s1", "s2"), f"key-{i}") for _ in range(3)]), calls)
    store.engine.dispose()
    print(f"{label}: quieting lookup {quiet[0]:.0f} us CPU, {quiet[1]:.0f} us wall; "
          f"3 issued cards recorded {record[0]:.0f} us CPU, {record[1]:.0f} us wall (median of {calls})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", help="SQLAlchemy URL of a PostgreSQL database to use a schema of")
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cds-store-") as tmp:
        measure(f"sqlite:///{tmp}/store.db", "SQLite", args.calls)
    if args.postgres:
        schema = f"bench_{uuid.uuid4().hex[:10]}"
        admin = sa.create_engine(args.postgres)
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        try:
            url = sa.engine.make_url(args.postgres).update_query_dict({"options": f"-csearch_path={schema}"})
            measure(url.render_as_string(hide_password=False), "PostgreSQL", args.calls)
        finally:
            with admin.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()


if __name__ == "__main__":
    main()
