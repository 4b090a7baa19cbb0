"""The baseline the service is compared with: a bare Flask app that reads the
same body, parses it as JSON and answers a small JSON, nothing else."""

from __future__ import annotations

import json

from flask import Flask, jsonify, request

from cds_service.config import Settings


def create_bare_app(settings: Settings) -> Flask:
    app = Flask("bare_baseline")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes

    @app.post("/cds-services/<service_id>")
    def bare(service_id: str):
        body = json.loads(request.get_data(cache=True))
        return jsonify({"cards": [], "keys": len(body)})

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok"})

    return app
