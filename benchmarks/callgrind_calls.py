"""Instructions per patient-view call, or per part of one, counted by callgrind:

    python -m benchmarks.callgrind_calls                          # the whole call, 100 resources
    python -m benchmarks.callgrind_calls --part cds_service.services.clinical:build_record
    python -m benchmarks.callgrind_calls --part view              # the view, with the body's freeing
    python -m benchmarks.callgrind_calls --part body-free         # freeing the parsed body alone
    python -m benchmarks.callgrind_calls --tree /tmp/before       # another source tree

The app is built as benchmarks/run.py builds it (production settings, JWT off,
SQLite with the quieting rows, logs to /dev/null), with PYTHONHASHSEED=0,
warmed by `--warm` calls of rotating patients, then `--calls` more are made.
Only what runs inside `operator.call` is counted (`--toggle-collect`): the
loop of measured calls, or with `--part` each call of that function (wrapped
after the warm-up, so nothing else is counted). A part is `module:name` or
`module:Class.name`, patched where named (a name imported elsewhere with
`from ... import` is patched there: name that module). No subtraction of two
runs, so the count is exact to a few instructions per call.
"""

from __future__ import annotations

import argparse
import importlib
import json
import operator
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PATH = "/cds-services/osteoporosis-patient-view"


def _wrapped(fn: Any) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return operator.call(fn, *args, **kwargs)

    wrapper.__name__ = getattr(fn, "__name__", "wrapped")
    return wrapper


def child(size: int, warm: int, calls: int, part: str | None) -> None:
    """The counted process (run under valgrind by main; plain, it just makes the calls)."""
    from benchmarks import run
    from benchmarks.generate import patient_view_request

    client = run.service_client(Path(tempfile.mkdtemp()))
    app = client.application
    rotating = run.Rotating(json.dumps(patient_view_request(size)).encode())
    bodies = [rotating(i) for i in range(warm + calls)]
    held: list[Any] = []
    counting: list[bool] = []
    if part == "body-free":
        # The parsed body kept here, then freed at teardown: its freeing alone is counted.
        from cds_service.protocol import requests_json

        parse = requests_json.parse_json

        def keep(raw: bytes) -> Any:
            held.append(parse(raw))
            return held[-1]

        requests_json.parse_json = keep

        @app.teardown_request
        def _free(_error: Any) -> None:
            operator.call(held.clear) if counting else held.clear()

    for i in range(warm):
        assert client.post(PATH, data=bodies[i], content_type="application/json").status_code == 200
    if part == "view":
        name = next(k for k in app.view_functions if k.endswith("call_service"))
        app.view_functions[name] = _wrapped(app.view_functions[name])
    elif part == "body-free":
        counting.append(True)
    elif part:
        module, _, qualname = part.partition(":")
        owner: Any = importlib.import_module(module)
        *path, attr = qualname.split(".")
        for step in path:
            owner = getattr(owner, step)
        setattr(owner, attr, _wrapped(getattr(owner, attr)))

    def measured() -> None:
        for i in range(warm, warm + calls):
            assert client.post(PATH, data=bodies[i], content_type="application/json").status_code == 200

    measured() if part else operator.call(measured)


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, default=ROOT, help="the source tree to count (default: this one)")
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--warm", type=int, default=20)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--part", default=None, help="module:name, module:Class.name, view or body-free")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.size, args.warm, args.calls, args.part)
        return 0.0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        command = ["valgrind", "--tool=callgrind", "--collect-atstart=no", "--toggle-collect=_operator_call",
                   f"--callgrind-out-file={out}", sys.executable, str(Path(__file__).resolve()), "--child",
                   "--size", str(args.size), "--warm", str(args.warm), "--calls", str(args.calls)]
        if args.part:
            command += ["--part", args.part]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
        # This file runs in the tree counted (its benchmarks.run and cds_service).
        env.update(PYTHONHASHSEED="0", PYTHONPATH=str(args.tree.resolve()))
        subprocess.run(command, cwd=args.tree.resolve(), env=env, check=True, capture_output=True)
        total = next(int(line.split()[1]) for line in out.read_text().splitlines()
                     if line.startswith(("summary:", "totals:")))
    per_call = total / args.calls
    print(f"{args.part or 'whole call'}, {args.size} resources, {args.tree}: {per_call / 1e6:.3f} M instructions "
          f"per call ({args.calls} calls after {args.warm})")
    return per_call


if __name__ == "__main__":
    main()
