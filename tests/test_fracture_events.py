"""Fractures are events, not codes: records of one fracture (a site-specific
code and an "osteoporotic fracture, site unspecified" code on the same day, a
Condition and an imaging finding) count once (issue: one fracture counted
twice made a patient very high risk)."""

from __future__ import annotations

import datetime as dt

from cds_service.fhir import terminology as t
from cds_service.record import build_record
from requests_for_tests import PATIENT_ID, full_prefetch, hook_request

TODAY = dt.date.today()
PV = "/cds-services/osteoporosis-patient-view"


def ago(days):
    return (TODAY - dt.timedelta(days=days)).isoformat()


def condition(cid, system, code, days_ago):
    return {"resourceType": "Condition", "id": cid, "subject": {"reference": f"Patient/{PATIENT_ID}"},
            "code": {"coding": [{"system": system, "code": code}]}, "onsetDateTime": ago(days_ago)}


def finding(oid, code, days_ago):
    return {"resourceType": "Observation", "id": oid, "status": "final",
            "subject": {"reference": f"Patient/{PATIENT_ID}"},
            "code": {"coding": [{"system": t.SNOMED, "code": code}]}, "effectiveDateTime": ago(days_ago)}


def t_score(value):
    return {"resourceType": "Observation", "id": "t", "status": "final", "subject": {"reference": f"Patient/{PATIENT_ID}"},
            "code": {"coding": [{"system": t.LOINC, "code": "38267-1"}]}, "effectiveDateTime": ago(400),
            "valueQuantity": {"value": value, "unit": "1"}}


def prefetch(*resources):
    p = full_prefetch()
    for r in resources:
        key = "conditions" if r["resourceType"] == "Condition" else "observations"
        p[key]["entry"].append({"resource": r})
    return p


def record(*resources):
    return build_record(prefetch(*resources), today=TODAY, patient_id=PATIENT_ID)


def test_site_code_and_unspecified_osteoporotic_code_same_day_are_one_event():
    r = record(condition("a", t.SNOMED, "5913000", 700), condition("b", t.SNOMED, "443165006", 700))
    assert len(r.fractures) == 1
    event = r.fractures[0]
    assert event.site == t.HIP and event.fragility == "specific"  # site from one code, fragility from the other
    assert set(event.refs) == {"Condition/a", "Condition/b"}
    assert event.fact() == f"Hip fragility fracture (5913000, 443165006) on {ago(700)}"


def test_condition_and_imaging_finding_of_one_fracture_are_one_event():
    r = record(condition("a", t.ICD10CM, "M80.08XA", 100), finding("vfa", "11311601000119109", 90))
    assert [(f.site, f.date) for f in r.fractures] == [(t.VERTEBRAL, dt.date.fromisoformat(ago(100)))]


def test_different_sites_or_far_apart_stay_separate_events():
    r = record(condition("a", t.SNOMED, "5913000", 700), condition("b", t.ICD10CM, "M80.08XA", 700),
               condition("c", t.SNOMED, "5913000", 700 - 31))
    assert sorted((f.site, f.date) for f in r.fractures) == sorted([
        (t.HIP, dt.date.fromisoformat(ago(700))), (t.VERTEBRAL, dt.date.fromisoformat(ago(700))),
        (t.HIP, dt.date.fromisoformat(ago(669)))])


def test_window_boundary_is_inclusive_at_30_days():
    assert len(record(condition("a", t.SNOMED, "5913000", 700), condition("b", t.SNOMED, "443165006", 670)).fractures) == 1
    assert len(record(condition("a", t.SNOMED, "5913000", 700), condition("b", t.SNOMED, "443165006", 669)).fractures) == 2


def test_one_dual_coded_fracture_does_not_make_very_high_risk(client):
    def cards(*resources):
        resp = client.post(PV, json=hook_request(prefetch=prefetch(*resources)))
        assert resp.status_code == 200
        return {c["source"]["topic"]["code"] for c in resp.get_json()["cards"]}

    # T -2.6 and one wrist fracture two years ago (dual-coded): a drug-start card, not anabolic-first.
    one = cards(t_score(-2.6), condition("a", t.ICD10CM, "S52.501A", 700), condition("b", t.SNOMED, "443165006", 700))
    assert "C-TX-ANABOLIC" not in one and one & {"C-TX-BP", "C-TX-DMAB-ALT"}
    # Two real fracture events (wrist and humerus, months apart) are "multiple fractures": very high risk.
    two = cards(t_score(-2.6), condition("a", t.ICD10CM, "S52.501A", 700), condition("b", t.ICD10CM, "S42.201A", 500))
    assert "C-TX-ANABOLIC" in two


def test_how_each_site_counts_at_50_or_over():
    """terminology.PROBABLE_FRAGILITY_SITES: an any-mechanism code is a probable fragility
    fracture at the typical fragility sites only (BHOF22: hip, spine, wrist, humerus, pelvis,
    ribs); ankle and clavicle fractures are fractures, fragility only when coded osteoporotic."""
    r = record(condition("rib", t.ICD10CM, "S22.32XA", 900), condition("ankle", t.SNOMED, "16114001", 600),
               condition("clavicle", t.SNOMED, "58150001", 300), condition("oc", t.SNOMED, "704329006", 100))
    by_ref = {f.ref: f for f in r.fractures}
    assert (by_ref["Condition/rib"].site, by_ref["Condition/rib"].fragility) == (t.RIB, "probable")
    assert (by_ref["Condition/ankle"].site, by_ref["Condition/ankle"].fragility) == (t.ANKLE, "unproven")
    assert (by_ref["Condition/clavicle"].site, by_ref["Condition/clavicle"].fragility) == (t.CLAVICLE, "unproven")
    # osteoporotic fracture of clavicle: a fragility fracture like any other
    assert (by_ref["Condition/oc"].site, by_ref["Condition/oc"].fragility) == (t.CLAVICLE, "specific")
    assert {f.ref for f in r.fragility_fractures()} == {"Condition/rib", "Condition/oc"}


def test_follow_up_and_sequela_codes_are_the_fracture_of_their_initial_code():
    """ICD-10-CM 7th character (Official Guidelines I.C.13.c, I.C.19.c.1): A/B/C is the initial
    encounter; D, G, K, P (later encounters) and S (sequela) record the same fracture again, on the
    day of that visit. Review: each follow-up visit became another, recent fracture."""
    r = record(condition("a", t.ICD10CM, "S32.010A", 430), condition("d1", t.ICD10CM, "S32.010D", 340),
               condition("d2", t.ICD10CM, "S32.010D", 250), condition("s", t.ICD10CM, "S32.010S", 20))
    assert len(r.fractures) == 1
    event = r.fractures[0]
    assert event.date == TODAY - dt.timedelta(days=430) and event.site == t.VERTEBRAL
    assert event.codes == ("S32.010A", "S32.010D", "S32.010S")
    # M80 codes too: a subsequent encounter with delayed healing is no new osteoporotic fracture
    r = record(condition("a", t.ICD10CM, "M80.08XA", 900), condition("g", t.ICD10CM, "M80.08XG", 30))
    assert [(f.date, f.codes) for f in r.fractures] == [(TODAY - dt.timedelta(days=900), ("M80.08XA", "M80.08XG"))]
    # a new initial-encounter code at another vertebra is a second fracture
    r = record(condition("a", t.ICD10CM, "S32.010A", 430), condition("b", t.ICD10CM, "S22.060A", 60))
    assert len(r.fractures) == 2


def test_a_follow_up_code_alone_is_a_fracture_of_unknown_date():
    """The initial encounter was elsewhere: the fracture counts (diagnosis, site, fragility at
    the age the code was recorded) but is never recent, fresh or on therapy."""
    r = record(condition("d", t.ICD10CM, "S72.141D", 50))
    (event,) = r.fractures
    assert (event.site, event.fragility, event.date) == (t.HIP, "probable", None)
    assert event.fact() == (f"Hip fracture (probable fragility fracture) (S72.141D) before {ago(50)} "
                            "(follow-up code; fracture date not on record)")
    # a SNOMED CT coding beside the ICD-10-CM follow-up code does not make it a new fracture
    dual = {"resourceType": "Condition", "id": "dual", "subject": {"reference": f"Patient/{PATIENT_ID}"},
            "code": {"coding": [{"system": t.ICD10CM, "code": "S72.141D"}, {"system": t.SNOMED, "code": "5913000"}]},
            "onsetDateTime": ago(50)}
    assert [f.date for f in record(dual).fractures] == [None]


def test_a_later_encounter_code_of_a_fall_is_no_new_fall():
    """W19.XXXD (a visit for an earlier fall's injury) keeps the history of falling on record
    without dating a new fall; a digit in the 7th place is no encounter (pregnancy codes)."""
    r = record(condition("a", t.ICD10CM, "W19.XXXA", 400), condition("d", t.ICD10CM, "W19.XXXD", 30))
    assert sorted((h.code, h.date) for h in r.condition_hits("falls", active_only=False)) == [
        ("W19.XXXA", TODAY - dt.timedelta(days=400)), ("W19.XXXD", None)]
    assert not t.follow_up_code(t.ICD10CM, "O36.5930") and t.follow_up_code(t.ICD10CM, "W19.XXXS")
