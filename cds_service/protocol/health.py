"""Liveness and readiness for Kubernetes probes.

/readyz reads the schema revision (one statement, which also shows the
database answers): not ready while the database is unreachable, has no
schema, or an older one than this release's (`cds-service migrate` has not
run yet: with CDS_AUTO_MIGRATE=false another step migrates, and the pod
waits for it rather than failing every call). A schema newer than this
release knows stays ready, with a warning: during a rolling upgrade the
new release migrates while this one still serves (README, Migrations: a
migration keeps the previous release working); `cds-service migrate` and
`serve` refuse such a database, so a rolled-back pod does not start on it.

These three paths skip the request slots (cds_service.gunicorn_worker), so
/readyz's check runs once at a time per worker: requests arriving while it
runs take its answer, and a flood of them costs the database nothing more.
"""

from __future__ import annotations

import logging
import threading
import time

from flask import Blueprint, Response, current_app, jsonify

from cds_service import db_bounds, metrics
from cds_service.db_schema import SchemaState
from cds_service.protocol.errors import ApiError
from cds_service.protocol.runtime import runtime

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/metrics")
def prometheus_metrics():
    body, content_type = metrics.exposition()
    return Response(body, content_type=content_type)


# Below the readiness probe's timeoutSeconds (3 in the Helm chart): a hung
# database is "not ready" before the probe itself gives up.
READY_WAIT_SECONDS = 2.0


class SharedCheck:
    """One database check at a time; a request that arrived while a check
    was running takes that check's answer instead of starting another."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done_at = float("-inf")
        self._answer: SchemaState | None = None
        self.warned: set[str] = set()

    def __call__(self) -> SchemaState | None:
        arrived = time.monotonic()
        if not self._lock.acquire(timeout=READY_WAIT_SECONDS):
            return None  # the running check is stuck on the database
        try:
            if self._done_at >= arrived:
                return self._answer
            with db_bounds.bounded(READY_WAIT_SECONDS):
                self._answer = runtime().store.schema_state()
            self._done_at = time.monotonic()
            return self._answer
        finally:
            self._lock.release()


def shared_check() -> SharedCheck:
    return current_app.extensions.setdefault("cds_ready_check", SharedCheck())


@bp.get("/readyz")
def readyz():
    check = shared_check()
    state = check()
    if state is None:
        raise ApiError(503, "the database is not reachable", code="database_unavailable")
    status = state.status
    if status in ("missing", "outdated"):
        log.warning("not ready: database schema", extra=state.log_fields())
        raise ApiError(503, state.describe(), code=f"schema_{status}")
    if status == "newer":
        if state.revision not in check.warned:  # once per revision and worker: it is logged, not news
            check.warned.add(state.revision)
            log.warning("database schema newer than this release", extra=state.log_fields())
        return jsonify({"status": "ready", "warning": state.describe()})
    return jsonify({"status": "ready"})
