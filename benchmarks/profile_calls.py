"""Where a patient-view call spends its time, with py-spy (PyPI: py-spy).

In-process (the same app, settings and rotating patients as run.py):

    py-spy record -r 500 -f raw -o /tmp/pv100.txt -- \
        .venv/bin/python -m benchmarks.profile_calls --size 100 --seconds 20
    python -m benchmarks.profile_calls --summarise /tmp/pv100.txt [--parts]

Under the production server (gunicorn, 2 workers, wrk -c4 for --seconds),
sampling every worker:

    python -m benchmarks.profile_calls --size 100 --seconds 20 --server --out /tmp/pv100-http

The summary lists the share of samples each function is on the stack for
(inclusive) and at the top of (self), which is what the issue's profile
figures are.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.generate import patient_view_request  # noqa: E402
from benchmarks.run import ENDPOINT, Rotating, Server, load_wrk, post_once, service_client  # noqa: E402


def loop_in_process(size: int, seconds: float) -> None:
    raw = json.dumps(patient_view_request(size, today=dt.date.today())).encode()
    rotating = Rotating(raw)
    with tempfile.TemporaryDirectory(prefix="cds-profile-") as tmp:
        client = service_client(Path(tmp))
        for i in range(20):
            client.post(ENDPOINT, data=rotating(i), content_type="application/json")
        deadline, i = time.perf_counter() + seconds, 20
        while time.perf_counter() < deadline:
            i += 1
            response = client.post(ENDPOINT, data=rotating(i), content_type="application/json")
            assert response.status_code == 200, response.status_code
        print(f"{i - 20} calls in {seconds:g} s", file=sys.stderr)


def profile_server(size: int, seconds: float, out: Path, rate: int) -> None:
    raw = json.dumps(patient_view_request(size, today=dt.date.today())).encode()
    workdir = Path(tempfile.mkdtemp(prefix="cds-profile-"))
    server = Server("service", workdir, {"CDS_WORKERS": "2"})
    try:
        server.wait_ready()
        status, _ = post_once(server.port, raw)
        assert status == 200, status
        body = workdir / "body.json"
        body.write_bytes(raw)
        load_wrk(server.port, body, 4, 2, workdir)  # warm both workers
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))  # pip install py-spy
        spies = [subprocess.Popen([spy, "record", "-r", str(rate), "-f", "raw", "-d", str(int(seconds)),
                                   "-o", f"{out}-{pid}.txt", "-p", str(pid)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for pid in server.worker_pids()]
        result = load_wrk(server.port, body, 4, seconds, workdir)
        for spy in spies:
            spy.wait(timeout=seconds + 60)
        print(f"wrk: {result['rps']:.1f} req/s, {result['requests']} requests", file=sys.stderr)
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _function(frame: str) -> str:
    """"name (file.py:123)" -> "name (file.py)": samples counted per function."""
    name, _, where = frame.rpartition(" (")
    return f"{name} ({where.rsplit(':', 1)[0]})" if name else frame


def _stacks(paths: list[str], within: str):
    """(frames, samples) of each py-spy raw line whose stack holds `within`."""
    for path in paths:
        for line in Path(path).read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if stack and count.isdigit() and within in stack:
                yield stack.split(";"), int(count)


def summarise(paths: list[str], top: int, within: str) -> str:
    """Shares of the samples whose stack holds `within` (a request being
    handled; idle waits and start-up are left out)."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for raw_frames, n in _stacks(paths, within):
        frames = [_function(f) for f in raw_frames]
        total += n
        for frame in set(frames):
            inclusive[frame] += n
        own[frames[-1]] += n
    lines = [f"{total} samples within {within}", "", "inclusive %  self %  function"]
    for frame, n in inclusive.most_common(top):
        lines.append(f"{100 * n / total:10.1f}  {100 * own[frame] / total:6.1f}  {frame}")
    lines += ["", "top self:"]
    for frame, n in own.most_common(top):
        lines.append(f"{100 * n / total:6.1f}  {frame}")
    return "\n".join(lines)


# Where a sample goes: the first of these found in its stack, innermost
# first, names its part of the call (the order settles nesting: the veto
# check runs inside the rules, card rendering inside both).
PARTS = (
    ("read_json_object", "strict JSON parse"),
    ("validate_hook_request", "schema check"),
    ("resolve_prefetch", "prefetch check"),
    ("build_record", "build_record (record.py)"),
    ("quiet_marks", "quieting lookup (database)"),
    ("record_cards", "issued-cards insert (database)"),
    ("withhold_vetoed_orders", "rules: suggested orders judged by order-sign rules"),
    ("_reviewed (", "rules: suggested orders judged by order-sign rules"),  # engine.decide reviews shown cards only
    ("finish_cards", "finishing cards (prune, uuids, validation)"),
    ("card_render.py", "rendering cards"),
    ("run_rules", "rules"),
    ("_chosen (", "rules"),
    ("jsonify", "writing the answer"),
    ("Logger.", "logging"),
    ("_log_request", "logging and metrics"),
)


def parts(paths: list[str], within: str) -> str:
    """Shares of the samples within `within` by part of the call (PARTS)."""
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for frames, n in _stacks(paths, within):
        part = next((name for needle, name in PARTS if any(needle in frame for frame in frames)),
                    "the rest: web framework, server, sockets")
        counts[part] += n
        total += n
    return "\n".join([f"{total} samples within {within}"]
                     + [f"{100 * n / total:5.1f} %  {name}" for name, n in counts.most_common()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--server", action="store_true", help="profile the production server's workers")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second (--server)")
    parser.add_argument("--out", default="/tmp/cds-profile", help="--server: py-spy raw output prefix")
    parser.add_argument("--summarise", nargs="+", metavar="RAW", help="summarise py-spy raw files")
    parser.add_argument("--parts", action="store_true", help="--summarise: shares by part of the call")
    parser.add_argument("--top", type=int, default=45)
    parser.add_argument("--within", default="Flask.wsgi_app", help="--summarise: count stacks holding this")
    args = parser.parse_args()
    if args.summarise and args.parts:
        print(parts(args.summarise, args.within))
    elif args.summarise:
        print(summarise(args.summarise, args.top, args.within))
    elif args.server:
        profile_server(args.size, args.seconds, Path(args.out), args.rate)
    else:
        loop_in_process(args.size, args.seconds)


if __name__ == "__main__":
    main()
