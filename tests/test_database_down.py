"""The database goes away and comes back: every call that needs it answers 503
with Retry-After (never 500, never a token accepted unchecked), and the
service recovers by itself once the database is back.

PostgreSQL: a private server of the test's own, stopped and started mid-test
(db_for_tests.PrivatePostgres). SQLite: the database's folder disappears."""

from __future__ import annotations

import pytest

from cds_service.app import create_app
from cds_service.protocol.runtime import runtime
from db_for_tests import PrivatePostgres
from jwt_for_tests import BASE, auth, client_key, token, trust_file
from requests_for_tests import hook_request

PV = "/cds-services/osteoporosis-patient-view"
FB = PV + "/feedback"


@pytest.fixture(scope="module")
def key():
    return client_key()


def secured_app(tmp_path, key, database_url, **extra):
    settings = {"CDS_DATABASE_URL": database_url, "CDS_AUTH_REQUIRED": "true",
                "CDS_TRUSTED_ISSUERS": trust_file(tmp_path / "issuers.json", key), "CDS_PUBLIC_BASE_URL": BASE,
                "CDS_ALLOWED_FHIR_SERVERS": "https://fhir.example.org/r4",
                "CDS_PATIENT_HASH_SECRET": "test-patient-hash-secret-0123456789abcdef"}
    settings.update(extra)
    app = create_app(settings)
    app.testing = True
    return app


def signed(key, path):
    return auth(token(key, path))


def feedback_body(card_uuid):
    return {"feedback": [{"card": card_uuid, "outcome": "overridden", "outcomeTimestamp": "2026-01-01T00:00:00Z"}]}


def assert_unavailable(resp):
    assert resp.status_code == 503, resp.get_data(as_text=True)
    assert resp.headers["Retry-After"] == "5"
    assert resp.get_json()["error"] == "store_unavailable"


def exercise_outage(client, key, stop, start):
    """Up, down, up again: the same checks on any database."""
    assert client.post(PV, json=hook_request(), headers=signed(key, PV)).status_code == 200
    assert client.post(FB, json=feedback_body("before"), headers=signed(key, FB)).status_code == 200

    stop()
    # The jti replay check cannot be made: the token is not accepted (fails closed), and
    # the answer says to come back, rather than 500 or 401.
    assert_unavailable(client.post(PV, json=hook_request(), headers=signed(key, PV)))
    assert_unavailable(client.post(FB, json=feedback_body("during"), headers=signed(key, FB)))
    assert_unavailable(client.get("/cds-services", headers=signed(key, "/cds-services")))
    assert client.get("/readyz").status_code == 503

    start()
    assert client.get("/readyz").status_code == 200
    resp = client.post(PV, json=hook_request(), headers=signed(key, PV))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    resp = client.post(FB, json=feedback_body("during"), headers=signed(key, FB))  # the client resends
    assert resp.status_code == 200 and resp.get_json()["stored"] == 1


def test_postgresql_stopped_and_restarted(tmp_path, key):
    with PrivatePostgres() as pg:
        app = secured_app(tmp_path, key, pg.url)
        try:
            exercise_outage(app.test_client(), key, pg.stop, pg.start)
            rows = runtime(app).store.feedback_rows()
            assert sorted(r["card_uuid"] for r in rows) == ["before", "during"]
        finally:
            runtime(app).store.engine.dispose()


def sqlite_outage(tmp_path, app):
    """A SQLite database cannot be stopped; its folder vanishing is the nearest thing."""
    folder, away = tmp_path / "db", tmp_path / "db-away"

    def stop():
        runtime(app).store.engine.dispose()
        folder.rename(away)

    def start():
        away.rename(folder)

    return stop, start


def test_sqlite_gone_and_back(tmp_path, key):
    (tmp_path / "db").mkdir()
    app = secured_app(tmp_path, key, f"sqlite:///{tmp_path}/db/cds.db")
    stop, start = sqlite_outage(tmp_path, app)
    exercise_outage(app.test_client(), key, stop, start)
    assert sorted(r["card_uuid"] for r in runtime(app).store.feedback_rows()) == ["before", "during"]


def test_without_authentication_a_card_that_cannot_be_recorded_is_503(tmp_path, make_app):
    # No jti to check here: the first write is recording the issued cards.
    (tmp_path / "db").mkdir()
    app = make_app(CDS_DATABASE_URL=f"sqlite:///{tmp_path}/db/cds.db")
    client = app.test_client()
    stop, start = sqlite_outage(tmp_path, app)
    stop()
    assert_unavailable(client.post(PV, json=hook_request()))
    assert_unavailable(client.post(FB, json=feedback_body("x")))
    start()
    resp = client.post(PV, json=hook_request())
    assert resp.status_code == 200 and resp.get_json()["cards"]  # cards were issued, so recorded
