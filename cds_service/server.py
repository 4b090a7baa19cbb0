"""Run the service: gunicorn in production, Flask's own server in development.

The production arrangement (gevent worker, whole requests received before the
app runs, kept-alive connections recycled so they spread over the workers) is
explained in cds_service/gunicorn_worker.py and measured by
benchmarks/serving.py; SECURITY.md has the figures.

`cds-service serve` calls `run_production`. Gunicorn is used as a library
(a `BaseApplication` subclass) so its configuration comes only from our
settings: no gunicorn.conf.py, GUNICORN_CMD_ARGS or command line is read, and
what runs in the container is exactly what the settings table documents.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from typing import Any

from gunicorn.app.base import BaseApplication

from .config import Settings

WsgiApp = Callable[..., Any]


def _default_factory() -> WsgiApp:
    # Imported here, in each worker, so the master process never builds the
    # app: database engines and HTTP sessions must not be shared across fork.
    from .app import create_app

    app = create_app()
    prepare_worker()
    return app


def prepare_worker() -> None:
    """Load now what the first hook call would load lazily (rule modules, card
    templates, FHIR models, the request schemas' fast validators; not the
    jsonschema package, which only a refused request needs), then move
    everything made at start-up out of the garbage collector's reach: it
    lives as long as the worker, and the full collections that large request
    bodies trigger then no longer scan it (p95/p99 on long charts about
    halved)."""
    try:
        from . import card_render
        from .fhir.validation import model_class
        from .protocol import schemas
        from .rules import load_all

        load_all()
        for name in schemas.FAST_CHECKED:
            schemas.fast_validator(name)
        for card_id in card_render.card_ids():
            for resource in (card_render.load_card(card_id).get("resources") or {}).values():
                model_class(resource["resourceType"])
    except Exception as exc:  # a broken template fails its own card later, not the worker
        logging.getLogger(__name__).warning("warm-up incomplete", extra={"error_type": type(exc).__name__})
    _large_blocks_from_mmap()
    gc.collect()
    gc.freeze()
    # A young-generation collection every 10,000 new containers instead of
    # every 700: a call's objects (a parsed chart: about 8,000 containers per
    # 1000 resources) are mostly freed by reference counting before any
    # collection sees them, and the chart itself, which has no cycles, is
    # traversed less often. About 10 % less CPU for parse plus build_record
    # at 100, 1000 and 10,000 resources; cyclic garbage waits a little longer.
    gc.set_threshold(10_000, 10, 10)


def _large_blocks_from_mmap() -> None:
    """Keep glibc from moving multi-megabyte blocks into the heap. By default,
    once a block of several megabytes (a request body, its JSON written out)
    is freed, glibc raises its mmap threshold to that size and serves the
    next ones from the heap, whose freed holes a worker then keeps: a fixed
    threshold gives every such block back on free (peak RSS under wrk -c4
    with 10,000-resource bodies about 25 MB lower).

    The threshold is 1 MiB, not glibc's 128 KiB: a block mapped anew costs a
    page fault per 4 KiB on first touch, and a 1000-resource body (840 kB)
    cost about 400 faults and 1 ms of system time per call at 128 KiB, none
    at 1 MiB. The trim threshold keeps 4 MiB free at the heap's top for the
    next call instead of handing it back each time. Both measured in
    benchmarks/RESULTS.md (issue 15, sixth round). No-op without glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    except (OSError, AttributeError):
        pass


_MMAP_THRESHOLD = 1024 * 1024
_TRIM_THRESHOLD = 4 * 1024 * 1024
_M_TRIM_THRESHOLD = -1  # <malloc.h>
_M_MMAP_THRESHOLD = -3  # <malloc.h>


# gunicorn access log atoms: client address, time, method, path (PATH_INFO: no
# query string), protocol, status, bytes sent, seconds taken, user agent.
ACCESS_LOG_FORMAT = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(L)s "%(a)s"'


def gunicorn_options(settings: Settings, host: str | None = None,
                     port: int | None = None) -> dict[str, Any]:
    """The gunicorn settings derived from ours (public so tests can check them)."""
    bind_host = host or settings.host
    bind_port = settings.port if port is None else port
    # IPv6 literals need brackets in a bind address.
    if ":" in bind_host and not bind_host.startswith("["):
        bind_host = f"[{bind_host}]"
    options: dict[str, Any] = {
        "bind": [f"{bind_host}:{bind_port}"],
        "workers": settings.workers,
        "worker_class": "cds_service.gunicorn_worker.CdsWorker",
        "worker_connections": settings.worker_connections,
        "timeout": settings.request_timeout_seconds,
        "graceful_timeout": settings.graceful_timeout_seconds,
        "keepalive": settings.keepalive_seconds,
        "preload_app": False,
        "accesslog": "-" if settings.access_log else None,
        # The path only: gunicorn's default line has the raw request URI (its
        # query string, e.g. ?patient=123) and the Referer (the EHR page that
        # made the call, which may name the patient), and the basic-auth user.
        "access_log_format": ACCESS_LOG_FORMAT,
        "errorlog": "-",
        "loglevel": settings.log_level.lower(),
        # gunicorn's own lines (start, worker boot, errors) as JSON too.
        "logger_class": "cds_service.gunicorn_worker.JsonLogger",
        "post_worker_init": _announce(bind_host, bind_port, settings.profile),
        "proc_name": "cds-service",
        # gunicorn >= 25.1 opens a control socket under $HOME by default; the
        # container's root filesystem is read-only and nothing uses it.
        "control_socket_disable": True,
        "on_starting": _prepare_metrics_dir,
        "child_exit": _worker_gone,
        "pre_request": _recycle_connection(settings.max_requests_per_connection),
    }
    # Worker heartbeat files: tmpfs when there is one, so a slow or read-only
    # disk cannot make healthy workers look dead.
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        options["worker_tmp_dir"] = "/dev/shm"
    return options


def _announce(host: str, port: int, profile: str) -> Callable[[Any], None]:
    """gunicorn post_worker_init hook: once the first worker has loaded the
    app, say where discovery is (only after a successful start)."""

    def post_worker_init(worker: Any) -> None:
        if worker.age == 1:
            logging.getLogger("cds_service.server").info(
                f"CDS discovery: http://{host}:{port}/cds-services (profile: {profile})",
                extra={"event": "ready"})

    return post_worker_init


def _recycle_connection(limit: int) -> Callable[[Any, Any], None]:
    """gunicorn pre_request hook: the limit-th request on a kept-alive
    connection is answered with "Connection: close". A connection stays with
    the worker that accepted it, so a client holding a small keep-alive pool
    could otherwise keep one worker busy while the other idles (issue 15); the
    client reconnects, and a busy gevent worker cannot accept while it
    computes, so the new connection goes to the idler one. A long chart (a
    body over LARGE_BODY_BYTES) closes its connection at once: a few such
    calls take seconds, long before the limit is reached, and reconnecting
    costs nothing beside them."""
    from .gunicorn_worker import LARGE_BODY_BYTES

    def pre_request(worker: Any, req: Any) -> None:
        if limit and req.req_number >= limit:
            req.must_close = True
        elif any(name == "CONTENT-LENGTH" and value.isdigit() and int(value) > LARGE_BODY_BYTES
                 for name, value in req.headers):
            req.must_close = True

    return pre_request


def _prepare_metrics_dir(server: Any) -> None:
    """gunicorn on_starting hook: with several worker processes, Prometheus
    metrics live in PROMETHEUS_MULTIPROC_DIR (prometheus_client's multiprocess
    mode), so /metrics sums every worker instead of showing whichever worker
    answered the scrape. Without the variable the server makes a private
    folder under the temporary directory ($TMPDIR, /tmp) and removes it on
    exit. Files left by a previous run would be counted again, so the master
    removes them before any worker starts: prometheus_client's own files
    only (cds_service/metrics_dir.py), never anything else in the folder,
    which `cds-service serve` has checked and warned about."""
    from . import metrics_dir

    path = os.environ.get(metrics_dir.ENV)
    if not path:
        path = tempfile.mkdtemp(prefix="cds-service-metrics-")
        os.environ[metrics_dir.ENV] = path  # inherited by the workers
        server.cfg.set("on_exit", lambda _server: shutil.rmtree(path, ignore_errors=True))
        return
    if os.path.isdir(path):
        metrics_dir.clear(path)
    else:
        os.makedirs(path, exist_ok=True)


def _worker_gone(server: Any, worker: Any) -> None:
    """gunicorn child_exit hook: drop a dead worker's live gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


class ProductionServer(BaseApplication):
    """Gunicorn configured from Settings, loading the app in each worker."""

    def __init__(self, options: dict[str, Any], app_factory: Callable[[], WsgiApp], settings: Settings):
        self._options = options
        self._app_factory = app_factory
        self._settings = settings
        super().__init__()

    def load_config(self) -> None:
        assert self.cfg is not None
        for key, value in self._options.items():
            # Options newer than the installed gunicorn (pyproject allows >= 22)
            # are skipped rather than failing start-up.
            if key in self.cfg.settings:
                self.cfg.set(key, value)

    def load(self) -> WsgiApp:
        from .gunicorn_worker import RequestGate

        return RequestGate(self._app_factory(), concurrency=self._settings.threads,
                           body_timeout=self._settings.body_timeout_seconds,
                           max_body_bytes=self._settings.max_body_bytes)


def run_production(settings: Settings, host: str | None = None, port: int | None = None,
                   app_factory: Callable[[], WsgiApp] | None = None) -> None:
    """Serve `cds_service.app:create_app()` with gunicorn until SIGTERM/SIGINT.

    `host`/`port` override the settings (the container passes --host 0.0.0.0).
    `app_factory` exists for tests; production always uses create_app."""
    ProductionServer(gunicorn_options(settings, host, port),
                     app_factory or _default_factory, settings).run()


def exec_production(host: str, port: int) -> None:
    """Replace this process with `python -m cds_service.server` (same pid, so
    signals from a container runtime still reach gunicorn's master). Called by
    `cds-service serve` after it has checked the settings and migrated; the
    workers then start without migrating again."""
    os.environ["CDS_AUTO_MIGRATE"] = "false"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "cds_service.server", "--host", host, "--port", str(port)])


def main(argv: list[str] | None = None) -> None:
    """`python -m cds_service.server --host H --port P`: what `cds-service serve` execs."""
    from .config import load_settings

    parser = argparse.ArgumentParser(prog="python -m cds_service.server")
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    run_production(load_settings(), host=args.host, port=args.port)


def run_development(app: Any, host: str, port: int) -> None:
    """Flask's development server: one process, threaded, no reloader; its
    request lines have the path without the query string (as gunicorn's,
    ACCESS_LOG_FORMAT)."""
    app.run(host=host, port=port, threaded=True, use_reloader=False, request_handler=_path_only_handler())


def _path_only_handler() -> Any:
    from werkzeug.serving import WSGIRequestHandler

    class PathOnlyRequestHandler(WSGIRequestHandler):
        """werkzeug's request line quotes the request target, query string
        included (?patient=...): logged with the path only. It is written once
        the app has answered, so the app saw the whole target."""

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            target = getattr(self, "path", None)
            if isinstance(target, str):
                self.path = target.split("?", 1)[0].split("#", 1)[0]
            try:
                super().log_request(code, size)
            finally:
                if target is not None:
                    self.path = target

    return PathOnlyRequestHandler


if __name__ == "__main__":
    main()
