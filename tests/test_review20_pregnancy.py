"""Review 20 (clinical, M2): pregnancy in the wording of the treatment cards. Orders were already
withheld in a current pregnancy (engine.withhold_vetoed_orders), but the drug-start cards still
said "consider alendronate / denosumab / an anabolic agent" and C-DMAB-OVERDUE "give the overdue
dose now" beside C-SAFE-PREGNANCY's "must not be given". Charts as the reviewer's (notes/review20:
preg-51-hcg, preg-postmeno-code-conflict, preg-egfr25, preg-vhr, preg-dmab-overdue, preg-dmab-stop,
preg-romo-active), built with tests.test_rules_second_pass's helpers and judged by the engine as
the app runs it. Sources: second-pass.md section 2 (C-SAFE-PREGNANCY: "any osteoporosis drug
ordered"); labels: Prolia and Evista (contraindicated in pregnancy), Fosamax, Reclast, Evenity,
Forteo, Tymlos (not for use in pregnancy); ECTS21 (rebound after denosumab)."""

from __future__ import annotations

import pytest

from cds_service.fhir import terminology as t
from tests.conftest import coding
from tests.test_rules_second_pass import DMAB, ROMO, ago, cards, cond, given, med, obs, record

HCG = {"resourceType": "Observation", "id": "hcg", "status": "final", "code": coding(t.LOINC, "2106-3"),
       "effectiveDateTime": ago(40), "valueString": "Positive"}
HCG_NEGATIVE_LATER = dict(HCG, id="hcg2", effectiveDateTime=ago(10), valueString="Negative")
PREGNANT_CODED = cond("Z33.1", 60)
MENOPAUSE_CODED = cond("Z78.0", 400)
EGFR_25 = obs("98979-8", 20, 25, "mL/min/{1.73_m2}")
VERTEBRAL_RECENT = cond("S32.000A", 80)
ON_DMAB_OVERDUE = (med(DMAB, 240, rid="prolia"), given(DMAB, 240))
DMAB_STOPPED = (med(DMAB, 60, status="stopped", rid="prolia"), given(DMAB, 150))
ON_ROMO = (med(ROMO, 100, rid="evenity"), given(ROMO, 20))

# Words that recommend a drug the labels rule out in pregnancy (the reviewer's quotes).
RECOMMENDS = ("consider oral", "consider denosumab", "consider an anabolic", "nothing on record against",
              "give the overdue", "transition to a bisphosphonate", "follow-on bisphosphonate: plan")


def _drug_orders(card):
    """Every osteoporosis-drug order a card's suggestions would create."""
    return [a["resource"] for s in card.get("suggestions", ()) for a in s.get("actions", ())
            if a.get("type") == "create" and (a.get("resource") or {}).get("resourceType") == "MedicationRequest"
            and "calcium" not in str(a["resource"]).lower() and "cholecalciferol" not in str(a["resource"]).lower()]


def _text(card):
    return f"{card['summary']}\n{card.get('detail', '')}".lower()


def _referrals(card):
    return [a["resource"]["code"]["coding"][0]["code"] for s in card.get("suggestions", ()) for a in s["actions"]
            if (a.get("resource") or {}).get("resourceType") == "ServiceRequest"]


def _screen_recommends_nothing_out_of_label(screen):
    for cid, card in screen.items():
        assert not _drug_orders(card), cid
        assert not any(w in _text(card) for w in RECOMMENDS), (cid, card["summary"])


@pytest.mark.parametrize("chart, card_id, indicator", [
    pytest.param((HCG,), "C-TX-BP", "info", id="preg-51-hcg"),
    pytest.param((MENOPAUSE_CODED, PREGNANT_CODED), "C-TX-BP", "info", id="preg-postmeno-code-conflict"),
    pytest.param((EGFR_25, HCG), "C-TX-DMAB-ALT", "info", id="preg-egfr25"),
    pytest.param((VERTEBRAL_RECENT, HCG), "C-TX-ANABOLIC", "warning", id="preg-vhr"),
])
def test_drug_start_cards_in_pregnancy_defer_and_refer(chart, card_id, indicator):
    screen = cards(record(*chart, age=51))
    card = screen[card_id]
    assert card["indicator"] == indicator
    assert "in pregnancy: no osteoporosis drug now" in card["summary"]
    assert "defer drug treatment until after the pregnancy and breastfeeding" in _text(card)
    assert "prolia, evista labels" in _text(card)
    assert _referrals(card) == ["306278007"]  # a bone specialist (endocrinology), SNOMED, V
    assert "PROLIA24" not in card.get("detail", "") and "CKD-mineral" not in card.get("detail", "")
    _screen_recommends_nothing_out_of_label(screen)


@pytest.mark.parametrize("chart, card_id, words", [
    pytest.param((), "C-TX-BP", "consider oral alendronate", id="no-pregnancy"),
    pytest.param((HCG, HCG_NEGATIVE_LATER), "C-TX-BP", "consider oral alendronate", id="later-negative-test"),
    pytest.param((EGFR_25,), "C-TX-DMAB-ALT", "consider denosumab", id="egfr25-no-pregnancy"),
    pytest.param((VERTEBRAL_RECENT,), "C-TX-ANABOLIC", "consider an anabolic agent", id="vhr-no-pregnancy"),
])
def test_quiet_controls_drug_start_cards_without_a_current_pregnancy(chart, card_id, words):
    card = cards(record(*chart, age=51))[card_id]
    assert words in _text(card) and "pregnan" not in card["summary"].lower()


def test_denosumab_overdue_in_pregnancy_says_no_dose_and_refers():
    screen = cards(record(*ON_DMAB_OVERDUE, HCG, age=41))
    card = screen["C-DMAB-OVERDUE"]
    assert card["indicator"] == "critical"
    assert "in pregnancy: no dose in pregnancy; rebound risk" in card["summary"]
    assert "no denosumab dose in pregnancy" in _text(card) and "multiple vertebral fractures" in _text(card)
    assert "C-SAFE-PREGNANCY" in screen  # the two critical cards now say the same thing
    # one referral per screen: on one of the two cards, the other says where it is
    assert sorted(_referrals(screen["C-DMAB-OVERDUE"]) + _referrals(screen["C-SAFE-PREGNANCY"])) == ["306278007"]
    _screen_recommends_nothing_out_of_label(screen)


def test_denosumab_stopped_in_pregnancy_plans_no_bisphosphonate():
    screen = cards(record(*DMAB_STOPPED, HCG, age=51))
    card = screen["C-DMAB-STOP"]
    assert card["indicator"] == "warning" and "stopped in pregnancy" in card["summary"]
    assert "not for use in pregnancy" in _text(card)
    _screen_recommends_nothing_out_of_label(screen)


def test_quiet_controls_denosumab_cards_without_a_pregnancy():
    overdue = cards(record(*ON_DMAB_OVERDUE, age=41))["C-DMAB-OVERDUE"]
    assert "give the overdue denosumab 60 mg dose now" in overdue["detail"] and _drug_orders(overdue)
    stop = cards(record(*DMAB_STOPPED, age=51))["C-DMAB-STOP"]
    assert "follow-on bisphosphonate: plan alendronate" in stop["summary"] and _drug_orders(stop)


def test_romosozumab_course_in_pregnancy_gets_the_pregnancy_card():
    """preg-romo-active: a positive test during an active romosozumab course got no pregnancy card on
    patient-view. Extended (second-pass 2 row: "any osteoporosis drug ordered"; EVENITY:
    postmenopausal women only; a monthly clinician-given injection, like denosumab)."""
    card = cards(record(*ON_ROMO, HCG, age=41))["C-SAFE-PREGNANCY"]
    assert card["indicator"] == "critical" and card["summary"] == "Pregnancy: romosozumab must not be given"
    assert "no further doses in pregnancy" in card["detail"]
    assert _referrals(card) == ["306278007"]
    assert "C-SAFE-PREGNANCY" not in cards(record(*ON_ROMO, age=41))  # quiet control


def test_anabolic_follow_on_in_pregnancy_starts_no_antiresorptive():
    """Same family (seen while fixing M2): C-ANABOLIC-FOLLOW-ON said "start alendronate or
    denosumab" in a pregnancy (orders withheld, words not)."""
    romo_done = tuple(given(ROMO, 150 + 30 * i) for i in range(12)) + (med(ROMO, 520, status="completed", rid="ev"),)
    screen = cards(record(*romo_done, HCG, age=41))
    card = screen["C-ANABOLIC-FOLLOW-ON"]
    assert card["summary"].endswith("no antiresorptive since: none in pregnancy: specialist")
    assert "no antiresorptive while pregnant" in card["detail"] and _referrals(card) == ["306278007"]
    _screen_recommends_nothing_out_of_label(screen)
    control = cards(record(*romo_done, age=41))["C-ANABOLIC-FOLLOW-ON"]  # quiet control: unchanged
    assert "start alendronate or denosumab" in control["summary"] and _drug_orders(control)
