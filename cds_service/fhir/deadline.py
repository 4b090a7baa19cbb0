"""A hard deadline for a FHIR request, however slowly the server answers.

requests' read timeout applies to each socket read: a server that sends its
headers or body a byte at a time, each within the timeout, holds the call as
long as it likes. The adapter here lets a FhirClient put a deadline on the
request its thread is making (`watching`); from the moment the request is
sent until the connection goes back to the pool (or the client lets go), a
timer shuts the socket down when the deadline passes, and the blocked read
ends at once with a connection error that the client reports as a timeout.

Imported only when something is first sent (see cds_service.app.LazySession):
it needs requests and urllib3. Requests made without `watching` (the JWT key
set downloads) behave as with a plain HTTPAdapter.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_current = threading.local()  # .watch: the Watch of the request this thread is making


class Watch:
    """Shuts one request's socket down at `deadline` (time.monotonic), unless released first."""

    def __init__(self, deadline: float):
        self.deadline = deadline
        self.fired = False
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._released = False

    def arm(self, sock: Any) -> None:
        with self._lock:
            if self._released or self._timer is not None or sock is None:
                return
            self._timer = threading.Timer(max(self.deadline - time.monotonic(), 0.0), self._cut, (sock,))
            self._timer.daemon = True
            self._timer.start()

    def _cut(self, sock: Any) -> None:
        # Under the lock: once release() has returned, the socket (maybe back
        # in the pool, serving another request) is never touched.
        with self._lock:
            if self._released:
                return
            self.fired = True
            with contextlib.suppress(OSError):
                # socket.socket's own shutdown, also for a TLS socket: it acts on
                # the descriptor, so a read blocked in another thread returns.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def release(self) -> None:
        with self._lock:
            self._released = True
            if self._timer is not None:
                self._timer.cancel()


@contextlib.contextmanager
def watching(deadline: float) -> Iterator[Watch]:
    """Requests this thread makes inside the block end by `deadline`
    (when made through a DeadlineAdapter)."""
    watch = Watch(deadline)
    _current.watch = watch
    try:
        yield watch
    finally:
        _current.watch = None
        watch.release()


class _Watched:
    """Arms the thread's Watch (if any) on the socket once the request is sent."""

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        watch = getattr(_current, "watch", None)
        if watch is not None:
            watch.arm(self.sock)  # type: ignore[attr-defined]
            self.deadline_watch = watch
        return super().getresponse(*args, **kwargs)  # type: ignore[misc]


class _Connection(_Watched, HTTPConnection):
    pass


class _TlsConnection(_Watched, HTTPSConnection):
    pass


class _Released:
    """Releases a connection's Watch before the connection goes back to the pool."""

    def _put_conn(self, conn: Any) -> None:
        watch = getattr(conn, "deadline_watch", None)
        if watch is not None:
            watch.release()
            conn.deadline_watch = None
        super()._put_conn(conn)  # type: ignore[misc]


class _Pool(_Released, HTTPConnectionPool):
    ConnectionCls = _Connection


class _TlsPool(_Released, HTTPSConnectionPool):
    ConnectionCls = _TlsConnection


class DeadlineAdapter(HTTPAdapter):
    """An HTTPAdapter whose connections honour `watching` (proxied requests excepted)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _TlsPool}


def mount(session: Any, pool_maxsize: int = 10) -> Any:
    adapter = DeadlineAdapter(pool_maxsize=pool_maxsize)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
