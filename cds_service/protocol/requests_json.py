"""Reading a JSON request body the strict way: right media type, valid JSON, an object."""

from __future__ import annotations

import gc
import json
from typing import Any

from flask import Request

from cds_service.protocol.errors import ApiError


def read_json_object(request: Request) -> dict[str, Any]:
    mimetype = (request.mimetype or "").lower()
    if mimetype != "application/json" and not (mimetype.startswith("application/") and mimetype.endswith("+json")):
        raise ApiError(415, "the body must be JSON, sent with Content-Type: application/json",
                       details={"contentType": request.content_type or "(none)"})
    raw = request.get_data(cache=True)  # over MAX_CONTENT_LENGTH this raises 413
    if not raw.strip():
        raise ApiError(400, "the request body is empty; a JSON object is expected", code="invalid_json")
    try:
        body = _loads_without_gc(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        where = f" (line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise ApiError(400, f"the request body is not valid JSON{where}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object", code="invalid_json")
    return body


def _loads_without_gc(raw: bytes) -> Any:
    """json.loads with the cyclic garbage collector paused. Parsing a long
    chart makes hundreds of thousands of containers, each growth of which
    triggers collections that rescan the whole partial result (a 10000-resource
    body parsed about twice as slowly); parsed JSON holds no reference cycles,
    so there is nothing for them to find. The collector is global: another
    thread may turn it back on early (only slower, never wrong), and it is
    left off if it was off before."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return json.loads(raw)
    finally:
        if was_enabled:
            gc.enable()
