"""Feedback: validated, stored before 200, tied to the card's rule, never duplicated."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import re
import uuid

import pytest

from cds_service.engine import Outcome
from cds_service.protocol.runtime import runtime
from cds_service.store import Store
from requests_for_tests import hook_request
from tests.conftest import TEST_SECRET

FB = "/cds-services/osteoporosis-patient-view/feedback"


def one_card(call):
    return Outcome([{
        "summary": "Test card",
        "indicator": "info",
        "source": {"label": "Test", "topic": {"system": "https://example.org/rules", "code": "C-TEST"}},
        "suggestions": [{"label": "Do it", "actions": [{"type": "create", "description": "Order", "resource": {
            "resourceType": "ServiceRequest", "status": "draft", "intent": "order",
            "code": {"text": "DXA"}, "subject": {"reference": "Patient/pat-1"}}}]}],
    }])


@pytest.fixture
def card_app(app):
    rt = runtime(app)
    service = rt.services["osteoporosis-patient-view"]
    rt.services["osteoporosis-patient-view"] = dataclasses.replace(service, evaluate=one_card)
    return app


def issue_card(client):
    resp = client.post("/cds-services/osteoporosis-patient-view", json=hook_request())
    card = resp.get_json()["cards"][0]
    return card["uuid"], card["suggestions"][0]["uuid"]


def test_accepted_feedback_is_stored_and_tied_to_the_rule(card_app):
    client = card_app.test_client()
    card_uuid, suggestion_uuid = issue_card(client)
    fb = {"feedback": [{"card": card_uuid, "outcome": "accepted", "acceptedSuggestions": [{"id": suggestion_uuid}],
                        "outcomeTimestamp": "2026-11-21T10:00:00Z"}]}
    resp = client.post(FB, json=fb)
    assert resp.status_code == 200
    assert resp.get_json() == {"stored": 1, "duplicates": 0, "unknownCards": 0}
    # Read back through a separate connection: the write is committed.
    rows = Store.from_url(runtime(card_app).settings.database_url).feedback_rows(card_uuid)
    assert len(rows) == 1
    assert rows[0]["card_id"] == "C-TEST" and rows[0]["known_card"] is True
    assert rows[0]["outcome"] == "accepted"
    assert suggestion_uuid in rows[0]["accepted_suggestions"]


def test_sandbox_dismiss_without_override_reason_is_valid(card_app):
    client = card_app.test_client()
    card_uuid, _ = issue_card(client)
    fb = {"feedback": [{"card": card_uuid, "outcome": "overridden", "outcomeTimestamp": "2026-11-21T10:00:00Z"}]}
    assert client.post(FB, json=fb).status_code == 200


def test_override_reason_is_stored(card_app):
    client = card_app.test_client()
    card_uuid, _ = issue_card(client)
    fb = {"feedback": [{"card": card_uuid, "outcome": "overridden", "outcomeTimestamp": "2026-11-21T10:00:00Z",
                        "overrideReason": {"reason": {"code": "patient-declined", "system": "https://example.org/r"},
                                           "userComment": "discussed"}}]}
    assert client.post(FB, json=fb).status_code == 200
    row = Store.from_url(runtime(card_app).settings.database_url).feedback_rows(card_uuid)[0]
    assert (row["override_reason_code"], row["override_comment"]) == ("patient-declined", "discussed")


def test_resubmission_does_not_duplicate(card_app):
    client = card_app.test_client()
    card_uuid, _ = issue_card(client)
    fb = {"feedback": [{"card": card_uuid, "outcome": "overridden", "outcomeTimestamp": "2026-11-21T10:00:00Z"}]}
    assert client.post(FB, json=fb).get_json()["stored"] == 1
    again = client.post(FB, json=fb)
    assert again.status_code == 200
    assert again.get_json() == {"stored": 0, "duplicates": 1, "unknownCards": 0}
    assert len(Store.from_url(runtime(card_app).settings.database_url).feedback_rows(card_uuid)) == 1


def test_feedback_sent_to_another_service_is_stored_as_unknown_and_quiets_nothing(card_app):
    """A patient-view card's feedback posted to order-sign's feedback endpoint:
    stored and flagged, not tied to the rule, no quieting of the chart's card."""
    client = card_app.test_client()
    card_uuid, _ = issue_card(client)
    fb = {"feedback": [{"card": card_uuid, "outcome": "overridden", "outcomeTimestamp": "2026-11-21T10:00:00Z"}]}
    resp = client.post("/cds-services/osteoporosis-order-sign/feedback", json=fb)
    assert resp.status_code == 200
    assert resp.get_json() == {"stored": 1, "duplicates": 0, "unknownCards": 1}
    store = Store.from_url(runtime(card_app).settings.database_url)
    row = store.feedback_rows(card_uuid)[0]
    assert (row["service_id"], row["known_card"], row["card_id"]) == ("osteoporosis-order-sign", False, None)
    patient_key = store.card(card_uuid)["patient_key"]
    assert store.quiet_marks(patient_key, {"info": 90, "warning": 90}) == {}
    # Sent where it belongs (a later decision; the same entry resent there is covered by
    # test_store's ..._resent_where_it_belongs), the feedback is the card's own and quiets it.
    fb["feedback"][0]["outcomeTimestamp"] = "2026-11-21T10:05:00Z"
    assert client.post(FB, json=fb).get_json() == {"stored": 1, "duplicates": 0, "unknownCards": 0}
    assert set(store.quiet_marks(patient_key, {"info": 90, "warning": 90})) == {"C-TEST"}


def test_feedback_for_unknown_card_is_stored_and_flagged(client, app):
    unknown = str(uuid.uuid4())
    fb = {"feedback": [{"card": unknown, "outcome": "overridden", "outcomeTimestamp": "2026-11-21T10:00:00Z"}]}
    resp = client.post(FB, json=fb)
    assert resp.status_code == 200
    assert resp.get_json()["unknownCards"] == 1
    row = runtime(app).store.feedback_rows(unknown)[0]
    assert row["known_card"] is False and row["card_id"] is None


@pytest.mark.parametrize("entry,field", [
    ({"outcome": "accepted", "acceptedSuggestions": [{"id": "x"}], "outcomeTimestamp": "2026-11-21T10:00:00Z"}, "card"),
    ({"card": "c", "outcome": "maybe", "outcomeTimestamp": "2026-11-21T10:00:00Z"}, "outcome"),
    ({"card": "c", "outcome": "accepted", "outcomeTimestamp": "2026-11-21T10:00:00Z"}, "acceptedSuggestions"),
    ({"card": "c", "outcome": "overridden"}, "outcomeTimestamp"),
    ({"card": "c", "outcome": "overridden", "outcomeTimestamp": "2026-11-21T10:00:00Z", "overrideReason": {}},
     "overrideReason"),
])
def test_invalid_feedback_is_400_naming_the_problem(client, entry, field):
    resp = client.post(FB, json={"feedback": [entry]})
    assert resp.status_code == 400
    body = resp.get_json()
    assert body["error"] == "invalid_feedback"
    assert field in body["message"] or any(field in d for d in body["details"])


def test_feedback_body_problems(client):
    assert client.post(FB, data="nope", content_type="application/json").status_code == 400
    assert client.post(FB, data="{}", content_type="text/plain").status_code == 415
    assert client.post(FB, json={"feedback": []}).status_code == 400
    assert client.post("/cds-services/unknown/feedback", json={"feedback": []}).status_code == 404


def test_issued_cards_are_recorded_without_patient_data(card_app):
    client = card_app.test_client()
    body = hook_request()
    card_uuid, suggestion_uuid = issue_card(client)
    row = runtime(card_app).store.card(card_uuid)
    assert row["card_id"] == "C-TEST"
    assert row["service_id"] == "osteoporosis-patient-view"
    assert suggestion_uuid in row["suggestion_uuids"]
    assert set(row) == {"card_uuid", "service_id", "card_id", "indicator", "hook_instance", "issued_at",
                        "suggestion_uuids", "patient_key", "client", "trigger_keys"}
    assert row["client"] == "anonymous"  # no client JWT: who it was issued to is "anyone unsigned"
    assert body["context"]["patientId"] not in str(row)
    assert body["fhirServer"] not in str(row)
    # The patient is kept only as the keyed hash of fhirServer and patient id.
    assert row["patient_key"] == hmac.new(TEST_SECRET.encode(),
                                          f"{body['fhirServer']}\x00{body['context']['patientId']}".encode(),
                                          hashlib.sha256).hexdigest()
    # Trigger codes are kept only as keyed hashes too (patient_key.trigger_key): 32 hex characters each.
    assert all(re.fullmatch(r"[0-9a-f]{32}", k) for k in json.loads(row["trigger_keys"] or "[]"))


def test_one_instant_in_any_rfc3339_spelling_is_one_entry(card_app):
    client = card_app.test_client()
    card_uuid, _ = issue_card(client)
    spellings = ["2025-01-01T00:00:00Z", "2025-01-01T00:00:00+00:00", "2025-01-01T01:00:00+01:00",
                 "2025-01-01t00:00:00z", "2025-01-01T00:00:00.000Z", "2024-12-31T19:00:00-05:00"]
    answers = [client.post(FB, json={"feedback": [{"card": card_uuid, "outcome": "overridden",
                                                   "outcomeTimestamp": ts}]}).get_json() for ts in spellings]
    assert answers[0] == {"stored": 1, "duplicates": 0, "unknownCards": 0}
    assert all(a == {"stored": 0, "duplicates": 1, "unknownCards": 0} for a in answers[1:]), answers
    rows = runtime(card_app).store.feedback_rows(card_uuid)
    assert [r["outcome_timestamp"] for r in rows] == ["2025-01-01T00:00:00Z"]  # stored in UTC
    # Control: another instant (a fraction of a second later) is another entry, its digits kept.
    later = client.post(FB, json={"feedback": [{"card": card_uuid, "outcome": "overridden",
                                                "outcomeTimestamp": "2025-01-01T01:00:00.250+01:00"}]})
    assert later.get_json()["stored"] == 1
    assert runtime(card_app).store.feedback_rows(card_uuid)[1]["outcome_timestamp"] == "2025-01-01T00:00:00.25Z"


def test_an_accepted_suggestion_the_card_never_had_is_400_naming_it(card_app):
    client = card_app.test_client()
    card_uuid, suggestion_uuid = issue_card(client)
    entry = {"card": card_uuid, "outcome": "accepted", "outcomeTimestamp": "2026-11-21T10:00:00Z",
             "acceptedSuggestions": [{"id": suggestion_uuid}, {"id": "bogus-id"}]}
    other = {"card": str(uuid.uuid4()), "outcome": "overridden", "outcomeTimestamp": "2026-11-21T10:00:00Z"}
    resp = client.post(FB, json={"feedback": [other, entry]})
    assert resp.status_code == 400
    body = resp.get_json()
    assert body["error"] == "invalid_feedback" and "'bogus-id'" in body["message"]
    assert "feedback/1/acceptedSuggestions" in body["message"]
    assert runtime(card_app).store.feedback_rows() == []  # nothing stored, nothing quieted
    # Control: the card's own suggestion is accepted; an unknown card's ids cannot be checked, and are stored.
    entry["acceptedSuggestions"] = [{"id": suggestion_uuid}]
    unknown = {**other, "outcome": "accepted", "acceptedSuggestions": [{"id": "whatever"}]}
    resp = client.post(FB, json={"feedback": [entry, unknown]})
    assert resp.get_json() == {"stored": 2, "duplicates": 0, "unknownCards": 1}
