"""Run the service: gunicorn in production, Flask's own server in development.

`cds-service serve` calls `run_production`. Gunicorn is used as a library
(a `BaseApplication` subclass) so its configuration comes only from our
settings: no gunicorn.conf.py, GUNICORN_CMD_ARGS or command line is read, and
what runs in the container is exactly what the settings table documents.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
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
    templates, FHIR models), then move everything made at start-up out of the
    garbage collector's reach: it lives as long as the worker, and the full
    collections that large request bodies trigger then no longer scan it
    (p95/p99 on long charts about halved)."""
    try:
        from . import card_render
        from .fhir.validation import model_class
        from .rules import load_all

        load_all()
        for card_id in card_render.card_ids():
            for resource in (card_render.load_card(card_id).get("resources") or {}).values():
                model_class(resource["resourceType"])
    except Exception as exc:  # a broken template fails its own card later, not the worker
        logging.getLogger(__name__).warning("warm-up incomplete", extra={"error_type": type(exc).__name__})
    gc.collect()
    gc.freeze()


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
        # gthread even with one thread: idle keep-alive connections then do
        # not block a worker, which a sync worker behind a proxy would.
        "worker_class": "gthread",
        "threads": settings.threads,
        "timeout": settings.request_timeout_seconds,
        "graceful_timeout": settings.graceful_timeout_seconds,
        "keepalive": settings.keepalive_seconds,
        "preload_app": False,
        "accesslog": "-" if settings.access_log else None,
        "errorlog": "-",
        "loglevel": settings.log_level.lower(),
        "proc_name": "cds-service",
        # gunicorn >= 25.1 opens a control socket under $HOME by default; the
        # container's root filesystem is read-only and nothing uses it.
        "control_socket_disable": True,
        "on_starting": _prepare_metrics_dir,
        "child_exit": _worker_gone,
    }
    # Worker heartbeat files: tmpfs when there is one, so a slow or read-only
    # disk cannot make healthy workers look dead.
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        options["worker_tmp_dir"] = "/dev/shm"
    return options


def _prepare_metrics_dir(server: Any) -> None:
    """gunicorn on_starting hook: with several worker processes, Prometheus
    metrics live in PROMETHEUS_MULTIPROC_DIR (prometheus_client's multiprocess
    mode). Files left by a previous run would be counted again, so the master
    empties the directory before any worker starts."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        return
    if os.path.isdir(path):
        for entry in os.listdir(path):
            target = os.path.join(path, entry)
            if os.path.isdir(target):
                shutil.rmtree(target)
            else:
                os.remove(target)
    else:
        os.makedirs(path, exist_ok=True)


def _worker_gone(server: Any, worker: Any) -> None:
    """gunicorn child_exit hook: drop a dead worker's live gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


class ProductionServer(BaseApplication):
    """Gunicorn configured from Settings, loading the app in each worker."""

    def __init__(self, options: dict[str, Any], app_factory: Callable[[], WsgiApp]):
        self._options = options
        self._app_factory = app_factory
        super().__init__()

    def load_config(self) -> None:
        assert self.cfg is not None
        for key, value in self._options.items():
            # Options newer than the installed gunicorn (pyproject allows >= 22)
            # are skipped rather than failing start-up.
            if key in self.cfg.settings:
                self.cfg.set(key, value)

    def load(self) -> WsgiApp:
        return self._app_factory()


def run_production(settings: Settings, host: str | None = None, port: int | None = None,
                   app_factory: Callable[[], WsgiApp] | None = None) -> None:
    """Serve `cds_service.app:create_app()` with gunicorn until SIGTERM/SIGINT.

    `host`/`port` override the settings (the container passes --host 0.0.0.0).
    `app_factory` exists for tests; production always uses create_app."""
    ProductionServer(gunicorn_options(settings, host, port),
                     app_factory or _default_factory).run()


def run_development(app: Any, host: str, port: int) -> None:
    """Flask's development server: one process, threaded, no reloader."""
    app.run(host=host, port=port, threaded=True, use_reloader=False)
