"""GET /cds-services: the discovery document, built from the service definitions."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from cds_service.protocol.runtime import runtime

bp = Blueprint("discovery", __name__)


@bp.get("/cds-services")
def discovery():
    rt = runtime()
    if not rt.settings.discovery_open:
        rt.authenticate(request, "/cds-services")
    return jsonify({"services": [s.discovery_entry() for s in rt.services.values()]})
