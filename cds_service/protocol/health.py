"""Liveness and readiness for Kubernetes probes."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from cds_service import db_bounds, metrics

from cds_service.protocol.errors import ApiError
from cds_service.protocol.runtime import runtime

bp = Blueprint("health", __name__)


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


@bp.get("/readyz")
def readyz():
    with db_bounds.bounded(READY_WAIT_SECONDS):
        ready = runtime().store.ping()
    if not ready:
        raise ApiError(503, "the database is not reachable", code="database_unavailable")
    return jsonify({"status": "ready"})
