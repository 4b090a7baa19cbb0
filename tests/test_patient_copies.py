"""Copies of the context Patient that disagree on gender or birthDate.

prefetch.patient (sent or fetched) and a copy of Patient/<id> in a Bundle (an `_include`, a
transaction) are both the context patient's. Which one gave age and sex depended on the order
they were read: a sent prefetch.patient first (resolve_prefetch keeps the templates' order), a
fetched one after every sent key, so the Bundle's copy won. Now prefetch.patient (the EHR's own
read of the context patient) gives the value whatever the order, the disagreement is counted by
reason, never by value, and without prefetch.patient the value is unknown. (Unknown for both, the
first version, left a very-high-risk chart with no card at all: clinical review 14.) The safety
checks fail closed: a label contraindication in men (Evenity) fires when one copy says male, as
one deceased copy is enough; the kidney estimate takes the lower clearance."""

from __future__ import annotations

import copy
import json
import re

import pytest
import responses

from cds_service.fhir import terminology as t
from cds_service.record import build_record
from requests_for_tests import FHIR, PATIENT_ID, empty_bundle, full_prefetch, hook_request
from test_patient_binding import OS, TODAY, _ignored, ago, base_prefetch, cards_of

OWN = full_prefetch()["patient"]  # a woman born 1950-03-04: C-TX-BP with base_prefetch's T -2.6


def with_copy(prefetch: dict, **changes) -> dict:
    """The prefetch with a copy of the context Patient (its fields changed) in the conditions Bundle."""
    prefetch = copy.deepcopy(prefetch)
    prefetch["conditions"]["entry"].append({"resource": {**copy.deepcopy(OWN), **changes}})
    return prefetch


def without(field: str) -> dict:
    prefetch = base_prefetch()
    del prefetch["patient"][field]
    return prefetch


def codes(cards) -> set[str]:
    return {code for code, _, _ in cards}


@pytest.mark.parametrize("field,other,reason", [
    ("gender", "male", "patient-gender-conflict"),
    ("birthDate", ago(45 * 366), "patient-birthdate-conflict"),
], ids=["gender", "birthDate"])
def test_copies_that_disagree_take_prefetch_patients_value_and_count_it(client, caplog, field, other, reason):
    base = cards_of(client, base_prefetch())
    assert "C-TX-BP" in codes(base)
    assert "C-TX-BP" not in codes(cards_of(client, without(field)))  # the value matters here
    before = _ignored(client, reason)
    with caplog.at_level("INFO"):
        cards = cards_of(client, with_copy(base_prefetch(), **{field: other}))
    assert cards == base  # prefetch.patient's value
    assert _ignored(client, reason) == before + 1
    logged = " ".join(r.getMessage() + json.dumps(r.__dict__, default=str) for r in caplog.records)
    assert f"Patient {reason} 1" in logged
    assert other not in logged and OWN[field] not in logged and not re.search(r"\b(fe)?male\b", logged)


@pytest.mark.parametrize("changes", [
    {},                                                   # the same copy twice
    {"birthDate": OWN["birthDate"][:4]},                  # the same birthDate to a coarser precision
    {"birthDate": OWN["birthDate"][:7]},
    {"gender": None, "birthDate": None},                  # a copy that gives neither
])
def test_the_controls_copies_that_agree_change_nothing(client, changes):
    base = cards_of(client, base_prefetch())
    before = [_ignored(client, r) for r in ("patient-gender-conflict", "patient-birthdate-conflict")]
    assert cards_of(client, with_copy(base_prefetch(), **changes)) == base
    assert [_ignored(client, r) for r in ("patient-gender-conflict", "patient-birthdate-conflict")] == before


def test_a_value_only_one_copy_gives_is_used():
    """A copy that leaves a field out does not disagree: the copy that gives it is read, first or not."""
    prefetch = without("gender")
    prefetch["conditions"]["entry"].append({"resource": copy.deepcopy(OWN)})
    assert build_record(prefetch, today=TODAY, patient_id=PATIENT_ID).sex == "female"


@responses.activate
def test_a_fetched_patient_and_a_sent_one_give_the_same_answer(client):
    """The order no longer decides: the fetched prefetch.patient was read after every sent key,
    so the Bundle's copy (45 years old) gave the age, where a sent one's (75) did."""
    responses.add(responses.GET, f"{FHIR}/Patient/{PATIENT_ID}", json=OWN)
    for rtype in ("Observation", "Condition", "MedicationRequest", "MedicationAdministration",
                  "MedicationStatement", "Procedure", "ServiceRequest", "Encounter"):
        responses.add(responses.GET, re.compile(rf"{re.escape(FHIR)}/{rtype}\?.*"), json=empty_bundle())
    sent = with_copy(base_prefetch(), birthDate=ago(45 * 366))
    fetched = copy.deepcopy(sent)
    del fetched["patient"]
    assert cards_of(client, fetched, token="t") == cards_of(client, sent)
    assert cards_of(client, sent) == cards_of(client, base_prefetch())  # prefetch.patient's age, both ways


def test_without_prefetch_patient_a_disagreement_is_unknown():
    """Two copies in Bundles and no prefetch.patient: neither can be preferred."""
    prefetch = with_copy(base_prefetch(), gender="male")
    prefetch["conditions"]["entry"].append({"resource": copy.deepcopy(OWN)})
    del prefetch["patient"]
    rec = build_record(prefetch, today=TODAY, patient_id=PATIENT_ID)
    assert rec.sex is None and set(rec.sex_conflict) == {"male", "female"}


def _romosozumab_call(prefetch: dict) -> dict:
    body = hook_request("order-sign", prefetch=prefetch)
    body["context"]["draftOrders"]["entry"][0]["resource"]["medicationCodeableConcept"] = {"text": "romosozumab"}
    return body


def _signed(client, prefetch: dict) -> dict:
    resp = client.post(OS, json=_romosozumab_call(prefetch))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return {c["source"]["topic"]["code"]: c for c in resp.get_json()["cards"]}


def _man() -> dict:
    prefetch = base_prefetch()
    prefetch["patient"]["gender"] = "male"
    return prefetch


@pytest.mark.parametrize("prefetch", [lambda: with_copy(base_prefetch(), gender="male"),
                                      lambda: with_copy(_man(), gender="female")],
                         ids=["patient-female-copy-male", "patient-male-copy-female"])
def test_romosozumab_is_still_flagged_when_one_copy_says_male(client, prefetch):
    """LABEL Evenity: approved only for postmenopausal women. A safety card fails closed: the
    copies' disagreement does not hide it, and its facts say so."""
    card = _signed(client, prefetch())["C-SAFE-ANABOLIC-CONTRA"]
    assert "Sex: male on one copy of the patient's record, female on another" in card["detail"]


def test_the_controls_romosozumab_for_a_woman_or_a_man_with_one_copy(client):
    assert "C-SAFE-ANABOLIC-CONTRA" not in _signed(client, base_prefetch())
    assert "C-SAFE-ANABOLIC-CONTRA" not in _signed(client, with_copy(base_prefetch()))
    card = _signed(client, with_copy(_man(), gender="male"))["C-SAFE-ANABOLIC-CONTRA"]
    assert "- Sex: male\n" in card["detail"] + "\n" and "copy" not in card["detail"]


def test_a_recent_mi_card_names_the_disagreement_too(client):
    """C-SAFE-ROMO-CV owns the "not for men" point when it fires (one card per draft)."""
    mi = {"resourceType": "Condition", "id": "mi", "subject": {"reference": f"Patient/{PATIENT_ID}"},
          "onsetDateTime": ago(60),
          "clinicalStatus": {"coding": [{"system": t.CONDITION_CLINICAL, "code": "active"}]},
          "code": {"coding": [{"system": t.ICD10CM, "code": "I21.9"}]}}
    prefetch = with_copy(base_prefetch(), gender="male")
    prefetch["conditions"]["entry"].append({"resource": mi})
    got = _signed(client, prefetch)
    assert "C-SAFE-ANABOLIC-CONTRA" not in got
    assert "Sex: male on one copy of the patient's record, female on another (Not approved for men either" \
        in got["C-SAFE-ROMO-CV"]["detail"]
    control = copy.deepcopy(prefetch)
    control["conditions"]["entry"] = [e for e in control["conditions"]["entry"]
                                      if e["resource"]["resourceType"] != "Patient"]
    assert "Not approved for men" not in _signed(client, control)["C-SAFE-ROMO-CV"]["detail"]


# ---------------------------------------------------------------------------
# Adversarial review 13: the kidney limits fail closed. An 86-year-old woman, creatinine 2.0 mg/dL,
# 50 kg, no eGFR: Cockcroft-Gault 16 mL/min, below every bisphosphonate's limit. A copy that made
# sex or age unknown left no clearance, and every renal card went silent; a gender of "other" or
# none in the only copy did the same. The lower estimate is taken instead: the women's factor
# unless male on every copy, the oldest of the birth dates the copies disagree on.
# ---------------------------------------------------------------------------

def _frail_kidney_prefetch() -> dict:
    prefetch = full_prefetch()
    prefetch["patient"]["birthDate"] = ago(86 * 366)

    def lab(oid, code, value, unit):
        return {"resourceType": "Observation", "id": oid, "status": "final", "subject": {"reference": f"Patient/{PATIENT_ID}"},
                "effectiveDateTime": ago(20), "code": {"coding": [{"system": t.LOINC, "code": code}]},
                "valueQuantity": {"value": value, "unit": unit}}
    prefetch["safetyLabs"]["entry"] = [{"resource": lab("cr", "2160-0", 2.0, "mg/dL")},
                                       {"resource": lab("wt", "29463-7", 50.0, "kg")}]
    return prefetch


def _renal(client, prefetch) -> dict:
    card = _signed_alendronate(client, prefetch).get("C-SAFE-RENAL")
    assert card is not None, "the renal card went silent"
    return card


def _signed_alendronate(client, prefetch: dict) -> dict:
    resp = client.post(OS, json=hook_request("order-sign", prefetch=prefetch))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return {c["source"]["topic"]["code"]: c for c in resp.get_json()["cards"]}


@pytest.mark.parametrize("changes, words", [
    ({"gender": "male"}, "sex not known for sure: the women's factor, the lower estimate"),
    ({"gender": "unknown"}, "sex not known for sure: the women's factor, the lower estimate"),
    ({"birthDate": "1990-01-01"}, "age 86, female"),  # prefetch.patient's age, the older one
], ids=["gender-male", "gender-unknown", "birthDate"])
def test_a_disagreeing_copy_keeps_the_renal_card(client, changes, words):
    prefetch = _frail_kidney_prefetch()
    card = _renal(client, with_copy(prefetch, **{"birthDate": prefetch["patient"]["birthDate"], **changes}))
    assert "creatinine clearance 16 mL/min" in card["summary"] + card["detail"]
    assert words in card["detail"]


@pytest.mark.parametrize("gender", ["other", "unknown", None])
def test_a_single_copy_without_male_or_female_takes_the_womens_factor(client, gender):
    prefetch = _frail_kidney_prefetch()
    if gender is None:
        del prefetch["patient"]["gender"]
    else:
        prefetch["patient"]["gender"] = gender
    assert "Creatinine clearance 16 mL/min" in _renal(client, prefetch)["detail"]


def test_the_control_a_man_on_every_copy_gets_the_mens_estimate(client):
    prefetch = _frail_kidney_prefetch()
    prefetch["patient"]["gender"] = "male"
    card = _renal(client, with_copy(prefetch, gender="male", birthDate=prefetch["patient"]["birthDate"]))
    assert "Creatinine clearance 19 mL/min" in card["detail"] and "sex not known" not in card["detail"]


# A Patient entry whose absolute fullUrl is on another server is another patient, whatever its id
# (as a reference to that URL is): its sex, age or death no longer reach this patient's record.

def _copy_elsewhere(prefetch: dict, full_url: str, **changes) -> dict:
    prefetch = copy.deepcopy(prefetch)
    prefetch["conditions"]["entry"].append({"fullUrl": full_url, "resource": {**copy.deepcopy(OWN), **changes}})
    return prefetch


@pytest.mark.parametrize("changes", [{"gender": "male"}, {"deceasedBoolean": True}, {"birthDate": "1990-01-01"}])
def test_a_patient_entry_on_another_server_is_another_patient(client, changes):
    before = _ignored(client, "foreign-patient")
    elsewhere = cards_of(client, _copy_elsewhere(base_prefetch(), f"https://other.example.org/fhir/Patient/{PATIENT_ID}",
                                                 **changes))
    assert elsewhere == cards_of(client, base_prefetch())
    assert _ignored(client, "foreign-patient") == before + 1


def test_the_control_a_patient_entry_on_the_same_server_is_a_copy(client):
    before = [_ignored(client, r) for r in ("foreign-patient", "patient-gender-conflict")]
    same = _copy_elsewhere(base_prefetch(), f"{FHIR}/Patient/{PATIENT_ID}", gender="male")
    assert cards_of(client, same) == cards_of(client, base_prefetch())
    assert [_ignored(client, r) for r in ("foreign-patient", "patient-gender-conflict")] == [before[0], before[1] + 1]


@pytest.mark.parametrize("gender, shown", [
    ("[Order here](https://evil.example/x) **IGNORE**", "another value"),
    ("x" * 200_000, "another value"),
    ("unknown", "unknown"),
])
def test_a_copys_gender_is_quoted_only_in_fhirs_own_words(client, gender, shown):
    card = _signed(client, with_copy(_man(), gender=gender))["C-SAFE-ANABOLIC-CONTRA"]
    assert f"Sex: male on one copy of the patient's record, {shown} on another" in card["detail"]
    assert "evil.example" not in card["detail"] and "x" * 100 not in card["detail"]


def test_romosozumab_is_not_offered_when_any_copy_says_male():
    """prefetch.patient says female, a Bundle copy male: C-TX-ANABOLIC (very high risk) offers the
    PTH analogs but not romosozumab (Evenity: postmenopausal women only; fails closed)."""
    from tests.test_rules_second_pass import PID, cards, obs, record

    def anabolic(*copies):
        card = cards(record(obs("38267-1", 200, -3.4), *copies, t_score=False))["C-TX-ANABOLIC"]
        return " ".join(s["label"] for s in card["suggestions"]).lower()

    male_copy = {"resourceType": "Patient", "id": PID, "gender": "male"}
    assert "romosozumab" in anabolic()  # the control: a woman on every copy
    offered = anabolic(male_copy)
    assert "teriparatide" in offered and "romosozumab" not in offered


def test_a_deceased_copy_quiets_patient_view_but_not_an_orders_safety_card(client):
    """An order being signed says the patient is alive or the record is wrong: the critical
    zoledronic acid card at eGFR 20 still speaks; patient-view stays quiet."""
    prefetch = _frail_kidney_prefetch()
    dead = with_copy(prefetch, birthDate=prefetch["patient"]["birthDate"], deceasedBoolean=True)
    assert cards_of(client, dead) == []
    body = hook_request("order-sign", prefetch=dead)
    body["context"]["draftOrders"]["entry"][0]["resource"]["medicationCodeableConcept"] = {
        "coding": [{"system": t.RXNORM, "code": "705824"}], "text": "zoledronic acid 5 mg/100 mL"}
    resp = client.post(OS, json=body)
    cards = {c["source"]["topic"]["code"]: c for c in resp.get_json()["cards"]}
    assert cards["C-SAFE-RENAL"]["indicator"] == "critical"
