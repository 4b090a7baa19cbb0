"""Browser clients (CORS preflight) and the Kubernetes probes."""

from __future__ import annotations

import pytest

from cds_service.protocol.runtime import runtime
from cds_service.store import Store

ORIGIN = "https://sandbox.cds-hooks.org"


@pytest.mark.parametrize("path,requested", [
    ("/cds-services", "authorization"),
    ("/cds-services/osteoporosis-patient-view", "authorization,content-type"),
    ("/cds-services/osteoporosis-order-sign/feedback", "authorization,content-type"),
])
def test_preflight_is_answered(client, path, requested):
    resp = client.options(path, headers={
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "POST" if path != "/cds-services" else "GET",
        "Access-Control-Request-Headers": requested,
    })
    assert resp.status_code in (200, 204)
    assert resp.headers["Access-Control-Allow-Origin"] in ("*", ORIGIN)
    allowed = resp.headers["Access-Control-Allow-Headers"].lower()
    for header in requested.split(","):
        assert header in allowed
    assert "POST" in resp.headers["Access-Control-Allow-Methods"]


def test_actual_responses_carry_cors_headers(client):
    resp = client.get("/cds-services", headers={"Origin": ORIGIN})
    assert resp.headers["Access-Control-Allow-Origin"] in ("*", ORIGIN)
    err = client.post("/cds-services/nope", json={}, headers={"Origin": ORIGIN})
    assert err.status_code == 404
    assert err.headers["Access-Control-Allow-Origin"] in ("*", ORIGIN)


def test_cors_origins_can_be_restricted(make_app):
    client = make_app(CDS_CORS_ORIGINS="https://ehr.example.org").test_client()
    resp = client.get("/cds-services", headers={"Origin": "https://elsewhere.example.com"})
    assert "Access-Control-Allow-Origin" not in resp.headers
    resp = client.get("/cds-services", headers={"Origin": "https://ehr.example.org"})
    assert resp.headers["Access-Control-Allow-Origin"] == "https://ehr.example.org"


def test_healthz(client):
    resp = client.get("/healthz")
    assert resp.status_code == 200 and resp.get_json() == {"status": "ok"}


def test_readyz_reports_the_database(app, tmp_path):
    client = app.test_client()
    assert client.get("/readyz").get_json() == {"status": "ready"}
    runtime(app).store = Store.from_url(f"sqlite:///{tmp_path}/missing-dir/x/cds.db")
    resp = client.get("/readyz")
    assert resp.status_code == 503
    assert resp.get_json()["error"] == "database_unavailable"


def test_private_network_preflight_allowed_only_in_development(make_app):
    headers = {"Origin": ORIGIN, "Access-Control-Request-Method": "GET",
               "Access-Control-Request-Private-Network": "true"}
    dev = make_app(CDS_PROFILE="development").test_client().options("/cds-services", headers=headers)
    assert dev.headers.get("Access-Control-Allow-Private-Network") == "true"
    prod = make_app().test_client().options("/cds-services", headers=headers)
    assert prod.headers.get("Access-Control-Allow-Private-Network") != "true"
