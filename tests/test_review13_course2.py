"""Review 13, the denosumab cards beside an anabolic agent and the romosozumab course end (branch
course2): C-DMAB-STOP and C-DMAB-DUE take C-DMAB-OVERDUE's anabolic-on-board variant (commit
8aa28e1), and C-ANABOLIC-FOLLOW-ON names a 12-dose romosozumab course's date as the last dose.
Each with a chart that shows the fix and a quiet control; charts are built with
tests.test_rules_second_pass's helpers and judged by the engine as the app runs it
(engine.evaluate, strict); dates count back from TODAY."""

from __future__ import annotations

import pytest

from tests.test_rules_second_pass import ABL, DMAB, ROMO, TPTD, ago, cards, given, med, obs, record

LABS = (obs("98979-8", 20, 70), obs("17861-6", 20, 9.4, "mg/dL"), obs("62292-8", 20, 34, "ng/mL"))


def _orders(card):
    return [a["resource"].get("medicationCodeableConcept", a["resource"].get("code", {})).get("text", "")
            for s in card.get("suggestions", ()) for a in s["actions"]]


def _dosage(card, drug="denosumab"):
    return next(a["resource"]["dosageInstruction"][0] for s in card.get("suggestions", ()) for a in s["actions"]
                if drug in a["resource"].get("medicationCodeableConcept", {}).get("text", ""))


# ---------------------------------------------------------------------------
# 1. C-DMAB-STOP (second-pass 3: an explicit stop, next dose not yet overdue) beside an active
# anabolic offered zoledronic acid or alendronate in one click and said nothing of the switch.
# Denosumab stopped for teriparatide is DATA-Switch (Leder, Lancet 2015: bone loss at hip and
# spine; AACE20 / ES20 advise against the switch): the card names the anabolic, says it does not
# prevent the rebound, and offers the next denosumab dose (on or after 6 months from the last,
# continued alongside) or a bone specialist; no bisphosphonate beside the anabolic (brief SAFE-16:
# a specialist's combination). Indicator: warning, as the catalogue lists.
# ---------------------------------------------------------------------------

def _dmab_stopped(*extra, labs=LABS):
    stopped = med(DMAB, 400, "stopped", rid="dmab-order", statusReason={"text": "switched to teriparatide"})
    return record(given(DMAB, 150), given(DMAB, 332), stopped, *labs, *extra)


def test_denosumab_stopped_for_teriparatide_names_it_and_offers_the_dose_or_a_specialist():
    card = cards(_dmab_stopped(med(TPTD, 20, rid="tptd")))["C-DMAB-STOP"]
    assert card["indicator"] == "warning"
    assert card["summary"] == "Denosumab stopped with teriparatide on board: teriparatide does not prevent the rebound"
    assert "DATA-Switch" in card["detail"] and "advise against switching from denosumab to teriparatide" in card["detail"]
    assert f"the next 60 mg dose on or after {ago(150 - 183)} (6 months after the last dose)" in card["detail"]
    assert f"Teriparatide active since {ago(20)}" in card["detail"]
    orders = _orders(card)
    assert any("denosumab" in o for o in orders) and any("bone specialist" in o for o in orders)
    assert not any("zoledronic" in o or "alendronate" in o for o in orders)
    # not yet due: the dose is for 6 months after the last one, not today (C-SAFE-DOSE-INTERVAL)
    assert _dosage(card)["timing"]["event"] == [ago(150 - 183)]


def test_without_pre_dose_labs_the_stopped_course_dose_is_still_dated():
    card = cards(_dmab_stopped(med(TPTD, 20, rid="tptd"), labs=()))["C-DMAB-STOP"]
    dosage = _dosage(card)
    assert dosage["timing"]["event"] == [ago(150 - 183)] and f"on or after {ago(150 - 183)}" in dosage["text"]
    assert any("creatinine" in o.lower() for o in _orders(card))  # the labs ride with the dose


@pytest.mark.parametrize("concept, name", [(ABL, "abaloparatide"), (ROMO, "romosozumab")])
def test_other_anabolics_have_not_been_shown_to_prevent_the_rebound(concept, name):
    card = cards(_dmab_stopped(med(concept, 20, rid="anabolic")))["C-DMAB-STOP"]
    assert card["summary"].endswith(f"{name} has not been shown to prevent the rebound")


def test_a_stopped_course_with_no_dose_date_beside_an_anabolic_offers_only_the_referral():
    stopped = med(DMAB, 400, "stopped", rid="dmab-order")
    del stopped["authoredOn"]
    card = cards(record(stopped, *LABS, med(TPTD, 20, rid="tptd")))["C-DMAB-STOP"]
    assert "once the date of the last injection is confirmed" in card["detail"]
    assert _orders(card) == ["Plan the sequence with a bone specialist (endocrinology)"]


def test_denosumab_stopped_without_an_anabolic_keeps_the_bisphosphonate_plan():
    """Control: the same stopped course with no anabolic agent."""
    card = cards(_dmab_stopped())["C-DMAB-STOP"]
    assert card["summary"] == "Denosumab stopped with no follow-on bisphosphonate: plan zoledronic acid or alendronate"
    orders = _orders(card)
    assert any("zoledronic" in o for o in orders) and any("alendronate" in o for o in orders)
    assert not any("bone specialist" in o for o in orders)


# ---------------------------------------------------------------------------
# 2. C-DMAB-DUE (info) beside an active anabolic said nothing of the switch. It keeps the dose
# order and says the anabolic does not prevent the rebound (DATA-Switch; AACE20, ES20): continue
# denosumab alongside or plan with a bone specialist (referral offered).
# ---------------------------------------------------------------------------

def _dmab_due(*extra):
    return record(given(DMAB, 190), given(DMAB, 372), med(DMAB, 372, rid="dmab-order"), *LABS, *extra)


def test_denosumab_due_beside_teriparatide_says_it_does_not_prevent_the_rebound():
    card = cards(_dmab_due(med(TPTD, 20, rid="tptd")))["C-DMAB-DUE"]
    assert card["indicator"] == "info"
    assert card["summary"] == (f"Denosumab due: last dose {ago(190)}; give the next 60 mg dose by {ago(190 - 211)}: "
                               "teriparatide does not prevent the rebound")
    assert "DATA-Switch" in card["detail"] and "Continue denosumab alongside" in card["detail"]
    assert f"Teriparatide active since {ago(20)}" in card["detail"]
    orders = _orders(card)
    assert any("denosumab" in o for o in orders) and any("bone specialist" in o for o in orders)
    assert card["suggestions"][0]["isRecommended"]  # the dose stays first and recommended


def test_denosumab_due_without_an_anabolic_is_unchanged():
    """Control: the same due dose with no anabolic agent."""
    card = cards(_dmab_due())["C-DMAB-DUE"]
    assert card["summary"] == f"Denosumab due: last dose {ago(190)}; give the next 60 mg dose by {ago(190 - 211)}"
    assert "DATA-Switch" not in card["detail"]
    assert _orders(card) == ["denosumab 60 mg/mL prefilled syringe"]


# ---------------------------------------------------------------------------
# 3. C-ANABOLIC-FOLLOW-ON (SAFE-12) after 12 romosozumab doses said "Anabolic course ended
# <date>" with the last dose's date, read as a course that ran to that date: it now says
# "last dose on <date>". A stopped teriparatide course keeps "ended <date>".
# ---------------------------------------------------------------------------

def test_a_12_dose_romosozumab_course_is_dated_by_its_last_dose():
    rec = record(*(given(ROMO, 130 + 30 * k) for k in range(12)), *LABS)
    card = cards(rec)["C-ANABOLIC-FOLLOW-ON"]
    assert card["indicator"] == "warning"
    assert card["summary"] == (f"Anabolic course complete (12 romosozumab doses, last dose on {ago(130)}) with no "
                               "antiresorptive since: start alendronate or denosumab")
    assert "130 days since the last romosozumab dose" in card["detail"]


def test_a_stopped_teriparatide_course_still_ended_on_its_date():
    """Control: a teriparatide order stopped 130 days ago."""
    tptd = med(TPTD, 700, "stopped", rid="tptd", dispenseRequest={"validityPeriod": {"end": ago(130)}})
    card = cards(record(tptd, *LABS))["C-ANABOLIC-FOLLOW-ON"]
    assert card["summary"] == (f"Anabolic course ended {ago(130)} with no antiresorptive since: "
                               "start alendronate or denosumab")
    assert "130 days since the anabolic course ended" in card["detail"]
