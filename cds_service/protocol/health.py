"""Liveness and readiness for Kubernetes probes."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from cds_service import metrics

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


@bp.get("/readyz")
def readyz():
    if not runtime().store.ping():
        raise ApiError(503, "the database is not reachable", code="database_unavailable")
    return jsonify({"status": "ready"})
