"""Every error leaves the service as JSON: {"error": code, "message": text}.

Flask's own HTML error pages (404, 405, 413, 500) are replaced, and an
unexpected exception is logged by type and location only: exception messages
can carry request data, and no patient data may reach the logs.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

import sqlalchemy as sa
from flask import Flask, current_app, jsonify
from werkzeug.exceptions import HTTPException

from cds_service import db_bounds
from cds_service.db_schema import is_schema_error
from cds_service.store import UNAVAILABLE

log = logging.getLogger(__name__)

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    412: "precondition_failed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}


RETRY_AFTER_SECONDS = "5"


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, code: str | None = None,
                 details: Any = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code or _CODES.get(status, "error")
        self.message = message
        self.details = details
        self.headers = headers or {}


def error_response(status: int, code: str, message: str, details: Any = None, headers=None):
    body: dict[str, Any] = {"error": code, "message": message}
    if details:
        body["details"] = details
    response = jsonify(body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        status = exc.code or 500
        message = {
            404: "no such endpoint or CDS service",
            405: "method not allowed on this endpoint",
        }.get(status, exc.description or exc.name)
        if status == 413:  # operator review 16: name the limit
            from cds_service.protocol.requests_json import body_too_large_message

            message = body_too_large_message(current_app.config.get("MAX_CONTENT_LENGTH"))
        response = error_response(status, _CODES.get(status, "error"), message)
        if status == 405 and exc.get_response().headers.get("Allow"):
            response.headers["Allow"] = exc.get_response().headers["Allow"]
        return response

    def _schema_not_current(exc: Exception):
        # A table or column missing: the schema is not this release's (no
        # `cds-service migrate` yet with CDS_AUTO_MIGRATE=false, or a newer
        # release's). Said as such, not as a 500: the state is read again
        # (the error path only) to name it.
        from cds_service.protocol.health import READY_WAIT_SECONDS
        from cds_service.protocol.runtime import runtime

        with db_bounds.bounded(READY_WAIT_SECONDS):
            state = runtime().store.schema_state()
        if state is None:
            return _store_unavailable(exc)
        if state.status == "current":  # the schema is this release's: a real bug
            return _unexpected(exc)
        log.error("database schema not current", extra={"error_type": type(exc).__name__, **state.log_fields()})
        return error_response(503, f"schema_{state.status}",
                              "the service's database schema is not ready for this release; please try again later",
                              headers={"Retry-After": RETRY_AFTER_SECONDS})

    def _database_error(exc: Exception):
        if is_schema_error(exc):
            return _schema_not_current(exc)
        if isinstance(exc, UNAVAILABLE):
            return _store_unavailable(exc)
        return _unexpected(exc)

    def _store_unavailable(exc: Exception):
        # Database stopped, restarting or unreachable: every endpoint that
        # needs it (the JWT replay check, recording cards, feedback, the
        # report) answers 503 and says when to try again. Authentication
        # fails closed: no token is accepted while its jti cannot be checked.
        log.error("database unavailable", extra={"error_type": type(exc).__name__})
        return error_response(503, "store_unavailable", "the service's database is unavailable; please try again",
                              headers={"Retry-After": RETRY_AFTER_SECONDS})

    for kind in (*UNAVAILABLE, sa.exc.DBAPIError):
        app.register_error_handler(kind, _database_error)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        frames = traceback.extract_tb(exc.__traceback__)
        where = [f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}:{f.name}" for f in frames[-6:]]
        log.error("unhandled error", extra={"error_type": type(exc).__name__, "where": where})
        return error_response(500, "internal_error", "the service failed to handle this request")
