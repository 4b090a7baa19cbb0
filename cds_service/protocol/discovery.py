"""GET /cds-services: the discovery document, built from the service definitions."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from cds_service.protocol.runtime import runtime

bp = Blueprint("discovery", __name__)


# Also with a trailing slash: integration engineers paste the discovery URL
# into the sandbox both ways. The JWT audience is the URL actually called.
@bp.get("/cds-services", strict_slashes=False)
def discovery():
    rt = runtime()
    if not rt.settings.discovery_open:
        rt.authenticate(request, request.path)
    return jsonify({"services": [s.discovery_entry() for s in rt.services.values()]})
