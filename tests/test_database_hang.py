"""A PostgreSQL database that hangs (accepts, never answers) must not hang the
service: hook calls and feedback answer 503 with Retry-After within
CDS_DATABASE_TIMEOUT_SECONDS, /readyz says not ready within its own bound,
and everything works again once the database answers.

The hang is real: the app reaches the shared test PostgreSQL through a
loopback TCP proxy of the test's own, which stops forwarding (bytes it
receives are held, new connections are accepted and held too)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from cds_service import db_bounds
from cds_service.protocol.runtime import runtime
from db_for_tests import database_url
from jwt_for_tests import client_key
from requests_for_tests import hook_request
from test_database_down import FB, PV, assert_unavailable, feedback_body, secured_app, signed

TIMEOUT = 1.0  # CDS_DATABASE_TIMEOUT_SECONDS in these tests


class FreezingProxy:
    """127.0.0.1:<port> -> target, forwarding until freeze()."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.flowing = threading.Event()
        self.flowing.set()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = [self.listener]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        self.flowing.wait()
        upstream = socket.create_connection(self.target)
        self.sockets += [client, upstream]
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                self.flowing.wait()
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def freeze(self) -> None:
        self.flowing.clear()

    def thaw(self) -> None:
        self.flowing.set()

    def close(self) -> None:
        self.closed = True
        self.thaw()
        for sock in self.sockets:
            try:
                sock.close()
            except OSError:
                pass


def timed(call, limit: float):
    """(response, seconds), failing (not hanging) when the call takes more than `limit`."""
    result: dict = {}

    def run():
        started = time.monotonic()
        result["response"] = call()
        result["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    assert not thread.is_alive(), f"still waiting for the database after {limit} s"
    return result["response"], result["seconds"]


@pytest.fixture
def proxied_postgres(tmp_path):
    import sqlalchemy as sa

    with database_url("postgresql", tmp_path) as url:
        parsed = sa.engine.make_url(url)
        proxy = FreezingProxy((parsed.host or "127.0.0.1", parsed.port or 5432))
        try:
            yield proxy, parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        finally:
            proxy.close()


def test_a_hung_postgresql_is_503_within_the_database_timeout(tmp_path, proxied_postgres):
    proxy, url = proxied_postgres
    key = client_key()
    app = secured_app(tmp_path, key, url, CDS_DATABASE_TIMEOUT_SECONDS=str(TIMEOUT))
    client = app.test_client()
    try:
        assert client.post(PV, json=hook_request(), headers=signed(key, PV)).status_code == 200
        assert client.post(FB, json=feedback_body("before"), headers=signed(key, FB)).status_code == 200
        assert client.get("/readyz").status_code == 200

        proxy.freeze()
        # Bound: the statement's (TIMEOUT + 1 s margin), or connecting anew (libpq's 2 s at least).
        for _ in range(2):  # the first on a pooled connection, the second after it was dropped
            resp, seconds = timed(lambda: client.post(PV, json=hook_request(), headers=signed(key, PV)), 15)
            assert_unavailable(resp)
            assert seconds < 4, seconds
            resp, seconds = timed(lambda: client.post(FB, json=feedback_body("during"), headers=signed(key, FB)), 15)
            assert_unavailable(resp)
            assert seconds < 4, seconds
            resp, seconds = timed(lambda: client.get("/readyz"), 15)
            assert resp.status_code == 503 and resp.get_json()["error"] == "database_unavailable"
            assert seconds < 3, seconds  # the Helm chart's readiness probe waits 3 s
        assert client.get("/healthz").status_code == 200

        proxy.thaw()
        resp, _ = timed(lambda: client.get("/readyz"), 15)
        assert resp.status_code == 200
        resp = client.post(PV, json=hook_request(), headers=signed(key, PV))
        assert resp.status_code == 200, resp.get_data(as_text=True)
        resp = client.post(FB, json=feedback_body("during"), headers=signed(key, FB))
        assert resp.status_code == 200 and resp.get_json()["stored"] == 1
    finally:
        proxy.thaw()
        runtime(app).store.engine.dispose()


def test_without_authentication_a_hung_postgresql_is_503_too(tmp_path, proxied_postgres, make_app):
    # No jti check first: the quieting read fails (every card shown), then recording them.
    proxy, url = proxied_postgres
    app = make_app(CDS_DATABASE_URL=url, CDS_DATABASE_TIMEOUT_SECONDS=str(TIMEOUT))
    client = app.test_client()
    try:
        assert client.post(PV, json=hook_request()).status_code == 200
        proxy.freeze()
        resp, seconds = timed(lambda: client.post(PV, json=hook_request()), 20)
        assert_unavailable(resp)
        assert seconds < 2 * (TIMEOUT + 1) + 1, seconds  # two waits: the quieting read, the insert
    finally:
        proxy.thaw()
        runtime(app).store.engine.dispose()


def test_the_url_keeps_its_own_options_beside_the_statement_timeout(tmp_path):
    import sqlalchemy as sa

    from cds_service.store import make_engine

    with database_url("postgresql", tmp_path) as url:
        schema = sa.engine.make_url(url).query["options"].split("=", 1)[1]
        engine = make_engine(url + "&keepalives_idle=77&connect_timeout=10", timeout=1.5)
        try:
            with engine.connect() as conn:
                assert conn.execute(sa.text("SHOW statement_timeout")).scalar() == "1500ms"
                assert conn.execute(sa.text("SHOW search_path")).scalar() == schema
                dbapi = conn.connection.dbapi_connection
                assert dbapi.info.get_parameters()["keepalives_idle"] == "77"
                assert dbapi.info.get_parameters()["tcp_user_timeout"] == "1500"
            engine.dispose()
            with db_bounds.bounded(2), engine.connect() as conn:  # /readyz's bound, beside the URL's own
                assert conn.execute(sa.text("SELECT 1")).scalar() == 1
        finally:
            engine.dispose()
