"""Fault drill: the production server under bounded load while a worker is
killed and the database is stopped and started again.

    python benchmarks/fault.py            # about 40 s
    python benchmarks/fault.py --json out.json

What it does, all on loopback:
1. starts its own PostgreSQL (initdb/pg_ctl from /usr/lib/postgresql/*/bin)
   in a temporary folder, on a spare port, listening on 127.0.0.1 only, as the
   `postgres` user when run as root (initdb refuses root). It never touches
   any other PostgreSQL, such as a shared server on 5432;
2. starts the production server exactly as operators do (`cds-service serve`:
   JWT required, that PostgreSQL, 2 workers), with a test client key
   (`cds-service test-client`);
3. runs a bounded load (4 client threads, at most --seconds and --max-requests):
   signed patient-view calls, and feedback on the cards they return;
4. meanwhile: SIGKILL one worker, then stop the database, then start it again;
5. reports requests sent, statuses by phase, and feedback acknowledged (200)
   but not stored, which must be 0; then checks the service answers normally
   once the database is back.

Exit status 1 if acknowledged feedback was lost, any call answered 500 (the
database being down is a 503), or the service does not recover. Every process it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import http.client
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.generate import PATIENT_ID, patient_view_request  # noqa: E402

PV = "/cds-services/osteoporosis-patient-view"
FEEDBACK = PV + "/feedback"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivatePostgres:
    """A throw-away PostgreSQL cluster in a temporary folder."""

    def __init__(self, workdir: Path):
        versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                          key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
        if not versions:
            raise SystemExit("fault drill: no PostgreSQL server binaries in /usr/lib/postgresql/*/bin "
                             "(apt-get install postgresql)")
        self.bin = Path(versions[-1]).parent
        self.port = free_port()
        self.dir = workdir / "pg"
        self.dir.mkdir()
        self.user = None
        if os.geteuid() == 0:  # initdb refuses to run as root
            self.user = pwd.getpwnam("postgres" if _user_exists("postgres") else "nobody")
            os.chown(workdir, self.user.pw_uid, self.user.pw_gid)
            os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)
        self.role = self.user.pw_name if self.user else pwd.getpwuid(os.geteuid()).pw_name
        self.url = f"postgresql+psycopg://{self.role}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run([str(self.bin / args[0]), *args[1:]], check=True, capture_output=True, timeout=60,
                       user=self.user.pw_uid if self.user else None,
                       group=self.user.pw_gid if self.user else None)

    def init(self) -> None:
        self._run("initdb", "-D", str(self.dir / "data"), "-A", "trust", "-U", self.role, "--no-sync")

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c max_connections=50")
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-o", options, "-l", str(self.dir / "log"),
                  "-w", "-t", "30", "start")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, FileNotFoundError):
            self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "-w", "-t", "30", "stop")


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


class Service:
    """`cds-service serve` in a subprocess (production server, 2 workers)."""

    def __init__(self, workdir: Path, database_url: str):
        from cds_service import test_client

        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.keys = workdir / "client"
        _, trust = test_client.make_keys(self.keys)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CDS_", "PROMETHEUS_"))}
        env.update({
            "PYTHONPATH": str(ROOT), "CDS_DATABASE_URL": database_url, "CDS_AUTH_REQUIRED": "true",
            "CDS_TRUSTED_ISSUERS": str(trust), "CDS_PUBLIC_BASE_URL": self.base, "CDS_WORKERS": "2",
            "CDS_GRACEFUL_TIMEOUT_SECONDS": "5", "CDS_PATIENT_HASH_SECRET": secrets.token_hex(32),
        })
        self.log_path = workdir / "service.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "cds_service.cli", "serve", "--port", str(self.port)],
                                     cwd=workdir, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"fault drill: the service exited:\n{self.log_path.read_text()[-3000:]}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200 and len(self.workers()) == 2:
                    return
            time.sleep(0.2)
        raise SystemExit("fault drill: the service did not start")

    def workers(self) -> list[int]:
        with contextlib.suppress(OSError):
            return [int(p) for p in Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()]
        return []

    def token(self, path: str) -> str:
        from cds_service import test_client

        return test_client.make_token(self.keys, self.base + path)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


class Load:
    """Bounded closed-loop load: each thread alternates a patient-view call
    and, when it returned cards, feedback on the first one."""

    def __init__(self, service: Service, threads: int, seconds: float, max_requests: int):
        self.service, self.threads, self.seconds, self.max_requests = service, threads, seconds, max_requests
        self.phase = "before faults"
        self.statuses: dict[str, Counter] = {}
        self.acknowledged: list[tuple[str, str, str]] = []  # (card uuid, outcome, timestamp)
        self.sent = 0
        self.lock = threading.Lock()
        template = json.dumps(patient_view_request(20))
        self.parts = template.split(PATIENT_ID)

    def _record(self, status: Any) -> None:
        with self.lock:
            self.statuses.setdefault(self.phase, Counter())[str(status)] += 1
            self.sent += 1

    def _post(self, conn: http.client.HTTPConnection, path: str, body: bytes) -> tuple[Any, bytes]:
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.service.token(path)}"}
        try:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()  # reconnects on the next request
            return f"connection error ({type(exc).__name__})", b""

    def _worker(self, index: int, deadline: float) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.service.port, timeout=30)
        n = 0
        while time.monotonic() < deadline and self.sent < self.max_requests:
            n += 1
            body = f"fault-{index}-{n}".join(self.parts).encode()
            status, answer = self._post(conn, PV, body)
            self._record(status)
            cards = json.loads(answer).get("cards", []) if status == 200 else []
            if not cards:
                continue
            stamp = f"2026-01-01T00:{index:02d}:{n % 60:02d}.{n:06d}Z"
            entry = {"card": cards[0]["uuid"], "outcome": "overridden", "outcomeTimestamp": stamp}
            status, _ = self._post(conn, FEEDBACK, json.dumps({"feedback": [entry]}).encode())
            self._record(status)
            if status == 200:
                with self.lock:
                    self.acknowledged.append((entry["card"], entry["outcome"], stamp))

    def run(self) -> list[threading.Thread]:
        deadline = time.monotonic() + self.seconds
        threads = [threading.Thread(target=self._worker, args=(i, deadline), daemon=True)
                   for i in range(self.threads)]
        for thread in threads:
            thread.start()
        return threads


def drill(seconds: float, max_requests: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="cds-fault-"))
    os.chmod(workdir, 0o755)
    pg = PrivatePostgres(workdir)
    service = None
    events: list[str] = []
    try:
        pg.init()
        pg.start()
        service = Service(workdir, pg.url)
        service.wait_ready()
        load = Load(service, threads=4, seconds=seconds, max_requests=max_requests)
        started = time.monotonic()
        threads = load.run()

        def at(fraction: float) -> None:
            time.sleep(max(0.0, started + seconds * fraction - time.monotonic()))

        at(0.2)
        victim = service.workers()[0]
        os.kill(victim, signal.SIGKILL)
        load.phase = "worker killed"
        events.append(f"{time.monotonic() - started:.1f} s: SIGKILL worker {victim}")
        at(0.45)
        load.phase = "database down"
        events.append(f"{time.monotonic() - started:.1f} s: database stopping")
        pg.stop()
        at(0.65)
        pg.start()
        load.phase = "database back"
        events.append(f"{time.monotonic() - started:.1f} s: database started again")
        for thread in threads:
            thread.join(seconds + 60)

        # Acknowledged feedback must all be in the database.
        from cds_service.store import Store, utc_timestamp

        store = Store.from_url(pg.url)
        stored = {(r["card_uuid"], r["outcome"], r["outcome_timestamp"]) for r in store.feedback_rows()}
        store.engine.dispose()
        # The store keeps each outcomeTimestamp in one UTC spelling (a fraction's trailing zeros dropped).
        lost = [entry for entry in load.acknowledged if (*entry[:2], utc_timestamp(entry[2])) not in stored]

        # And the service works normally again.
        conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
        after = [load._post(conn, PV, f"after-{i}".join(load.parts).encode())[0] for i in range(10)]
        return {
            "postgres": str(pg.bin.parent.name), "seconds": seconds, "client_threads": load.threads,
            "events": events, "requests_sent": load.sent,
            "statuses_by_phase": {phase: dict(counts) for phase, counts in load.statuses.items()},
            "feedback_acknowledged": len(load.acknowledged), "feedback_stored": len(stored),
            "feedback_acknowledged_not_stored": len(lost),
            "statuses_after_recovery": dict(Counter(str(s) for s in after)),
            "workers_at_end": len(service.workers()),
            "log_lines_not_json": _not_json(service.log_path),
        }
    finally:
        if service is not None:
            service.stop()
        pg.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _not_json(path: Path) -> int:
    """Log lines that are not one JSON object (production logs are JSON only)."""
    count = 0
    for line in path.read_text(errors="replace").splitlines():
        try:
            count += not isinstance(json.loads(line), dict)
        except ValueError:
            count += 1
    return count


def markdown(result: dict[str, Any]) -> str:
    lines = [f"PostgreSQL {result['postgres']} (private, loopback), {result['client_threads']} client threads, "
             f"{result['seconds']:g} s; " + "; ".join(result["events"]), "",
             "| Phase | Statuses |", "|---|---|"]
    for phase, counts in result["statuses_by_phase"].items():
        lines.append(f"| {phase} | " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) + " |")
    lines += ["", f"Requests sent: {result['requests_sent']}. Feedback acknowledged: "
                  f"{result['feedback_acknowledged']}, acknowledged but not stored: "
                  f"**{result['feedback_acknowledged_not_stored']}**. After recovery: "
                  f"{result['statuses_after_recovery']}; workers at the end: {result['workers_at_end']}; "
                  f"server log lines that are not JSON: {result['log_lines_not_json']}."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the load (default 20)")
    parser.add_argument("--max-requests", type=int, default=20000, help="most requests sent (default 20000)")
    parser.add_argument("--json", help="also write the result to this JSON file")
    args = parser.parse_args(argv)
    result = drill(args.seconds, args.max_requests)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))
    recovered = result["statuses_after_recovery"] == {"200": 10} and result["workers_at_end"] == 2 \
        and result["log_lines_not_json"] == 0
    server_errors = sum(counts.get("500", 0) for counts in result["statuses_by_phase"].values())
    ok = result["feedback_acknowledged_not_stored"] == 0 and recovered and server_errors == 0
    print("fault drill: " + ("passed" if ok else "FAILED"), file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
