"""Edge cases of the third clinical review's follow-up (fresh-eyes review): care arranged by
ServiceRequest, healing-phase fracture codes before hands-on treatment, and the secondary-cause
panel that leaves out tests on record. Each case starts from a review3-* fixture, changes one
thing, and reads the cards the service returns through the Flask test client."""

from __future__ import annotations

import copy
import datetime as dt
import functools

import pytest

from cds_service import fixtures as fx
from cds_service.record import add_months
from tests.unbudgeted import unbudgeted_client
from tests.test_fixture_scenarios import SERVICE_IDS, hook_body

TODAY = dt.date.today()


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    return unbudgeted_client(tmp_path_factory, "review3e")


@functools.cache
def _bundle(name):
    return fx.load_patient(name, today=TODAY)


def bundle(name):
    return copy.deepcopy(_bundle(name))


def resources(b, rtype):
    return [e["resource"] for e in b["entry"] if e["resource"]["resourceType"] == rtype]


def add(b, res):
    b["entry"].append({"fullUrl": f"urn:uuid:{res['id']}", "resource": res,
                       "request": {"method": "PUT", "url": f"{res['resourceType']}/{res['id']}"}})


def cards(client, b, hook="patient-view"):
    resp = client.post(f"/cds-services/{SERVICE_IDS[hook]}", json=hook_body(b, hook))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return {c["source"]["topic"]["code"]: c for c in resp.get_json()["cards"]}


def ago(days):
    return (TODAY - dt.timedelta(days=days)).isoformat()


# --- 1. ServiceRequest: care arranged only as an order in force ----------------------------

QUIET_PT = "review3-care-near-miss-pt-referral-directive"


def _pt_referral(b):
    [sr] = [r for r in resources(b, "ServiceRequest") if "physical therapy" in str(r.get("code")).lower()]
    return sr


def test_the_base_case_is_quiet(client):
    b = bundle(QUIET_PT)
    _pt_referral(b)["intent"] = "order"
    assert "C-EXERCISE" not in cards(client, b)


@pytest.mark.parametrize("change", [
    {"status": None}, {"status": "draft"}, {"status": "revoked"}, {"status": "entered-in-error"},
    {"status": ""}, {"intent": "ORDER"}, {"intent": "instance-order", "status": "on-hold"},
])
def test_a_referral_not_in_force_is_no_care_done(client, change):
    b = bundle(QUIET_PT)
    sr = _pt_referral(b)
    sr["intent"] = "order"
    for k, v in change.items():
        if v is None:
            sr.pop(k, None)
        else:
            sr[k] = v
    card = cards(client, b)["C-EXERCISE"]
    assert "Physical therapy ordered" not in card["detail"]


@pytest.mark.parametrize("intent", ["reflex-order", "filler-order", "instance-order", "original-order"])
def test_every_kind_of_order_is_care_done(client, intent):
    b = bundle(QUIET_PT)
    _pt_referral(b).update(intent=intent, status="completed")
    assert "C-EXERCISE" not in cards(client, b)


def test_an_order_not_to_do_it_is_no_care_done(client):
    """FHIR R4 ServiceRequest.doNotPerform (a modifier element): true means the service must
    NOT be performed. An active "do not refer to PT" order is no PT arranged."""
    b = bundle(QUIET_PT)
    _pt_referral(b).update(intent="order", status="active", doNotPerform=True)
    assert "C-EXERCISE" in cards(client, b)
    b2 = bundle(QUIET_PT)  # doNotPerform false: an ordinary order, care done
    _pt_referral(b2).update(intent="order", status="active", doNotPerform=False)
    assert "C-EXERCISE" not in cards(client, b2)


# --- 2. Healing-phase fracture codes and massage safety ------------------------------------

HOOKS = ["order-select", "order-sign"]
OLD_D = "review3-massage-near-miss-vertebral-subsequent-13-weeks"  # D code 13 weeks ago: warning
SEQUELA = "review3-massage-near-miss-vertebral-sequela-2-weeks"


def _follow_up(b):
    [c] = [r for r in resources(b, "Condition")
           if str(r["code"]["coding"][0]["code"])[-1] in "DGKPS" and len(r["code"]["coding"][0]["code"]) == 8]
    return c


def _massage(client, b, hook):
    return cards(client, b, hook)["C-MASSAGE-SAFETY"]


@pytest.mark.parametrize("hook", HOOKS)
def test_base_old_follow_up_code_is_a_warning(client, hook):
    assert _massage(client, bundle(OLD_D), hook)["indicator"] == "warning"


@pytest.mark.parametrize("hook", HOOKS)
def test_a_follow_up_code_recorded_recently_with_the_fracture_onset_is_still_healing(client, hook):
    """A Condition for S22/M80 ...D carries the fracture's onset (onsetDateTime) and the visit's
    day (recordedDate): the visit day says the fracture was still healing 2 weeks ago."""
    b = bundle(OLD_D)
    _follow_up(b)["recordedDate"] = ago(14)
    card = _massage(client, b, hook)
    assert card["indicator"] == "critical"
    assert "healing vertebral fracture, follow-up 2 weeks ago" in card["summary"]


@pytest.mark.parametrize("hook", HOOKS)
def test_a_follow_up_code_with_only_an_onset_in_the_window_is_still_healing(client, hook):
    b = bundle(OLD_D)
    c = _follow_up(b)
    c.pop("recordedDate", None)
    c["onsetDateTime"] = ago(30)
    assert _massage(client, b, hook)["indicator"] == "critical"


@pytest.mark.parametrize("hook", HOOKS)
def test_a_follow_up_code_dated_far_in_the_future_is_ignored_not_fresh(client, hook):
    b = bundle(OLD_D)
    _follow_up(b)["onsetDateTime"] = (TODAY + dt.timedelta(days=60)).isoformat()
    card = _massage(client, b, hook)
    assert "healing" not in card["summary"] and "fresh" not in card["summary"]


@pytest.mark.parametrize("hook", HOOKS)
def test_a_follow_up_code_dated_tomorrow_counts_as_today(client, hook):
    """One day ahead is believable (time zones, plausibility.FUTURE_SLACK): the visit is today."""
    b = bundle(OLD_D)
    _follow_up(b)["onsetDateTime"] = (TODAY + dt.timedelta(days=1)).isoformat()
    card = _massage(client, b, hook)
    assert card["indicator"] == "critical"
    assert "follow-up 0 weeks ago" in card["summary"]


@pytest.mark.parametrize("hook", HOOKS)
def test_a_sequela_code_does_not_hide_a_healing_fracture_elsewhere(client, hook):
    b = bundle(SEQUELA)
    pid = resources(b, "Patient")[0]["id"]
    add(b, {"resourceType": "Condition", "id": "wrist-d", "subject": {"reference": f"Patient/{pid}"},
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": "active"}]},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "S52.501D"}]},
            "onsetDateTime": ago(21)})
    card = _massage(client, b, hook)
    assert card["indicator"] == "critical"
    assert "healing wrist/forearm fracture, follow-up 3 weeks ago" in card["summary"]
    # the vertebral sequela is not called fresh or healing anywhere
    assert "HEALING VERTEBRAL" not in str(card) and "FRESH VERTEBRAL" not in str(card)


@pytest.mark.parametrize("hook", HOOKS)
def test_a_sequela_code_recorded_recently_is_not_fresh(client, hook):
    b = bundle(SEQUELA)
    _follow_up(b)["recordedDate"] = ago(3)
    card = _massage(client, b, hook)
    assert card["indicator"] == "warning" and "healing" not in card["summary"]


# --- 3. Secondary-cause panel ----------------------------------------------------------

WHOLE = "review3-secondary-man-66-whole-panel-on-record"
PANEL_CODES = {"17861-6", "1751-7", "62292-8", "2731-8", "98979-8", "2777-1", "6768-6", "58410-2", "3016-3",
               "24351-9", "31017-7", "6874-2", "2986-8"}


def _panel(card):
    return [(a["resource"]["code"].get("coding") or [{}])[0].get("code")
            for s in card.get("suggestions", ()) for a in s["actions"] if a["type"] == "create"]


def _obs(b, code):
    [o] = [r for r in resources(b, "Observation") if r["code"]["coding"][0]["code"] == code]
    return o


def test_base_whole_panel_is_quiet(client):
    assert "C-SECONDARY-EVAL" not in cards(client, bundle(WHOLE))


@pytest.mark.parametrize("result", [
    {"dataAbsentReason": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                                      "code": "error"}]}},
    {"valueQuantity": {"unit": "mIU/L", "system": "http://unitsofmeasure.org", "code": "m[IU]/L"}},
    {"valueQuantity": {}},
    {"valueString": ""},
    {"component": [{"code": {"text": "TSH"}, "dataAbsentReason": {"text": "haemolysed"}}]},
])
def test_a_tsh_without_a_result_is_still_asked_for(client, result):
    b = bundle(WHOLE)
    tsh = _obs(b, "3016-3")
    tsh.pop("valueQuantity")
    tsh.update(result)
    card = cards(client, b)["C-SECONDARY-EVAL"]
    assert _panel(card) == ["3016-3"]
    assert "TSH (" not in card["detail"].split("left out of the panel:")[-1]


def test_a_tsh_reported_as_a_component_of_a_thyroid_panel_counts(client):
    b = bundle(WHOLE)
    tsh = _obs(b, "3016-3")
    tsh["code"] = {"text": "Thyroid function panel"}
    tsh["component"] = [{"code": {"coding": [{"system": "http://loinc.org", "code": "3016-3"}]},
                         "valueQuantity": tsh.pop("valueQuantity")}]
    assert "C-SECONDARY-EVAL" not in cards(client, b)


def test_a_cbc_panel_with_members_only_counts_as_a_blood_count(client):
    b = bundle(WHOLE)
    hb = _obs(b, "718-7")
    hb["code"] = {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]}
    hb.pop("valueQuantity")
    hb["hasMember"] = [{"reference": "Observation/some-hb"}]
    assert "C-SECONDARY-EVAL" not in cards(client, b)


@pytest.mark.parametrize("days_inside,asked", [(-1, True), (1, False)])
def test_the_lab_window_edge(client, days_inside, asked):
    b = bundle(WHOLE)
    edge = add_months(TODAY, -12) + dt.timedelta(days=days_inside)
    _obs(b, "24351-9")["effectiveDateTime"] = edge.isoformat()
    shown = cards(client, b)
    if asked:
        assert _panel(shown["C-SECONDARY-EVAL"]) == ["24351-9"]
    else:
        assert "C-SECONDARY-EVAL" not in shown


def test_a_test_of_another_patient_does_not_count(client):
    b = bundle(WHOLE)
    _obs(b, "2986-8")["subject"] = {"reference": "Patient/someone-else"}
    card = cards(client, b)["C-SECONDARY-EVAL"]
    assert _panel(card) == ["2986-8"]


def test_a_woman_is_not_asked_for_testosterone(client):
    b = bundle(WHOLE)
    resources(b, "Patient")[0]["gender"] = "female"
    testosterone = _obs(b, "2986-8")
    b["entry"] = [e for e in b["entry"] if e["resource"] is not testosterone]
    shown = cards(client, b)
    assert "C-SECONDARY-EVAL" not in shown or "2986-8" not in _panel(shown["C-SECONDARY-EVAL"])


def test_a_premenopausal_woman_with_a_fracture_gets_the_female_panel_less_what_is_on_record(client):
    b = bundle(WHOLE)
    patient = resources(b, "Patient")[0]
    patient["gender"] = "female"
    patient["birthDate"] = add_months(TODAY, -40 * 12).isoformat()
    pid = patient["id"]
    add(b, {"resourceType": "Condition", "id": "wrist-a", "subject": {"reference": f"Patient/{pid}"},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M80.031A"}]},
            "onsetDateTime": ago(200)})
    tsh = _obs(b, "3016-3")
    b["entry"] = [e for e in b["entry"] if e["resource"] is not tsh]
    card = cards(client, b)["C-SECONDARY-EVAL"]
    assert _panel(card) == ["3016-3"]
    assert "2986-8" not in _panel(card)


def test_beside_the_baseline_card_the_panels_do_not_overlap(client):
    """C-LAB-BASELINE orders the basic labs; C-SECONDARY-EVAL then holds only the others not on record."""
    b = bundle(WHOLE)
    basic = {"98979-8", "17861-6", "62292-8", "1751-7", "2731-8", "2777-1", "6768-6"}
    b["entry"] = [e for e in b["entry"] if e["resource"]["resourceType"] != "Observation"
                  or e["resource"]["code"]["coding"][0]["code"] not in basic | {"3016-3"}]
    shown = cards(client, b)
    assert "C-LAB-BASELINE" in shown
    assert _panel(shown["C-SECONDARY-EVAL"]) == ["3016-3"]
    baseline = {c for c in _panel(shown["C-LAB-BASELINE"])}
    assert not baseline & set(_panel(shown["C-SECONDARY-EVAL"]))


@pytest.mark.parametrize("code,left", [("11580-8", "3016-3"), ("14637-3", "6874-2")])
def test_a_sensitive_tsh_or_an_si_urine_calcium_counts_as_done(client, code, left):
    """LOINC 11580-8 (third-generation TSH) and 14637-3 (24-h urine calcium in mmol/24 h) are the
    same tests as the order codes 3016-3 and 6874-2: on record, they are not asked for again."""
    b = bundle(WHOLE)
    _obs(b, left)["code"] = {"coding": [{"system": "http://loinc.org", "code": code}]}
    assert "C-SECONDARY-EVAL" not in cards(client, b)
