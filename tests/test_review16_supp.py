"""Review 16 (charts in notes/review16): a pregnancy ended by its own resolved Condition, calcium
and vitamin D with dialysis or CKD 4-5 and beside a low calcium, blood creatinine (38483-4) for
Cockcroft-Gault, and the evidence lines of C-TX-DMAB-ALT and C-TX-ANABOLIC. Each fix with a chart
that makes it show and a quiet control. Charts are built with tests.test_rules_second_pass's
helpers and judged by the engine as the app runs it (engine.evaluate, strict); dates count back
from TODAY. Sources: second-pass.md sections 1, 2 and 7; KDIGO 2017 CKD-MBD; the drug labels."""

from __future__ import annotations

import pytest

from cds_service import card_render
from cds_service.fhir import terminology as t
from cds_service.rules import facts, supplementation
from cds_service.rules.diagnosis import assess
from cds_service.services.prefetch_templates import PREFETCH
from tests.conftest import coding
from tests.test_rules_second_pass import ALN, DMAB, PID, S, ZOL, ago, cards, cond, draft, obs, record

HCG_7_MONTHS = {"resourceType": "Observation", "id": "hcg", "status": "final", "code": coding(t.LOINC, "2106-3"),
                "effectiveDateTime": ago(210), "valueCodeableConcept": coding(t.SNOMED, "10828004")}
YOUNG = dict(age=33, t_score=False)


def _pregnancy(onset_days, status="active", abated_days=None, cid="preg"):
    """Normal pregnancy (SNOMED 72892002), as Synthea writes it: resolved with an abatement."""
    r = cond("72892002", onset_days, system=t.SNOMED, status=status, cid=cid)
    if abated_days is not None:
        r["abatementDateTime"] = ago(abated_days)
    return r


# ---------------------------------------------------------------------------
# 1. e38: a positive hCG 7 months ago, the pregnancy Condition resolved (delivered) 60 days ago:
# alendronate got C-SAFE-PREGNANCY (critical). Second-pass 2: "current pregnancy".
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("ended", [
    pytest.param(_pregnancy(240, "resolved", 60), id="resolved-abated-60-days-ago"),
    pytest.param(_pregnancy(240, "active", 60), id="active-status-but-abated-60-days-ago"),
    # no abatement day: it ended after its onset, so a test before that onset is of this pregnancy
    pytest.param(_pregnancy(200, "inactive"), id="inactive-no-abatement-test-before-its-onset"),
])
def test_a_positive_test_of_an_ended_pregnancy_is_no_current_pregnancy(ended):
    assert not facts.current_pregnancy(record(HCG_7_MONTHS, ended, **YOUNG), S)
    got = cards(record(HCG_7_MONTHS, ended, cond("M81.0"), **YOUNG, drafts=[draft(ALN)]), "order-select")
    assert "C-SAFE-PREGNANCY" not in got


@pytest.mark.parametrize("resources", [
    pytest.param((HCG_7_MONTHS,), id="positive-test-alone"),
    # a positive test after the last pregnancy ended is a new pregnancy
    pytest.param((dict(HCG_7_MONTHS, effectiveDateTime=ago(30)), _pregnancy(400, "resolved", 200)),
                 id="new-positive-test-after-an-old-delivery"),
    pytest.param((_pregnancy(60, "active"),), id="active-pregnancy-no-abatement"),
    pytest.param((_pregnancy(60, "active", -150),), id="abatement-ahead-is-no-end"),
    # inactive with no abatement day: it ended after its onset, a later positive test stands
    pytest.param((dict(HCG_7_MONTHS, effectiveDateTime=ago(30)), _pregnancy(60, "inactive")),
                 id="inactive-undated-end-positive-test-since-onset"),
])
def test_current_pregnancy_still_fires(resources):
    """Quiet control: the pregnancy card stays where nothing ended the pregnancy shown."""
    assert facts.current_pregnancy(record(*resources, **YOUNG), S)
    got = cards(record(*resources, cond("M81.0"), **YOUNG, drafts=[draft(ALN)]), "order-select")
    assert got["C-SAFE-PREGNANCY"]["indicator"] == "critical"


# ---------------------------------------------------------------------------
# 4. rw_7e60f506, rw_6b223f89: creatinine 3.1-3.2 mg/dL coded 38483-4 (Creatinine [Mass/volume] in
# Blood, Synthea's code) was not read, so zoledronic acid met no creatinine-clearance limit.
# ---------------------------------------------------------------------------

def _blood_creatinine(value):
    return obs("38483-4", 10, value, "mg/dL"), obs("29463-7", 10, 60, "kg"), obs("98979-8", 10, 80)


def test_blood_creatinine_is_fetched_and_read_for_cockcroft_gault():
    assert "http://loinc.org|38483-4" in PREFETCH["safetyLabs"]
    rec = record(*_blood_creatinine(3.1), cond("M81.0"), age=80, drafts=[draft(ZOL)])
    reading = facts.kidney(rec, S)
    assert reading.kind == "CrCl" and reading.value < 35
    assert cards(rec, "order-select")["C-SAFE-RENAL"]["indicator"] == "critical"


def test_normal_blood_creatinine_leaves_zoledronic_acid_alone():
    """Quiet control: 38483-4 at 0.8 mg/dL (CrCl above 35): no renal card."""
    rec = record(*_blood_creatinine(0.8), cond("M81.0"), age=80, drafts=[draft(ZOL)])
    assert facts.kidney(rec, S).kind == "CrCl"
    assert "C-SAFE-RENAL" not in cards(rec, "order-select")


# ---------------------------------------------------------------------------
# 2. e14, e56: with dialysis C-SUPP-CAVD's detail still gave generic doses ("500-600 mg of elemental
# calcium", "Vitamin D3 800-1000 IU daily", "maintenance 800-1000 IU") before its nephrology
# caveat. Second-pass 1: no generic calcium carbonate/cholecalciferol order, the card says so.
# ---------------------------------------------------------------------------

DOSES = ("500-600", "800-1000", "1000 IU", "50,000")


def _ckd_labs(egfr, vitd):
    return (obs("17861-6", 10, 9.4, "mg/dL"), obs("1751-7", 10, 4.0, "g/dL"), obs("62292-8", 10, vitd, "ng/mL"),
            obs("98979-8", 10, egfr))


@pytest.mark.parametrize("resources", [
    pytest.param((cond("Z99.2"), *_ckd_labs(60, 35)), id="e14-dialysis"),
    pytest.param((cond("N18.6"), cond("Z99.2"), *_ckd_labs(9, 12)), id="e56-dialysis-vitamin-d-12"),
    pytest.param(_ckd_labs(22, 35), id="egfr-22"),
])
def test_supplement_card_gives_no_generic_dose_with_dialysis_or_ckd_4_5(resources):
    card = cards(record(*resources, cond("M81.0"), drafts=[draft(DMAB)]), "order-select")["C-SUPP-CAVD"]
    assert not card.get("suggestions")
    text = card["detail"]
    assert "nephrology" in text and not any(dose in text for dose in DOSES), text


def test_supplement_card_keeps_its_doses_with_ckd_3():
    """Quiet control: eGFR 45 (CKD 3b): the usual text and orders."""
    card = cards(record(*_ckd_labs(45, 35), cond("M81.0"), drafts=[draft(DMAB)]), "order-select")["C-SUPP-CAVD"]
    assert "Vitamin D3 800-1000 IU daily" in card["detail"] and card["suggestions"]


def _vitamin_d_card(*resources):
    rec = record(*resources, cond("M81.0"))
    found = supplementation.vitamin_d_status(rec, rec.today, S)
    assert len(found) == 1
    return card_render.render(found[0], patient_id=PID, today=rec.today, strict=True)


def test_insufficient_vitamin_d_with_dialysis_gives_no_generic_dose():
    """C-VITD-LOW at 20-29 ng/mL printed the 50,000 IU regimen and 800-1000 IU daily beside
    dialysis (the 12 ng/mL text was fixed in review 13; KDIGO 2017 CKD-MBD)."""
    card = _vitamin_d_card(cond("Z99.2"), *_ckd_labs(9, 25))
    assert card["indicator"] == "info" and "nephrology" in card["detail"]
    assert not any(dose in card["detail"] for dose in DOSES)


def test_insufficient_vitamin_d_with_ckd_3_keeps_its_advice():
    """Quiet control: eGFR 45, 25 ng/mL: the usual info text."""
    card = _vitamin_d_card(*_ckd_labs(45, 25))
    assert "800-1000 IU daily" in card["detail"] and "nephrology" not in card["detail"]


# ---------------------------------------------------------------------------
# 3. rw_7e60f506: corrected calcium 8.3 (C-SAFE-HYPOCA critical) and beside it C-SUPP-CAVD's
# "Dietary calcium adequate: order vitamin D3 1000 IU daily only". Correcting it needs calcium.
# ---------------------------------------------------------------------------

VIT_D_ONLY = "Dietary calcium adequate: order vitamin D3 1000 IU daily only"


def _calcium(value):
    return obs("17861-6", 10, value, "mg/dL"), obs("1751-7", 10, 4.0, "g/dL"), obs("62292-8", 10, 35, "ng/mL")


@pytest.mark.parametrize("agent", [ALN, ZOL, DMAB])
def test_no_vitamin_d_only_beside_a_low_calcium(agent):
    got = cards(record(*_calcium(8.3), cond("M81.0"), drafts=[draft(agent)]), "order-select")
    assert got["C-SAFE-HYPOCA"]["indicator"] == "critical"
    card = got["C-SUPP-CAVD"]
    labels = [s["label"] for s in card["suggestions"]]
    assert labels and VIT_D_ONLY not in labels
    assert "Calcium is low" in card["detail"] and "Skip calcium" not in card["detail"]


def test_no_vitamin_d_only_beside_coded_hypocalcemia_on_patient_view():
    # Coded after the calcium (5 days ago, calcium 10): review 20 lets a newer normal calcium
    # outdate the code (tests/test_review20_hypoca.py).
    rec = record(*_calcium(9.0), cond("M81.0"), cond("E83.51", 5))
    found = supplementation.calcium_vitamin_d(rec, rec.today, S)
    assert found and "vitamin-d-only" not in found[0].suggestions


def test_vitamin_d_only_stays_with_a_normal_calcium():
    """Quiet control: calcium 9.4: both suggestions, the usual text."""
    card = cards(record(*_calcium(9.4), cond("M81.0"), drafts=[draft(ALN)]), "order-select")["C-SUPP-CAVD"]
    assert VIT_D_ONLY in [s["label"] for s in card["suggestions"]] and "Skip calcium" in card["detail"]


# ---------------------------------------------------------------------------
# 5. Evidence lines. e14, e41, e56: C-TX-DMAB-ALT listed 25-OH vitamin D and calcium twice (the lab
# line, then "(recent: not ordered again)"). e46: C-TX-ANABOLIC's reasons read the hip fracture code
# 431031001 (VSAC Osteoporosis With Current Fracture) as "Osteoporosis on the problem list".
# ---------------------------------------------------------------------------

def _said_once(card, *starts):
    lines = [line for line in card["detail"].split("\n") if line.startswith("- ")]
    for start in starts:
        assert len([line for line in lines if line.startswith(f"- {start}")]) == 1, (start, lines)
    return lines


@pytest.mark.parametrize("kidney", [pytest.param((cond("N18.4"),), id="e41-ckd4"),
                                    pytest.param((cond("Z99.2"), cond("N18.6")), id="e56-dialysis")])
def test_denosumab_alternative_names_each_recent_lab_once(kidney):
    card = cards(record(*kidney, *_ckd_labs(45, 12), cond("M81.0"), obs("38263-0", 100, -2.7)))["C-TX-DMAB-ALT"]
    lines = _said_once(card, "25-OH vitamin D", "Corrected calcium")
    assert any(line.endswith("(recent: not ordered again)") and "25-OH vitamin D" in line for line in lines)


def test_denosumab_alternative_without_ckd_has_no_work_up_note():
    """Quiet control: an oral bisphosphonate ruled out by an esophageal problem, kidneys fine: the
    labs are named once, with no work-up note."""
    card = cards(record(*_ckd_labs(70, 35), cond("K22.2"), cond("M81.0"), obs("38263-0", 100, -2.7)))["C-TX-DMAB-ALT"]
    lines = _said_once(card, "25-OH vitamin D", "Corrected calcium")
    assert not any("not ordered again" in line for line in lines)


HIP_FX = cond("431031001", 60, system=t.SNOMED, cid="hipfx")


def test_osteoporotic_hip_fracture_code_is_named_as_a_fracture_not_as_osteoporosis():
    rec = record(HIP_FX, *_ckd_labs(80, 35), age=90, t_score=False)
    reasons = assess(rec, S).reasons
    assert any("431031001" in r and "fracture" in r.lower() for r in reasons)
    assert not any(r.startswith("Osteoporosis on the problem list") for r in reasons)
    detail = cards(rec)["C-TX-ANABOLIC"]["detail"]
    assert "Osteoporosis on the problem list (431031001)" not in detail


def test_osteoporosis_code_beside_a_fracture_still_named():
    """Quiet control: M81.0 beside the hip fracture: both lines."""
    reasons = assess(record(HIP_FX, cond("M81.0"), age=90, t_score=False), S).reasons
    assert "Osteoporosis on the problem list (M81.0)" in reasons
    assert any("431031001" in r for r in reasons)
