"""The Flask application factory: `create_app()` reads its settings from the
environment when called; an optional mapping overrides them (tests, CLI)."""

from __future__ import annotations

import functools
import inspect
import logging
import time
import types
from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask, Response, g, request
from flask_cors import CORS
from flask_cors.core import FLASK_CORS_EVALUATED
from werkzeug.datastructures import Headers

from cds_service import metrics
from cds_service.config import check_serving, configure_terminology, load_settings
from cds_service.fhir.allowlist import FhirServerAllowlist
from cds_service.logs import configure_logging
from cds_service.patient_key import resolve_secret
from cds_service.protocol import discovery, feedback, gc_pause, guidance, health, hooks, report_api
from cds_service.protocol.client_auth import make_authenticator
from cds_service.protocol.errors import register_error_handlers
from cds_service.protocol.json_writer import OrjsonProvider
from cds_service.protocol.runtime import Runtime
from cds_service.services import all_services
from cds_service.store import Store

request_log = logging.getLogger("cds_service.requests")

# The view feedback POSTs reach (its requests get their own metrics label).
FEEDBACK_ENDPOINT = f"{feedback.bp.name}.{feedback.post_feedback.__name__}"


def create_app(overrides: Mapping[str, Any] | None = None) -> Flask:
    settings = load_settings(overrides)
    check_serving(settings)
    configure_logging(settings.log_level)
    configure_terminology(settings)

    app = ServiceFlask(__name__)
    # A path with "//" in it is a 404 in JSON like any other unknown path, not
    # Werkzeug's HTML 308 redirect, whose Location is built from the Host header.
    app.url_map.merge_slashes = False
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json = OrjsonProvider(app)

    store = Store.from_url(settings.database_url, timeout=settings.database_timeout_seconds)
    if settings.auto_migrate:
        # Imported only here: a worker that `cds-service serve` started (it
        # migrated first) never loads Alembic, about 10 MB less per worker.
        from cds_service import migrations
        from cds_service.store import make_engine

        # On an engine of its own, without the requests' time bound: a
        # migration may take longer, or wait for another replica's.
        engine = make_engine(settings.database_url)
        try:
            migrations.upgrade(engine)
        finally:
            engine.dispose()
    # Every thread's concurrent FHIR queries keep their connections for reuse
    # (requests' default pool keeps 10 per host).
    http = LazySession(pool_maxsize=max(10, settings.threads * settings.fhir_concurrency))
    app.extensions["cds_runtime"] = Runtime(
        settings=settings,
        store=store,
        allowlist=FhirServerAllowlist(settings.allowed_fhir_servers,
                                      allow_loopback_http=settings.allow_loopback_http),
        services={s.id: s for s in all_services()},
        http=http,
        authenticate=make_authenticator(settings, store, http,
                                        on_failure=lambda reason: metrics.AUTH_FAILURES.labels(reason).inc()),
        patient_secret=resolve_secret(settings),
    )

    CORS(
        app,
        resources={r"/cds-services*": {"origins": list(settings.cors_origins)}},
        allow_headers=["Authorization", "Content-Type"],
        # A browser client (the sandbox) may read these: when to retry a 503,
        # why a 401 refused its token.
        expose_headers=["Retry-After", "WWW-Authenticate"],
        methods=["GET", "POST", "OPTIONS"],
        max_age=86400,
        # Chrome asks before a public page (the sandbox) calls a service on
        # localhost; answer yes only in the development profile.
        allow_private_network=settings.development,
    )
    # CORS' after_request (the last registered so far) replaced by the same, remembered.
    funcs = app.after_request_funcs[None]
    if funcs and funcs[-1].__name__ == "cors_after_request":
        funcs[-1] = remembered_cors(funcs[-1])

    @app.after_request
    def _vary_on_origin(response: Response) -> Response:
        # The CORS headers depend on Origin (an allowed origin gets them, another none): a
        # shared cache must key on it. flask_cors says so only with several allowed origins.
        if request.path.startswith("/cds-services") and "Origin" not in response.vary:
            response.vary.add("Origin")
        return response
    register_error_handlers(app)
    for blueprint in (discovery.bp, hooks.bp, feedback.bp, guidance.bp, health.bp, report_api.bp):
        app.register_blueprint(blueprint)

    @app.teardown_request
    def _end_gc_pause(_error):
        gc_pause.release(request)

    @app.before_request
    def _start_timer():
        g.started = time.perf_counter()

    @app.after_request
    def _log_request(response):
        # The request and g once each: every proxy read is a context lookup.
        req, state = request._get_current_object(), g._get_current_object()
        elapsed = time.perf_counter() - state.get("started", time.perf_counter())
        # Under `cds-service serve`: how long the request waited for a request
        # slot before the app saw it (gunicorn_worker.RequestGate), part of its
        # duration as its client saw it.
        queued = req.environ.get(metrics.QUEUE_SECONDS, 0.0)
        elapsed += queued
        # Label by route pattern, never by raw path: unknown paths must not
        # create new time series. A hook call is labelled with its service id
        # (set once the service is known), feedback to it with
        # "<service id>/feedback": the hook's latency and error rate are its own.
        service_id = state.get("service_id")
        if service_id is None:
            label = req.url_rule.rule if req.url_rule else "unmatched"
        elif req.url_rule.endpoint == FEEDBACK_ENDPOINT:
            label = service_id + metrics.FEEDBACK_SUFFIX
        else:
            label = service_id
        method, status = req.method, response.status_code
        metrics.child(metrics.REQUESTS, label, method, str(status)).inc()
        metrics.child(metrics.LATENCY, label, method).observe(elapsed)
        path = req.path
        if path in ("/healthz", "/readyz", "/metrics"):
            return response
        if not request_log.isEnabledFor(logging.INFO):
            return response
        # Logger.info without its walk up the stack for the caller (findCaller,
        # a sixth of the line's cost): the JSON line names no file or line.
        request_log.handle(request_log.makeRecord(
            request_log.name, logging.INFO, "(unknown file)", 0, "request", (), None,
            extra={
                "event": "request",
                "method": method,
                "path": path,
                "status": status,
                "duration_ms": round(elapsed * 1000, 2),
                "queue_ms": round(queued * 1000, 2) if queued else None,
                "service_id": state.get("service_id"),
                "hook_instance": state.get("hook_instance"),
                "card_ids": state.get("card_ids"),
                "cards_held": state.get("cards_held"),
                "resources_skipped": state.get("resources_skipped"),
                "fetch_ms": state.get("fetch_ms"),
                "prefetch_missing": state.get("prefetch_missing"),
                "prefetch_failed": state.get("prefetch_failed"),
                "feedback_outcomes": state.get("feedback_outcomes"),
                "tenant": state.get("tenant"),
            },
        ))
        return response

    return app


class ServiceFlask(Flask):
    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Flask's, with a short way for a plain function: Flask asks
        inspect.iscoroutinefunction of the view and of each before-request,
        after-request and teardown function on every request (six a hook
        call), and for a plain function the answer is its code's flag (or a
        marker set by inspect.markcoroutinefunction, left to Flask)."""
        if (type(func) is types.FunctionType and not func.__code__.co_flags & inspect.CO_COROUTINE
                and "_is_coroutine_marker" not in func.__dict__):
            return func
        return super().ensure_sync(func)


# What flask_cors reads of a request besides its path and method (EnvironHeaders' keys).
_CORS_REQUEST_HEADERS = ("HTTP_ORIGIN", "HTTP_ACCESS_CONTROL_REQUEST_METHOD", "HTTP_ACCESS_CONTROL_REQUEST_HEADERS",
                         "HTTP_ACCESS_CONTROL_REQUEST_PRIVATE_NETWORK")
_CORS_LOGGERS = (logging.getLogger("flask_cors.core"), logging.getLogger("flask_cors.extension"))


def remembered_cors(cors_after_request: Callable[[Response], Response]) -> Callable[[Response], Response]:
    """flask_cors's after_request with the headers it adds remembered for each
    kind of request (path, method and the CORS request headers: all it reads):
    it built them anew for each request, about 10 us. Preflights, responses
    that already carry CORS headers, and flask_cors logging at DEBUG (it logs
    per request) still go to flask_cors itself, so its log lines stay too."""

    @functools.lru_cache(maxsize=64)
    def added(_path: str, _method: str, *_headers: str | None) -> tuple[tuple[str, str], ...]:
        # Called within the request these values are of: flask_cors reads them there.
        blank = Response()
        before = len(blank.headers)
        cors_after_request(blank)
        return tuple(blank.headers.items())[before:]

    def after_request(response: Response) -> Response:
        req = request._get_current_object()
        # Headers' `in` raises and catches a werkzeug exception on a miss, the usual case.
        if (req.method == "OPTIONS" or type(response.headers) is not Headers
                or "access-control-allow-origin" in response.headers.keys(lower=True)
                or hasattr(response, FLASK_CORS_EVALUATED)
                or _CORS_LOGGERS[0].isEnabledFor(logging.DEBUG) or _CORS_LOGGERS[1].isEnabledFor(logging.DEBUG)):
            return cors_after_request(response)
        environ = req.environ
        for name, value in added(req.path, req.method, *[environ.get(key) for key in _CORS_REQUEST_HEADERS]):
            response.headers.add(name, value)
        return response

    after_request.__wrapped__ = cors_after_request  # type: ignore[attr-defined]
    return after_request


class LazySession:
    """The app's one requests.Session, made when something is first sent (a
    FHIR query, a key set download). Calls that bring their prefetch send
    nothing, and a worker that only answers them never imports requests and
    urllib3 (about 4 MB). Attribute reads go to the session."""

    def __init__(self, pool_maxsize: int):
        self._pool_maxsize = pool_maxsize
        self._session: Any = None

    def session(self) -> Any:
        if self._session is None:
            import requests

            from cds_service.fhir import deadline

            # Its adapter lets a FHIR query hold to the call's time budget (fhir/deadline.py).
            self._session = deadline.mount(requests.Session(), pool_maxsize=self._pool_maxsize)
        return self._session

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session(), name)

