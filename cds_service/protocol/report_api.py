"""GET /admin/report: the outcome report as JSON, for a CDS team's dashboard.

Authenticated with a static bearer token (CDS_REPORT_TOKEN), separate from
the EHR's client JWTs: the report is for the operator, not for CDS clients.
No token configured means the endpoint is off (404).
"""

from __future__ import annotations

import datetime as dt
import hmac

from flask import Blueprint, jsonify, request

from cds_service.protocol.errors import ApiError
from cds_service.protocol.runtime import runtime
from cds_service.report import outcome_report

bp = Blueprint("report", __name__)


def parse_since(raw: str | None) -> dt.datetime | None:
    if raw is None:
        return None
    try:
        since = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise ApiError(400, "since must be an ISO 8601 date or date-time, e.g. 2026-01-01",
                       code="invalid_parameter", details=["since"]) from None
    return since if since.tzinfo else since.replace(tzinfo=dt.timezone.utc)


@bp.get("/admin/report")
def report():
    rt = runtime()
    token = rt.settings.report_token
    if not token:
        raise ApiError(404, "the report endpoint is off (set CDS_REPORT_TOKEN to enable it)", code="not_found")
    header = request.headers.get("Authorization", "")
    given = header[7:] if header.lower().startswith("bearer ") else ""
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise ApiError(401, "a valid report token is required", code="unauthorized",
                       headers={"WWW-Authenticate": 'Bearer realm="cds-report"'})
    return jsonify(outcome_report(rt.store, since=parse_since(request.args.get("since"))))
