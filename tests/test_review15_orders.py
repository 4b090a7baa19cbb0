"""Review 15, order safety: each fix with a chart that makes the fixed rule fire and a quiet control.
Charts are built with tests.test_rules_second_pass's helpers and judged by the engine as the app
runs it (engine.evaluate, strict); dates count back from TODAY. Sources: second-pass.md sections 1-3,
PROLIA24, EVENITY label, SAFE-5, SAFE-9, KDIGO 2017 CKD-MBD, AACE20."""

from __future__ import annotations

import pytest

from tests.test_review13_kidney import LABS, _codes
from tests.test_rules_second_pass import ALN, DMAB, ROMO, TPTD, ZOL, cards, cond, draft, given, med, obs, record

KEEP = "Keep the"
EGFR_22 = obs("98979-8", 10, 22)
DIALYSIS = (cond("Z99.2"), cond("N18.6"))
CKD4 = cond("N18.4")


def _order(*resources, drafts, age=72):
    return cards(record(*resources, age=age, drafts=drafts, t_score=False), "order-sign")


def _labels(card):
    return [s["label"] for s in card.get("suggestions", ())]


# ---------------------------------------------------------------------------
# 1. C-SAFE-DMAB-CKD offered "Keep the denosumab order and add the whole plan" beside a card on the
# same draft that says not to give it now (charts 12e, 12i, 12j): C-SAFE-PREGNANCY (second-pass 2),
# C-VITD-LOW's hold (SAFE-5), C-SAFE-DOSE-INTERVAL (too soon; PROLIA24 every 6 months). Only "hold".
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("resources, age, beside", [
    pytest.param((*LABS, *DIALYSIS, cond("Z33.1")), 38, "C-SAFE-PREGNANCY", id="dialysis-pregnancy"),
    pytest.param((obs("17861-6", 10, 9.2, "mg/dL"), obs("62292-8", 10, 12, "ng/mL"), EGFR_22), 72, "C-VITD-LOW",
                 id="egfr22-vitamin-d-12"),
    pytest.param((*LABS, EGFR_22, given(DMAB, 90), med(DMAB, 90, rid="dd")), 72, "C-SAFE-DOSE-INTERVAL",
                 id="egfr22-dose-3-months-ago"),
])
def test_no_keep_denosumab_beside_a_card_that_stops_it(resources, age, beside):
    got = _order(*resources, age=age, drafts=[draft(DMAB)])
    assert beside in got
    labels = _labels(got["C-SAFE-DMAB-CKD"])
    assert labels and labels[0].startswith("Hold denosumab")
    assert not any(label.startswith(KEEP) for label in labels)


@pytest.mark.parametrize("resources", [
    pytest.param((*LABS, EGFR_22), id="egfr22"),
    pytest.param((*LABS, EGFR_22, given(DMAB, 183), med(DMAB, 183, rid="dd")), id="egfr22-dose-6-months-ago"),
])
def test_keep_denosumab_stays_with_nothing_against_the_dose(resources):
    """Quiet control: eGFR 22, calcium and vitamin D normal, no dose too soon: hold and keep."""
    labels = _labels(_order(*resources, drafts=[draft(DMAB)])["C-SAFE-DMAB-CKD"])
    assert labels[0].startswith("Hold denosumab") and any(label.startswith(KEEP) for label in labels)


# ---------------------------------------------------------------------------
# 2. C-SAFE-RENAL's "Keep the romosozumab order under CKD-MBD supervision" beside C-SAFE-ROMO-LIMIT
# (a 13th dose; EVENITY, SAFE-9), C-DUP-ANABOLIC and C-SAFE-DOSE-INTERVAL (charts 12, 12b, 12d).
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("resources, beside", [
    pytest.param(tuple(given(ROMO, 30 + 30 * k) for k in range(12)), "C-SAFE-ROMO-LIMIT", id="12-doses"),
    pytest.param((med(TPTD, 60, rid="tp"),), "C-DUP-ANABOLIC", id="teriparatide-active"),
    pytest.param((given(ROMO, 10), med(ROMO, 10, "completed", rid="r1")), "C-SAFE-DOSE-INTERVAL",
                 id="dose-10-days-ago"),
])
def test_no_keep_romosozumab_beside_a_card_that_stops_it(resources, beside):
    got = _order(*LABS, CKD4, *resources, drafts=[draft(ROMO)])
    assert beside in got
    labels = _labels(got["C-SAFE-RENAL"])
    assert labels and labels[0].startswith("Hold romosozumab")
    assert not any(label.startswith(KEEP) for label in labels)


def test_keep_romosozumab_stays_after_11_doses_a_month_apart():
    """Quiet control: the 12th dose a month after the 11th: no limit, no interval card; keep stays."""
    got = _order(*LABS, CKD4, *(given(ROMO, 30 + 30 * k) for k in range(11)), drafts=[draft(ROMO)])
    assert not {"C-SAFE-ROMO-LIMIT", "C-SAFE-DOSE-INTERVAL", "C-DUP-ANABOLIC"} & set(got)
    assert any(label.startswith(KEEP) for label in _labels(got["C-SAFE-RENAL"]))


# ---------------------------------------------------------------------------
# 3. eGFR 29 with a Cockcroft-Gault clearance of 40 (charts 01, 07b vs 01b): patient-view asks for the
# CKD-MBD work-up before any bone drug (CKD 4 by eGFR, facts.ckd_4_5), but a zoledronic acid or
# alendronate order got no kidney card (the clearance is within the label). Now C-SAFE-RENAL warns,
# variant ckd-stage, with anabolic-ckd's hold or keep (KDIGO 2017 CKD-MBD 4.3.4; AACE20).
# ---------------------------------------------------------------------------

CG_40 = (obs("2160-0", 10, 2.0, "mg/dL"), obs("29463-7", 10, 85, "kg"))  # 60 y, 85 kg, woman: CrCl 40
CKD_MBD = {"2731-8", "1649-3", "2777-1", "6768-6", "306286007"}  # PTH, 1,25-D, phosphate, ALP, nephrology


@pytest.mark.parametrize("drug", [ZOL, ALN], ids=["zoledronic-acid", "alendronate"])
def test_bisphosphonate_within_its_clearance_in_ckd_4_by_egfr_gets_the_ckd_mbd_work_up(drug):
    card = _order(*LABS, obs("98979-8", 10, 29), *CG_40, age=60, drafts=[draft(drug)])["C-SAFE-RENAL"]
    assert card["indicator"] == "warning"
    assert "CKD stage 4 by eGFR" in card["summary"] and "KDIGO 2017" in card["detail"]
    labels = _labels(card)
    assert labels[0].startswith("Hold") and any(label.startswith(KEEP) for label in labels)
    assert CKD_MBD <= {code for _, code in _codes(card)}


def test_ckd_stage_note_keeps_only_the_hold_beside_vitamin_d_to_correct():
    """Chart 01: vitamin D 12 with the zoledronic acid order, C-VITD-LOW holds it: no "keep"."""
    got = _order(obs("17861-6", 10, 9.2, "mg/dL"), obs("62292-8", 10, 12, "ng/mL"), obs("98979-8", 10, 29), *CG_40,
                 age=60, drafts=[draft(ZOL)])
    assert "C-VITD-LOW" in got
    assert not any(label.startswith(KEEP) for label in _labels(got["C-SAFE-RENAL"]))


@pytest.mark.parametrize("drug", [ZOL, ALN], ids=["zoledronic-acid", "alendronate"])
def test_egfr_45_with_clearance_40_stays_quiet(drug):
    """Quiet control: eGFR 45 (CKD 3) with the same clearance of 40: no kidney card."""
    assert "C-SAFE-RENAL" not in _order(*LABS, obs("98979-8", 10, 45), *CG_40, age=60, drafts=[draft(drug)])


def test_zoledronic_acid_below_its_clearance_limit_stays_critical():
    """Quiet control: eGFR 29 with a clearance of 30 (below Reclast's 35): the critical card as before."""
    card = _order(*LABS, obs("98979-8", 10, 29), obs("2160-0", 10, 2.0, "mg/dL"), obs("29463-7", 10, 64, "kg"),
                  age=60, drafts=[draft(ZOL)])["C-SAFE-RENAL"]
    assert card["indicator"] == "critical" and "contraindicated" in card["summary"]


# ---------------------------------------------------------------------------
# Review 15 (14d): C-SAFE-PREDOSE-LABS asked for labs "before the denosumab dose" beside
# C-SAFE-PREGNANCY's "do not give it" (critical, the draft removed: second-pass 2, LABEL Prolia).
# In a current pregnancy it stays quiet; without one it still asks for the missing labs.
# ---------------------------------------------------------------------------

def test_no_predose_labs_beside_a_pregnancy_that_stops_the_draft():
    from tests.test_rules_second_pass import DMAB, cards, cond, draft, record
    pregnant = cards(record(cond("Z34.90", 60), drafts=[draft(DMAB)], age=34), "order-sign")
    assert pregnant["C-SAFE-PREGNANCY"]["indicator"] == "critical"
    assert "C-SAFE-PREDOSE-LABS" not in pregnant
    assert "C-SAFE-PREDOSE-LABS" in cards(record(drafts=[draft(DMAB)], age=34), "order-sign")
