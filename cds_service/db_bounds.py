"""Bounds on every wait for the database (CDS_DATABASE_TIMEOUT_SECONDS), so
that a database that hangs (accepts connections, never answers) gives the
service's 503 with Retry-After within seconds instead of holding requests
until the client gives up.

The bounds, for a PostgreSQL URL (cds_service.store.make_engine):
- connecting: libpq's `connect_timeout` (at least 2 s: libpq's minimum);
- taking a connection from the pool: the pool's `pool_timeout`;
- each statement, on the server: `statement_timeout`, so the server gives
  up on (and releases the locks of) work no one waits for any longer;
- each statement, in the client: a reply that has not come a second after
  the server's own limit is not waited for (psycopg's wait timeout); the
  connection, whose state is then unknown, is closed, and the error is
  DatabaseTimeout, which the store does not retry (the database is hung, not
  restarted: a second try would only wait as long again);
- a connection idle in the pool: TCP keepalives and `tcp_user_timeout`
  notice a peer that vanished from the network.
Settings given in the URL's own query (e.g. `?keepalives_idle=60`) win; a
URL's `options` keep theirs, the statement timeout is added to them (a
`-c statement_timeout=` of the URL's own, coming first, is overridden).

A SQLite file: its busy timeout (the wait for another process's lock) and
the pool's checkout wait take the same bound.

`bounded(seconds)` lowers the client bound for the work inside it (/readyz
answers within the probe's own time, cds_service.protocol.health).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator
from typing import Any

# Seconds a reply may be late beyond the server's statement_timeout before
# the client stops waiting: the server's cancel (a clean error, connection
# kept) normally arrives first.
CLIENT_MARGIN_SECONDS = 1.0
# libpq refuses a connect_timeout below 2 s (it raises it to 2).
MIN_CONNECT_TIMEOUT = 2

_override: contextvars.ContextVar[float | None] = contextvars.ContextVar("cds_db_bound", default=None)


@contextlib.contextmanager
def bounded(seconds: float) -> Iterator[None]:
    """Wait at most `seconds` for each reply and for connecting (when lower
    than the engine's own bound) within this block."""
    token = _override.set(seconds)
    try:
        yield
    finally:
        _override.reset(token)


def _limit(own: float) -> float:
    override = _override.get()
    return own if override is None else min(own, override)


def connect_timeout(seconds: float) -> int:
    return max(MIN_CONNECT_TIMEOUT, math.ceil(seconds))


def postgresql_connect_args(url_query: dict[str, Any], timeout: float) -> dict[str, Any]:
    """libpq parameters bounding the waits, for those the URL does not set."""
    wanted: dict[str, Any] = {
        "connect_timeout": connect_timeout(timeout),
        "keepalives": 1,
        "keepalives_idle": max(1, math.ceil(timeout)),
        "keepalives_interval": max(1, math.ceil(timeout / 3)),
        "keepalives_count": 3,
        "tcp_user_timeout": math.ceil(timeout * 1000),  # ms: sent data unacknowledged for this long
    }
    args = {name: url_query.get(name, value) for name, value in wanted.items()}
    statement_timeout = f"-c statement_timeout={math.ceil(timeout * 1000)}"
    options = url_query.get("options")
    if isinstance(options, (tuple, list)):
        options = " ".join(options)
    args["options"] = f"{options} {statement_timeout}" if options else statement_timeout
    return args


class DatabaseTimeout(Exception):
    """Marker base: a database wait ran out of its bound (see module doc)."""


def engine_options(url: Any, timeout: float) -> dict[str, Any]:
    """create_engine keywords bounding the waits of an engine for `url` (a
    sqlalchemy URL); make_engine merges its own connect_args into them."""
    options: dict[str, Any] = {}
    if url.get_backend_name() == "postgresql":
        options["connect_args"] = postgresql_connect_args(dict(url.query), timeout)
    elif url.get_backend_name() == "sqlite":
        options["connect_args"] = {"timeout": timeout}  # the busy wait for another process's lock
    if url.database not in (None, "", ":memory:"):  # an in-memory SQLite has no queue to wait in
        options["pool_timeout"] = timeout
    return options


def install(engine: Any, timeout: float) -> None:
    """On PostgreSQL, connect with BoundedConnection (its waits bounded)."""
    if engine.dialect.name != "postgresql" or engine.dialect.driver != "psycopg":
        return
    from sqlalchemy import event

    connection_class = psycopg_connection_class(timeout)

    @event.listens_for(engine, "do_connect")
    def _connect(_dialect: Any, _record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        params = dict(cparams)  # the engine's own: never changed in place
        override = _override.get()
        if override is not None:
            # The URL's own value, if it wins, is a string.
            params["connect_timeout"] = min(int(params.get("connect_timeout", 10**6)), connect_timeout(override))
        return connection_class.connect(*cargs, **params)


def psycopg_connection_class(timeout: float) -> type:
    """A psycopg Connection whose every wait for the server is bounded: by
    `timeout` plus CLIENT_MARGIN_SECONDS, or less within bounded()."""
    import psycopg
    import psycopg.errors

    wait_timeout = getattr(psycopg.errors, "_WaitTimeout", None)
    if wait_timeout is None:
        raise RuntimeError("CDS_DATABASE_TIMEOUT_SECONDS needs psycopg 3.3 or newer (a wait timeout)")
    own = timeout + CLIENT_MARGIN_SECONDS

    class PsycopgTimeout(DatabaseTimeout, psycopg.OperationalError):
        pass

    class BoundedConnection(psycopg.Connection):  # type: ignore[misc]
        def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
            limit = _limit(own) if timeout is None else timeout
            try:
                return super().wait(gen, interval=interval, timeout=limit)
            except wait_timeout:
                # A statement was sent and its reply has not come: the
                # connection's state is unknown, never to be reused.
                self.pgconn.finish()
                raise PsycopgTimeout(f"the database did not answer within {limit:g} s") from None

    return BoundedConnection
