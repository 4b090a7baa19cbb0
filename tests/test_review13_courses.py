"""Review 13, course and on-therapy fixes (branch coursefix): each with a chart that makes the
fixed rule fire (or go quiet) and a quiet control. Charts are built with
tests.test_rules_second_pass's helpers and judged by the engine as the app runs it
(engine.evaluate, strict); dates count back from TODAY."""

from __future__ import annotations

import dataclasses

from tests.test_rules_second_pass import ALN, S, ago, cards, cond, med, record

VERTEBRAL = "M80.08XA"

# ---------------------------------------------------------------------------
# 1. C-TX-FAILURE had no time limit: a vertebral fracture 4 years ago, 4 years into alendronate,
# raised "There is a new fracture" at every chart open. Second-pass 4 means a NEW fracture: only
# one within tx_failure_window_months (CDS_TX_FAILURE_WINDOW_MONTHS, 24) counts (AACE20, ES19),
# and the card names its date.
# ---------------------------------------------------------------------------


def test_an_old_fracture_on_therapy_is_not_a_new_treatment_failure():
    got = cards(record(med(ALN, 2920), cond(VERTEBRAL, 1460)))  # alendronate 8 years, fracture 4 years ago
    assert "C-TX-FAILURE" not in got


def test_a_fracture_within_the_window_still_fails_and_is_dated():
    """Control: the same course with the fracture 13 months ago."""
    card = cards(record(med(ALN, 2920), cond(VERTEBRAL, 400)))["C-TX-FAILURE"]
    assert f"There is a new vertebral fracture on {ago(400)}, 12 months or more into the course" in card["detail"]


def test_two_old_fractures_on_a_stopped_drug_are_not_a_failure_now_two_recent_ones_are():
    """Review 16 reversed the first half for a drug still active: two fractures on it are a failure
    not acted on, whatever their age (tests/test_review16_failure.py). Stopped, they stay quiet."""
    old = cards(record(med(ALN, 4000, "stopped"), cond(VERTEBRAL, 3000, cid="v"), cond("M80.051A", 900, cid="h")))
    assert "C-TX-FAILURE" not in old
    recent = cards(record(med(ALN, 500), cond(VERTEBRAL, 400, cid="v"), cond("M80.051A", 100, cid="h")))
    assert f"hip fracture on {ago(100)}" in recent["C-TX-FAILURE"]["detail"]


def test_the_window_is_a_setting():
    wide = dataclasses.replace(S, tx_failure_window_months=60)
    rec = record(med(ALN, 2920), cond(VERTEBRAL, 1460), settings=wide)
    assert "C-TX-FAILURE" in cards(rec, settings=wide)


def test_the_window_setting_reads_from_the_environment():
    from cds_service.config import load_settings
    from cds_service.rules.settings import ClinicalSettings

    settings = load_settings(environ={"CDS_TX_FAILURE_WINDOW_MONTHS": "36"})
    assert ClinicalSettings.from_settings(settings).tx_failure_window_months == 36


# ---------------------------------------------------------------------------
# 2. Denosumab only as an active MedicationStatement with no dose dates drew no denosumab card at
# all: due or overdue could not be told, so the rebound (ECTS21; Prolia label: vertebral
# fractures after stopping) went unmentioned. C-DMAB-DUE's last-dose-unknown variant asks for the
# date of the last injection; no one-click dose (too early under 5 months, C-SAFE-DOSE-INTERVAL).
# ---------------------------------------------------------------------------

def _prolia_statement(start_days, sid="ms-dmab"):
    return {"resourceType": "MedicationStatement", "id": sid, "status": "active",
            "medicationCodeableConcept": {"text": "Prolia 60 mg SC every 6 months"},
            "effectivePeriod": {"start": ago(start_days)}, "dateAsserted": ago(30)}


def test_denosumab_on_record_without_a_dose_date_asks_for_the_date():
    got = cards(record(_prolia_statement(1095)))
    card = got["C-DMAB-DUE"]
    assert card["indicator"] == "info"
    assert card["summary"] == (f"Denosumab on record since {ago(1095)}, date of the last injection unknown: "
                               "confirm it (due every 6 months)")
    assert "Confirm the date of the last injection" in card["detail"]
    assert not card.get("suggestions")  # no one-click dose without the date
    assert not {"C-DMAB-OVERDUE", "C-TX-BP", "C-TX-ANABOLIC", "C-TX-DMAB-ALT"} & set(got)


def test_a_denosumab_statement_begun_within_6_months_or_with_a_dose_date_is_not_unknown():
    """Controls: a statement begun 2 months ago (no dose since can be due yet); the same old
    statement beside a dose given 100 days ago (not due) and 190 days ago (due: the dose card)."""
    from tests.test_rules_second_pass import DMAB, given
    assert "C-DMAB-DUE" not in cards(record(_prolia_statement(60)))
    assert "C-DMAB-DUE" not in cards(record(_prolia_statement(1095), given(DMAB, 100)))
    due = cards(record(_prolia_statement(1095), given(DMAB, 190)))["C-DMAB-DUE"]
    assert due["summary"].startswith(f"Denosumab due: last dose {ago(190)}") and due["suggestions"]


# ---------------------------------------------------------------------------
# 3. Denosumab -> teriparatide (DATA-Switch, Leder 2015: bone loss at hip and spine; AACE20 / ES20
# advise against the switch). C-DMAB-OVERDUE (critical) stays, but names the anabolic on board,
# says it does not prevent the rebound, and offers the denosumab dose alongside or a bone
# specialist; no one-click bisphosphonate beside the anabolic (brief SAFE-16: an anabolic with an
# antiresorptive is a specialist's combination).
# ---------------------------------------------------------------------------

def _dmab_lapsed(*extra):
    from tests.test_rules_second_pass import DMAB, given, obs
    labs = (obs("98979-8", 20, 70), obs("17861-6", 20, 9.4, "mg/dL"), obs("62292-8", 20, 34, "ng/mL"))
    stopped = med(DMAB, 900, "stopped", rid="dmab-order", statusReason={"text": "switched to teriparatide"})
    return record(*(given(DMAB, 213 + 182 * k) for k in range(4)), stopped, *labs, *extra)


def _orders(card):
    return [a["resource"].get("medicationCodeableConcept", a["resource"].get("code", {})).get("text", "")
            for s in card.get("suggestions", ()) for a in s["actions"]]


def test_overdue_denosumab_beside_teriparatide_names_it_and_offers_no_bisphosphonate():
    from tests.test_rules_second_pass import TPTD
    card = cards(_dmab_lapsed(med(TPTD, 30, rid="tptd")))["C-DMAB-OVERDUE"]
    assert card["indicator"] == "critical"
    assert card["summary"].endswith("teriparatide does not prevent the rebound")
    assert "DATA-Switch" in card["detail"] and "advise against switching from denosumab to teriparatide" in card["detail"]
    assert f"Teriparatide active since {ago(30)}" in card["detail"]
    orders = _orders(card)
    assert any("denosumab" in o for o in orders) and any("bone specialist" in o for o in orders)
    assert not any("zoledronic" in o or "alendronate" in o for o in orders)


def test_overdue_denosumab_without_an_anabolic_keeps_the_bisphosphonate_transition():
    """Control: the same lapsed course with no anabolic agent."""
    card = cards(_dmab_lapsed())["C-DMAB-OVERDUE"]
    assert card["summary"].endswith("risk of rebound vertebral fractures")
    orders = _orders(card)
    assert any("zoledronic" in o for o in orders) and any("alendronate" in o for o in orders)


# ---------------------------------------------------------------------------
# 5. An "active" alendronate MedicationStatement last confirmed (dateAsserted) 2 years ago, before
# denosumab began, raised "Two antiresorptives at once". SAFE-15 still holds (the statement says
# taken; both may be), so the card stays but asks to reconcile the medication list.
# ---------------------------------------------------------------------------

def _aln_statement(asserted_days):
    return {"resourceType": "MedicationStatement", "id": "ms-aln", "status": "active",
            "medicationCodeableConcept": ALN, "effectivePeriod": {"start": ago(2555)},
            "dateAsserted": ago(asserted_days)}


def _on_denosumab(*extra):
    from tests.test_rules_second_pass import DMAB, given
    return record(med(DMAB, 425, rid="dmab-order"), given(DMAB, 425), given(DMAB, 243), given(DMAB, 60), *extra)


def test_a_statement_confirmed_before_denosumab_began_asks_to_reconcile_the_list():
    card = cards(_on_denosumab(_aln_statement(730)))["C-DUP-ANTIRES"]
    assert card["summary"] == ("Medication list shows alendronate and denosumab: alendronate last confirmed "
                               "before denosumab began; reconcile the list")
    assert f"(MedicationStatement/ms-aln), last confirmed on {ago(730)}: before denosumab began on {ago(425)}" \
        in card["detail"]


def test_a_statement_confirmed_on_denosumab_is_a_duplicate():
    """Control: the same statement confirmed 30 days ago, on denosumab: both are taken."""
    card = cards(_on_denosumab(_aln_statement(30)))["C-DUP-ANTIRES"]
    assert card["summary"].startswith("Two antiresorptives at once (") and "reconcile" not in card["detail"].lower()


# ---------------------------------------------------------------------------
# 4. Right after an anabolic course (12 romosozumab doses, the last 40 days ago) C-TX-BP said "no
# bone drug ... no osteoporosis treatment". Brief SAFE-12 keeps C-ANABOLIC-FOLLOW-ON's warning for
# a course over 3 months with nothing after it (the catalogue's indicator: warning); before that,
# the drug-start card is the follow-on and says so (ACP23 Rec 3: an anabolic agent "followed by a
# bisphosphonate"; AACE20).
# ---------------------------------------------------------------------------

def _romo_course(last_days):
    from tests.test_rules_second_pass import ROMO, given, obs
    labs = (obs("98979-8", 20, 70), obs("17861-6", 20, 9.4, "mg/dL"), obs("62292-8", 20, 34, "ng/mL"))
    return record(*(given(ROMO, last_days + 30 * k) for k in range(12)), obs("38267-1", 400, -3.4), *labs,
                  age=69, t_score=False)


def test_within_3_months_of_an_anabolic_course_the_start_card_is_its_follow_on():
    got = cards(_romo_course(40))
    card = got["C-TX-BP"]
    assert "C-ANABOLIC-FOLLOW-ON" not in got
    assert card["summary"].startswith("Osteoporosis at very high fracture risk, anabolic course over, follow-on due")
    assert f"an anabolic course ended on {ago(40)} with no antiresorptive to follow it yet" in card["detail"]
    assert "no osteoporosis treatment" not in card["detail"]
    assert f"Romosozumab: 12 monthly doses given, the last on {ago(40)}" in card["detail"]


def test_after_3_months_the_follow_on_warning_speaks_and_with_no_course_the_start_card_is_plain():
    got = cards(_romo_course(100))
    assert got["C-ANABOLIC-FOLLOW-ON"]["indicator"] == "warning" and "C-TX-BP" not in got
    from tests.test_rules_second_pass import obs
    plain = cards(record(obs("38267-1", 400, -2.8), obs("98979-8", 20, 70), obs("17861-6", 20, 9.4, "mg/dL"),
                         obs("62292-8", 20, 34, "ng/mL"), t_score=False))["C-TX-BP"]
    assert ", no bone drug:" in plain["summary"] and "no osteoporosis treatment" in plain["detail"]
