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


@pytest.mark.parametrize("origin", ["https://ehr.example.org", "https://elsewhere.example.com", None])
def test_cors_answers_vary_on_origin_for_a_shared_cache(make_app, origin):
    """One allowed origin gets the CORS headers, another none: a cache must key on Origin
    (adversarial review 13: flask_cors sends Vary only with several origins)."""
    client = make_app(CDS_CORS_ORIGINS="https://ehr.example.org").test_client()
    for resp in (client.get("/cds-services", headers={"Origin": origin} if origin else {}),
                 client.post("/cds-services/osteoporosis-patient-view", data="{", content_type="application/json",
                             headers={"Origin": origin} if origin else {})):
        assert "Origin" in resp.headers.get("Vary", "")
    assert "Vary" not in client.get("/healthz").headers


def test_a_listed_origin_matches_the_browsers_origin(make_app):
    # The entry as a browser sends Origin: preflight and actual call are allowed,
    # another origin is not (entries that could never match are refused at start,
    # tests/test_settings.py).
    client = make_app(CDS_CORS_ORIGINS="https://ehr.example.org,http://localhost:3000").test_client()
    for origin in ("https://ehr.example.org", "http://localhost:3000"):
        pre = client.options("/cds-services/osteoporosis-patient-view",
                             headers={"Origin": origin, "Access-Control-Request-Method": "POST"})
        assert pre.headers["Access-Control-Allow-Origin"] == origin
    assert "Access-Control-Allow-Origin" not in client.get("/cds-services", headers={"Origin": "https://evil.example"}).headers


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


@pytest.mark.parametrize("overrides", [{}, {"CDS_CORS_ORIGINS": "https://ehr.example.org,https://other.example.org"},
                                       {"CDS_CORS_ORIGINS": "https://ehr.example.org", "CDS_PROFILE": "development"}])
def test_remembered_cors_headers_are_flask_cors_own(make_app, overrides):
    """The app's CORS after_request remembers what flask_cors adds per kind of
    request: every response carries the headers flask_cors itself gives."""
    app = make_app(**overrides)
    funcs = app.after_request_funcs[None]
    assert hasattr(funcs[0], "__wrapped__")  # remembered_cors is in place
    plain = make_app(**overrides)
    plain.after_request_funcs[None][0] = plain.after_request_funcs[None][0].__wrapped__
    origins = [None, ORIGIN, "https://ehr.example.org", "https://EHR.example.org", "https://other.example.org",
               "https://evil.example.com"]
    extras = [{}, {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type,x-other"},
              {"Access-Control-Request-Method": "DELETE"}, {"Access-Control-Request-Private-Network": "true"}]
    calls = [("get", "/cds-services"), ("post", "/cds-services/nope"), ("options", "/cds-services/osteoporosis-patient-view"),
             ("post", "/cds-services/osteoporosis-order-sign/feedback"), ("get", "/healthz"), ("get", "/guidance"),
             ("get", "/cds-services%2Fx")]
    remembered, flask_cors = app.test_client(), plain.test_client()
    for _ in range(2):  # the second round is answered from what was remembered
        for method, path in calls:
            for origin in origins:
                for extra in extras:
                    headers = {**({"Origin": origin} if origin else {}), **extra}
                    a = getattr(remembered, method)(path, headers=headers)
                    b = getattr(flask_cors, method)(path, headers=headers)
                    assert a.status_code == b.status_code
                    assert a.headers.to_wsgi_list() == b.headers.to_wsgi_list(), (method, path, headers)
