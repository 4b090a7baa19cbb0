"""Data the rules need that cannot be had is a 412, however it fails to come
(adversarial review 2026-11-30): the keys critical safety cards read are
required (safetyLabs on every hook, procedures on the order hooks); a search
that failed but was answered 200 (an OperationOutcome, an error outcome entry,
a Bundle of another type, fewer matches than its `total` with no next link),
fetched or sent, is no "no data"; a Patient without its id is refused; any
deceased copy of the patient means deceased; a 412 says in the request log
line which keys were missing and why, by fixed labels."""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import re

import pytest
import responses

from benchmarks.generate import patient_view_request
from cds_service import fixtures as fx
from cds_service import metrics
from cds_service.fhir import deferred
from cds_service.fhir.client import search_problem
from cds_service.protocol import requests_json
from cds_service.services import all_services
from cds_service.services.prefetch_templates import REQUIRED, REQUIRED_ON_ORDERS
from conftest import TODAY
from requests_for_tests import FHIR, PATIENT_ID, SERVICE_FOR, empty_bundle, hook_request, patient
from test_request_log_line import _Lines

HOOKS = ("patient-view", "order-select", "order-sign")
CONDITIONS = re.compile(rf"{re.escape(FHIR)}/Condition\?.*")
FAILED = {"resourceType": "OperationOutcome",
          "issue": [{"severity": "fatal", "code": "too-costly", "diagnostics": "query too costly"}]}


def url(hook):
    return f"/cds-services/{SERVICE_FOR[hook]}"


def searchset(*resources, **extra):
    return {"resourceType": "Bundle", "type": "searchset", **extra,
            "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources]}


def condition(cid="c1"):
    return {"resourceType": "Condition", "id": cid, "subject": {"reference": f"Patient/{PATIENT_ID}"},
            "clinicalStatus": {"coding": [{"code": "active"}]}, "code": {"text": "x"}}


def outcome_entry(severity):
    return {"search": {"mode": "outcome"}, "resource": {**FAILED, "issue": [{**FAILED["issue"][0],
                                                                              "severity": severity}]}}


def without(*keys, hook="patient-view", **kw):
    body = hook_request(hook, **kw)
    for key in keys:
        del body["prefetch"][key]
    return body


# --- 1. safetyLabs on every hook, procedures on the order hooks -------------------------

def test_the_safety_keys_are_required_where_they_decide_critical_cards():
    assert "safetyLabs" in REQUIRED and "procedures" not in REQUIRED
    assert REQUIRED_ON_ORDERS == REQUIRED | {"procedures"}
    required = {s.hook: s.required_prefetch for s in all_services()}
    assert required == {"patient-view": REQUIRED, "order-select": REQUIRED_ON_ORDERS,
                        "order-sign": REQUIRED_ON_ORDERS}
    for service in all_services():  # the discovery document asks for both on every hook
        assert {"safetyLabs", "procedures"} <= set(service.discovery_entry()["prefetch"])


@pytest.mark.parametrize("hook", HOOKS)
def test_safety_labs_not_sent_and_no_fhir_server_is_412(client, hook):
    resp = client.post(url(hook), json=without("safetyLabs", hook=hook, fhir_server=None))
    assert resp.status_code == 412, resp.get_json()
    assert resp.get_json()["details"]["missing"] == ["safetyLabs"]


@pytest.mark.parametrize("hook", ("order-select", "order-sign"))
def test_procedures_not_sent_and_no_fhir_server_is_412_on_the_order_hooks(client, hook):
    resp = client.post(url(hook), json=without("procedures", hook=hook, fhir_server=None))
    assert resp.status_code == 412, resp.get_json()
    assert resp.get_json()["details"]["missing"] == ["procedures"]


def test_procedures_stay_optional_on_patient_view(client):
    resp = client.post(url("patient-view"), json=without("procedures", fhir_server=None))
    assert resp.status_code == 200, resp.get_json()


@pytest.mark.parametrize("hook", HOOKS)
def test_safety_labs_sent_as_an_operation_outcome_and_no_fhir_server_is_412(client, hook):
    body = hook_request(hook, fhir_server=None)
    body["prefetch"]["safetyLabs"] = FAILED
    resp = client.post(url(hook), json=body)
    assert resp.status_code == 412, resp.get_json()
    assert "OperationOutcome" in resp.get_json()["details"]["failed"]["safetyLabs"]


def _pregnancy_sign_request():
    """The fixture's hCG under safetyLabs, where the template asks for it."""
    bundle = fx.load_patient("c-safe-pregnancy-denosumab-positive-hcg", today=dt.date.today())
    body = fx.prefetch_from_bundle(bundle)
    observations = body["observations"]["entry"]
    body["safetyLabs"]["entry"] = [e for e in observations if "hcg" in json.dumps(e).lower()
                                   or "pregnan" in json.dumps(e).lower()]
    assert body["safetyLabs"]["entry"]
    drafts = fx.draft_orders_bundle(bundle)
    return {"hookInstance": "preg-1", "hook": "order-sign", "prefetch": body, "fhirServer": FHIR,
            "context": {"patientId": body["patient"]["id"], "userId": "Practitioner/x", "draftOrders": drafts}}


@responses.activate
def test_a_failed_safety_labs_fetch_is_412_not_an_answer_without_the_pregnancy_card(client):
    body = _pregnancy_sign_request()
    resp = client.post(url("order-sign"), json=body)
    assert "C-SAFE-PREGNANCY" in [c["source"]["topic"]["code"] for c in resp.get_json()["cards"]]
    del body["prefetch"]["safetyLabs"]
    responses.add(responses.GET, re.compile(rf"{re.escape(FHIR)}/Observation\?.*"), status=500, json={})
    resp = client.post(url("order-sign"), json=body)
    assert resp.status_code == 412, resp.get_json()
    assert resp.get_json()["details"]["missing"] == ["safetyLabs"]


@responses.activate
def test_a_left_out_safety_key_is_fetched_from_the_fhir_server_as_the_sandbox_needs(client):
    # The sandbox leaves out a key whose query failed: the service fetches it itself.
    responses.add(responses.GET, re.compile(rf"{re.escape(FHIR)}/(Observation|Procedure)\?.*"), json=empty_bundle())
    resp = client.post(url("order-sign"), json=without("safetyLabs", "procedures", hook="order-sign"))
    assert resp.status_code == 200, resp.get_json()
    assert sorted(c.request.url.split("?")[0].rsplit("/", 1)[1] for c in responses.calls) == [
        "Observation", "Procedure"]


# --- 2. a failed search answered 200 -----------------------------------------------------

FAILED_ANSWERS = {
    "operation outcome": FAILED,
    "fatal outcome entry": {"resourceType": "Bundle", "type": "searchset", "entry": [outcome_entry("fatal")]},
    "error outcome entry beside a match": {"resourceType": "Bundle", "type": "searchset", "entry": [
        {"resource": condition(), "search": {"mode": "match"}}, outcome_entry("error")]},
    "transaction-response": {"resourceType": "Bundle", "type": "transaction-response", "entry": []},
    "total over the entries, no next link": searchset(total=250),
    "total counts matches, not included resources": {
        "resourceType": "Bundle", "type": "searchset", "total": 2, "entry": [
            {"resource": condition(), "search": {"mode": "match"}},
            {"resource": patient(), "search": {"mode": "include"}}]},
    "a Patient for a search": patient(),
}


@pytest.mark.parametrize("answer", FAILED_ANSWERS.values(), ids=FAILED_ANSWERS)
@responses.activate
def test_a_fetched_search_that_failed_with_200_is_412(client, answer):
    responses.add(responses.GET, CONDITIONS, json=answer)
    resp = client.post(url("order-sign"), json=without("conditions", hook="order-sign"))
    assert resp.status_code == 412, resp.get_json()
    assert resp.get_json()["details"]["missing"] == ["conditions"]


@pytest.mark.parametrize("answer", FAILED_ANSWERS.values(), ids=FAILED_ANSWERS)
def test_a_sent_search_that_failed_is_not_read_as_no_data(client, answer):
    body = hook_request("order-sign", fhir_server=None)
    body["prefetch"]["conditions"] = copy.deepcopy(answer)
    resp = client.post(url("order-sign"), json=body)
    if answer["resourceType"] == "Patient":
        assert resp.status_code == 200  # a sent non-Bundle resource is read as data, as before
        return
    assert resp.status_code == 412, resp.get_json()
    assert resp.get_json()["details"]["missing"] == ["conditions"]


@responses.activate
def test_a_sent_search_that_failed_is_fetched_again(client):
    responses.add(responses.GET, CONDITIONS, json=searchset(condition()))
    body = hook_request("order-sign")
    body["prefetch"]["conditions"] = FAILED_ANSWERS["fatal outcome entry"]
    assert client.post(url("order-sign"), json=body).status_code == 200
    assert len(responses.calls) == 1


FINE_ANSWERS = {
    "warning outcome entry": {"resourceType": "Bundle", "type": "searchset", "entry": [
        {"resource": condition(), "search": {"mode": "match"}}, outcome_entry("warning")]},
    "information outcome entry": {"resourceType": "Bundle", "type": "searchset",
                                  "entry": [outcome_entry("information")]},
    "total with included resources": {
        "resourceType": "Bundle", "type": "searchset", "total": 1, "entry": [
            {"resource": condition(), "search": {"mode": "match"}},
            {"resource": patient(), "search": {"mode": "include"}}]},
    "total equal": searchset(condition(), total=1),
    "total under the entries": searchset(condition(), total=0),
    "no total": searchset(condition()),
    "no type": {"resourceType": "Bundle", "entry": []},
    "no entry": {"resourceType": "Bundle", "type": "searchset", "total": 0},
}


@pytest.mark.parametrize("answer", FINE_ANSWERS.values(), ids=FINE_ANSWERS)
@responses.activate
def test_a_search_with_only_warnings_or_a_total_it_meets_is_read(client, answer):
    responses.add(responses.GET, CONDITIONS, json=answer)
    assert client.post(url("order-sign"), json=without("conditions", hook="order-sign")).status_code == 200
    body = hook_request("order-sign", fhir_server=None)
    body["prefetch"]["conditions"] = answer
    assert client.post(url("order-sign"), json=body).status_code == 200


@responses.activate
def test_an_optional_key_whose_search_failed_is_unavailable_as_a_failed_fetch_is(client, caplog):
    responses.add(responses.GET, re.compile(rf"{re.escape(FHIR)}/MedicationStatement\?.*"), json=FAILED)
    with caplog.at_level(logging.WARNING, logger="cds_service.fhir.prefetch"):
        resp = client.post(url("order-sign"), json=without("medicationStatements", hook="order-sign"))
    assert resp.status_code == 200
    assert [(r.prefetch_key, r.problem) for r in caplog.records
            if r.getMessage() == "optional prefetch key unavailable"] == [("medicationStatements", "search_failed")]


@responses.activate
def test_a_later_page_that_failed_fails_the_search(client):
    page2 = f"{FHIR}/Condition?patient={PATIENT_ID}&page=2"
    responses.add(responses.GET, page2, json={"resourceType": "Bundle", "type": "searchset",
                                              "entry": [outcome_entry("fatal")]})
    responses.add(responses.GET, CONDITIONS, json=searchset(condition(), total=2,
                                                            link=[{"relation": "next", "url": page2}]))
    resp = client.post(url("order-sign"), json=without("conditions", hook="order-sign"))
    assert resp.status_code == 412, resp.get_json()


@responses.activate
def test_a_total_met_across_pages_is_read(client):
    page2 = f"{FHIR}/Condition?patient={PATIENT_ID}&page=2"
    responses.add(responses.GET, page2, json=searchset(condition("c2"), total=2))
    responses.add(responses.GET, CONDITIONS, json=searchset(condition(), total=2,
                                                            link=[{"relation": "next", "url": page2}]))
    assert client.post(url("order-sign"), json=without("conditions", hook="order-sign")).status_code == 200


def _long_body(spelling: bytes) -> bytes:
    body = patient_view_request(1600, today=TODAY)
    body.pop("fhirServer", None)
    body["prefetch"]["observations"]["entry"].append(outcome_entry("fatal"))
    raw = json.dumps(body).encode()
    assert len(raw) > deferred.DEFER_BYTES
    return raw.replace(b'"mode": "outcome"', b'"mode": "' + spelling + b'"')


@pytest.mark.parametrize("spelling", [b"outcome", b"\\u006futcome", b"outc\\u006fme"])
def test_a_long_sent_bundle_with_a_failed_outcome_entry_is_not_deferred_past_the_check(client, spelling):
    raw = _long_body(spelling)
    entries = requests_json.parse_json(raw)["prefetch"]["observations"]["entry"]
    assert not any(type(e) is deferred.Deferred for e in entries)
    resp = client.post(url("patient-view"), data=raw, content_type="application/json")
    assert resp.status_code == 412, resp.get_json()
    assert resp.get_json()["details"]["missing"] == ["observations"]


def test_a_long_bundle_without_an_outcome_is_still_deferred():
    raw = _long_body(b"outcome").replace(b'"mode": "outcome"', b'"mode": "match"')
    entries = requests_json.parse_json(raw)["prefetch"]["observations"]["entry"]
    assert all(type(e) is deferred.Deferred for e in entries)


def test_search_problem_reads_the_spec_s_total_as_matches_only():
    assert search_problem(searchset(condition(), total=1, link=[{"relation": "self", "url": "x"}])) is None
    more = searchset(condition(), total=5, link=[{"relation": "next", "url": f"{FHIR}/Condition?page=2"}])
    assert search_problem(more) is None  # the rest is behind the next link
    assert search_problem(searchset(total=True)) is None  # not a number: no claim
    assert search_problem(searchset(condition(), total=2)).kind == "incomplete_search"


# --- 3. a Patient without its id ---------------------------------------------------------

@pytest.mark.parametrize("sent_id", ["absent", None, 123, ["pat-1"]])
def test_a_patient_without_its_id_is_400(client, sent_id):
    body = hook_request()
    body["prefetch"]["patient"]["deceasedBoolean"] = True
    if sent_id == "absent":
        del body["prefetch"]["patient"]["id"]
    else:
        body["prefetch"]["patient"]["id"] = sent_id
    resp = client.post(url("patient-view"), json=body)
    assert resp.status_code == 400, resp.get_json()
    assert resp.get_json()["error"] == "invalid_prefetch"
    assert resp.get_json()["details"] == ["prefetch.patient"]


def test_a_numeric_patient_id_that_matches_as_text_is_refused_too(client):
    body = hook_request(patientId="123")
    body["prefetch"]["patient"]["id"] = 123
    assert client.post(url("patient-view"), json=body).status_code == 400


# --- 4. copies of the patient that disagree ------------------------------------------------

def _chart_with_two_patient_copies(deceased_first: bool):
    bundle = fx.load_patient("tx-bp-postmenopausal-osteoporosis", today=dt.date.today())
    prefetch = fx.prefetch_from_bundle(bundle)
    alive = copy.deepcopy(prefetch["patient"])
    dead = {**alive, "deceasedBoolean": True}
    prefetch["patient"] = dead if deceased_first else alive
    prefetch["observations"]["entry"].append({"resource": alive if deceased_first else dead})
    return {"hookInstance": "two-copies", "hook": "patient-view", "prefetch": prefetch,
            "context": {"patientId": alive["id"], "userId": "Practitioner/x"}}


@pytest.mark.parametrize("deceased_first", [True, False])
def test_any_deceased_copy_of_the_patient_means_deceased(make_app, deceased_first):
    client = make_app().test_client()
    body = _chart_with_two_patient_copies(deceased_first)
    live = copy.deepcopy(body)
    live["prefetch"]["patient"].pop("deceasedBoolean", None)
    live["prefetch"]["observations"]["entry"][-1]["resource"].pop("deceasedBoolean", None)
    assert client.post(url("patient-view"), json=live).get_json()["cards"]  # the living chart has cards
    resp = client.post(url("patient-view"), json=body)
    assert resp.status_code == 200 and resp.get_json()["cards"] == []


# --- 5. why a call got 412, for operators ------------------------------------------------

def _post_logged(client, hook: str, body: dict):
    """The answer and the request's log line (as the JSON formatter writes it)."""
    lines = _Lines()
    logging.getLogger().addHandler(lines)
    try:
        resp = client.post(url(hook), json=body)
    finally:
        logging.getLogger().removeHandler(lines)
    return resp, next(line for line in lines.lines if line["message"] == "request")


@responses.activate
def test_the_request_line_of_a_412_names_the_missing_keys_and_why(client):
    responses.add(responses.GET, CONDITIONS, status=500, json={})
    responses.add(responses.GET, re.compile(rf"{re.escape(FHIR)}/MedicationStatement\?.*"), json=FAILED)
    body = without("conditions", "medicationStatements", hook="order-sign")
    body["prefetch"]["safetyLabs"] = FAILED_ANSWERS["total over the entries, no next link"]
    # fetched again, and short again
    responses.add(responses.GET, re.compile(rf"{re.escape(FHIR)}/Observation\?.*"), json=searchset(total=3))
    resp, line = _post_logged(client, "order-sign", body)
    assert resp.status_code == 412
    assert line["status"] == 412
    assert line["prefetch_missing"] == ["conditions", "safetyLabs"]
    assert line["prefetch_failed"] == {"conditions": "unavailable", "medicationStatements": "search_failed",
                                       "safetyLabs": "incomplete_search"}
    text = json.dumps(line)
    assert PATIENT_ID not in text and FHIR not in text


def test_the_request_line_says_when_there_was_no_server_to_fetch_from(client):
    resp, line = _post_logged(client, "order-sign", without("procedures", hook="order-sign", fhir_server=None))
    assert resp.status_code == 412
    assert line["prefetch_missing"] == ["procedures"]
    assert line["prefetch_failed"] == {"procedures": "no_fhir_server"}


def test_a_fhir_server_off_the_allowlist_is_counted(client):
    before = metrics.FHIR_ERRORS.labels("server_not_allowed")._value.get()
    body = without("conditions", "medicationStatements", fhir_server="https://other.example.net/fhir")
    resp, line = _post_logged(client, "patient-view", body)
    assert resp.status_code == 412
    assert metrics.FHIR_ERRORS.labels("server_not_allowed")._value.get() == before + 2  # one per key
    assert line["prefetch_failed"] == {"conditions": "server_not_allowed", "medicationStatements": "server_not_allowed"}
    assert "other.example.net" not in json.dumps(line)
