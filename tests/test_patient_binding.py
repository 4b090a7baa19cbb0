"""Only this patient's data: every resource the rules read is bound to
context.patientId, whichever prefetch key or fetched search it came from.

The method: a resource that demonstrably changes the cards when it is the
patient's own must leave them exactly as they were when it names someone
else (or no one), and its values must never be quoted."""

from __future__ import annotations

import copy
import datetime as dt
import json
import pathlib
import re
from types import SimpleNamespace

import pytest
import responses

import cds_service
from cds_service import fixtures as fx
from cds_service.fhir import terminology as t
from cds_service.fhir.allowlist import DEFAULT_PORTS
from cds_service.fhir.patient_binding import PatientBinding
from cds_service.protocol.auth import request_host
from cds_service.record import build_record
from requests_for_tests import FHIR, PATIENT_ID, empty_bundle, full_prefetch, hook_request

PV = "/cds-services/osteoporosis-patient-view"
TODAY = dt.date.today()
OTHER = "someone-else"


def ago(days: int) -> str:
    return (TODAY - dt.timedelta(days=days)).isoformat()


def subject(pid: str = PATIENT_ID) -> dict:
    return {"reference": f"Patient/{pid}"}


def t_score(oid: str, value: float, days_ago: int, pid: str = PATIENT_ID) -> dict:
    return {"resourceType": "Observation", "id": oid, "status": "final", "subject": subject(pid),
            "code": {"coding": [{"system": t.LOINC, "code": "38267-1"}]},
            "effectiveDateTime": ago(days_ago), "valueQuantity": {"value": value, "unit": "{T-score}"}}


def searchset(*resources) -> dict:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


def base_prefetch() -> dict:
    """A 75-year-old woman with lumbar spine T -2.6 a month ago and nothing else: C-TX-BP territory."""
    prefetch = full_prefetch()
    prefetch["observations"] = searchset(t_score("own-t", -2.6, 30))
    return prefetch


# One resource per prefetch key that, were it this patient's, would change the cards.
def _hip_fracture_condition(pid):
    return {"resourceType": "Condition", "id": "hipfx", "subject": subject(pid), "onsetDateTime": ago(60),
            "clinicalStatus": {"coding": [{"system": t.CONDITION_CLINICAL, "code": "active"}]},
            "code": {"coding": [{"system": t.ICD10CM, "code": "M80.051A"}]}}


def _vertebral_finding(pid):
    return {"resourceType": "Observation", "id": "vfx", "status": "final", "subject": subject(pid),
            "code": {"coding": [{"system": t.SNOMED, "code": "11311601000119109"}]}, "effectiveDateTime": ago(60)}


def _alendronate(rtype, pid):
    res = {"resourceType": rtype, "id": f"aln-{rtype}", "status": "active", "subject": subject(pid),
           "medicationCodeableConcept": {"coding": [{"system": t.RXNORM, "code": "904431"}]}}
    if rtype == "MedicationRequest":
        res.update(intent="order", authoredOn=ago(200))
    else:
        res["effectivePeriod"] = {"start": ago(200)}
    return res


def _denosumab_dose(pid):
    return {"resourceType": "MedicationAdministration", "id": "dmab", "status": "completed", "subject": subject(pid),
            "medicationCodeableConcept": {"coding": [{"system": t.RXNORM, "code": "993456"}]},
            "effectiveDateTime": ago(60)}


def _bariatric(pid):
    return {"resourceType": "Procedure", "id": "rygb", "status": "completed", "subject": subject(pid),
            "code": {"coding": [{"system": t.SNOMED, "code": "442338001"}]}, "performedDateTime": ago(2000)}


PER_KEY = {
    "observations": lambda pid: t_score("later-t", -3.6, 5, pid),
    "conditions": _hip_fracture_condition,
    "fractureFindings": _vertebral_finding,
    "medicationRequests": lambda pid: _alendronate("MedicationRequest", pid),
    "medicationStatements": lambda pid: _alendronate("MedicationStatement", pid),
    "medicationAdministrations": _denosumab_dose,
    "procedures": _bariatric,
}


def cards_of(client, prefetch, **kw):
    resp = client.post(PV, json=hook_request(prefetch=prefetch, **kw))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return [(c["source"]["topic"]["code"], c["summary"], c.get("detail", "")) for c in resp.get_json()["cards"]]


def with_resource(prefetch, key, resource):
    prefetch = copy.deepcopy(prefetch)
    prefetch[key]["entry"].append({"resource": resource})
    return prefetch


@pytest.mark.parametrize("key", sorted(PER_KEY))
def test_another_patients_resource_in_any_key_is_ignored(client, key):
    base = cards_of(client, base_prefetch())
    own = cards_of(client, with_resource(base_prefetch(), key, PER_KEY[key](PATIENT_ID)))
    assert own != base, f"the {key} resource must matter when it is the patient's own"
    foreign = cards_of(client, with_resource(base_prefetch(), key, PER_KEY[key](OTHER)))
    assert foreign == base


@pytest.mark.parametrize("key", sorted(PER_KEY))
def test_a_resource_without_subject_is_ignored(client, key):
    resource = PER_KEY[key](PATIENT_ID)
    del resource["subject"]
    assert cards_of(client, with_resource(base_prefetch(), key, resource)) == cards_of(client, base_prefetch())


def test_foreign_value_is_never_quoted(client):
    cards = cards_of(client, with_resource(base_prefetch(), "observations", t_score("later-t", -3.6, 5, OTHER)))
    assert cards and "-3.6" not in json.dumps(cards)
    assert "-2.6" in json.dumps(cards)  # the patient's own value is what the card cites


def test_reference_forms_that_name_the_patient(client):
    base = cards_of(client, base_prefetch())
    for ref in (f"Patient/{PATIENT_ID}", f"Patient/{PATIENT_ID}/_history/3", f"{FHIR}/Patient/{PATIENT_ID}",
                f"{FHIR.upper().replace('/R4', '/r4')}/Patient/{PATIENT_ID}"):
        res = t_score("later-t", -3.6, 5)
        res["subject"] = {"reference": ref}
        assert cards_of(client, with_resource(base_prefetch(), "observations", res)) != base, ref
    for ref in (f"Patient/{PATIENT_ID}x", f"Patient/{OTHER}", f"https://other.example.org/r4/Patient/{PATIENT_ID}",
                f"{FHIR}/Patient/{PATIENT_ID}?x=1", f"Group/{PATIENT_ID}", "urn:uuid:4f7b1c3e-0000-4000-8000-000000000001",
                "#contained", ""):
        res = t_score("later-t", -3.6, 5)
        res["subject"] = {"reference": ref}
        assert cards_of(client, with_resource(base_prefetch(), "observations", res)) == base, ref


def test_urn_uuid_reference_resolves_through_the_patients_full_url(client):
    urn = "urn:uuid:0b4e9d3c-1111-4222-8333-944455556666"
    prefetch = base_prefetch()
    res = t_score("later-t", -3.6, 5)
    res["subject"] = {"reference": urn}
    # A transaction-style Bundle carrying the patient under its urn:uuid fullUrl, and the Observation.
    prefetch["observations"]["entry"] += [
        {"fullUrl": urn, "resource": copy.deepcopy(prefetch["patient"])},
        {"fullUrl": "urn:uuid:0b4e9d3c-1111-4222-8333-000000000000", "resource": res},
    ]
    assert cards_of(client, prefetch) != cards_of(client, base_prefetch())
    # The same urn naming another patient's entry binds nothing.
    other = copy.deepcopy(prefetch)
    other["observations"]["entry"][-2]["resource"]["id"] = OTHER
    assert cards_of(client, other) == cards_of(client, base_prefetch())


def test_a_foreign_patient_never_supplies_age_or_sex(client):
    # The context patient's own Patient is absent; a man of 40 arrives under another key.
    stranger = {"resourceType": "Patient", "id": OTHER, "gender": "male", "birthDate": ago(40 * 366)}
    prefetch = base_prefetch()
    prefetch["patient"] = None
    prefetch["conditions"]["entry"].append({"resource": stranger})
    record = build_record(prefetch, today=TODAY, patient_id=PATIENT_ID)
    assert record.age is None and record.sex is None
    assert (f"Patient/{OTHER}", "foreign-patient") in record.ignored
    # ...and with the patient's own Patient present, whichever key comes first, theirs is used.
    prefetch["patient"] = full_prefetch()["patient"]
    prefetch = {"conditions": prefetch.pop("conditions"), **prefetch}
    record = build_record(prefetch, today=TODAY, patient_id=PATIENT_ID)
    assert record.sex == "female" and record.patient_id == PATIENT_ID


OS = "/cds-services/osteoporosis-order-sign"
OSEL = "/cds-services/osteoporosis-order-select"


def _denosumab_on_alendronate(hook="order-sign", **kw):
    """An order hook whose draft is denosumab for a patient on alendronate: C-DUP-ANTIRES
    fires when the draft is judged as the patient's."""
    body = hook_request(hook, prefetch=base_prefetch(), **kw)
    draft = body["context"]["draftOrders"]["entry"][0]["resource"]
    draft["medicationCodeableConcept"] = {"coding": [{"system": t.RXNORM, "code": "993456"}]}  # denosumab
    body["prefetch"]["medicationRequests"]["entry"].append({"resource": _alendronate("MedicationRequest", PATIENT_ID)})
    return body, draft


def _draft_call(client, body, path=OS):
    resp = client.post(path, json=body)
    return resp.status_code, resp.get_json()


@pytest.mark.parametrize("ref,fhir_server", [
    (f"Patient/{OTHER}", FHIR),
    (f"Patient/{OTHER}/_history/2", FHIR),
    (f"{FHIR}/Patient/{OTHER}", FHIR),
    (f"{FHIR}/Patient/{OTHER}", None),                                # no fhirServer: the id alone says so
    (f"https://other.example.org/r4/Patient/{PATIENT_ID}", FHIR),     # the same id on another server
    (f"Group/{PATIENT_ID}", FHIR),
])
@pytest.mark.parametrize("hook,path", [("order-sign", OS), ("order-select", OSEL)])
def test_a_draft_order_for_another_patient_is_400(client, ref, fhir_server, hook, path):
    """Review (bind8 M1): such a draft was skipped, its safety cards gone with a 200. The EHR
    sent another patient's order in this patient's context: say so."""
    body, draft = _denosumab_on_alendronate(hook, fhir_server=fhir_server)
    status, own = _draft_call(client, body, path)
    assert status == 200 and "C-DUP-ANTIRES" in {c["source"]["topic"]["code"] for c in own["cards"]}
    draft["subject"] = {"reference": ref}
    body["hookInstance"] = "b0e5a8a4-0000-4000-8000-000000000002"
    status, answer = _draft_call(client, body, path)
    assert status == 400, answer
    assert answer["error"] == "draft_for_another_patient" and answer["details"] == ["context.draftOrders"]
    assert "another patient's order" in answer["message"] and OTHER not in answer["message"]


def test_a_draft_order_for_another_patient_is_400_even_when_not_selected(client):
    """order-select: the other drafts are context for the selected ones; one of another patient's
    among them is the same EHR error."""
    body, _ = _denosumab_on_alendronate("order-select")
    body["context"]["draftOrders"]["entry"].append({"resource": {
        "resourceType": "MedicationRequest", "id": "theirs", "status": "draft", "intent": "order",
        "subject": subject(OTHER)}})
    assert _draft_call(client, body, OSEL)[0] == 400


def test_patient_view_ignores_draft_orders_in_its_context(client):
    body = hook_request(prefetch=base_prefetch())
    control = client.post(PV, json=body).get_json()["cards"]
    body["context"]["draftOrders"] = {"resourceType": "Bundle", "entry": [{"resource": {
        "resourceType": "MedicationRequest", "id": "x", "status": "draft", "intent": "order",
        "subject": subject(OTHER)}}]}
    resp = client.post(PV, json=body)
    assert resp.status_code == 200
    assert [c["source"]["topic"]["code"] for c in resp.get_json()["cards"]] == \
        [c["source"]["topic"]["code"] for c in control]


@pytest.mark.parametrize("ref,fhir_server", [
    ("urn:uuid:4f7b1c3e-0000-4000-8000-000000000001", FHIR),  # not a fullUrl in context.draftOrders
    (f"{FHIR}/Patient/{PATIENT_ID}", None),                  # the patient's id, but no base to check it by
    (f"{FHIR}/Patient/{PATIENT_ID}/_history/4", None),
])
@pytest.mark.parametrize("hook,path", [("order-sign", OS), ("order-select", OSEL)])
def test_a_draft_whose_subject_cannot_be_resolved_is_judged_and_counted(client, caplog, ref, fhir_server, hook,
                                                                       path):
    """Review (bind8 M1): these drafts were skipped (200, no safety card). A draft is what the
    clinician is about to sign: it is judged as the context patient's, as one with no subject
    is, and counted (its type, never an id)."""
    body, draft = _denosumab_on_alendronate(hook, fhir_server=fhir_server)
    draft["subject"] = {"reference": ref}
    with caplog.at_level("WARNING"):
        status, answer = _draft_call(client, body, path)
    assert status == 200, answer
    assert "C-DUP-ANTIRES" in {c["source"]["topic"]["code"] for c in answer["cards"]}
    line = [r.getMessage() for r in caplog.records if "draft orders whose subject" in r.getMessage()]
    assert line == ["record: judged 1 draft orders whose subject could not be resolved as the context "
                    "patient's: MedicationRequest 1"]
    assert re.search(r'cds_draft_orders_unbound_total\{reason="unresolved-reference"\} [1-9]',
                     client.get("/metrics").get_data(as_text=True))


def test_a_draft_with_no_subject_is_judged_and_not_counted_as_unbound():
    body, draft = _denosumab_on_alendronate()
    del draft["subject"]
    record = build_record(body["prefetch"], drafts=[draft], today=TODAY, patient_id=PATIENT_ID, fhir_server=FHIR)
    assert [d.reference for d in record.drafts] == ["MedicationRequest/request-123"]
    assert record.unbound_drafts == () and record.ignored == ()


def test_ignored_resources_are_counted_in_metrics(client):
    client.post(PV, json=hook_request(prefetch=with_resource(base_prefetch(), "observations",
                                                             t_score("later-t", -3.6, 5, OTHER))))
    metrics = client.get("/metrics").get_data(as_text=True)
    assert re.search(r'cds_record_ignored_total\{reason="foreign-patient"\} [1-9]', metrics)


@responses.activate
def test_fetched_searches_are_held_to_the_same_rule(client):
    def serve(observations):
        responses.reset()
        responses.add(responses.GET, f"{FHIR}/Patient/{PATIENT_ID}", json=full_prefetch()["patient"])
        responses.add(responses.GET, re.compile(rf"{re.escape(FHIR)}/Observation\?.*"), json=observations)
        for rtype in ("Condition", "MedicationRequest", "MedicationAdministration", "MedicationStatement",
                      "Procedure"):
            responses.add(responses.GET, re.compile(rf"{re.escape(FHIR)}/{rtype}\?.*"), json=empty_bundle())

    serve(searchset(t_score("own-t", -2.6, 30)))
    base = cards_of(client, {}, token="t")
    serve(searchset(t_score("own-t", -2.6, 30), t_score("later-t", -3.6, 5, OTHER)))
    assert cards_of(client, {}, token="t") == base
    serve(searchset(t_score("own-t", -2.6, 30), t_score("later-t", -3.6, 5)))
    assert cards_of(client, {}, token="t") != base


def test_binding_unit_cases():
    b = PatientBinding("p1", fhir_server="https://EHR.example.org/fhir/")
    obs = {"resourceType": "Observation"}
    assert b.reason_to_ignore({**obs, "subject": {"reference": "https://ehr.example.org/fhir/Patient/p1"}}) is None
    assert b.reason_to_ignore({**obs, "subject": {"reference": "https://ehr.example.org/other/Patient/p1"}}) \
        == "foreign-patient"
    assert b.reason_to_ignore({**obs, "subject": {"display": "Jane"}}) == "no-subject"
    assert b.reason_to_ignore({**obs, "subject": "Patient/p1"}) == "no-subject"
    assert b.reason_to_ignore({"resourceType": "AllergyIntolerance", "patient": {"reference": "Patient/p1"}}) is None
    assert b.reason_to_ignore({"resourceType": "Patient", "id": "p2"}) == "foreign-patient"
    assert b.reason_to_ignore({"resourceType": "Practitioner", "id": "x"}) is None  # not a patient's resource


# Care on record (second-pass 7) is bound to the patient like everything else: another
# patient's physical-therapy referral or visit never quiets this patient's card.
def _pt_referral(pid):
    return {"resourceType": "ServiceRequest", "id": "pt", "status": "active", "intent": "order", "subject": subject(pid),
            "code": {"coding": [{"system": t.SNOMED, "code": "444831000124102"}]}, "authoredOn": ago(30)}


def _pt_visit(pid):
    return {"resourceType": "Encounter", "id": "ptv", "status": "finished", "subject": subject(pid),
            "type": [{"coding": [{"system": t.CPT, "code": "97161"}]}], "period": {"start": ago(30)}}


@pytest.mark.parametrize("key,make", [("serviceRequests", _pt_referral), ("encounters", _pt_visit)])
def test_another_patients_care_never_quiets_a_card(client, key, make):
    prefetch = fx.prefetch_from_bundle(fx.load_patient("c-exercise-osteopenia-no-spinal-precautions",
                                                       today=dt.date.today()))
    pid = prefetch["patient"]["id"]

    def exercise_card(extra):
        body = hook_request(prefetch=with_resource(prefetch, key, extra), patientId=pid)
        resp = client.post(PV, json=body)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        return "C-EXERCISE" in {c["source"]["topic"]["code"] for c in resp.get_json()["cards"]}

    assert not exercise_card(make(pid))  # the patient's own referral or visit: done, quiet
    assert exercise_card(make(OTHER))    # someone else's: ignored


def test_another_patients_resource_is_counted_even_when_no_rule_reads_it():
    heart_rate = {"resourceType": "Observation", "id": "hr", "status": "final", "subject": subject(OTHER),
                  "code": {"coding": [{"system": t.LOINC, "code": "8867-4"}]}, "effectiveDateTime": ago(3),
                  "valueQuantity": {"value": 70, "unit": "/min"}}
    record = build_record(with_resource(base_prefetch(), "observations", heart_rate), today=TODAY,
                          patient_id=PATIENT_ID)
    assert ("Observation/hr", "foreign-patient") in record.ignored


# --- urn: aliases resolve within their own Bundle, and only when they name the patient alone ---

URN = "urn:uuid:aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"


def _urn_case(here: list[dict], in_conditions: list[dict]) -> dict:
    """base_prefetch plus a T-score -3.6 whose subject is URN, with `here` (entries) in its
    own Bundle (observations) and `in_conditions` in another prefetch Bundle."""
    prefetch = base_prefetch()
    res = t_score("later-t", -3.6, 5)
    res["subject"] = {"reference": URN}
    prefetch["observations"]["entry"] += [*here, {"fullUrl": "urn:uuid:bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb",
                                                  "resource": res}]
    prefetch["conditions"]["entry"] += in_conditions
    return prefetch


def _patient_at(urn: str, pid: str = PATIENT_ID) -> dict:
    return {"fullUrl": urn, "resource": {**full_prefetch()["patient"], "id": pid}}


@pytest.mark.parametrize("here,elsewhere", [
    ([_patient_at(URN, OTHER)], [_patient_at(URN)]),  # another patient here, the patient in another Bundle
    ([], [_patient_at(URN)]),                          # the patient only in another Bundle
    ([_patient_at(URN, OTHER), _patient_at(URN)], []),  # both in this Bundle: which one is meant?
    ([_patient_at(URN), _patient_at(URN, OTHER)], []),
    ([_patient_at(URN), {"fullUrl": URN, "resource": {"resourceType": "Practitioner", "id": "dr"}}], []),
], ids=["other-here-patient-elsewhere", "patient-elsewhere", "other-then-patient", "patient-then-other",
        "patient-and-practitioner"])
def test_a_urn_that_is_not_the_patients_alone_in_its_bundle_binds_nothing(client, here, elsewhere):
    base = cards_of(client, base_prefetch())
    cards = cards_of(client, _urn_case(here, elsewhere))
    assert cards == base and "-3.6" not in json.dumps(cards)
    # The counterpart: the same urn naming the patient alone in the Observation's own Bundle binds it.
    own = cards_of(client, _urn_case([_patient_at(URN), _patient_at(URN)], [_patient_at(URN, OTHER)]))
    assert own != base and "-3.6" in json.dumps(own)


def test_a_draft_orders_urn_subject_resolves_within_draft_orders(client):
    """context.draftOrders is a Bundle of its own: a draft's urn: subject resolves there."""
    def denosumab_draft_cards(draft_entries, prefetch_entries):
        body = hook_request("order-sign", prefetch=base_prefetch())
        draft = body["context"]["draftOrders"]["entry"][0]["resource"]
        draft["medicationCodeableConcept"] = {"coding": [{"system": t.RXNORM, "code": "993456"}]}  # denosumab
        draft["subject"] = {"reference": URN}
        body["context"]["draftOrders"]["entry"] += draft_entries
        body["prefetch"]["medicationRequests"]["entry"].append({"resource": _alendronate("MedicationRequest",
                                                                                        PATIENT_ID)})
        body["prefetch"]["medicationRequests"]["entry"] += prefetch_entries
        resp = client.post("/cds-services/osteoporosis-order-sign", json=body)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        return {c["source"]["topic"]["code"] for c in resp.get_json()["cards"]}

    assert "C-DUP-ANTIRES" in denosumab_draft_cards([_patient_at(URN)], [])
    # Unresolved in context.draftOrders (the patient only in a prefetch Bundle): still judged as the
    # patient's (bind8 M1: a draft is what is about to be signed), and counted.
    assert "C-DUP-ANTIRES" in denosumab_draft_cards([], [_patient_at(URN)])
    # A urn that is another patient's fullUrl in context.draftOrders: that patient's order, 400.
    for entries in ([_patient_at(URN, OTHER)], [_patient_at(URN), _patient_at(URN, OTHER)]):
        with pytest.raises(AssertionError, match="draft_for_another_patient"):
            denosumab_draft_cards(entries, [])


# --- reference forms: Patient/<id> or Patient/<id>/_history/<vid>, nothing else ---

@pytest.mark.parametrize("ref", [
    f"Patient/{PATIENT_ID}/_history/../../Patient/{OTHER}",
    f"Patient/{PATIENT_ID}/_history/..",
    f"Patient/{PATIENT_ID}/_history/3/x",
    f"Patient/{PATIENT_ID}/_history/",
    f"{FHIR}/Patient/{PATIENT_ID}/_history/../../{OTHER}",
    f"{FHIR}/Patient/{PATIENT_ID}/_history/%2e%2e/%2E%2E/{OTHER}",
    f"{FHIR}/x/../Patient/{PATIENT_ID}",
    f"{FHIR}/./Patient/{PATIENT_ID}",
])
def test_a_reference_with_a_dot_segment_or_more_path_binds_nothing(client, ref):
    base = cards_of(client, base_prefetch())
    res = t_score("later-t", -3.6, 5)
    res["subject"] = {"reference": ref}
    cards = cards_of(client, with_resource(base_prefetch(), "observations", res))
    assert cards == base and "-3.6" not in json.dumps(cards)


def test_an_absolute_reference_binds_only_under_the_calls_fhir_server(client):
    """With no fhirServer there is no base to hold an absolute reference to (the same id on
    another server is another patient): it binds nothing. Relative references still do."""
    base = cards_of(client, base_prefetch(), fhir_server=None)
    for ref in (f"https://other-hospital.example/fhir/Patient/{PATIENT_ID}", f"{FHIR}/Patient/{PATIENT_ID}"):
        res = t_score("later-t", -3.6, 5)
        res["subject"] = {"reference": ref}
        cards = cards_of(client, with_resource(base_prefetch(), "observations", res), fhir_server=None)
        assert cards == base and "-3.6" not in json.dumps(cards), ref
        # ...and under the call's fhirServer, the one on it binds.
        bound = cards_of(client, with_resource(base_prefetch(), "observations", res))
        assert (bound != cards_of(client, base_prefetch())) == ref.startswith(FHIR), ref
    for ref in (f"Patient/{PATIENT_ID}", f"Patient/{PATIENT_ID}/_history/2"):
        res = t_score("later-t", -3.6, 5)
        res["subject"] = {"reference": ref}
        own = cards_of(client, with_resource(base_prefetch(), "observations", res), fhir_server=None)
        assert own != base and "-3.6" in json.dumps(own), ref


@pytest.mark.parametrize("focus", [
    [{"reference": f"Patient/{OTHER}"}],                                   # e.g. the patient's mother
    [{"reference": f"Patient/{PATIENT_ID}"}, {"reference": f"Patient/{OTHER}"}],
    [{"reference": "RelatedPerson/mother"}],
    [{"display": "fetus"}],
    {"reference": f"Patient/{OTHER}"},                                     # not a list: still a focus
])
def test_an_observation_whose_focus_is_someone_else_is_about_them(client, focus):
    base = cards_of(client, base_prefetch())
    res = {**t_score("later-t", -3.6, 5), "focus": focus}
    cards = cards_of(client, with_resource(base_prefetch(), "observations", res))
    assert cards == base and "-3.6" not in json.dumps(cards)
    record = build_record(with_resource(base_prefetch(), "observations", res), today=TODAY, patient_id=PATIENT_ID)
    assert ("Observation/later-t", "foreign-patient") in record.ignored


def test_an_observation_whose_focus_is_the_patient_is_theirs(client):
    base = cards_of(client, base_prefetch())
    for focus in ([{"reference": f"Patient/{PATIENT_ID}"}], [], None):
        res = {**t_score("later-t", -3.6, 5), "focus": focus}
        cards = cards_of(client, with_resource(base_prefetch(), "observations", res))
        assert cards != base and "-3.6" in json.dumps(cards), focus


def test_another_patients_resource_with_the_same_id_never_hides_the_patients_own(client):
    """Duplicates are dropped only among resources that bound: another patient's Observation/x
    first must not make the patient's own Observation/x a duplicate."""
    own = t_score("later-t", -3.6, 5)
    foreign = t_score("later-t", -3.9, 5, OTHER)
    only_own = cards_of(client, with_resource(base_prefetch(), "observations", own))
    assert only_own != cards_of(client, base_prefetch())
    both = with_resource(with_resource(base_prefetch(), "observations", foreign), "observations", own)
    cards = cards_of(client, both)
    assert cards == only_own and "-3.9" not in json.dumps(cards)
    # The patient's own copy under a second key is still read once; the foreign one is counted once.
    both["fractureFindings"]["entry"] += [{"resource": foreign}, {"resource": own}]
    assert cards_of(client, both) == only_own
    record = build_record(both, today=TODAY, patient_id=PATIENT_ID)
    assert record.ignored.count(("Observation/later-t", "foreign-patient")) == 1
    assert [b.value for b in record.bmd].count(-3.6) == 1


# --- Review 11 L8: a draft whose subject names the context patient in a form the binding did
# not know was a 400 draft_for_another_patient. Only a reference that clearly names another
# patient is; one that cannot be resolved is judged as the patient's and counted (bind8 M1). ---

def _unbound_drafts(client):
    found = re.search(r'cds_draft_orders_unbound_total\{reason="unresolved-reference"\} ([0-9.]+)',
                      client.get("/metrics").get_data(as_text=True))
    return float(found.group(1)) if found else 0.0


def _assert_judged(client, body, path, newly_unbound):
    """The call is a 200 whose draft was judged (C-DUP-ANTIRES), with `newly_unbound` more drafts
    counted as unbound."""
    before = _unbound_drafts(client)
    status, answer = _draft_call(client, body, path)
    assert status == 200, answer
    assert "C-DUP-ANTIRES" in {c["source"]["topic"]["code"] for c in answer["cards"]}
    assert _unbound_drafts(client) == before + newly_unbound


def _ignored(client, reason):
    found = re.search(rf'cds_record_ignored_total\{{reason="{reason}"\}} ([0-9.]+)',
                      client.get("/metrics").get_data(as_text=True))
    return float(found.group(1)) if found else 0.0


@pytest.mark.parametrize("ref,fhir_server", [
    (f"https://fhir.example.org:443/r4/Patient/{PATIENT_ID}", FHIR),         # https's default port
    (f"https://FHIR.example.org:443/r4/Patient/{PATIENT_ID}/_history/2", FHIR),
    (f"https://fhir.example.org/r4/Patient/{PATIENT_ID}", "https://fhir.example.org:443/r4/"),
    (f"http://localhost:80/r4/Patient/{PATIENT_ID}", "http://localhost/r4"),  # http's (loopback only)
    (f"http://localhost/r4/Patient/{PATIENT_ID}", "http://localhost:80/r4"),
])
@pytest.mark.parametrize("hook,path", [("order-sign", OS), ("order-select", OSEL)])
def test_a_default_port_names_the_same_server_for_drafts_and_prefetch(make_app, ref, fhir_server, hook, path):
    client = make_app(CDS_ALLOWED_FHIR_SERVERS=fhir_server, CDS_ALLOW_LOOPBACK_HTTP="true").test_client()
    body, draft = _denosumab_on_alendronate(hook, fhir_server=fhir_server)
    draft["subject"] = {"reference": ref}
    _assert_judged(client, body, path, 0)  # bound, not merely judged
    # A prefetched resource in the same form binds too (one rule for both).
    res = t_score("later-t", -3.6, 5)
    res["subject"] = {"reference": ref}
    base = cards_of(client, base_prefetch(), fhir_server=fhir_server)
    bound = cards_of(client, with_resource(base_prefetch(), "observations", res), fhir_server=fhir_server)
    assert bound != base and "-3.6" in json.dumps(bound)


def test_one_table_of_default_ports_for_references_and_the_request_host():
    """patient_binding and auth.request_host each had their own table of default ports (the
    binding's without ws/wss; three more places spelled {"http": 80, "https": 443}): one table,
    allowlist.DEFAULT_PORTS, read the same way by both."""
    pattern = re.compile(r"""["'](?:https?|wss?)["']\s*:\s*["']?:?(?:80|443)\b""")
    root = pathlib.Path(cds_service.__file__).parent
    tables = [str(path.relative_to(root)) for path in sorted(root.rglob("*.py"))
              for line in path.read_text().splitlines() if pattern.search(line)]
    assert tables == ["fhir/allowlist.py"]
    for scheme, port in DEFAULT_PORTS.items():
        assert PatientBinding("p", fhir_server=f"{scheme}://h:{port}/r4").server_base == f"{scheme}://h/r4"
        request = SimpleNamespace(host="", headers={"Host": f"cds_service:{port}"}, scheme=scheme)
        assert request_host(request) == "cds_service", scheme
        other = PatientBinding("p", fhir_server=f"{scheme}://h:{port + 1}/r4").server_base  # not a default one
        assert other == f"{scheme}://h:{port + 1}/r4"
        assert request_host(SimpleNamespace(host="", headers={"Host": f"a_b:{port + 1}"}, scheme=scheme)) \
            == f"a_b:{port + 1}"


URN_P = "urn:uuid:cccccccc-cccc-4ccc-8ccc-cccccccccccc"


@pytest.mark.parametrize("ref,entries", [
    ("Patient?identifier=http://hospital.example/mrn|12345", []),           # a conditional reference
    ("#p", []),                                                              # a contained resource
    (URN_P, [{"fullUrl": URN_P, "resource": {"resourceType": "Patient"}}]),  # its Patient has no id
    (URN_P, [{"fullUrl": URN_P, "resource": {"resourceType": "Patient",
                                             "identifier": [{"system": "http://hospital.example/mrn",
                                                             "value": "12345"}]}}]),
], ids=["conditional", "contained", "urn-patient-no-id", "urn-patient-identifier-only"])
@pytest.mark.parametrize("hook,path", [("order-sign", OS), ("order-select", OSEL)])
def test_a_draft_subject_that_cannot_be_resolved_is_judged_and_counted_not_400(client, ref, entries, hook, path):
    body, draft = _denosumab_on_alendronate(hook)
    draft["subject"] = {"reference": ref}
    draft["contained"] = [{"resourceType": "Patient", "id": "p"}]
    body["context"]["draftOrders"]["entry"] += entries
    _assert_judged(client, body, path, 1)


@pytest.mark.parametrize("ref,entries", [
    (f"https://fhir.example.org:443/r4/Patient/{OTHER}", []),
    (f"https://fhir.example.org:8443/r4/Patient/{PATIENT_ID}", []),  # another port: another server
    (f"Patient/{OTHER}", []),
    (URN_P, [{"fullUrl": URN_P, "resource": {"resourceType": "Patient", "id": OTHER}}]),
    (URN_P, [{"fullUrl": URN_P, "resource": {"resourceType": "Patient", "id": OTHER,
                                             "identifier": [{"value": "12345"}]}}]),
])
def test_the_controls_a_draft_that_clearly_names_another_patient_is_still_400(client, ref, entries):
    body, draft = _denosumab_on_alendronate()
    draft["subject"] = {"reference": ref}
    body["context"]["draftOrders"]["entry"] += entries
    status, answer = _draft_call(client, body)
    assert status == 400 and answer["error"] == "draft_for_another_patient", answer


@pytest.mark.parametrize("ref,entries", [
    ("Patient?identifier=http://hospital.example/mrn|12345", []),
    ("#p", []),
    (URN_P, [{"fullUrl": URN_P, "resource": {"resourceType": "Patient"}}]),
    (URN_P, [{"fullUrl": URN_P, "resource": {"resourceType": "Patient", "identifier": [{"value": "12345"}]}}]),
])
def test_a_prefetched_resource_with_such_a_subject_is_still_ignored_as_unresolved(client, ref, entries):
    """Prefetched data stays as strict as before: a resource that cannot be tied to the patient is
    not read (now counted as unresolved-reference, not foreign-patient)."""
    base = cards_of(client, base_prefetch())
    res = t_score("later-t", -3.6, 5)
    res["subject"] = {"reference": ref}
    res["contained"] = [{"resourceType": "Patient", "id": "p"}]
    prefetch = with_resource(base_prefetch(), "observations", res)
    prefetch["observations"]["entry"] += entries
    before = _ignored(client, "unresolved-reference")
    cards = cards_of(client, prefetch)
    assert cards == base and "-3.6" not in json.dumps(cards)
    assert _ignored(client, "unresolved-reference") == before + 1


# --- A conditional reference that is exactly one `_id` search, Patient?_id=<id>, names that id as
# Patient/<id> does (the server resolves it to that Patient or none). It was judged as
# unresolved: another patient's draft so named was checked against this patient's chart. ---

@pytest.mark.parametrize("ref", [
    f"Patient?_id={OTHER}",
    f"Patient?_id={OTHER.replace('-', '%2D')}",              # percent-encoding is read as the server reads it
    f"{FHIR}/Patient?_id={OTHER}",
    # adversarial review 13: any `_id` search that leaves the patient out finds only others
    f"Patient?_id={OTHER}&", f"Patient?&_id={OTHER}", f"Patient?_id:exact={OTHER}",
    f"Patient?_id={OTHER},someone-third", f"Patient?_id={OTHER}#x", f"Patient?_id={OTHER}&active=true",
    f"Patient?_id={PATIENT_ID}&_id={OTHER}", f"{FHIR}/Patient?_id:exact={OTHER}&",
])
@pytest.mark.parametrize("hook,path", [("order-sign", OS), ("order-select", OSEL)])
def test_a_draft_whose_subject_is_an_id_search_for_another_patient_is_400(client, ref, hook, path):
    body, draft = _denosumab_on_alendronate(hook)
    draft["subject"] = {"reference": ref}
    status, answer = _draft_call(client, body, path)
    assert status == 400 and answer["error"] == "draft_for_another_patient", answer
    assert OTHER not in answer["message"]


@pytest.mark.parametrize("ref,fhir_server", [
    (f"Patient?_id={PATIENT_ID}", FHIR),
    (f"Patient?_id={PATIENT_ID}", None),                     # relative: no base needed, as for Patient/<id>
    (f"{FHIR}/Patient?_id={PATIENT_ID}", FHIR),
    (f"https://FHIR.example.org:443/r4/Patient?_id={PATIENT_ID}", FHIR),
])
@pytest.mark.parametrize("hook,path", [("order-sign", OS), ("order-select", OSEL)])
def test_a_draft_whose_subject_is_an_id_search_for_the_patient_is_theirs(client, ref, fhir_server, hook, path):
    body, draft = _denosumab_on_alendronate(hook, fhir_server=fhir_server)
    draft["subject"] = {"reference": ref}
    _assert_judged(client, body, path, 0)  # bound, not merely judged


@pytest.mark.parametrize("ref,fhir_server", [
    (f"Patient?_id={OTHER},{PATIENT_ID}", FHIR),            # a list of ids: which one cannot be told
    (f"Patient?_id={PATIENT_ID}&active=true", FHIR),        # another parameter
    (f"Patient?_id={PATIENT_ID}#x", FHIR),                  # a fragment
    (f"Patient?_id:not={OTHER}", FHIR),                     # another modifier
    ("Patient?_id=", FHIR),
    (f"Patient?_ID={OTHER}", FHIR),                         # parameter names are case-sensitive
    (f"Patient?identifier={OTHER}", FHIR),
    (f"{FHIR}/Patient?_id={PATIENT_ID}", None),             # absolute with no fhirServer: as {FHIR}/Patient/<id>
])
@pytest.mark.parametrize("hook,path", [("order-sign", OS), ("order-select", OSEL)])
def test_the_controls_any_other_conditional_draft_subject_is_judged_and_counted(client, ref, fhir_server, hook,
                                                                              path):
    body, draft = _denosumab_on_alendronate(hook, fhir_server=fhir_server)
    draft["subject"] = {"reference": ref}
    _assert_judged(client, body, path, 1)


@pytest.mark.parametrize("ref", [
    f"{FHIR}/Patient?identifier={PATIENT_ID}",                  # an absolute URL with another query: as before
    f"https://other.example.org/r4/Patient?_id={PATIENT_ID}",    # the same id on another server
])
def test_the_controls_an_absolute_search_that_is_not_the_patients_is_still_400(client, ref):
    body, draft = _denosumab_on_alendronate()
    draft["subject"] = {"reference": ref}
    status, answer = _draft_call(client, body)
    assert status == 400 and answer["error"] == "draft_for_another_patient", answer


def test_a_prefetched_resource_whose_subject_is_an_id_search_is_bound_the_same_way(client):
    """One reading for prefetch and drafts: the patient's own is read; another patient's is
    ignored and counted as another patient's (not merely unresolved), and never quoted."""
    base = cards_of(client, base_prefetch())
    for ref in (f"Patient?_id={PATIENT_ID}", f"{FHIR}/Patient?_id={PATIENT_ID}"):
        res = t_score("later-t", -3.6, 5)
        res["subject"] = {"reference": ref}
        own = cards_of(client, with_resource(base_prefetch(), "observations", res))
        assert own != base and "-3.6" in json.dumps(own), ref
    for ref, reason in ((f"Patient?_id={OTHER}", "foreign-patient"), (f"{FHIR}/Patient?_id={OTHER}", "foreign-patient"),
                        (f"Patient?_id={PATIENT_ID},{OTHER}", "unresolved-reference")):
        res = t_score("later-t", -3.6, 5)
        res["subject"] = {"reference": ref}
        before = _ignored(client, reason)
        cards = cards_of(client, with_resource(base_prefetch(), "observations", res))
        assert cards == base and "-3.6" not in json.dumps(cards), ref
        assert _ignored(client, reason) == before + 1, ref


def test_id_search_binding_unit_cases():
    b = PatientBinding("p1", fhir_server="https://ehr.example.org/fhir")
    obs = {"resourceType": "Observation"}
    for ref, reason in (("Patient?_id=p1", None), ("Patient?_id=p2", "foreign-patient"),
                        ("Patient?_id=%70%31", None), ("https://EHR.example.org:443/fhir/Patient?_id=p1", None),
                        ("https://ehr.example.org/fhir/Patient?_id=p2", "foreign-patient"),
                        ("Patient?_id=..", "unresolved-reference"), ("Patient?_id=p1#x", "unresolved-reference"),
                        ("Patient?_id=p1%2Cp2", "unresolved-reference"), ("Patient?_id=p1+", "unresolved-reference")):
        assert b.reason_to_ignore({**obs, "subject": {"reference": ref}}) == reason, ref
    # ...and in an Observation's focus, as any reference there.
    assert b.reason_to_ignore({**obs, "subject": {"reference": "Patient/p1"},
                               "focus": [{"reference": "Patient?_id=p2"}]}) == "foreign-patient"
