"""Review 20 (clinical), the denosumab course cards beside an atypical femoral fracture (AFF) or
jaw osteonecrosis (ONJ). The reviewer's charts (aff-dmab-stopped, onj-dmab-stop, aff-dmab-overdue,
dmab-stopped-then-given, onj-romo-done-followon) rebuilt with tests.test_rules_second_pass's
helpers, judged by the engine as the app runs it (strict), and one through the Flask app.
Sources: second-pass.md section 4 (C-AR-COMPLICATION: hold the bisphosphonate and refer;
denosumab is never simply stopped) and section 3 (C-DMAB-STOP: an explicit stop); Fosamax, Reclast
and Prolia labels (AFF, ONJ; multiple vertebral fractures after stopping Prolia); ECTS 2021."""

from __future__ import annotations

import datetime as dt

from cds_service import fixtures as fx
from tests.conftest import TODAY
from tests.test_review16_failure import _patient_view
from tests.test_rules_second_pass import DMAB, PID, ROMO, ago, cards, cond, given, med, obs, record

LABS = (obs("98979-8", 83, 72, "mL/min/{1.73_m2}"), obs("17861-6", 83, 9.4, "mg/dL"),
        obs("62292-8", 83, 32, "ng/mL"))
AFF = cond("M84.751A", 30, cid="aff")
ONJ = cond("M87.180", 30, cid="onj")
STOPPED = (med(DMAB, 60, "stopped", rid="r1"), given(DMAB, 150))   # aff-dmab-stopped, onj-dmab-stop
OVERDUE = (med(DMAB, 240, rid="r1"), given(DMAB, 240))             # aff-dmab-overdue
ZOL_RXNORM = "705824"
ALN_RXNORM = "904431"
DMAB_RXNORM = "993452"
REFERRAL = "Refer to a bone specialist (endocrinology) for the treatment plan"


def _pv(*resources):
    return cards(record(*LABS, *resources))


def _drugs(card):
    """RxNorm codes of the drugs a card's suggestions would order, suggestion by suggestion."""
    return [[c["code"] for a in s["actions"] if a.get("resource", {}).get("resourceType") == "MedicationRequest"
             for c in a["resource"]["medicationCodeableConcept"]["coding"]] for s in card.get("suggestions", [])]


def _referrals(suggestion):
    return [a["resource"]["code"]["text"] for a in suggestion["actions"]
            if a.get("resource", {}).get("resourceType") == "ServiceRequest"]


def _no_bisphosphonate(got):
    offered = {code for card in got.values() for codes in _drugs(card) for code in codes}
    assert not offered & {ZOL_RXNORM, ALN_RXNORM}, offered


# ---------------------------------------------------------------------------
# H1. One-click zoledronic acid after a denosumab stop or an overdue dose, with AFF or ONJ on record.
# ---------------------------------------------------------------------------

def test_denosumab_stopped_with_aff_or_onj_offers_no_bisphosphonate_but_the_specialist_and_the_next_dose():
    for complication, name in ((AFF, "atypical femoral fracture"), (ONJ, "osteonecrosis of the jaw")):
        got = _pv(*STOPPED, complication)
        _no_bisphosphonate(got)
        card = got["C-DMAB-STOP"]
        assert card["summary"] == (f"Denosumab stopped with {name} on record: no bisphosphonate; refer to a bone "
                                   "specialist for the follow-on plan")
        assert "no bisphosphonate, oral or IV, is offered" in card["detail"]
        assert "multiple vertebral\nfractures" in card["detail"]  # the rebound message stays
        referral, dose = card["suggestions"]
        assert referral["label"] == REFERRAL and referral["isRecommended"] and _drugs(card)[0] == []
        due = (TODAY - dt.timedelta(days=150) + dt.timedelta(days=183)).isoformat()
        assert dose["label"] == f"Order the next denosumab 60 mg dose for {due}, and refer to a bone specialist"
        assert _drugs(card)[1] == [DMAB_RXNORM] and _referrals(dose) == [REFERRAL]


def test_denosumab_overdue_with_aff_offers_the_dose_with_the_specialist_no_transition():
    got = _pv(*OVERDUE, AFF)
    _no_bisphosphonate(got)
    card = got["C-DMAB-OVERDUE"]
    assert card["indicator"] == "critical"
    assert "atypical femoral fracture on record: give the dose, refer" in card["summary"]
    assert "transition" not in card["detail"].lower()
    assert [s["label"] for s in card["suggestions"]] == [
        "Give the overdue denosumab 60 mg dose now, and refer to a bone specialist", REFERRAL]
    assert _drugs(card) == [[DMAB_RXNORM], []]
    # the referral is offered once on the screen: C-AR-COMPLICATION says where it is
    assert REFERRAL not in [s["label"] for s in got["C-AR-COMPLICATION"]["suggestions"]]
    assert f"Not repeated here: {REFERRAL}" in got["C-AR-COMPLICATION"]["detail"]


def test_aff_denosumab_stopped_through_the_app(client):
    """aff-dmab-stopped (patient-view) through the Flask app, dates moved to the app's today."""
    patient = {"resourceType": "Patient", "id": PID, "gender": "female", "birthDate": "1952-01-01"}
    chart = [dict(r, subject={"reference": f"Patient/{PID}"})
             for r in (*LABS, obs("38267-1", 200, -2.7, oid="dxa"), *STOPPED, AFF)]
    got = _patient_view(client, [patient, *fx.shift_dates(chart, (dt.date.today() - TODAY).days)])
    _no_bisphosphonate(got)
    assert got["C-DMAB-STOP"]["suggestions"][0]["label"] == REFERRAL


def test_quiet_control_without_a_complication_the_bisphosphonate_follow_on_stays():
    stop = _pv(*STOPPED)["C-DMAB-STOP"]
    assert stop["summary"].endswith("plan zoledronic acid or alendronate")
    assert _drugs(stop) == [[ZOL_RXNORM], [ALN_RXNORM]]
    overdue = _pv(*OVERDUE)["C-DMAB-OVERDUE"]
    assert _drugs(overdue) == [[DMAB_RXNORM], [ZOL_RXNORM], [ALN_RXNORM]]
    assert "transition to a bisphosphonate now" in overdue["detail"]


# ---------------------------------------------------------------------------
# L1. C-AR-COMPLICATION called a stopped denosumab "on board", "since" its last dose.
# ---------------------------------------------------------------------------

def test_complication_card_says_denosumab_was_stopped_and_when_its_last_dose_wears_off():
    card = _pv(*STOPPED, AFF)["C-AR-COMPLICATION"]
    wears_off = (TODAY - dt.timedelta(days=150) + dt.timedelta(days=183)).isoformat()
    assert card["summary"] == ("Denosumab stopped with atypical femoral fracture on record: plan the follow-on "
                               f"with a bone specialist before {wears_off}")
    assert "on board" not in card["detail"] and "On denosumab since" not in card["detail"]
    assert f"- Denosumab order stopped (MedicationRequest/r1, dated {ago(60)})" in card["detail"]
    assert f"- Last denosumab dose on {ago(150)}; it acts until about {wears_off} (6 months)" in card["detail"]


def test_quiet_control_complication_card_on_denosumab_not_stopped_unchanged():
    card = _pv(*OVERDUE, AFF)["C-AR-COMPLICATION"]
    assert card["summary"] == ("Denosumab with atypical femoral fracture on record: refer; never stop it without "
                               "a follow-on plan")
    # Review 21: the overdue course is named by its last dose, not "On denosumab since <that dose>".
    assert "on board or being ordered" in card["detail"] and f"- Denosumab last given on {ago(240)}" in card["detail"]


# ---------------------------------------------------------------------------
# L4. A dose given after the stopped order was written read as given after the stop.
# ---------------------------------------------------------------------------

def test_stop_written_before_the_last_dose_is_not_dated_as_the_stop():
    card = _pv(med(DMAB, 200, "stopped", rid="r1"), given(DMAB, 100))["C-DMAB-STOP"]  # dmab-stopped-then-given
    assert (f"- Denosumab order stopped (MedicationRequest/r1, written on {ago(200)}, before the last dose; the stop "
            "itself is not dated)") in card["detail"]
    assert f"- Last denosumab dose on {ago(100)} (100 days ago)" in card["detail"]


def test_quiet_control_stop_written_after_the_last_dose_keeps_its_date():
    card = _pv(*STOPPED)["C-DMAB-STOP"]
    assert f"- Denosumab order stopped (MedicationRequest/r1, dated {ago(60)})" in card["detail"]


# ---------------------------------------------------------------------------
# L5 (onj-romo-done-followon). Denosumab, the only drug offered, was labelled "(alternative)";
# with ONJ on record the bone specialist leads.
# ---------------------------------------------------------------------------

ROMO_DONE = tuple(given(ROMO, 100 + 30 * k) for k in range(12))


def test_follow_on_with_onj_refers_first_and_denosumab_is_no_alternative():
    got = _pv(*ROMO_DONE, ONJ)
    _no_bisphosphonate(got)
    card = got["C-ANABOLIC-FOLLOW-ON"]
    assert card["summary"].endswith("with no antiresorptive since: specialist's plan")
    assert "With osteonecrosis of the jaw on record no bisphosphonate is offered" in card["detail"]
    assert [(s["label"], s["isRecommended"]) for s in card["suggestions"]] == [
        (REFERRAL, True), ("Order denosumab 60 mg every 6 months", False)]


def test_follow_on_denosumab_alone_for_the_kidney_is_not_labelled_alternative():
    low = (obs("98979-8", 20, 32, "mL/min/{1.73_m2}", oid="egfr32"), obs("17861-6", 20, 9.4, "mg/dL"))
    card = cards(record(*low, *ROMO_DONE))["C-ANABOLIC-FOLLOW-ON"]
    assert card["summary"].endswith(": start denosumab")
    assert [(s["label"], s["isRecommended"]) for s in card["suggestions"]] == [
        ("Order denosumab 60 mg every 6 months", True)]


def test_quiet_control_follow_on_with_alendronate_keeps_denosumab_as_the_alternative():
    card = _pv(*ROMO_DONE)["C-ANABOLIC-FOLLOW-ON"]
    assert [s["label"] for s in card["suggestions"]] == [
        "Order alendronate 70 mg once weekly", "Order denosumab 60 mg every 6 months (alternative)"]
