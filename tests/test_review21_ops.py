"""Operator review 21: order-select selections that name no draft order, and
what of hookInstance reaches the request log line.

Through the real Flask app (test client), log lines caught at the root logger
as the JSON formatter writes them."""

from __future__ import annotations

import copy
import json
import logging
import uuid

import pytest

from tests.requests_for_tests import SERVICE_FOR, draft_bundle, hook_request
from tests.test_request_log_line import _Lines

OS = f"/cds-services/{SERVICE_FOR['order-select']}"
PV = f"/cds-services/{SERVICE_FOR['patient-view']}"


def _post(client, path, body):
    lines = _Lines()
    root = logging.getLogger()
    root.addHandler(lines)
    try:
        response = client.post(path, json=body)
    finally:
        root.removeHandler(lines)
    return response, [json.dumps(line) for line in lines.lines]


def _request_line(text):
    return next(json.loads(line) for line in text if json.loads(line).get("event") == "request")


# --- order-select: selections must name draft orders ------------------------------------

def _second_draft():
    bundle = draft_bundle()
    other = copy.deepcopy(bundle["entry"][0]["resource"])
    other["id"] = "request-456"
    bundle["entry"].append({"resource": other})
    return bundle


def test_a_selection_naming_no_draft_order_is_400(client):
    """It answered 200 with no cards: the selected order was judged nowhere."""
    body = hook_request("order-select", selections=["MedicationRequest/request-999"])
    response, text = _post(client, OS, body)
    assert response.status_code == 400, response.get_json()
    answer = response.get_json()
    assert answer["error"] == "selection_not_in_draft_orders"
    assert answer["details"] == ["context.selections[0]"]
    assert answer["message"].startswith("context.selections[0] names no draft order in context.draftOrders")
    assert "request-999" not in json.dumps(answer) and "request-999" not in "".join(text)
    assert _request_line(text)["status"] == 400


def test_one_unmatched_selection_among_matched_ones_is_400(client):
    body = hook_request("order-select", draftOrders=_second_draft(),
                        selections=["MedicationRequest/request-123", "MedicationRequest/request-456",
                                    "ServiceRequest/request-123"])
    response, _ = _post(client, OS, body)
    assert response.status_code == 400
    assert response.get_json()["details"] == ["context.selections[2]"]


@pytest.mark.parametrize("selection", ["request-123", "MedicationRequest/request-123/_history/1",
                                       "medicationrequest/request-123"])
def test_a_selection_not_written_as_resource_type_and_id_is_400(client, selection):
    response, _ = _post(client, OS, hook_request("order-select", selections=[selection]))
    assert response.status_code == 400 and response.get_json()["error"] == "selection_not_in_draft_orders"


def test_selections_naming_draft_orders_are_judged(client):
    """Control: the sandbox's shape (one draft, its own reference selected,
    no Bundle type) and a selection of one draft of two answer 200."""
    for body in (hook_request("order-select"),
                 hook_request("order-select", draftOrders=_second_draft(),
                              selections=["MedicationRequest/request-456"])):
        response, _ = _post(client, OS, body)
        assert response.status_code == 200, response.get_json()


def test_the_sandbox_bare_draft_still_answers_200(client):
    """Rx View fires order-select before a drug is picked: a draft without
    medication, selected by its own reference."""
    body = hook_request("order-select", draftOrders=draft_bundle(with_medication=False))
    response, _ = _post(client, OS, body)
    assert response.status_code == 200 and response.get_json() == {"cards": []}


# --- hookInstance in the log line -------------------------------------------------------

def test_a_uuid_hook_instance_is_logged_as_sent(client):
    instance = str(uuid.uuid4()).upper()
    body = hook_request()
    body["hookInstance"] = instance
    response, text = _post(client, PV, body)
    assert response.status_code == 200
    assert _request_line(text)["hook_instance"] == instance


@pytest.mark.parametrize("instance", ["MRN-88990011-enc-4711", "{0b7c4b8e-1d1a-4d7e-9c1e-8f5b6a7c2d31}",
                                      "urn:uuid:0b7c4b8e-1d1a-4d7e-9c1e-8f5b6a7c2d31"])
def test_any_other_hook_instance_is_answered_but_logged_as_a_keyed_hash(client, instance):
    """CDS Hooks says hookInstance is a UUID, and the public sandbox sends
    one (uuidv4), but the service accepts any short string there so that an
    EHR with other identifiers still gets its cards; such a value may be made
    from a record number, so the log line has its keyed hash instead."""
    body = hook_request()
    body["hookInstance"] = instance
    response, text = _post(client, PV, body)
    assert response.status_code == 200 and response.get_json()["cards"]
    logged = _request_line(text)["hook_instance"]
    assert logged.startswith("hmac:") and len(logged) == len("hmac:") + 16
    assert instance not in "".join(text) and "88990011" not in "".join(text)
    # The same hookInstance hashes alike (calls can still be told apart), another one not.
    _, text2 = _post(client, PV, body)
    assert _request_line(text2)["hook_instance"] == logged
    body["hookInstance"] = instance + "x"
    _, text3 = _post(client, PV, body)
    assert _request_line(text3)["hook_instance"] not in (logged, None)
