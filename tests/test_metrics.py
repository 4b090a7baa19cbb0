"""Prometheus metrics at /metrics: requests, cards, feedback, FHIR errors, auth failures."""

from __future__ import annotations

import dataclasses
import re

import responses

from cds_service.engine import Outcome
from cds_service.protocol.runtime import runtime
from cds_service.services.prefetch_templates import PREFETCH
from requests_for_tests import hook_request


def value(text: str, name: str, **labels) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
        if not labels and line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0 if wanted else 0.0


def scrape(client) -> str:
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.content_type.startswith("text/plain")
    return resp.get_data(as_text=True)


def test_request_and_card_metrics(app):
    rt = runtime(app)
    svc = rt.services["osteoporosis-patient-view"]
    card = {"summary": "s", "indicator": "warning",
            "source": {"label": "l", "topic": {"system": "x", "code": "C-METRIC-TEST"}}}
    rt.services[svc.id] = dataclasses.replace(svc, evaluate=lambda call: Outcome([card]))
    client = app.test_client()
    before = scrape(client)
    resp = client.post("/cds-services/osteoporosis-patient-view", json=hook_request())
    card_uuid = resp.get_json()["cards"][0]["uuid"]
    client.post("/cds-services/osteoporosis-patient-view/feedback", json={"feedback": [
        {"card": card_uuid, "outcome": "overridden", "outcomeTimestamp": "2026-01-01T00:00:00Z"}]})
    after = scrape(client)
    labels = dict(service="osteoporosis-patient-view", method="POST", status="200")
    assert value(after, "cds_http_requests_total", **labels) == value(before, "cds_http_requests_total", **labels) + 1
    # Feedback has a label of its own: the hook's rate and latency are the hook's alone.
    fb = dict(service="osteoporosis-patient-view/feedback", method="POST", status="200")
    assert value(after, "cds_http_requests_total", **fb) == value(before, "cds_http_requests_total", **fb) + 1
    assert value(after, "cds_http_request_duration_seconds_count", service="osteoporosis-patient-view/feedback",
                 method="POST") == value(before, "cds_http_request_duration_seconds_count",
                                         service="osteoporosis-patient-view/feedback", method="POST") + 1
    assert value(after, "cds_http_request_duration_seconds_count", service="osteoporosis-patient-view",
                 method="POST") == value(before, "cds_http_request_duration_seconds_count",
                                         service="osteoporosis-patient-view", method="POST") + 1
    assert value(after, "cds_cards_issued_total", card_id="C-METRIC-TEST", indicator="warning") == 1
    assert value(after, "cds_feedback_total", card_id="C-METRIC-TEST", outcome="overridden") == 1
    assert "cds_http_request_duration_seconds_bucket" in after


def test_feedback_to_an_unknown_service_is_labelled_by_its_route(client):
    client.post("/cds-services/zqx-no-such-service/feedback", json={"feedback": []})
    text = scrape(client)
    assert "zqx-no-such-service" not in text
    assert value(text, "cds_http_requests_total", service="/cds-services/<service_id>/feedback", status="404") >= 1


def test_unknown_paths_do_not_create_series(client):
    # Letters, not digits: a digit run can turn up in any metric's value.
    client.get("/some/random/path/zqx-unknown")
    assert "zqx-unknown" not in scrape(client)


@responses.activate
def test_fhir_errors_and_auth_failures_are_counted(make_app):
    app = make_app()
    client = app.test_client()
    responses.add(responses.GET, re.compile(r"https://fhir\.example\.org/r4/.*"), status=401, json={})
    before = value(scrape(client), "cds_fhir_fetch_errors_total", kind="unauthorized")
    client.post("/cds-services/osteoporosis-patient-view", json=hook_request(prefetch={}, token="t"))
    # One per prefetch key that failed (all of them here).
    assert value(scrape(client), "cds_fhir_fetch_errors_total", kind="unauthorized") == before + len(PREFETCH)

    secured = make_app(CDS_AUTH_REQUIRED="true").test_client()
    before = value(scrape(secured), "cds_auth_failures_total", reason="missing_token")
    secured.get("/cds-services")
    assert value(scrape(secured), "cds_auth_failures_total", reason="missing_token") == before + 1


def test_resubmitted_feedback_is_not_counted_again(app):
    # EHRs resend feedback when unsure it arrived; the store keeps one copy,
    # and the counter must agree with it (and with `cds-service report`).
    rt = runtime(app)
    svc = rt.services["osteoporosis-patient-view"]
    card = {"summary": "s", "indicator": "info",
            "source": {"label": "l", "topic": {"system": "x", "code": "C-METRIC-RESEND"}}}
    rt.services[svc.id] = dataclasses.replace(svc, evaluate=lambda call: Outcome([card]))
    client = app.test_client()
    card_uuid = client.post("/cds-services/osteoporosis-patient-view", json=hook_request()).get_json()["cards"][0]["uuid"]
    body = {"feedback": [{"card": card_uuid, "outcome": "overridden", "outcomeTimestamp": "2026-01-01T00:00:00Z"}]}
    first = client.post("/cds-services/osteoporosis-patient-view/feedback", json=body).get_json()
    again = client.post("/cds-services/osteoporosis-patient-view/feedback", json=body).get_json()
    assert (first["stored"], again["duplicates"]) == (1, 1)
    assert value(scrape(client), "cds_feedback_total", card_id="C-METRIC-RESEND", outcome="overridden") == 1
