"""Review 21 (clinical leftovers of review 20): each fix with a chart that makes the fixed rule
fire and a quiet control. Charts are built with tests.test_rules_second_pass's helpers and judged
by the engine as the app runs it (engine.evaluate, strict; dates count back from TODAY); one chart
of each goes through the Flask app as well (prefetch, patient-view / order-sign).

1. C-GIOP in a current pregnancy said "treat: a bisphosphonate, denosumab or a PTH analog"
   (second-pass 2 and 5; Prolia, Evista labels: contraindicated in pregnancy; Fosamax, Reclast,
   Evenity, Forteo, Tymlos: not for use in it).
2. C-SAFE-ROMO-LIMIT in a pregnancy: "stop it and continue with an antiresorptive".
3. C-AR-COMPLICATION: "On denosumab since <the date of its only dose>" on an overdue course.
4. eGFR 25 beside a creatinine clearance of 47: C-TX-BP's one-click alendronate ("nothing on
   record against an oral bisphosphonate") beside the CKD 4-5 cards (second-pass 1: one kidney
   reading for every rule, C-TX-BP named; the order would meet C-SAFE-RENAL's ckd-stage warning,
   KDIGO 2017 CKD-MBD).
5. C-TX-DMAB-ALT after an atypical femoral fracture or jaw osteonecrosis: "Suggested: denosumab
   ... never stop it without a follow-on bisphosphonate" beside a referral only (second-pass 4).
"""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from cds_service import fixtures as fx
from cds_service.fhir.prefetch import render_template
from cds_service.services.prefetch_templates import PREFETCH
from fhir_test_server import FhirStore
from tests.conftest import TODAY
from tests.test_review13_kidney import LABS, _codes
from tests.test_review20_kidney import PRED
from tests.test_review20_pregnancy import HCG, HCG_NEGATIVE_LATER
from tests.test_rules_second_pass import (ALN, DMAB, PID, ROMO, ago, cards, cond, draft, given, med, obs,
                                          record)

ENDOCRINOLOGY = "306278007"
NEPHROLOGY = "306286007"
BONE_DRUGS = {"904431", "905024", "705824", "993452", "1435115", "1921082", "romosozumab"}


def _drug_orders(card):
    return {code for _, code in _codes(card)} & BONE_DRUGS


def _text(card):
    return f"{card['summary']}\n{card.get('detail', '')}"


def _referrals(screen):
    return [code for card in screen.values() for s in card.get("suggestions", ()) for a in s["actions"]
            if (a.get("resource") or {}).get("resourceType") == "ServiceRequest"
            for code in [a["resource"]["code"]["coding"][0]["code"]] if code in (ENDOCRINOLOGY, NEPHROLOGY)]


def _through_app(client, resources, hook="patient-view", drafts=()):
    """The chart (dates moved from the tests' TODAY to the app's) through the Flask app."""
    days = (dt.date.today() - TODAY).days
    patient = {"resourceType": "Patient", "id": PID, "gender": "female",
               "birthDate": dt.date(dt.date.today().year - 41, 1, 1).isoformat()}
    chart = [dict(r, subject={"reference": f"Patient/{PID}"}) for r in resources]
    store = FhirStore([patient, *fx.shift_dates(chart, days)])
    prefetch = {k: store.answer(render_template(tpl, {"patientId": PID})) for k, tpl in PREFETCH.items()}
    context = {"patientId": PID, "userId": "Practitioner/example"}
    if drafts:
        context["draftOrders"] = {"resourceType": "Bundle", "entry": [
            {"resource": dict(d, subject={"reference": f"Patient/{PID}"})} for d in drafts]}
    body = {"hookInstance": str(uuid.uuid4()), "hook": hook, "fhirServer": "https://fhir.example.org/r4",
            "context": context, "prefetch": prefetch}
    reply = client.post(f"/cds-services/osteoporosis-{hook}", json=body)
    assert reply.status_code == 200, reply.get_data(as_text=True)
    return {c["source"]["topic"]["code"]: c for c in reply.get_json()["cards"]}


# ---------------------------------------------------------------------------
# 1. C-GIOP in pregnancy: no drug, no "treat", no DXA during it; the bone specialist referral
# ---------------------------------------------------------------------------

FRAX_MODERATE = obs("90265-0", 60, 15, "%")   # x 1.15 at 10 mg/day: 17.2%, moderate (ACR22)
FRAX_HIGH = obs("90265-0", 60, 25, "%")
DXA_RECENT = obs("38263-0", 60, -1.9, oid="dxa-fn")


def _giop(*resources):
    return cards(record(*LABS, PRED, *resources, age=41, t_score=False))


@pytest.mark.parametrize("frax, risk", [pytest.param(FRAX_MODERATE, "moderate", id="moderate"),
                                        pytest.param(FRAX_HIGH, "high", id="high")])
def test_giop_in_pregnancy_defers_drug_treatment_and_refers(frax, risk):
    screen = _giop(frax, DXA_RECENT, HCG)
    card = screen["C-GIOP"]
    assert card["indicator"] == "info" and "pregnant: no bone drug now" in card["summary"]
    assert f"**Fracture risk now:** {risk}" in card["detail"]
    assert "treat**" not in card["detail"] and "a bisphosphonate, denosumab or a PTH analog" not in card["detail"]
    assert "Defer drug treatment until after the pregnancy and breastfeeding" in card["detail"]
    assert "Positive pregnancy test" in card["detail"]
    assert not any(_drug_orders(c) for c in screen.values())
    assert ENDOCRINOLOGY in {code for _, code in _codes(card)}
    assert "Order calcium 500 mg elemental daily" in card["suggestions"][0]["label"]  # ACR22: calcium, vitamin D stay


def test_giop_in_pregnancy_without_a_dxa_orders_none_during_it():
    card = _giop(HCG)["C-GIOP"]
    assert card["indicator"] == "info"  # the no-DXA warning waits with the DXA
    assert "it waits until after the pregnancy" in card["detail"]
    assert not any("DXA" in s["label"] for s in card["suggestions"])
    assert "treat at moderate or high risk" not in card["detail"]


@pytest.mark.parametrize("extra", [pytest.param((), id="no-pregnancy"),
                                   pytest.param((HCG, HCG_NEGATIVE_LATER), id="later-negative-test")])
def test_giop_quiet_control_without_a_current_pregnancy(extra):
    card = _giop(FRAX_MODERATE, DXA_RECENT, *extra)["C-GIOP"]
    assert "**Risk is moderate: treat**: a bisphosphonate, denosumab or a PTH analog" in card["detail"]
    assert "904431" in _drug_orders(card) and "pregnan" not in card["summary"]
    assert "order one" in _giop()["C-GIOP"]["detail"]  # no DXA, not pregnant: the DXA is ordered


def test_giop_in_pregnancy_through_the_app(client):
    got = _through_app(client, (*LABS, PRED, FRAX_MODERATE, DXA_RECENT, HCG))
    assert "pregnant: no bone drug now" in got["C-GIOP"]["summary"]
    assert not any(_drug_orders(c) for c in got.values())


# ---------------------------------------------------------------------------
# 2. C-SAFE-ROMO-LIMIT in pregnancy: stop it, no follow-on drug advised
# ---------------------------------------------------------------------------

def _romo12(status="active"):
    return (med(ROMO, 400, status, rid="romo-order"), *(given(ROMO, 10 + 30 * k) for k in range(12)))


def test_romosozumab_limit_in_pregnancy_advises_no_next_drug():
    screen = cards(record(*LABS, *_romo12(), HCG, age=41))
    card = screen["C-SAFE-ROMO-LIMIT"]
    assert card["indicator"] == "warning"
    assert "follow with an antiresorptive" not in card["summary"] and "no other bone drug" in card["summary"]
    assert "continue with an antiresorptive" not in card["detail"]
    assert "no antiresorptive follows it now" in card["detail"]
    labels = [s["label"] for s in card["suggestions"]]
    assert labels[0].startswith("Stop romosozumab") and not _drug_orders(card) - {"romosozumab"}
    assert _referrals(screen) == [ENDOCRINOLOGY]  # once a screen (here on C-SAFE-PREGNANCY)


def test_romosozumab_limit_order_in_pregnancy_advises_no_next_drug(client):
    drafts = [draft(ROMO, did="romo-draft")]
    chart = (*LABS, *_romo12("completed"), HCG)
    for screen in (cards(record(*chart, age=41, drafts=drafts), "order-sign"),
                   _through_app(client, chart, "order-sign", drafts)):
        card = screen["C-SAFE-ROMO-LIMIT"]
        assert "continue with an antiresorptive" not in card["detail"] and "no other bone drug" in card["summary"]
        assert not any(_drug_orders(c) for c in screen.values())
        assert ENDOCRINOLOGY in {code for _, code in _codes(card)}


def test_romosozumab_limit_quiet_control_without_a_pregnancy():
    card = cards(record(*LABS, obs("98979-8", 10, 70), *_romo12(), age=41))["C-SAFE-ROMO-LIMIT"]
    assert card["summary"].endswith("stop and follow with an antiresorptive")
    assert "continue with an antiresorptive" in card["detail"] and {"904431", "993452"} <= _drug_orders(card)


# ---------------------------------------------------------------------------
# 3. C-AR-COMPLICATION on an overdue denosumab course: the last dose and since when it is overdue
# ---------------------------------------------------------------------------

AFF = cond("M84.751A", 300, cid="aff")


def test_complication_card_names_an_overdue_denosumab_dose_as_such():
    screen = cards(record(*LABS, AFF, med(DMAB, 240, status="completed", rid="prolia"), given(DMAB, 240)))
    card = screen["C-AR-COMPLICATION"]
    assert "On denosumab since" not in card["detail"]
    assert f"Denosumab last given on {ago(240)} (240 days ago): the next dose was due on {ago(57)}, " \
           f"overdue since {ago(28)}" in card["detail"]
    assert "do not let the next dose lapse" not in card["detail"] and "overdue already" in card["detail"]
    assert "C-DMAB-OVERDUE" in screen


def test_complication_card_names_a_due_dose_with_the_course_start():
    card = cards(record(*LABS, AFF, med(DMAB, 560, rid="prolia"), given(DMAB, 560), given(DMAB, 190)))
    assert (f"Denosumab since {ago(560)}, last given on {ago(190)} (190 days ago): the next dose is due (since "
            f"{ago(7)}, by {ago(-21)})") in card["C-AR-COMPLICATION"]["detail"]


def test_complication_card_quiet_control_on_schedule_denosumab():
    card = cards(record(*LABS, AFF, med(DMAB, 400, rid="prolia"), given(DMAB, 60)))["C-AR-COMPLICATION"]
    assert f"On denosumab since {ago(400)}" in card["detail"]
    assert "do not let the next dose lapse" in card["detail"]


# ---------------------------------------------------------------------------
# 4. eGFR 25 beside a clearance of 47: no bisphosphonate offered anywhere on the screen
# ---------------------------------------------------------------------------

CG_47 = (obs("2160-0", 10, 1.9, "mg/dL"), obs("29463-7", 10, 95, "kg"))  # 60 y, 95 kg, woman: CrCl 47
T_HIGH = obs("38267-1", 90, -2.7, oid="dxa")


def _kidney_chart(egfr, *resources, hook="patient-view", drafts=()):
    return cards(record(*LABS, T_HIGH, obs("98979-8", 10, egfr), *CG_47, *resources, t_score=False, age=60,
                        drafts=drafts), hook)


def test_egfr_25_beside_clearance_47_offers_no_bisphosphonate_start():
    screen = _kidney_chart(25)
    assert "C-TX-BP" not in screen
    card = screen["C-TX-DMAB-ALT"]
    assert "CKD stage 4 by eGFR, the lower reading" in card["detail"] and "Prolia boxed warning 2024" in card["detail"]
    assert NEPHROLOGY in {code for _, code in _codes(card)}
    assert "nephrology" in screen["C-SUPP-CAVD"]["summary"]  # the same reading on every card
    assert not any(_drug_orders(c) for c in screen.values())
    assert "not used: the drug labels" not in card["detail"] and "it sets the CKD stage (4-5)" in card["detail"]


def test_egfr_25_beside_clearance_47_no_bisphosphonate_after_denosumab():
    """The denosumab course cards' follow-on bisphosphonates read the same (follow_up.bisphosphonate_keys)."""
    screen = _kidney_chart(25, med(DMAB, 240, status="completed", rid="prolia"), given(DMAB, 240))
    card = screen["C-DMAB-OVERDUE"]
    assert not {"904431", "705824"} & _drug_orders(card)
    assert "Zoledronic acid not suggested: eGFR 25" in card["detail"]
    assert "Oral alendronate not suggested: eGFR 25" in card["detail"]


def test_the_alendronate_order_there_meets_the_same_reading():
    """The order C-TX-BP had offered: C-SAFE-RENAL's ckd-stage (unchanged) holds it."""
    renal = _kidney_chart(25, hook="order-sign", drafts=[draft(ALN)])["C-SAFE-RENAL"]
    assert "CKD-mineral bone disorder work-up first" in renal["summary"]


def test_quiet_control_egfr_60_beside_clearance_47_keeps_alendronate():
    screen = _kidney_chart(60)
    assert "904431" in _drug_orders(screen["C-TX-BP"]) and "C-TX-DMAB-ALT" not in screen
    assert "nothing on record against an oral bisphosphonate" in screen["C-TX-BP"]["detail"]
    after = _kidney_chart(60, med(DMAB, 240, status="completed", rid="prolia"), given(DMAB, 240))["C-DMAB-OVERDUE"]
    assert {"904431", "705824"} <= _drug_orders(after)


# ---------------------------------------------------------------------------
# 5. C-TX-DMAB-ALT after an atypical femoral fracture or jaw osteonecrosis
# ---------------------------------------------------------------------------

ESOPHAGEAL = cond("K22.2", 300, cid="esoph")


@pytest.mark.parametrize("complication, name", [
    pytest.param((AFF,), "atypical femoral fracture", id="aff"),
    pytest.param((cond("M87.180", 300, cid="onj"), ESOPHAGEAL), "osteonecrosis of the jaw", id="onj-esophageal"),
])
def test_denosumab_alternative_after_a_complication_is_coherent(complication, name):
    screen = cards(record(*LABS, obs("98979-8", 10, 70), *complication))
    card = screen["C-TX-DMAB-ALT"]
    assert card["summary"] == (f"Osteoporosis with {name} on record: no bisphosphonate; bone specialist to choose "
                               "the treatment")
    assert "consider denosumab" not in _text(card) and "**Suggested:** denosumab" not in card["detail"]
    assert "follow-on bisphosphonate" not in card["detail"] and "No bisphosphonate is offered, oral or IV" in card["detail"]
    assert [code for _, code in _codes(card)] == [ENDOCRINOLOGY]
    assert not any(_drug_orders(c) for c in screen.values())


def test_denosumab_alternative_quiet_control_oral_route_problem_only():
    card = cards(record(*LABS, obs("98979-8", 10, 70), ESOPHAGEAL))["C-TX-DMAB-ALT"]
    assert card["summary"].endswith("consider denosumab 60 mg SC every 6 months")
    assert {"993452", "705824"} <= _drug_orders(card)  # denosumab, zoledronic acid as the alternative


def test_zoledronic_acid_alternative_reads_the_course_cards_blockers():
    """follow_up.zoledronate_blockers reused: a low calcium stands against zoledronic acid (Reclast
    label: correct hypocalcemia first); the card says so instead of offering it."""
    low = (obs("17861-6", 10, 7.6, "mg/dL"), obs("62292-8", 10, 32, "ng/mL"))
    card = cards(record(*low, obs("98979-8", 10, 70), ESOPHAGEAL))["C-TX-DMAB-ALT"]
    assert "705824" not in _drug_orders(card)
    assert "Zoledronic acid is not offered: " in card["detail"] and "oral-route problem only" not in card["detail"].lower()
