"""Review 13, kidney: each fix with a chart that makes the fixed rule fire and a quiet control.
Charts are built with tests.test_rules_second_pass's helpers and judged by the engine as the app
runs it (engine.evaluate, strict); dates count back from TODAY. Sources: second-pass.md sections
1 and 2, PROLIA24, EVENITY label, AACE20, ES19, KDIGO 2017 CKD-MBD."""

from __future__ import annotations

import pytest

from cds_service.fhir import terminology as t
from tests.test_rules_second_pass import DMAB, ROMO, TPTD, ABL, cards, coding, cond, draft, given, med, obs, record, ago

ANABOLICS = {"1435115", "1921082"}  # teriparatide, abaloparatide pens (romosozumab: by text)


def _codes(card):
    """Every coded resource a card's suggestions would create: (system, code) pairs."""
    out = set()
    for s in card.get("suggestions", ()):
        for a in s["actions"]:
            res = a.get("resource") or {}
            concept = res.get("code") or res.get("medicationCodeableConcept") or {}
            out |= {(c.get("system"), c.get("code")) for c in concept.get("coding", ())}
            if "romosozumab" in concept.get("text", ""):
                out.add(("text", "romosozumab"))
    return out


def _drug_orders(card):
    return {code for system, code in _codes(card) if system in (t.RXNORM, "text")}


HD = {"resourceType": "Procedure", "id": "hd", "status": "completed", "code": coding(t.SNOMED, "302497006"),
      "performedDateTime": ago(3)}
VHR_T = obs("38267-1", 90, -3.1, oid="dxa")  # T below -3.0: very high risk (AACE20)
LABS = (obs("17861-6", 10, 9.2, "mg/dL"), obs("62292-8", 10, 32, "ng/mL"))


def _cg(age=95, weight=42, creatinine=1.0):
    """Creatinine and weight for Cockcroft-Gault: 95 y, 42 kg, 1.0 mg/dL, woman -> 22 mL/min."""
    return obs("2160-0", 10, creatinine, "mg/dL"), obs("29463-7", 10, weight, "kg")


# ---------------------------------------------------------------------------
# 1a. C-TX-ANABOLIC in CKD 4-5 or on dialysis (a dialysis Procedure alone counts): no one-click
# anabolic; the CKD-MBD labs and a CKD-MBD referral instead (AACE20, ES19, KDIGO 2017).
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("kidney", [
    pytest.param((HD, obs("2160-0", 3, 6.9, "mg/dL"), obs("29463-7", 3, 58, "kg")), id="dialysis-procedure"),
    pytest.param((cond("N18.4"), obs("98979-8", 10, 24)), id="coded-ckd4"),
    pytest.param((obs("98979-8", 10, 22),), id="egfr-22"),
])
def test_anabolic_card_refers_to_ckd_mbd_in_ckd_4_5_or_dialysis(kidney):
    card = cards(record(VHR_T, *LABS, *kidney, t_score=False, age=75))["C-TX-ANABOLIC"]
    assert card["indicator"] == "warning"
    assert "CKD-mineral bone disorder" in card["summary"]
    assert not _drug_orders(card)  # no teriparatide, abaloparatide or romosozumab in one click
    codes = {code for _, code in _codes(card)}
    assert {"2731-8", "1649-3", "2777-1", "6768-6", "306286007"} <= codes  # PTH, 1,25-D, phosphate, ALP, nephrology
    assert "KDIGO 2017" in card["detail"] and "Evenity label" in card["detail"]


def test_anabolic_card_still_offers_the_anabolics_at_egfr_45():
    """Quiet control: the same very-high-risk chart with CKD 3a."""
    card = cards(record(VHR_T, *LABS, obs("98979-8", 10, 45), t_score=False, age=75))["C-TX-ANABOLIC"]
    assert "CKD-mineral" not in card["summary"]
    assert {"1435115", "1921082", "romosozumab"} <= _drug_orders(card)


# ---------------------------------------------------------------------------
# 1b. An anabolic ordered with eGFR < 30 or dialysis: C-SAFE-RENAL (warning) at order time
# (EVENITY label: greater hypocalcemia risk in severe renal impairment or dialysis, monitor
# calcium; CKD-MBD first: AACE20, ES19, KDIGO 2017).
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
@pytest.mark.parametrize("drug, kidney, words", [
    (ROMO, (cond("Z99.2"), cond("N18.6")), "greater risk of hypocalcemia (Evenity label)"),
    (TPTD, (cond("Z99.2"),), "PTH analogue"),
    (ABL, (obs("98979-8", 10, 20),), "PTH analogue"),
])
def test_anabolic_order_in_advanced_ckd_warns(hook, drug, kidney, words):
    card = cards(record(*LABS, *kidney, drafts=[draft(drug)]), hook)["C-SAFE-RENAL"]
    assert card["indicator"] == "warning"
    assert "CKD-mineral bone disorder work-up" in card["summary"] and words in card["detail"]
    hold, keep = card["suggestions"]
    assert hold["isRecommended"] and hold["actions"][0]["type"] == "delete"
    assert "306286007" in {code for _, code in _codes({"suggestions": [keep]})}


def test_romosozumab_order_with_low_calcium_in_ckd_offers_no_keep():
    """C-SAFE-HYPOCA holds a romosozumab dose with a low calcium: no "keep the order" beside it."""
    got = cards(record(obs("17861-6", 10, 8.0, "mg/dL"), cond("Z99.2"), drafts=[draft(ROMO)]), "order-sign")
    assert "C-SAFE-HYPOCA" in got
    assert [s["label"].split(":")[0] for s in got["C-SAFE-RENAL"]["suggestions"]] == ["Hold romosozumab"]


@pytest.mark.parametrize("kidney", [
    pytest.param((obs("98979-8", 10, 45),), id="egfr-45"),
    pytest.param((obs("98979-8", 10, 52), *_cg(weight=90)), id="egfr-52-crcl-48"),
])
def test_anabolic_order_quiet_above_egfr_30(kidney):
    """Quiet controls: CKD 3a, and a clearance of 48 beside an eGFR of 52 (both at or above 30;
    a clearance of 22 beside it now counts as below 30: review 20, second-pass 1)."""
    got = cards(record(*LABS, *kidney, age=95, drafts=[draft(ROMO)]), "order-sign")
    assert "C-SAFE-RENAL" not in got


# ---------------------------------------------------------------------------
# 2. Denosumab due or overdue with eGFR < 30 or dialysis: C-SAFE-DMAB-CKD on patient-view
# (second-pass 2: "ordered or due"; critical for dialysis / CKD 5, warning for 15-29), beside
# C-DMAB-DUE / C-DMAB-OVERDUE, which keep the PROLIA24 plan as orders.
# ---------------------------------------------------------------------------

def _dmab_course(last_days):
    return med(DMAB, last_days, "active"), given(DMAB, last_days)


@pytest.mark.parametrize("last_days, course_card", [(190, "C-DMAB-DUE"), (250, "C-DMAB-OVERDUE")])
@pytest.mark.parametrize("kidney, indicator", [
    pytest.param((cond("Z99.2"), cond("N18.6")), "critical", id="dialysis"),
    pytest.param((HD,), "critical", id="dialysis-procedure"),
    pytest.param((obs("98979-8", 10, 10),), "critical", id="egfr-10"),
    pytest.param((obs("98979-8", 10, 22),), "warning", id="egfr-22"),
])
def test_denosumab_due_in_advanced_ckd_raises_the_ckd_card(last_days, course_card, kidney, indicator):
    got = cards(record(*LABS, *kidney, *_dmab_course(last_days)))
    card = got["C-SAFE-DMAB-CKD"]
    assert card["indicator"] == indicator
    phase = "due" if course_card == "C-DMAB-DUE" else "overdue"
    assert card["summary"].startswith(f"Denosumab {phase} with ")
    assert "Prolia boxed warning" in card["detail"] and not card.get("suggestions")
    # the dose card keeps the plan: a dose with the CKD-MBD labs and the referral
    plan = _codes(got[course_card])
    assert ("http://www.nlm.nih.gov/research/umls/rxnorm", "993452") in plan and (t.SNOMED, "306286007") in plan


@pytest.mark.parametrize("chart", [
    pytest.param((obs("98979-8", 10, 45), *_dmab_course(190)), id="due-egfr-45"),
    pytest.param((cond("Z99.2"), *_dmab_course(100)), id="dialysis-not-due"),
])
def test_denosumab_ckd_card_quiet_when_not_due_or_kidney_not_low(chart):
    assert "C-SAFE-DMAB-CKD" not in cards(record(*LABS, *chart))


@pytest.mark.parametrize("extra, indicator, quieted", [
    pytest.param({"resourceType": "Condition", "id": "dialysis", "code": coding(t.ICD10CM, "Z99.2")},
                 "critical", False, id="dialysis-critical"),
    pytest.param({"resourceType": "Observation", "id": "egfr-22", "status": "final", "code": coding(t.LOINC, "98979-8"),
                  "valueQuantity": {"value": 22, "unit": "mL/min/{1.73_m2}"}}, "warning", True, id="egfr-22-warning"),
])
def test_patient_view_ckd_card_through_the_app_and_feedback(client, extra, indicator, quieted):
    """Through the Flask app on the overdue-denosumab fixture: the critical card (dialysis) stays
    after an override (critical cards are never quieted); control: the warning card (eGFR 22)
    is quieted by the same override."""
    import datetime as dt

    from tests.test_quiet_by_default import TODAY as REAL_TODAY
    from tests.test_quiet_by_default import cards_of as http_cards
    from tests.test_quiet_by_default import pv_body, send_feedback

    name = "c-dmab-overdue-7-months-1-week"
    subject = {"reference": f"Patient/{pv_body(name)['context']['patientId']}"}
    when = (REAL_TODAY - dt.timedelta(days=5)).isoformat()
    dated = {"onsetDateTime": when} if extra["resourceType"] == "Condition" else {"effectiveDateTime": when}
    body = pv_body(name, extra=[dict(extra, subject=subject, **dated)])
    card = http_cards(client, body)["C-SAFE-DMAB-CKD"]
    assert card["indicator"] == indicator
    send_feedback(client, card, "overridden")
    assert ("C-SAFE-DMAB-CKD" not in http_cards(client, body)) is quieted


# ---------------------------------------------------------------------------
# 3. PROLIA24 is written on eGFR (< 30 mL/min/1.73m2) or dialysis. Review 13 read the eGFR first,
# so a clearance of 22 beside an eGFR of 52 kept a one-click denosumab; review 20 (second-pass 1:
# one kidney reading for every rule) reads the lower of the two, fail-closed: the card that rules
# out every oral bisphosphonate below 30 also carries the CKD-MBD work-up (tests in
# test_review20_kidney). Controls here: eGFR 25 alone, clearance 22 alone.
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("kidney", [
    pytest.param((obs("98979-8", 10, 25),), id="egfr-25"),
    pytest.param(_cg(), id="clearance-22-no-egfr"),
    pytest.param((obs("98979-8", 10, 52), *_cg()), id="egfr-52-clearance-22"),
])
def test_denosumab_alternative_keeps_the_work_up_below_30_on_either_reading(kidney):
    """An eGFR of 25, a clearance of 22 with no eGFR, and a clearance of 22 beside an eGFR of 52."""
    card = cards(record(*LABS, *kidney, age=95))["C-TX-DMAB-ALT"]
    assert (t.SNOMED, "306286007") in _codes(card) and not _drug_orders(card)
    assert "does not apply" not in card["detail"]


def test_denosumab_order_reads_the_lower_of_clearance_and_egfr():
    order = draft(DMAB)
    for kidney in ((obs("98979-8", 10, 52), *_cg()), _cg()):
        got = cards(record(*LABS, *kidney, age=95, drafts=[order]), "order-sign")
        assert got["C-SAFE-DMAB-CKD"]["indicator"] == "warning"
    both_high = cards(record(*LABS, obs("98979-8", 10, 52), *_cg(weight=90), age=95, drafts=[order]), "order-sign")
    assert "C-SAFE-DMAB-CKD" not in both_high  # quiet control: clearance 48, eGFR 52


# ---------------------------------------------------------------------------
# 4. C-VITD-LOW with CKD 4-5 or dialysis: the detail no longer prescribes 50,000 IU weekly
# beside "no vitamin D order suggested" (second-pass 1; KDIGO 2017 CKD-MBD).
# ---------------------------------------------------------------------------

LOW_D = obs("62292-8", 10, 11, "ng/mL")


@pytest.mark.parametrize("hook, drafts", [("patient-view", ()), ("order-sign", (draft(DMAB),))])
def test_low_vitamin_d_in_ckd_4_names_nephrology_not_a_regimen(hook, drafts):
    card = cards(record(LOW_D, obs("17861-6", 10, 9.0, "mg/dL"), cond("N18.4"), obs("98979-8", 10, 24),
                        drafts=drafts), hook)["C-VITD-LOW"]
    assert "50,000" not in card["detail"] and "no vitamin D order is suggested here" in card["detail"]
    assert "KDIGO 2017" in card["detail"] and not _drug_orders(card)


def test_low_vitamin_d_with_normal_kidneys_keeps_the_regimen():
    """Quiet control: eGFR 60, the repletion regimen and its order stay."""
    card = cards(record(LOW_D, obs("17861-6", 10, 9.0, "mg/dL"), obs("98979-8", 10, 60)))["C-VITD-LOW"]
    assert "cholecalciferol 50,000 IU weekly" in card["detail"] and "2418" in _drug_orders(card)
