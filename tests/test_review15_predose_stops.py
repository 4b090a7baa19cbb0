"""Review 15, follow-up: C-SAFE-PREDOSE-LABS ("order these labs before the dose") beside another card
on the same draft that says the dose must not be given now. Charts are built with
tests.test_rules_second_pass's helpers and judged by the engine as the app runs it (engine.evaluate,
strict). Sources: second-pass.md 2-4; Reclast and Prolia labels (labs before each dose; correct
hypocalcemia first); SAFE-5 (vitamin D first); AACE20."""

from __future__ import annotations

import pytest

from tests.test_rules_second_pass import ALN, DMAB, ZOL, cards, cond, draft, given, med, obs, record

PREDOSE = "C-SAFE-PREDOSE-LABS"
AFF = cond("M84.751A", 60)  # atypical femoral fracture


def _order(*resources, drug):
    return cards(record(*resources, drafts=[draft(drug)]), "order-sign")


# ---------------------------------------------------------------------------
# 1. No labs "before the dose" beside a card that stops the same draft (order_safety.label_stop).
# Each chart has no creatinine or eGFR in the last 90 days, so the card asked for one.
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("resources, drug, beside", [
    pytest.param((obs("17861-6", 10, 7.9, "mg/dL"),), DMAB, "C-SAFE-HYPOCA", id="calcium-7.9-denosumab"),
    pytest.param((obs("17861-6", 10, 7.9, "mg/dL"),), ZOL, "C-SAFE-HYPOCA", id="calcium-7.9-zoledronic-acid"),
    pytest.param((given(DMAB, 90), med(DMAB, 90, rid="dd")), DMAB, "C-SAFE-DOSE-INTERVAL",
                 id="denosumab-dose-3-months-ago"),
    pytest.param((given(ZOL, 200),), ZOL, "C-SAFE-DOSE-INTERVAL", id="zoledronic-acid-dose-200-days-ago"),
    pytest.param((obs("62292-8", 10, 12, "ng/mL"),), DMAB, "C-VITD-LOW", id="vitamin-d-12-denosumab"),
    pytest.param((AFF,), ZOL, "C-AR-COMPLICATION", id="atypical-femoral-fracture-zoledronic-acid"),
])
def test_no_predose_labs_beside_a_card_that_stops_the_draft(resources, drug, beside):
    got = _order(*resources, drug=drug)
    assert beside in got
    assert PREDOSE not in got


@pytest.mark.parametrize("resources, drug, beside", [
    pytest.param((given(DMAB, 183), med(DMAB, 183, rid="dd")), DMAB, None, id="denosumab-dose-6-months-ago"),
    pytest.param((given(ZOL, 400),), ZOL, None, id="zoledronic-acid-dose-13-months-ago"),
    pytest.param((obs("62292-8", 10, 32, "ng/mL"),), DMAB, None, id="vitamin-d-32"),
    # Denosumab is never simply stopped (second-pass 4): the referral comes first, the dose may go on.
    pytest.param((AFF,), DMAB, "C-AR-COMPLICATION", id="atypical-femoral-fracture-denosumab"),
    # "Keep one" (C-DUP-ANTIRES): the denosumab draft may be the one kept (a switch); labs still belong.
    pytest.param((med(ALN, 90, rid="al"),), DMAB, "C-DUP-ANTIRES", id="alendronate-active-denosumab"),
])
def test_predose_labs_stay_when_nothing_stops_the_draft(resources, drug, beside):
    """Quiet controls: the same charts with nothing against the dose still get the missing labs."""
    got = _order(*resources, drug=drug)
    assert PREDOSE in got and (beside is None or beside in got)
    assert "creatinine" in got[PREDOSE]["summary"]


# ---------------------------------------------------------------------------
# 1b. The same shared test (label_stop) now counts C-AR-COMPLICATION on a bisphosphonate ("hold it",
# second-pass 4): C-SAFE-RENAL's ckd-stage note offered "keep the order under CKD-MBD supervision"
# beside it. Denosumab is never simply stopped, so C-SAFE-DMAB-CKD's "keep" stays there.
# ---------------------------------------------------------------------------

LABS = (obs("17861-6", 10, 9.2, "mg/dL"), obs("62292-8", 10, 32, "ng/mL"))
CKD4_BY_EGFR = (obs("98979-8", 10, 29), obs("2160-0", 10, 2.0, "mg/dL"), obs("29463-7", 10, 85, "kg"))  # CrCl 40


def _labels(card):
    return [s["label"] for s in card.get("suggestions", ())]


@pytest.mark.parametrize("drug", [ZOL, ALN], ids=["zoledronic-acid", "alendronate"])
def test_no_keep_bisphosphonate_in_ckd_4_beside_an_atypical_femoral_fracture(drug):
    got = cards(record(*LABS, *CKD4_BY_EGFR, AFF, age=60, drafts=[draft(drug)]), "order-sign")
    assert "C-AR-COMPLICATION" in got
    labels = _labels(got["C-SAFE-RENAL"])
    assert labels[0].startswith("Hold") and not any(label.startswith("Keep the") for label in labels)


def test_keep_denosumab_in_ckd_4_stays_beside_an_atypical_femoral_fracture():
    """Quiet control: denosumab's C-AR-COMPLICATION refers first and does not stop the dose."""
    got = cards(record(*LABS, obs("98979-8", 10, 22), AFF, drafts=[draft(DMAB)]), "order-sign")
    assert "C-AR-COMPLICATION" in got
    assert any(label.startswith("Keep the") for label in _labels(got["C-SAFE-DMAB-CKD"]))


# ---------------------------------------------------------------------------
# 2. One screen offered the same CKD-MBD labs and referral twice for one draft in CKD 4-5:
# C-SAFE-RENAL's anabolic-ckd hold and the work-up C-SAFE-ROMO-CV, C-SAFE-ANABOLIC-CONTRA,
# C-SAFE-ROMO-LIMIT or C-SAFE-PTH-LIMIT offer instead of a one-click drug (PROLIA24, KDIGO 2017,
# AACE20). Each test or referral is offered once, on the more severe card (engine.offer_each_order_once).
# ---------------------------------------------------------------------------

CKD4 = cond("N18.4")
ROMO = {"text": "romosozumab (Evenity) 210 mg"}
TPTD = {"text": "teriparatide (Forteo) 20 mcg"}
WORK_UP = {"2731-8", "1649-3", "306286007"}  # intact PTH, 1,25-(OH)2 D, nephrology referral
PTH_24 = med(TPTD, 800, rid="tp")


def _service_requests(card):
    """(code, schedule) of every test or referral a card's suggestions would create."""
    return [(a["resource"]["code"]["coding"][0]["code"], str(a["resource"].get("occurrenceTiming")))
            for s in card.get("suggestions", ()) for a in s["actions"]
            if a["type"] == "create" and a["resource"]["resourceType"] == "ServiceRequest"]


def _repeated(got):
    seen, twice = {}, set()
    for cid, card in got.items():
        for order in set(_service_requests(card)):
            if order in seen:
                twice.add((order, seen[order], cid))
            seen.setdefault(order, cid)
    return twice


@pytest.mark.parametrize("resources, sex, drug, keeper, other", [
    pytest.param((cond("I21.9", 60),), "female", ROMO, "C-SAFE-ROMO-CV", "C-SAFE-RENAL", id="mi-romosozumab"),
    pytest.param((), "male", ROMO, "C-SAFE-RENAL", "C-SAFE-ANABOLIC-CONTRA", id="man-romosozumab"),
    pytest.param(tuple(given(ROMO, 30 + 30 * k) for k in range(12)), "female", ROMO, "C-SAFE-RENAL",
                 "C-SAFE-ROMO-LIMIT", id="13th-romosozumab"),
    pytest.param((PTH_24,), "female", TPTD, "C-SAFE-RENAL", "C-SAFE-PTH-LIMIT", id="teriparatide-past-24-months"),
])
def test_ckd_mbd_work_up_offered_once_on_the_more_severe_card(resources, sex, drug, keeper, other):
    got = cards(record(*LABS, CKD4, *resources, sex=sex, drafts=[draft(drug)]), "order-sign")
    assert not _repeated(got)
    assert WORK_UP <= {code for code, _ in _service_requests(got[keeper])}
    assert not WORK_UP & {code for code, _ in _service_requests(got[other])}
    assert "Not repeated here: Intact PTH" in got[other]["detail"]


def test_ckd_mbd_work_up_stays_whole_on_its_one_card():
    """Quiet control: romosozumab in CKD 4 with nothing else: C-SAFE-RENAL's hold and keep both carry
    the whole work-up, and no card says anything is left to another."""
    got = cards(record(*LABS, CKD4, drafts=[draft(ROMO)]), "order-sign")
    card = got["C-SAFE-RENAL"]
    assert [s["label"][:4] for s in card["suggestions"]] == ["Hold", "Keep"]
    assert all(WORK_UP <= {a["resource"]["code"]["coding"][0]["code"] for a in s["actions"] if "resource" in a}
               for s in card["suggestions"])
    assert not any("Not repeated here" in c["detail"] for c in got.values())


def test_denosumab_plan_and_predose_creatinine_both_stay():
    """Quiet control: eGFR 22 from 200 days ago: C-SAFE-DMAB-CKD's plan and C-SAFE-PREDOSE-LABS's
    creatinine are different orders; both stay (calcium was already left to the plan)."""
    got = cards(record(*LABS, obs("98979-8", 200, 22), drafts=[draft(DMAB)]), "order-sign")
    assert not _repeated(got)
    assert [code for code, _ in _service_requests(got[PREDOSE])] == ["2160-0"]
    assert WORK_UP <= {code for code, _ in _service_requests(got["C-SAFE-DMAB-CKD"])}


# ---------------------------------------------------------------------------
# 3. C-DMAB-DUE's last-dose-unknown variant said nothing of an anabolic agent on board, where the
# other denosumab cards (follow_up.beside_anabolic) say it does not prevent the rebound (DATA-Switch,
# Leder 2015; AACE20, ES20) and offer a bone specialist. It now says so and offers the referral;
# still no dose (the date decides too early or late).
# ---------------------------------------------------------------------------

def _prolia_statement(start_days=1095):
    from tests.test_rules_second_pass import ago
    return {"resourceType": "MedicationStatement", "id": "ms-dmab", "status": "active",
            "medicationCodeableConcept": {"text": "Prolia 60 mg SC every 6 months"},
            "effectivePeriod": {"start": ago(start_days)}, "dateAsserted": ago(30)}


@pytest.mark.parametrize("drug, name, prevents", [
    pytest.param(TPTD, "teriparatide", "does not prevent", id="teriparatide"),
    pytest.param(ROMO, "romosozumab", "has not been shown to prevent", id="romosozumab"),
    pytest.param({"text": "abaloparatide (Tymlos) 80 mcg"}, "abaloparatide", "has not been shown to prevent",
                 id="abaloparatide"),  # the longest name: the summary stays under 140 characters
])
def test_denosumab_date_unknown_names_the_anabolic_on_board(drug, name, prevents):
    card = cards(record(_prolia_statement(), med(drug, 60, rid="ana")))["C-DMAB-DUE"]
    assert card["summary"].endswith(f"last injection date unknown: confirm it; {name} {prevents} the rebound")
    assert f"{name.capitalize()} active since" in card["detail"] and "DATA-Switch" in card["detail"]
    [referral] = card["suggestions"]
    assert [a["resource"]["resourceType"] for a in referral["actions"]] == ["ServiceRequest"]  # no dose
    assert "bone specialist" in referral["label"]


def test_denosumab_date_unknown_without_an_anabolic_is_unchanged():
    """Quiet control: no anabolic on board: the same summary and no suggestion as before."""
    from tests.test_rules_second_pass import ago
    card = cards(record(_prolia_statement()))["C-DMAB-DUE"]
    assert card["summary"] == (f"Denosumab on record since {ago(1095)}, date of the last injection unknown: "
                               "confirm it (due every 6 months)")
    assert not card.get("suggestions") and "DATA-Switch" not in card["detail"]
