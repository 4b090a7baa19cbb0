"""Review 20, kidney: one reading for every kidney rule (second-pass.md section 1), with the
reviewer's charts rebuilt from tests.test_rules_second_pass's helpers and judged by the engine as
the app runs it (strict); dates count back from TODAY.

M1. A creatinine clearance of 20 beside an eGFR of 38 (woman, 88 y, 42 kg, creatinine 1.3):
    C-TX-DMAB-ALT said "below 30 for every oral bisphosphonate" and "the Prolia boxed warning does
    not apply" with a one-click denosumab; C-SAFE-RENAL on a zoledronic acid draft offered plain
    denosumab; a denosumab draft met no C-SAFE-DMAB-CKD. Review 13 had read the eGFR first for
    the Prolia rules (its label is written in eGFR); the contract's one reading governs, and where
    the two differ the lower one decides (fail-closed), so no screen says both.
M3. C-GIOP in dialysis or CKD 4-5 said "an oral bisphosphonate first" and "a 500 mg tablet"
    beside C-TX-DMAB-ALT's "oral bisphosphonate unsuitable, CKD-MBD work-up" (second-pass 1 and 5;
    KDIGO 2017 CKD-MBD; PROLIA24)."""

from __future__ import annotations

import pytest

from cds_service.fhir import terminology as t
from tests.test_review13_kidney import LABS, _codes, _drug_orders
from tests.test_rules_second_pass import ALN, DMAB, ZOL, cards, cond, draft, med, obs, record

NEPHROLOGY = (t.SNOMED, "306286007")
DMAB_ORDER = (t.RXNORM, "993452")
DXA = (obs("38267-1", 120, -2.7, oid="dxa-ls"), obs("38263-0", 120, -2.1, oid="dxa-fn"))


def _kidney(egfr=38, creatinine=1.3, weight=42):
    """Same-day eGFR, creatinine and weight (Cockcroft-Gault at 88 y, female: 42 kg -> 20 mL/min)."""
    return (obs("98979-8", 20, egfr, "mL/min/{1.73_m2}"), obs("2160-0", 20, creatinine, "mg/dL"),
            obs("29463-7", 20, weight, "kg"))


def _chart(*kidney, drafts=(), hook="patient-view", age=88, sex="female"):
    return cards(record(*LABS, *DXA, *kidney, age=age, sex=sex, drafts=drafts, t_score=False), hook)


def _med_orders(card):
    return [a["resource"] for s in card.get("suggestions", ()) for a in s["actions"]
            if (a.get("resource") or {}).get("resourceType") == "MedicationRequest"]


# ---------------------------------------------------------------------------
# M1: clearance 20, eGFR 38 (charts crcl-low-egfr-ok, crcl-low-zoledronate-draft, crcl20-dmab-draft)
# ---------------------------------------------------------------------------

def test_low_clearance_beside_a_higher_egfr_carries_the_prolia_plan_on_patient_view():
    card = _chart(*_kidney())["C-TX-DMAB-ALT"]
    assert "below 30 for every oral bisphosphonate" in card["detail"]
    assert "does not apply" not in card["detail"]  # never beside "below 30" on one screen
    assert "Prolia boxed warning 2024" in card["detail"]
    assert NEPHROLOGY in _codes(card) and DMAB_ORDER not in _codes(card) and not _drug_orders(card)
    assert "eGFR 38 mL/min/1.73m2" in card["detail"] and "the creatinine clearance is the lower reading" in card["detail"]


def test_zoledronic_acid_draft_offers_denosumab_only_with_the_ckd_mbd_plan():
    got = _chart(*_kidney(), drafts=[draft(ZOL)], hook="order-sign")
    renal = got["C-SAFE-RENAL"]
    assert renal["indicator"] == "critical" and "needs the CKD-MBD plan first" in renal["detail"]
    assert DMAB_ORDER not in _codes(renal) and NEPHROLOGY in _codes(renal)
    cavd = got["C-SUPP-CAVD"]  # second-pass 1, third bullet: no generic calcium / cholecalciferol
    assert "nephrology" in cavd["summary"] and not _med_orders(cavd)


def test_denosumab_draft_meets_the_ckd_card():
    got = _chart(*_kidney(), drafts=[draft(DMAB)], hook="order-sign")
    assert got["C-SAFE-DMAB-CKD"]["indicator"] == "warning"
    assert "creatinine clearance 20 mL/min" in got["C-SAFE-DMAB-CKD"]["summary"]


def test_on_alendronate_with_clearance_20_beside_egfr_77_the_advice_carries_the_plan():
    """Real-world chart 15e2659f (Synthea): creatinine 3.04 mg/dL and eGFR 77 the same day, 82 kg,
    78 y: C-SAFE-RENAL on active alendronate advised plain denosumab."""
    got = _chart(*_kidney(egfr=77, creatinine=3.04, weight=82), med(ALN, 2000), age=78)
    renal = got["C-SAFE-RENAL"]
    assert "creatinine clearance 20 mL/min" in renal["summary"]
    assert "needs the CKD-MBD plan first" in renal["detail"] and "Prolia boxed warning" in renal["detail"]


def test_quiet_controls_clearance_and_egfr_both_at_or_above_35():
    """Clearance 43 (88 y, 90 kg, creatinine 1.3) beside eGFR 38: alendronate's label is met, no
    CKD-MBD plan, no Prolia card on a denosumab draft, no renal card on zoledronic acid."""
    kidney = _kidney(weight=90)
    pv = _chart(*kidney)
    assert "C-TX-BP" in pv and "C-TX-DMAB-ALT" not in pv
    assert "C-SAFE-DMAB-CKD" not in _chart(*kidney, drafts=[draft(DMAB)], hook="order-sign")
    assert "C-SAFE-RENAL" not in _chart(*kidney, drafts=[draft(ZOL)], hook="order-sign")


# ---------------------------------------------------------------------------
# M3: C-GIOP reads the same kidney reading (charts giop-man-dialysis, giop-man-egfr25 and their
# no-DXA variants): no bisphosphonate first, no generic calcium / vitamin D text
# ---------------------------------------------------------------------------

PRED = med({"text": "prednisone 10 mg"}, 200, rid="pred", dosageInstruction=[{"text": "10 mg daily"}])
DIALYSIS = (cond("Z99.2", 300), obs("98979-8", 80, 72, "mL/min/{1.73_m2}"))
EGFR_25 = (obs("98979-8", 20, 25, "mL/min/{1.73_m2}"),)


def _giop_man(*resources, dxa=True):
    return cards(record(*LABS, *(DXA if dxa else ()), PRED, *resources, sex="male", age=70, t_score=False))


@pytest.mark.parametrize("kidney, label", [pytest.param(DIALYSIS, "dialysis", id="dialysis"),
                                           pytest.param(EGFR_25, "eGFR 25", id="egfr-25")])
def test_giop_in_advanced_ckd_says_what_the_treatment_card_says(kidney, label):
    got = _giop_man(*kidney)
    assert "oral bisphosphonate unsuitable" in got["C-TX-DMAB-ALT"]["summary"]
    giop = got["C-GIOP"]["detail"]
    assert "**Risk is high: treat**, but not with a bisphosphonate first" in giop and label in giop
    assert "oral bisphosphonate first" not in giop and "500 mg tablet" not in giop
    assert "Calcium and vitamin D: agreed with nephrology" in giop
    assert not _med_orders(got["C-GIOP"])


@pytest.mark.parametrize("kidney", [pytest.param(DIALYSIS, id="dialysis"), pytest.param(EGFR_25, id="egfr-25")])
def test_giop_without_dxa_in_advanced_ckd_has_no_generic_calcium_line(kidney):
    giop = _giop_man(*kidney, dxa=False)["C-GIOP"]
    assert giop["indicator"] == "warning" and "500 mg tablet" not in giop["detail"]
    assert "Calcium and vitamin D: agreed with nephrology" in giop["detail"]
    assert [s["label"] for s in giop["suggestions"]] == ["Order a DXA (hips and spine)"]


def test_giop_offers_no_alendronate_at_ckd_4_by_egfr_with_a_clearance_within_the_label():
    """Moderate risk by the dose-adjusted FRAX (15% x 1.15), eGFR 25 beside a clearance of 80
    (72 y, 80 kg, creatinine 0.8): CKD 4 by the lower reading, so no one-click alendronate (the
    order would meet C-SAFE-RENAL's ckd-stage warning: CKD-MBD work-up first)."""
    frax, dxa = obs("90265-0", 60, 15, "%"), obs("38263-0", 60, -1.9)
    kidney = (obs("98979-8", 20, 25), obs("2160-0", 20, 0.8, "mg/dL"), obs("29463-7", 20, 80, "kg"))
    giop = cards(record(*LABS, PRED, frax, dxa, *kidney, t_score=False))["C-GIOP"]
    assert not any("alendronate" in s["label"] for s in giop.get("suggestions", ()))
    assert "No alendronate offered: eGFR 25" in giop["detail"] and "CKD-mineral bone disorder" in giop["detail"]


def test_giop_quiet_control_normal_kidney_function_keeps_the_usual_text():
    got = _giop_man(obs("98979-8", 80, 72, "mL/min/{1.73_m2}"))
    giop = got["C-GIOP"]["detail"]
    assert "**Risk is high: treat**: an oral bisphosphonate first" in giop and "a 500 mg tablet" in giop
    assert "nephrology" not in giop and "C-TX-BP" in got
