"""Whatever reaches the database is checked before it gets there: feedback
values the columns cannot hold are 400 naming the field, a feedback request
is stored whole or not at all, and an oversized or NUL-holding jti or
hookInstance is refused at validation. Through HTTP, on SQLite and on
PostgreSQL (whose columns, unlike SQLite's, enforce lengths and refuse NUL)."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from cds_service.app import create_app
from cds_service.protocol.runtime import runtime
from cds_service.store import Store
from db_for_tests import database_url
from jwt_for_tests import BASE, auth, client_key, token, trust_file
from requests_for_tests import hook_request

PV = "/cds-services/osteoporosis-patient-view"
FB = PV + "/feedback"
WHEN = "2026-01-01T00:00:00Z"


@pytest.fixture(scope="module")
def key():
    return client_key()


@pytest.fixture(params=["sqlite", "postgresql"])
def make(request, tmp_path, key):
    """factory(**settings) -> app on a fresh database of the parametrised kind."""
    issuers = trust_file(tmp_path / "issuers.json", key)
    apps = []
    with database_url(request.param, tmp_path) as url:
        def factory(**extra):
            settings = {"CDS_DATABASE_URL": url, "CDS_AUTH_REQUIRED": "false", "CDS_TRUSTED_ISSUERS": issuers,
                        "CDS_PUBLIC_BASE_URL": BASE, "CDS_ALLOWED_FHIR_SERVERS": "https://fhir.example.org/r4",
                        "CDS_PATIENT_HASH_SECRET": "test-patient-hash-secret-0123456789abcdef"}
            settings.update(extra)
            app = create_app(settings)
            app.testing = True
            apps.append(app)
            return app

        yield factory
        for app in apps:
            runtime(app).store.engine.dispose()


def rows(app):
    return runtime(app).store.feedback_rows()


def entry(card="card-1", **extra):
    return {"card": card, "outcome": "overridden", "outcomeTimestamp": WHEN, **extra}


def reason(code="declined", system="https://example.org/reasons", comment=None):
    out = {"reason": {"code": code, "system": system}}
    if comment is not None:
        out["userComment"] = comment
    return out


# --- feedback -------------------------------------------------------------------

BAD_ENTRIES = [
    ("card", entry(card="c" * 65), "feedback[1].card: must be at most 64 characters, has 65"),
    ("card NUL", entry(card="card\u0000x"), "feedback[1].card: must not contain control characters"),
    ("card trailing newline", entry(card="card\n"), "feedback[1].card: must not contain control characters"),
    ("timestamp", entry(outcomeTimestamp="2026-01-01T00:00:00." + "1" * 60 + "Z"),
     "feedback[1].outcomeTimestamp: must be an RFC 3339 date-time such as 2025-06-01T14:03:27Z"),
    ("code", entry(overrideReason=reason(code="c" * 129)),
     "feedback[1].overrideReason.reason.code: must be at most 128 characters, has 129"),
    ("system", entry(overrideReason=reason(system="s" * 256)),
     "feedback[1].overrideReason.reason.system: must be at most 255 characters, has 256"),
    ("code NUL", entry(overrideReason=reason(code="a\u0000")),
     "feedback[1].overrideReason.reason.code: must not contain control characters"),
    ("comment NUL", entry(overrideReason=reason(comment="fine\u0000not")),
     "feedback[1].overrideReason.userComment: must not contain a NUL character"),
    ("comment too long", entry(overrideReason=reason(comment="x" * 2001)),
     "feedback[1].overrideReason.userComment: must be at most 2000 characters, has 2001"),
    ("comment alone too long", entry(overrideReason={"userComment": "Declined " + "x" * 1_000_000}),
     "feedback[1].overrideReason.userComment: must be at most 2000 characters, has 1000009"),
    ("suggestion", {"card": "c", "outcome": "accepted", "outcomeTimestamp": WHEN,
                    "acceptedSuggestions": [{"id": "s" * 65}]},
     "feedback[1].acceptedSuggestions[0].id: must be at most 64 characters, has 65"),
]


@pytest.mark.parametrize("bad,detail", [(b, d) for _, b, d in BAD_ENTRIES], ids=[i for i, _, _ in BAD_ENTRIES])
def test_feedback_the_database_cannot_hold_is_400_and_nothing_is_stored(make, bad, detail):
    app = make()
    # A good entry before the bad one: it must not be stored either.
    resp = app.test_client().post(FB, json={"feedback": [entry("good-card"), bad, entry("later-card")]})
    assert resp.status_code == 400, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["error"] == "invalid_feedback"
    assert detail in body["details"]
    assert rows(app) == []


def test_feedback_at_every_limit_is_stored(make):
    app = make()
    longest = entry(card="c" * 64, outcomeTimestamp="2026-01-01T00:00:00.123456789+01:00",
                    overrideReason=reason(code="r" * 128, system="s" * 255, comment="line one\nline two\t\u00e9"))
    longest_comment = entry(card="e" * 64, overrideReason={"userComment": "\u00e9" * 2000})
    accepted = {"card": "d" * 64, "outcome": "accepted", "outcomeTimestamp": WHEN,
                "acceptedSuggestions": [{"id": "x" * 64}]}
    resp = app.test_client().post(FB, json={"feedback": [longest, accepted, longest_comment]})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    stored = rows(app)
    assert [r["card_uuid"] for r in stored] == ["c" * 64, "d" * 64, "e" * 64]
    assert stored[0]["override_comment"] == "line one\nline two\t\u00e9"
    assert stored[2]["override_comment"] == "\u00e9" * 2000


def test_the_number_of_entries_is_bounded_by_the_setting(make):
    app = make(CDS_MAX_FEEDBACK_ENTRIES="3")
    client = app.test_client()
    resp = client.post(FB, json={"feedback": [entry(f"card-{i}") for i in range(4)]})
    assert resp.status_code == 400
    assert resp.get_json()["details"][0] == "feedback: needs at most 3 item(s), has 4"
    assert rows(app) == []
    assert client.post(FB, json={"feedback": [entry(f"card-{i}") for i in range(3)]}).status_code == 200
    assert len(rows(app)) == 3


def test_the_default_bound_is_100(make):
    app = make()
    client = app.test_client()
    assert client.post(FB, json={"feedback": [entry(f"c{i}") for i in range(101)]}).status_code == 400
    assert client.post(FB, json={"feedback": [entry(f"c{i}") for i in range(100)]}).status_code == 200


def test_a_failure_midway_stores_nothing_and_asks_to_resend(make, monkeypatch):
    app = make()
    client = app.test_client()
    real = Store._insert_feedback
    inserted = []

    def insert_then_lose_the_database(conn, row):
        if inserted:
            raise sa.exc.OperationalError("INSERT", {}, Exception("server closed the connection"))
        inserted.append(row["card_uuid"])
        return real(conn, row)

    monkeypatch.setattr(Store, "_insert_feedback", staticmethod(insert_then_lose_the_database))
    body = {"feedback": [entry("first"), entry("second"), entry("third")]}
    resp = client.post(FB, json=body)
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "5"
    assert inserted == ["first"] and rows(app) == []  # the first insert was rolled back with the rest
    monkeypatch.setattr(Store, "_insert_feedback", staticmethod(real))
    assert client.post(FB, json=body).get_json() == {"stored": 3, "duplicates": 0, "unknownCards": 3}


def test_duplicates_inside_one_request_and_across_requests(make):
    app = make()
    client = app.test_client()
    resp = client.post(FB, json={"feedback": [entry("a"), entry("a"), entry("b")]})
    assert resp.get_json() == {"stored": 2, "duplicates": 1, "unknownCards": 3}
    resp = client.post(FB, json={"feedback": [entry("b"), entry("c")]})
    assert resp.get_json() == {"stored": 1, "duplicates": 1, "unknownCards": 2}
    assert sorted(r["card_uuid"] for r in rows(app)) == ["a", "b", "c"]


# --- jti and hookInstance --------------------------------------------------------------

def bearer(key, path, jti):
    return auth(token(key, path, jti=jti))


@pytest.mark.parametrize("jti", ["j" * 256, "j" * 1000, "abc\u0000def", "tab\there", "\ud800x"],
                         ids=["256", "1000", "nul", "tab", "surrogate"])
def test_a_jti_the_replay_store_cannot_hold_is_401(make, key, jti):
    client = make(CDS_AUTH_REQUIRED="true").test_client()
    resp = client.post(PV, json=hook_request(), headers=bearer(key, PV, jti))
    assert resp.status_code == 401, resp.get_data(as_text=True)
    assert resp.get_json()["details"] == {"reason": "malformed_token"}
    assert "at most 255 characters" in resp.get_json()["message"]


def test_the_longest_jti_is_remembered(make, key):
    client = make(CDS_AUTH_REQUIRED="true").test_client()
    jti = "j" * 255
    assert client.post(PV, json=hook_request(), headers=bearer(key, PV, jti)).status_code == 200
    replay = client.post(PV, json=hook_request(), headers=bearer(key, PV, jti))
    assert replay.status_code == 401 and replay.get_json()["details"] == {"reason": "replayed_jti"}


@pytest.mark.parametrize("hook_instance", ["abc\u0000def", "line\nbreak", "x" * 129])
def test_a_hook_instance_the_database_cannot_hold_is_400(make, hook_instance):
    body = hook_request()
    body["hookInstance"] = hook_instance
    resp = make().test_client().post(PV, json=body)
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert resp.get_json()["details"][0].startswith("hookInstance: ")


def test_the_longest_hook_instance_is_recorded(make):
    app = make()
    body = hook_request()
    body["hookInstance"] = "h" * 128
    resp = app.test_client().post(PV, json=body)
    assert resp.status_code == 200
    cards = resp.get_json()["cards"]
    assert cards and runtime(app).store.card(cards[0]["uuid"])["hook_instance"] == "h" * 128


def test_an_issuer_the_replay_store_cannot_hold_is_refused_at_start(tmp_path, key):
    issuers = tmp_path / "issuers.json"
    issuers.write_text(json.dumps({"https://" + "e" * 250 + ".org": {"jwks": {"keys": [key[1]]}}}))
    with pytest.raises(ValueError, match="at most 255 characters"):
        create_app({"CDS_DATABASE_URL": f"sqlite:///{tmp_path}/x.db", "CDS_TRUSTED_ISSUERS": str(issuers),
                    "CDS_PATIENT_HASH_SECRET": "test-patient-hash-secret-0123456789abcdef"})

