"""A long chart waits its turn before its body is read (cds_service/gunicorn_worker.py):
while one large request is inside the app, the next one's body stays in the
client's socket, not in the worker; and the wait is bounded, so a request
that holds its turn for long does not stop the next body from being read.
Through the production server on loopback, with a stand-in app that stays
inside until the test lets it go."""

from __future__ import annotations

import http.client
import select
import socket
import textwrap
import threading
import time
from pathlib import Path

from tests.test_server import _stop
from tests.test_serving import _serve

TURN_APP = textwrap.dedent("""
    import os, time
    from cds_service import gunicorn_worker
    from cds_service.config import load_settings
    from cds_service.server import run_production

    gunicorn_worker.LARGE_TURN_WAIT_SECONDS = float(os.environ["TEST_TURN_WAIT"])
    flags = os.environ["TEST_FLAGS"]

    def factory():
        def app(environ, start_response):
            size = len(environ["wsgi.input"].read())
            if environ["PATH_INFO"] == "/held":  # stay inside until the test says go
                open(os.path.join(flags, "held.inside"), "w").close()
                while not os.path.exists(os.path.join(flags, "held.go")):
                    time.sleep(0.02)
            body = str(size).encode()
            start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
            return [body]
        return app

    run_production(load_settings(), app_factory=factory)
""")

HELD_SIZE = 2 * 1024 * 1024      # over LARGE_BODY_BYTES


def _most_in_socket_buffers() -> int:
    """The most a loopback connection can hold unread: the largest receive
    plus send buffers the kernel grows to (32 MB if it does not say)."""
    try:
        return sum(int(Path(f"/proc/sys/net/ipv4/{name}").read_text().split()[2])
                   for name in ("tcp_rmem", "tcp_wmem"))
    except (OSError, IndexError, ValueError):
        return 32 * 1024 * 1024


NEXT_SIZE = _most_in_socket_buffers() + 8 * 1024 * 1024  # cannot all be sent unless the worker reads


def _start(tmp_path: Path, turn_wait: float) -> tuple[object, int, Path]:
    flags = tmp_path / "flags"
    flags.mkdir()
    proc, port = _serve(TURN_APP, tmp_path, CDS_WORKERS="1", CDS_THREADS="2",
                        CDS_MAX_BODY_BYTES=str(2 * NEXT_SIZE), CDS_BODY_TIMEOUT_SECONDS="60",
                        TEST_TURN_WAIT=str(turn_wait), TEST_FLAGS=str(flags))
    return proc, port, flags


def _hold_inside(port: int, flags: Path) -> tuple[threading.Thread, dict]:
    """A large request that stays inside the app until flags/held.go exists."""
    result: dict = {}

    def run() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("POST", "/held", body=b"x" * HELD_SIZE, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        result["answer"] = (response.status, response.read())
        conn.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not (flags / "held.inside").exists():
        assert time.monotonic() < deadline, "the held request never reached the app"
        time.sleep(0.02)
    return thread, result


def _head(size: int) -> bytes:
    return (f"POST / HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            f"Content-Length: {size}\r\n\r\n").encode()


def _send_until_stuck(sock: socket.socket, data: memoryview, quiet: float) -> int:
    """Send without blocking until the peer has taken nothing for `quiet`
    seconds or all is sent; how many bytes went."""
    sock.setblocking(False)
    sent = 0
    while sent < len(data):
        _, writable, _ = select.select([], [sock], [], quiet)
        if not writable:
            break
        try:
            sent += sock.send(data[sent:sent + 1024 * 1024])
        except BlockingIOError:
            continue
    sock.setblocking(True)
    return sent


def _answer(sock: socket.socket) -> tuple[int, bytes]:
    sock.settimeout(60)
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, response.read()


def test_the_next_long_chart_is_not_read_while_one_is_inside(tmp_path):
    proc, port, flags = _start(tmp_path, turn_wait=60)
    try:
        held, result = _hold_inside(port, flags)
        body = memoryview(_head(NEXT_SIZE) + b"y" * NEXT_SIZE)
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            sent = _send_until_stuck(sock, body, quiet=1.0)
            # The worker has not read the body: what went is in the socket buffers.
            assert sent < len(body), sent
            (flags / "held.go").touch()
            sock.sendall(body[sent:])  # its turn came: read now
            assert _answer(sock) == (200, str(NEXT_SIZE).encode())
        held.join(30)
        assert result["answer"] == (200, str(HELD_SIZE).encode())
    finally:
        _stop(proc)


def test_the_wait_for_a_turn_is_bounded(tmp_path):
    proc, port, flags = _start(tmp_path, turn_wait=0.5)
    try:
        held, result = _hold_inside(port, flags)
        body = memoryview(_head(NEXT_SIZE) + b"y" * NEXT_SIZE)
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            sock.sendall(body)  # read after the bounded wait, though the held one is still inside
            assert not (flags / "held.go").exists()
            (flags / "held.go").touch()
            assert _answer(sock) == (200, str(NEXT_SIZE).encode())
        held.join(30)
        assert result["answer"] == (200, str(HELD_SIZE).encode())
    finally:
        _stop(proc)
