"""Implausible values and future dates are not evidence: they neither drive a
card nor silence one, are never quoted, and are counted with a reason
(cds_service.plausibility). Each case also shows that a believable value of
the same kind does change the cards, so the test can fail."""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging

import pytest

from cds_service.fhir import terminology as t
from cds_service.record import build_record
from requests_for_tests import PATIENT_ID, full_prefetch, hook_request

PV = "/cds-services/osteoporosis-patient-view"
TODAY = dt.date.today()


def ago(days: int) -> str:
    return (TODAY - dt.timedelta(days=days)).isoformat()


def obs(oid, code, when, value, unit, system=t.LOINC):
    return {"resourceType": "Observation", "id": oid, "status": "final", "subject": {"reference": f"Patient/{PATIENT_ID}"},
            "code": {"coding": [{"system": system, "code": code}]}, "effectiveDateTime": when,
            "valueQuantity": {"value": value, "unit": unit}}


def prefetch_with(*observations, conditions=()):
    prefetch = full_prefetch()
    prefetch["observations"]["entry"] = [{"resource": o} for o in observations]
    prefetch["conditions"]["entry"] = [{"resource": c} for c in conditions]
    return prefetch


def cards(client, prefetch):
    resp = client.post(PV, json=hook_request(prefetch=prefetch))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return [(c["source"]["topic"]["code"], c["summary"], c.get("detail", "")) for c in resp.get_json()["cards"]]


OWN_T = obs("own-t", "38267-1", ago(30), -2.6, "{T-score}")

# (label, a believable version that changes the cards, the implausible version)
CASES = [
    ("T-score", obs("x", "38267-1", ago(5), -3.6, "{T-score}"), obs("x", "38267-1", ago(5), -99, "{T-score}")),
    ("T-score dated in the future", obs("x", "38267-1", ago(5), -3.6, "{T-score}"),
     obs("x", "38267-1", "2099-01-01", -3.6, "{T-score}")),
    ("DXA dated 9999-12-31", obs("x", "38267-1", ago(5), -3.6, "{T-score}"),
     obs("x", "38267-1", "9999-12-31", -3.6, "{T-score}")),
    ("eGFR", obs("x", "98979-8", ago(5), 25, "mL/min/{1.73_m2}"), obs("x", "98979-8", ago(5), 900, "mL/min/{1.73_m2}")),
    ("vitamin D", obs("x", "62292-8", ago(5), 8, "ng/mL"), obs("x", "62292-8", ago(5), 5000, "ng/mL")),
    ("FRAX", obs("x", t.FRAX_MOF, ago(5), 35, "%"), obs("x", t.FRAX_MOF, ago(5), 150, "%")),
]


@pytest.mark.parametrize("label,good,bad", CASES, ids=[c[0] for c in CASES])
def test_implausible_value_is_not_evidence(client, label, good, bad):
    base = cards(client, prefetch_with(OWN_T))
    assert cards(client, prefetch_with(OWN_T, good)) != base, f"a believable {label} must matter"
    assert cards(client, prefetch_with(OWN_T, bad)) == base
    record = build_record(prefetch_with(OWN_T, bad), today=TODAY, patient_id=PATIENT_ID)
    assert [ref for ref, _ in record.ignored] == ["Observation/x"]


def test_implausible_values_are_never_quoted(client):
    text = json.dumps(cards(client, prefetch_with(OWN_T, obs("x", "38267-1", ago(5), -99, "{T-score}"),
                                                  obs("y", "62292-8", ago(5), 5000, "ng/mL"))))
    assert "-99" not in text and "5000" not in text and "-2.6" in text


def test_a_dxa_dated_in_the_future_does_not_silence_screening(client):
    # A woman of 75 with no DXA is due one; a DXA "done" in 2099 is not a DXA.
    base = cards(client, prefetch_with())
    assert "C-SCREEN-DXA" in {c[0] for c in base}
    assert "C-SCREEN-DXA" not in {c[0] for c in cards(client, prefetch_with(obs("d", "38267-1", ago(10), -1.0, "1")))}
    assert cards(client, prefetch_with(obs("d", "38267-1", "2099-06-01", -1.0, "1"))) == base


def test_a_far_future_date_never_breaks_a_rule(client, caplog):
    caplog.set_level(logging.ERROR)
    far = prefetch_with(OWN_T, obs("d", "38267-1", "9999-12-31", -3.6, "1"), conditions=[{
        "resourceType": "Condition", "id": "fx", "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "code": {"coding": [{"system": t.ICD10CM, "code": "M80.051A"}]}, "onsetDateTime": "9999-12-31"}])
    far["medicationAdministrations"]["entry"].append({"resource": {
        "resourceType": "MedicationAdministration", "id": "dm", "status": "completed",
        "subject": {"reference": f"Patient/{PATIENT_ID}"}, "effectiveDateTime": "9999-12-31T00:00:00Z",
        "medicationCodeableConcept": {"coding": [{"system": t.RXNORM, "code": "993456"}]}}})
    assert cards(client, far) == cards(client, prefetch_with(OWN_T))
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("birth,reason", [("0001-01-01", "implausible-value"), ("2999-01-01", "implausible-value"),
                                          ("1950-13-45", "unreadable-value"), ("nonsense", "unreadable-value"),
                                          ("04/03/1950", "unreadable-value")])
def test_an_impossible_or_unreadable_birth_date_means_age_unknown_and_is_counted(client, birth, reason):
    prefetch = prefetch_with(OWN_T)
    prefetch["patient"]["birthDate"] = birth
    record = build_record(prefetch, today=TODAY, patient_id=PATIENT_ID)
    assert record.age is None and record.birth_date is None
    assert record.ignored == ((f"Patient/{PATIENT_ID}", reason),)
    unknown = prefetch_with(OWN_T)
    del unknown["patient"]["birthDate"]
    assert build_record(unknown, today=TODAY, patient_id=PATIENT_ID).ignored == ()
    assert cards(client, prefetch) == cards(client, unknown)
    assert "2025" not in json.dumps(cards(client, prefetch))


def test_tomorrow_is_allowed_for_time_zones():
    prefetch = prefetch_with(obs("x", "38267-1", (TODAY + dt.timedelta(days=1)).isoformat(), -2.6, "1"))
    assert build_record(prefetch, today=TODAY, patient_id=PATIENT_ID).lowest_t.value == -2.6


def test_a_planned_course_starting_next_week_counts_as_therapy_without_exposure():
    prefetch = full_prefetch()
    prefetch["medicationRequests"]["entry"].append({"resource": {
        "resourceType": "MedicationRequest", "id": "aln", "status": "active", "intent": "order",
        "subject": {"reference": f"Patient/{PATIENT_ID}"}, "authoredOn": TODAY.isoformat(),
        "medicationCodeableConcept": {"coding": [{"system": t.RXNORM, "code": "904431"}]},
        "dosageInstruction": [{"timing": {"repeat": {"boundsPeriod": {"start": (TODAY + dt.timedelta(days=7)).isoformat()}}}}]}})
    record = build_record(prefetch, today=TODAY, patient_id=PATIENT_ID)
    aln = record.medications["alendronate"]
    assert aln.active and aln.exposure_days == 0


def test_a_future_authored_order_is_ignored():
    prefetch = full_prefetch()
    prefetch["medicationRequests"]["entry"].append({"resource": {
        "resourceType": "MedicationRequest", "id": "aln", "status": "active", "intent": "order",
        "subject": {"reference": f"Patient/{PATIENT_ID}"}, "authoredOn": "2099-01-01",
        "medicationCodeableConcept": {"coding": [{"system": t.RXNORM, "code": "904431"}]}}})
    record = build_record(copy.deepcopy(prefetch), today=TODAY, patient_id=PATIENT_ID)
    assert "alendronate" not in record.medications
    assert record.ignored == (("MedicationRequest/aln", "future-date"),)


@pytest.mark.parametrize("deceased,expect_cards", [
    ({"deceasedBoolean": True}, False),
    ({"deceasedDateTime": "2020-01-01T00:00:00Z"}, False),
    ({"deceasedBoolean": False}, True),
    ({"deceasedDateTime": "2999-01-01"}, True),  # a death in the future is a data error: treated as living
])
def test_deceased_patients_get_no_cards(client, deceased, expect_cards):
    prefetch = prefetch_with(OWN_T)
    prefetch["patient"].update(deceased)
    assert bool(cards(client, prefetch)) is expect_cards


@pytest.mark.parametrize("day, believable", [
    (TODAY, True), (TODAY + dt.timedelta(days=1), True), (TODAY + dt.timedelta(days=2), False),
    (dt.date(1900, 1, 1), True), (dt.date(1899, 12, 31), False), (dt.date(1, 1, 1), False), (dt.date.max, False),
])
def test_the_believable_range_is_exactly_where_no_date_problem_is(day, believable):
    """The record checks dates against these bounds and asks date_problem only outside them."""
    from cds_service import plausibility

    first, last = plausibility.believable_dates(TODAY)
    assert (first <= day <= last) is believable
    assert (plausibility.date_problem(day, TODAY) is None) is believable
    rec = build_record({"observations": obs("o1", "1751-7", day.isoformat(), 4.0, "g/dL")}, today=TODAY)
    assert bool(rec.labs.get("albumin")) is believable
    assert bool(rec.ignored) is not believable
