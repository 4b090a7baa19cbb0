"""Outcome report by card id: HTTP endpoint (token-protected) and CLI."""

from __future__ import annotations

import dataclasses
import json

import pytest

from cds_service.cli import main
from cds_service.engine import Outcome
from cds_service.protocol.runtime import runtime
from requests_for_tests import hook_request

PV = "/cds-services/osteoporosis-patient-view"


def two_cards(call):
    def card(code):
        return {"summary": code, "indicator": "info",
                "source": {"label": "x", "topic": {"system": "https://example.org/r", "code": code}},
                "suggestions": [{"label": "Do", "actions": [{"type": "create", "description": "d", "resource": {
                    "resourceType": "ServiceRequest", "status": "draft", "intent": "order",
                    "code": {"text": "DXA"}, "subject": {"reference": "Patient/pat-1"}}}]}]}
    return Outcome([card("C-A"), card("C-B")])


@pytest.fixture
def reporting_app(make_app):
    app = make_app(CDS_REPORT_TOKEN="s3cret")
    rt = runtime(app)
    svc = rt.services["osteoporosis-patient-view"]
    rt.services[svc.id] = dataclasses.replace(svc, evaluate=two_cards)
    client = app.test_client()
    # Four hook calls: C-A accepted twice, overridden once ("declined" twice counted once per card).
    outcomes = ["accepted", "accepted", "overridden", None]
    for i, outcome in enumerate(outcomes):
        cards = client.post(PV, json=hook_request()).get_json()["cards"]
        by_id = {c["source"]["topic"]["code"]: c for c in cards}
        fb = []
        if outcome == "accepted":
            fb.append({"card": by_id["C-A"]["uuid"], "outcome": "accepted", "outcomeTimestamp": f"2026-01-0{i+1}T00:00:00Z",
                       "acceptedSuggestions": [{"id": by_id["C-A"]["suggestions"][0]["uuid"]}]})
        elif outcome == "overridden":
            fb.append({"card": by_id["C-A"]["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-01-05T00:00:00Z",
                       "overrideReason": {"reason": {"system": "https://example.org/o", "code": "declined"}}})
        fb.append({"card": by_id["C-B"]["uuid"], "outcome": "overridden", "outcomeTimestamp": f"2026-02-0{i+1}T00:00:00Z",
                   "overrideReason": {"reason": {"system": "https://example.org/o", "code": "already-discussed"}}})
        assert client.post(PV + "/feedback", json={"feedback": fb}).status_code == 200
    return app


def test_report_endpoint_needs_its_token(reporting_app):
    client = reporting_app.test_client()
    assert client.get("/admin/report").status_code == 401
    assert client.get("/admin/report", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/admin/report", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_report_is_off_without_a_token(client):
    resp = client.get("/admin/report", headers={"Authorization": "Bearer anything"})
    assert resp.status_code == 404


def test_report_rates_and_reasons(reporting_app):
    body = reporting_app.test_client().get("/admin/report", headers={"Authorization": "Bearer s3cret"}).get_json()
    rows = {r["cardId"]: r for r in body["cards"]}
    assert rows["C-A"]["issued"] == 4
    assert rows["C-A"]["accepted"] == 2 and rows["C-A"]["overridden"] == 1
    assert rows["C-A"]["acceptanceRate"] == 0.5 and rows["C-A"]["overrideRate"] == 0.25
    assert rows["C-A"]["topOverrideReasons"] == [{"system": "https://example.org/o", "code": "declined", "count": 1}]
    assert rows["C-B"]["overridden"] == 4 and rows["C-B"]["overrideRate"] == 1.0
    assert rows["C-B"]["topOverrideReasons"][0]["code"] == "already-discussed"
    assert body["feedbackForUnknownCards"] == 0


def test_report_since_filter_and_bad_parameter(reporting_app):
    client = reporting_app.test_client()
    auth = {"Authorization": "Bearer s3cret"}
    assert client.get("/admin/report?since=2999-01-01", headers=auth).get_json()["cards"] == []
    assert client.get("/admin/report?since=yesterday", headers=auth).status_code == 400


def test_report_cli(reporting_app, monkeypatch, capsys):
    monkeypatch.setenv("CDS_DATABASE_URL", runtime(reporting_app).settings.database_url)
    assert main(["report"]) == 0
    text = capsys.readouterr().out
    assert "C-A" in text and "50%" in text and "declined (1)" in text
    assert main(["report", "--json"]) == 0
    assert {r["cardId"] for r in json.loads(capsys.readouterr().out)["cards"]} == {"C-A", "C-B"}


def test_report_cli_on_a_database_without_schema(tmp_path, monkeypatch, capsys):
    # A newcomer running `cds-service report` in another folder than the
    # service gets a fresh, empty SQLite file: a clear message, no traceback.
    monkeypatch.setenv("CDS_DATABASE_URL", f"sqlite:///{tmp_path}/empty.db")
    assert main(["report"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no schema yet" in captured.err and "cds-service migrate" in captured.err


def test_a_card_overridden_again_counts_its_reason_once(reporting_app):
    """Operator review 16: one card overridden three times for one reason showed
    "overridden: 1" beside a reason counted 3."""
    client = reporting_app.test_client()
    card = next(c for c in client.post(PV, json=hook_request()).get_json()["cards"]
                if c["source"]["topic"]["code"] == "C-A")
    for minute in range(3):
        fb = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": f"2026-03-01T00:0{minute}:00Z",
              "overrideReason": {"reason": {"system": "https://example.org/o", "code": "not-now"}}}
        assert client.post(PV + "/feedback", json={"feedback": [fb]}).get_json()["stored"] == 1
    body = client.get("/admin/report", headers={"Authorization": "Bearer s3cret"}).get_json()
    row = next(r for r in body["cards"] if r["cardId"] == "C-A")
    assert row["overridden"] == 2  # the fixture's one card and this one
    assert {r["code"]: r["count"] for r in row["topOverrideReasons"]} == {"declined": 1, "not-now": 1}

