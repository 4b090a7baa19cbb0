"""A database whose schema is not this release's (ops16 M1, M2), on SQLite
and on PostgreSQL (a schema of the test's own on CDS_TEST_POSTGRES_URL):

- no schema (CDS_AUTO_MIGRATE=false, the chart's setting for the service
  container, before `cds-service migrate` ran) or an older one: /readyz is
  503 schema_missing / schema_outdated, and hook and feedback calls answer
  503 JSON naming it, not 500;
- a newer one (a newer release migrated, then `helm rollback`): `cds-service
  migrate` and `serve` say so in one line and exit 1, leaving the database
  alone; a server already running stays ready with a warning (the rolling
  upgrade case: README, Migrations).
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import sqlalchemy as sa

from cds_service import db_schema, migrations
from cds_service.app import create_app
from cds_service.cli import main
from db_for_tests import database_url
from jwt_for_tests import BASE, auth, client_key, token, trust_file
from requests_for_tests import hook_request
from tests.test_server import ROOT, _free_port

PV = "/cds-services/osteoporosis-patient-view"
FB = PV + "/feedback"
SECRET = "test-patient-hash-secret-0123456789abcdef"
NEWER = "0999"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    with database_url(request.param, tmp_path) as value:
        yield value


@pytest.fixture(scope="module")
def key():
    return client_key()


def secured_app(tmp_path, key, url):
    app = create_app({"CDS_DATABASE_URL": url, "CDS_AUTO_MIGRATE": "false", "CDS_AUTH_REQUIRED": "true",
                      "CDS_TRUSTED_ISSUERS": trust_file(tmp_path / "issuers.json", key),
                      "CDS_PUBLIC_BASE_URL": BASE, "CDS_ALLOWED_FHIR_SERVERS": "https://fhir.example.org/r4",
                      "CDS_PATIENT_HASH_SECRET": SECRET})
    app.testing = True
    return app


def open_app(url):
    """Authentication off: the hook call reaches the quieting lookup and the
    issued-cards insert (with it on, the token's replay check comes first)."""
    app = create_app({"CDS_DATABASE_URL": url, "CDS_AUTO_MIGRATE": "false", "CDS_AUTH_REQUIRED": "false",
                      "CDS_ALLOWED_FHIR_SERVERS": "https://fhir.example.org/r4", "CDS_PATIENT_HASH_SECRET": SECRET})
    app.testing = True
    return app


def feedback_body():
    return {"feedback": [{"card": "c1", "outcome": "overridden", "outcomeTimestamp": "2026-01-01T00:00:00Z"}]}


def migrate_to(url, target="head"):
    engine = sa.create_engine(url)
    try:
        migrations.upgrade(engine, target)
    finally:
        engine.dispose()


def set_revision(url, revision):
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    finally:
        engine.dispose()


def revision_of(url):
    engine = sa.create_engine(url)
    try:
        return db_schema.engine_state(engine).revision
    finally:
        engine.dispose()


def assert_schema_503(resp, status):
    assert resp.status_code == 503, resp.get_data(as_text=True)
    assert resp.get_json()["error"] == f"schema_{status}"
    assert resp.headers["Retry-After"] == "5"


def test_the_known_revisions_are_alembics_chain():
    """db_schema reads the revisions from the file names (no Alembic in a worker)."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrations._config())
    chain = [r.revision for r in script.walk_revisions()][::-1]
    assert list(db_schema.KNOWN_REVISIONS) == chain
    assert db_schema.HEAD == migrations.head_revision()
    for revision in chain:
        assert re.match(rf"{revision}_\w+\.py$", script.get_revision(revision).path.rsplit("/", 1)[-1])


def test_no_schema_is_not_ready_and_calls_say_so(tmp_path, key, url):
    client = secured_app(tmp_path, key, url).test_client()
    resp = client.get("/readyz")
    assert resp.status_code == 503
    assert resp.get_json()["error"] == "schema_missing"
    assert "cds-service migrate" in resp.get_json()["message"]
    # Authenticated calls: the token's replay check is the first statement.
    assert_schema_503(client.post(PV, json=hook_request(), headers=auth(token(key, PV))), "missing")
    assert_schema_503(client.post(FB, json=feedback_body(), headers=auth(token(key, FB))), "missing")
    # Without authentication: the issued-cards insert.
    plain = open_app(url).test_client()
    assert_schema_503(plain.post(PV, json=hook_request()), "missing")
    assert_schema_503(plain.post(FB, json=feedback_body()), "missing")

    # Control: once migrated (the init container, late), the same app is ready and answers.
    migrate_to(url)
    assert client.get("/readyz").get_json() == {"status": "ready"}
    resp = client.post(PV, json=hook_request(), headers=auth(token(key, PV)))
    assert resp.status_code == 200 and resp.get_json()["cards"]
    assert client.post(FB, json=feedback_body(), headers=auth(token(key, FB))).status_code == 200


def test_an_older_schema_is_not_ready_and_calls_say_so(url):
    migrate_to(url, "0002")  # before issued_cards.client (0003)
    client = open_app(url).test_client()
    resp = client.get("/readyz")
    assert resp.status_code == 503 and resp.get_json()["error"] == "schema_outdated"
    assert_schema_503(client.post(PV, json=hook_request()), "outdated")


def test_migrate_and_serve_refuse_a_newer_schema_in_one_line(tmp_path, url, monkeypatch, capsys):
    migrate_to(url)
    set_revision(url, NEWER)
    monkeypatch.setenv("CDS_DATABASE_URL", url)
    monkeypatch.setenv("CDS_PATIENT_HASH_SECRET", SECRET)
    assert main(["migrate"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"revision {NEWER}" in err and f"its newest is {db_schema.HEAD}" in err
    assert revision_of(url) == NEWER  # untouched

    # serve migrates first (CDS_AUTO_MIGRATE=true): the same line, before anything starts.
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "CDS_DATABASE_URL": url,
           "CDS_PATIENT_HASH_SECRET": SECRET, "CDS_AUTH_REQUIRED": "false", "TMPDIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", "from cds_service.cli import main; raise SystemExit(main())",
                           "serve", "--host", "127.0.0.1", "--port", str(_free_port())], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and f"revision {NEWER}" in done.stderr, done.stderr
    assert revision_of(url) == NEWER


def test_a_running_server_stays_ready_on_a_newer_schema_with_a_warning(url):
    """The rolling upgrade: the new release's init container migrates while
    this release's pods still serve; taking them all out of service at once
    would leave only the new pod (the chart's maxUnavailable: 0 protects
    against failed new pods, not against old ones going unready)."""
    migrate_to(url)
    client = open_app(url).test_client()
    assert client.get("/readyz").get_json() == {"status": "ready"}  # control: current
    set_revision(url, NEWER)
    body = client.get("/readyz").get_json()
    assert body["status"] == "ready" and f"revision {NEWER}" in body["warning"]
    assert client.post(PV, json=hook_request()).status_code == 200
    # A newer schema this release cannot use (the table renamed): 503 naming it, not 500.
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE issued_cards RENAME TO issued_cards_v2"))
    engine.dispose()
    assert_schema_503(client.post(PV, json=hook_request()), "newer")


def test_the_database_unreachable_is_still_database_unavailable(tmp_path):
    client = open_app(f"sqlite:///{tmp_path}/no-such-dir/cds.db").test_client()
    resp = client.get("/readyz")
    assert resp.status_code == 503 and resp.get_json()["error"] == "database_unavailable"
    resp = client.post(PV, json=hook_request())
    assert resp.status_code == 503 and resp.get_json()["error"] == "store_unavailable"
