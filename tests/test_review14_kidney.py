"""Review 14, kidney: each fix with a chart that makes the fixed rule fire and a quiet control.
Charts are built with tests.test_rules_second_pass's helpers and judged by the engine as the app
runs it (engine.evaluate, strict); dates count back from TODAY. Sources: second-pass.md sections
1 and 2 (and 7: a card only when something is to be done now), PROLIA24, EVENITY label, KDIGO
2017 CKD-MBD, AACE20, ES19."""

from __future__ import annotations

import re

import pytest

from tests.test_review13_kidney import LABS, _codes, _drug_orders
from tests.test_rules_second_pass import ROMO, TPTD, cards, cond, draft, obs, record

PTH_PENS = {"1435115", "1921082"}  # teriparatide, abaloparatide
CKD_MBD = {"2731-8", "1649-3", "2777-1", "6768-6", "306286007"}  # PTH, 1,25-D, phosphate, ALP, nephrology


def _order(*resources, sex="female", drafts=None, age=72):
    return cards(record(*LABS, *resources, sex=sex, age=age, drafts=drafts or [draft(ROMO)]), "order-sign")


def _labels(card):
    return [s["label"] for s in card.get("suggestions", ())]


MI = cond("I21.4", 60, cid="mi")
DIALYSIS = (cond("Z99.2"), cond("N18.6"))


# ---------------------------------------------------------------------------
# 1. A romosozumab order stopped by C-SAFE-ROMO-CV (critical) or C-SAFE-ANABOLIC-CONTRA (a man)
# offered one-click teriparatide / abaloparatide "instead" with eGFR < 30 or dialysis, where
# C-SAFE-RENAL on the same draft (and C-TX-ANABOLIC) ask for the CKD-MBD work-up first (AACE20,
# ES19, KDIGO 2017 CKD-MBD). The CKD-MBD labs and referral are offered instead.
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("card_id, resources, sex", [
    pytest.param("C-SAFE-ROMO-CV", (*DIALYSIS, MI), "female", id="dialysis-mi"),
    pytest.param("C-SAFE-ANABOLIC-CONTRA", (obs("98979-8", 10, 20),), "male", id="man-egfr20"),
])
def test_no_pth_analog_instead_of_romosozumab_in_ckd_4_5(card_id, resources, sex):
    got = _order(*resources, sex=sex)
    card = got[card_id]
    assert not (_drug_orders(card) & PTH_PENS)
    assert "CKD-mineral bone disorder work-up" in card["detail"]
    # The work-up is offered once on the screen (review 15, engine.offer_each_order_once): on this
    # card when it is the more severe one (critical C-SAFE-ROMO-CV), else on C-SAFE-RENAL's hold,
    # listed first among the warnings; the other card says so.
    owner = card if card["indicator"] == "critical" else got["C-SAFE-RENAL"]
    assert CKD_MBD <= {code for _, code in _codes(owner)}
    assert "CKD-MBD labs" in owner["suggestions"][0]["label"]
    if owner is not card:
        assert not CKD_MBD & {code for _, code in _codes(card)} and "Not repeated here" in card["detail"]


@pytest.mark.parametrize("card_id, resources, sex", [
    pytest.param("C-SAFE-ROMO-CV", (obs("98979-8", 10, 70), MI), "female", id="mi-egfr70"),
    pytest.param("C-SAFE-ANABOLIC-CONTRA", (obs("98979-8", 10, 30),), "male", id="man-egfr30"),
])
def test_pth_analog_still_offered_instead_of_romosozumab_above_30(card_id, resources, sex):
    """Quiet control: kidney function 30 or more, the PTH analogs stay the alternative."""
    card = _order(*resources, sex=sex)[card_id]
    assert PTH_PENS <= _drug_orders(card)
    assert "CKD-mineral bone disorder" not in card["detail"]


# ---------------------------------------------------------------------------
# 2. C-SAFE-RENAL's anabolic-ckd "keep the order under CKD-MBD supervision" beside a critical card
# or a label contraindication on the same draft (C-SAFE-ROMO-CV, C-SAFE-PREGNANCY, romosozumab for
# a man: EVENITY label). Only "hold" stays.
# ---------------------------------------------------------------------------

KEEP = "Keep the"


@pytest.mark.parametrize("resources, sex, age, beside", [
    pytest.param((*DIALYSIS, MI), "female", 72, "C-SAFE-ROMO-CV", id="romo-cv"),
    pytest.param((cond("N18.4"), cond("Z33.1")), "female", 40, "C-SAFE-PREGNANCY", id="pregnancy"),
    pytest.param((obs("98979-8", 10, 20),), "male", 72, "C-SAFE-ANABOLIC-CONTRA", id="man"),
])
def test_no_keep_under_supervision_beside_a_label_stop(resources, sex, age, beside):
    got = _order(*resources, sex=sex, age=age)
    assert beside in got
    labels = _labels(got["C-SAFE-RENAL"])
    assert not any(label.startswith(KEEP) for label in labels)
    if got[beside]["indicator"] == "critical" and CKD_MBD <= {code for _, code in _codes(got[beside])}:
        # Review 15: the critical card's "remove; CKD-MBD labs and referral" is the same hold, offered
        # once on the screen (engine.offer_each_order_once): C-SAFE-RENAL keeps no suggestion.
        assert not labels
    else:
        assert labels and labels[0].startswith("Hold romosozumab")


@pytest.mark.parametrize("drafts", [[draft(ROMO)], [draft(TPTD)]], ids=["romosozumab", "teriparatide"])
def test_keep_under_supervision_stays_with_no_label_stop(drafts):
    """Quiet control: a woman, CKD 4, nothing else against the drug: hold and keep both offered."""
    labels = _labels(_order(cond("N18.4"), drafts=drafts)["C-SAFE-RENAL"])
    assert any(label.startswith(KEEP) for label in labels) and labels[0].startswith("Hold")


# ---------------------------------------------------------------------------
# 3. Two kidney readings on one chart: C-TX-ANABOLIC read the eGFR (CKD stages go by GFR, KDIGO),
# the calcium / vitamin D holds read Cockcroft-Gault first. eGFR 25 with a clearance of 47: "CKD-MBD
# work-up before any bone drug" beside a one-click vitamin D3 50,000 IU (second-pass 1 last bullet).
# The CKD-stage decisions now read kidney_egfr; the bisphosphonate limits stay on the clearance.
# ---------------------------------------------------------------------------

VHR_T = obs("38267-1", 90, -3.1, oid="dxa")
CG_47 = (obs("2160-0", 10, 1.9, "mg/dL"), obs("29463-7", 10, 95, "kg"))  # 60 y, 95 kg, woman: CrCl 47
LOW_D = obs("62292-8", 10, 12, "ng/mL")


def _pv(*resources, age=60):
    return cards(record(obs("17861-6", 10, 9.2, "mg/dL"), *resources, t_score=False, age=age))


def _orders_vitamin_d_or_calcium(card):
    return any(a.get("resource", {}).get("resourceType") == "MedicationRequest"
               for s in card.get("suggestions", ()) for a in s["actions"])


def test_egfr_25_with_clearance_47_sends_calcium_and_vitamin_d_to_nephrology():
    got = _pv(VHR_T, LOW_D, obs("98979-8", 10, 25), *CG_47)
    assert "CKD-mineral bone disorder" in got["C-TX-ANABOLIC"]["summary"]
    vitd = got["C-VITD-LOW"]
    assert "nephrology" in vitd["summary"] and not _orders_vitamin_d_or_calcium(vitd)
    assert "50,000" not in vitd["detail"]
    cavd = got["C-SUPP-CAVD"]
    assert "nephrology" in cavd["summary"] and not _orders_vitamin_d_or_calcium(cavd)


def test_egfr_45_with_a_low_clearance_goes_to_nephrology_too():
    """The reverse (chart 05b): eGFR 45, clearance 20 (92 y, 45 kg). Review 14 had read CKD stages
    on the eGFR alone and offered calcium and vitamin D here; review 20 (second-pass 1: one kidney
    reading for every rule, C-SUPP-CAVD named; the lower reading governs, fail-closed): the
    clearance of 20 is below 30, so no generic calcium or vitamin D order, as C-TX-DMAB-ALT's
    CKD-MBD work-up on the same screen."""
    cg_low = (obs("2160-0", 10, 1.0, "mg/dL"), obs("29463-7", 10, 45, "kg"))
    got = _pv(obs("38267-1", 90, -2.7, oid="dxa"), obs("62292-8", 10, 32, "ng/mL"), obs("98979-8", 10, 45),
              *cg_low, age=92)
    cavd = got["C-SUPP-CAVD"]
    assert "nephrology" in cavd["summary"] and not _orders_vitamin_d_or_calcium(cavd)
    # the bisphosphonate label limits stay on the clearance (20, below 30): no oral bisphosphonate
    assert "C-TX-DMAB-ALT" in got and "C-TX-BP" not in got
    assert "306286007" in {code for _, code in _codes(got["C-TX-DMAB-ALT"])}


def test_egfr_25_alone_still_goes_to_nephrology():
    """Quiet control: no clearance on file, eGFR 25: nephrology as before."""
    got = _pv(VHR_T, LOW_D, obs("98979-8", 10, 25))
    assert "nephrology" in got["C-VITD-LOW"]["summary"] and not _orders_vitamin_d_or_calcium(got["C-VITD-LOW"])
    assert "nephrology" in got["C-SUPP-CAVD"]["summary"]


# ---------------------------------------------------------------------------
# 5. Denosumab due with eGFR 22 and calcium 7.6: C-DMAB-DUE said "give the next 60 mg dose by ..."
# while no dose is offered until the hypocalcemia is corrected (Prolia label; C-SAFE-HYPOCA vetoes
# it). And the whole PROLIA24 boxed-warning paragraph sat inside a "Patient data used" bullet.
# ---------------------------------------------------------------------------

BOXED = "Denosumab in advanced kidney disease (Prolia boxed warning, January 2024)"
SHORT = "eGFR below 30 or dialysis (Prolia boxed warning 2024)"  # an info card: C-SAFE-DMAB-CKD has the rest


def _dmab_due(calcium, egfr=22):
    from tests.test_rules_second_pass import DMAB, given, med
    return cards(record(obs("17861-6", 10, calcium, "mg/dL"), obs("62292-8", 10, 32, "ng/mL"),
                        obs("98979-8", 10, egfr), med(DMAB, 190), given(DMAB, 190)))["C-DMAB-DUE"]


def _facts_part(card):
    return card["detail"].split("**Patient data used:**")


def test_denosumab_due_with_low_calcium_says_no_dose_until_corrected():
    card = _dmab_due(7.6)
    assert "give the next 60 mg dose by" not in card["summary"]
    assert "correct the low calcium before the next 60 mg dose" in card["summary"]
    assert "none offered until then" in card["summary"]
    assert not card.get("suggestions")
    text, facts = _facts_part(card)
    assert SHORT in text and "Calcium is low" in text and BOXED not in facts
    assert len(re.findall(r"[A-Za-z0-9]\S*", text)) <= 95  # an info card stays short (second-pass 7)


def test_denosumab_overdue_has_the_whole_boxed_warning_in_its_text_not_its_facts():
    from tests.test_rules_second_pass import DMAB, given, med
    card = cards(record(*LABS, obs("98979-8", 10, 22), med(DMAB, 250), given(DMAB, 250)))["C-DMAB-OVERDUE"]
    text, facts = _facts_part(card)
    assert BOXED in text and BOXED not in facts and "eGFR 22 mL/min/1.73m2" in facts


def test_denosumab_due_with_normal_calcium_keeps_its_summary_and_dose():
    """Quiet control: calcium 9.2, eGFR 22: the dose with the PROLIA24 plan, the summary as before;
    the boxed warning in the text, the kidney reading in the facts."""
    card = _dmab_due(9.2)
    assert card["summary"].endswith("give the next 60 mg dose by " + card["summary"].rsplit(" ", 1)[1])
    assert "993452" in {code for _, code in _codes(card)}
    text, facts = _facts_part(card)
    assert SHORT in text and BOXED not in facts
    assert "eGFR 22 mL/min/1.73m2" in facts and "Calcium is low" not in text


def test_denosumab_due_above_30_has_no_boxed_warning():
    """Quiet control: eGFR 70, calcium normal: no PROLIA24 paragraph, the summary as before."""
    card = _dmab_due(9.2, egfr=70)
    assert SHORT not in card["detail"] and "give the next 60 mg dose by" in card["summary"]


# ---------------------------------------------------------------------------
# 4. The CKD-MBD plan re-ordered labs and a referral just done (second-pass 7: a card fires only
# when something is to be done now). Labs on record within predose_lab_days (90) and a nephrology
# referral within done_within_months (12) are left out; with all done the card still says so and
# orders nothing (KDIGO 2017 CKD-MBD; PROLIA24).
# ---------------------------------------------------------------------------

def _neph(days):
    from tests.test_rules_second_pass import ago, coding, sr
    from cds_service.fhir import terminology as t
    return dict(sr(coding(t.SNOMED, "306286007"), sid="neph"), status="active", authoredOn=ago(days))


def _work_up(days):
    """PTH, phosphate, 1,25-D and ALP `days` old (calcium and 25-OH D come from LABS, 10 days)."""
    return (obs("2731-8", days, 310, "pg/mL"), obs("2777-1", days, 5.1, "mg/dL"), obs("1649-3", days, 30, "pg/mL"),
            obs("6768-6", days, 90, "U/L"))


def _anabolic_ckd(*resources):
    return cards(record(VHR_T, *LABS, *DIALYSIS, *resources, t_score=False, age=75))["C-TX-ANABOLIC"]


def test_ckd_mbd_work_up_done_is_not_ordered_again():
    card = _anabolic_ckd(_neph(30), *_work_up(20))
    assert "CKD-mineral bone disorder" in card["summary"]  # the card still says so
    assert not card.get("suggestions")
    assert "**On record:** the CKD-MBD labs" in card["detail"]
    assert "Nephrology referral ordered on" in card["detail"] and "1,25-dihydroxyvitamin D on" in card["detail"]


def test_ckd_mbd_work_up_leaves_out_only_what_is_recent():
    """Labs 100 days old and a referral 400 days old are due again; calcium and 25-OH D (10 days) are not."""
    card = _anabolic_ckd(_neph(400), *_work_up(100))
    codes = {code for _, code in _codes(card)}
    assert codes == {"2731-8", "2777-1", "1649-3", "6768-6", "306286007"}
    assert "those on record recently are not ordered again" in card["detail"]


def test_ckd_mbd_work_up_with_nothing_on_record_orders_everything():
    """Quiet control: no CKD-MBD labs, calcium and 25-OH D 100 days old: the whole work-up, as before."""
    old_labs = (obs("17861-6", 100, 9.2, "mg/dL"), obs("62292-8", 100, 32, "ng/mL"))
    card = cards(record(VHR_T, *old_labs, *DIALYSIS, t_score=False, age=75))["C-TX-ANABOLIC"]
    assert CKD_MBD | {"17861-6", "62292-8"} == {code for _, code in _codes(card)}
    assert "On record" not in card["detail"]


def test_denosumab_due_plan_leaves_out_the_recent_work_up():
    """Chart 33: PTH, phosphate and 1,25-D 20 days old, calcium and 25-OH D 10 days old: the dose, the
    after-dose calcium checks and the referral; no pre-dose lab ordered again."""
    from tests.test_rules_second_pass import DMAB, given, med
    card = cards(record(*LABS, obs("98979-8", 10, 22), *_work_up(20), med(DMAB, 190), given(DMAB, 190)))["C-DMAB-DUE"]
    (plan,) = card["suggestions"]
    got = [((a["resource"].get("code") or a["resource"].get("medicationCodeableConcept"))["coding"][0]["code"],
            bool(a["resource"].get("occurrenceTiming"))) for a in plan["actions"]]
    assert got == [("993452", False), ("17861-6", True), ("17861-6", True), ("306286007", False)]
