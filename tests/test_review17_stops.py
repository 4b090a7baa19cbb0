"""Review 17, the stop actions of review 16 (rules.orders.stop_actions) where they must not be
offered or recommended. Charts from tests.test_rules_second_pass's helpers, judged by the engine as
the app runs it (engine.evaluate, strict: order review included), as tests.test_review16_switch.
Sources: brief 8.6 (oncology products are oncology's plan, left out of osteoporosis logic);
second-pass.md section 4 (denosumab is never simply stopped: rebound, it needs a follow-on plan;
C-AR-COMPLICATION on order hooks for a patient on, or being ordered, a bisphosphonate); ECTS 2021
(a bisphosphonate about 6 months after the last denosumab dose); SAFE-15 (C-DUP-ANTIRES)."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.test_review16_switch import AFF, VERTEBRAL, _deletes, _order, _stops
from tests.conftest import TODAY
from tests.test_rules_second_pass import ALN, DMAB, ROMO, ZOL, cards, cond, draft, given, med, obs, record

RALOX = {"text": "raloxifene 60 MG Oral Tablet"}
ONJ = cond("M87.180", 30)
METASTASES = cond("C79.51", 300)


def _updates(got):
    """Every update action on a screen, by card."""
    return {code: [a["resource"]["id"] for s in c.get("suggestions", ()) for a in s["actions"] if a["type"] == "update"]
            for code, c in got.items() if any(a["type"] == "update" for s in c.get("suggestions", ()) for a in s["actions"])}


# ---------------------------------------------------------------------------
# 1. o01_zometa_aln, o02_xgeva_aln: C-DUP-ANTIRES offered to stop Zometa / Xgeva (bone metastases)
# as a "switch to alendronate".
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("product", ["Zoledronic acid 4 MG/5ML Injection (Zometa)", "Xgeva 120 MG/1.7ML (denosumab)"])
def test_an_oncology_product_is_never_stopped_the_osteoporosis_draft_is_removed(product):
    concept = {"text": product}
    got = _order(METASTASES, med(concept, 300, rid="onc"), given(concept, 20), drafts=[draft(ALN, "d-aln")])
    assert not _updates(got)
    dup = got["C-DUP-ANTIRES"]
    assert len(dup["suggestions"]) == 1 and _deletes(dup["suggestions"][0]) == ["MedicationRequest/d-aln"]
    assert dup["suggestions"][0]["isRecommended"] and "oncology" in dup["suggestions"][0]["label"]
    assert "oncology product: its plan belongs to oncology" in dup["detail"]


# ---------------------------------------------------------------------------
# 2. A denosumab stop beside a card that removes the drug meant to follow it (t08, t09, s02, s09).
# ---------------------------------------------------------------------------

FX_ON_DMAB = (med(DMAB, 3 * 365, rid="dmab"), *(given(DMAB, days) for days in (600, 420, 240, 60)), VERTEBRAL)


@pytest.mark.parametrize("chart", [
    pytest.param((ONJ, med(DMAB, 3 * 365, rid="dmab"), given(DMAB, 150)), id="onj_on_denosumab"),
    pytest.param((*FX_ON_DMAB, cond("N18.4", 100)), id="fracture_ckd4"),
    pytest.param((*FX_ON_DMAB, obs("17861-6", 10, 7.6, "mg/dL")), id="fracture_low_calcium"),
])
@pytest.mark.parametrize("follow_on", [ALN, ZOL], ids=["alendronate", "zoledronic_acid"])
def test_no_denosumab_stop_when_the_follow_on_draft_is_stopped_by_another_card(chart, follow_on):
    got = _order(*chart, drafts=[draft(follow_on, "d-bp")])
    stoppers = {"C-AR-COMPLICATION", "C-SAFE-RENAL", "C-SAFE-HYPOCA"} & set(got)
    assert stoppers and _deletes(got[min(stoppers)]["suggestions"][0]) == ["MedicationRequest/d-bp"]
    dup = got["C-DUP-ANTIRES"]
    assert "C-DUP-ANTIRES" not in _updates(got)
    assert [s["label"] for s in dup["suggestions"]] == [s["label"] for s in dup["suggestions"]
                                                       if s["label"].startswith("Keep denosumab: remove the new")]
    assert len(dup["suggestions"]) == 1 and not dup["suggestions"][0]["isRecommended"]
    assert "is not to be given now (a safety check on it says so), so it cannot follow denosumab" in dup["detail"]


# ---------------------------------------------------------------------------
# 3. t07_dmab_fx_zol, t10: stop denosumab + a bisphosphonate 2 months after its last dose was
# recommended as "a switch is the usual step".
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("fracture", [True, False], ids=["fracture_on_denosumab", "no_fracture"])
def test_denosumab_stop_is_never_recommended_and_names_the_six_month_date(fracture):
    chart = FX_ON_DMAB if fracture else FX_ON_DMAB[:-1]
    got = _order(*chart, drafts=[draft(ZOL, "d-zol")])
    assert ("C-TX-FAILURE" in cards(record(*chart))) is fracture
    dup = got["C-DUP-ANTIRES"]
    keep, stop = dup["suggestions"]
    assert _deletes(keep) == ["MedicationRequest/d-zol"] and keep["label"] == "Keep denosumab: remove the new zoledronic acid order"
    due = (TODAY - dt.timedelta(days=60) + dt.timedelta(days=183)).isoformat()
    assert _stops(stop) == ["dmab"] and not stop["isRecommended"] and due in stop["label"]
    assert "switch is the usual step" not in dup["detail"]
    assert f"about 6 months after the last denosumab dose (on or about {due}), not now" in dup["detail"]
    assert ("an anabolic agent is the usual switch" in dup["detail"]) is fracture


def test_quiet_controls_other_switches_keep_their_stop():
    """Raloxifene active, denosumab ordered: the plain switch as before; a fracture on alendronate
    keeps its recommended stop (test_review16_switch covers the wording)."""
    dup = _order(med(RALOX, 300, rid="ral"), drafts=[draft(DMAB, "d-dmab")])["C-DUP-ANTIRES"]
    assert [s["label"] for s in dup["suggestions"]] == ["Keep raloxifene: remove the new denosumab order",
                                                        "Switch to denosumab: stop the active raloxifene order"]
    failed = _order(med(ALN, 800, rid="aln"), VERTEBRAL, drafts=[draft(ZOL, "d-zol")])["C-DUP-ANTIRES"]
    assert _stops(failed["suggestions"][0]) == ["aln"] and failed["suggestions"][0]["isRecommended"]


# ---------------------------------------------------------------------------
# 4. o05_aff_aln_romo: romosozumab ordered after an atypical femoral fracture on alendronate: no card,
# so the alendronate stayed active beside the anabolic.
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_anabolic_ordered_with_a_bisphosphonate_on_board_after_aff_holds_the_bisphosphonate(hook):
    rec = record(AFF, med(ALN, 6 * 365, rid="aln"), drafts=[draft(ROMO, "d-romo")])
    card = cards(rec, hook)["C-AR-COMPLICATION"]
    first = card["suggestions"][0]
    assert _stops(first) == ["aln"] and first["isRecommended"] and first["label"] == "Hold alendronate: stop its active order"
    assert "Ordering romosozumab does not stop alendronate" in card["detail"] and "MedicationRequest/d-romo" in card["detail"]
    assert "endocrinolog" in card["suggestions"][1]["label"]


def test_quiet_controls_anabolic_order_without_complication_or_bisphosphonate():
    """No complication on record, or the complication with no bisphosphonate on board (alendronate
    stopped): no C-AR-COMPLICATION on the romosozumab order, as before."""
    assert "C-AR-COMPLICATION" not in _order(med(ALN, 6 * 365, rid="aln"), drafts=[draft(ROMO, "d-romo")])
    assert "C-AR-COMPLICATION" not in _order(AFF, med(ALN, 6 * 365, "stopped", rid="aln"), drafts=[draft(ROMO, "d-romo")])


# ---------------------------------------------------------------------------
# 5. r01_romo12_active: "The romosozumab order is still active: stop it" with no stop; r06: alendronate
# offered to follow on while denosumab is on board; s07: AFF on alendronate AND denosumab, only
# alendronate named.
# ---------------------------------------------------------------------------

ROMO_12 = tuple(given(ROMO, 25 + 30 * k) for k in range(12))


def test_romosozumab_course_complete_with_the_order_active_offers_the_stop():
    card = cards(record(med(ROMO, 380, rid="romo"), *ROMO_12))["C-SAFE-ROMO-LIMIT"]
    first = card["suggestions"][0]
    assert _stops(first) == ["romo"] and first["isRecommended"]
    assert first["label"] == "Stop romosozumab: course complete (12 monthly doses)"
    assert any("follow on" in s["label"] for s in card["suggestions"][1:])


def test_romosozumab_stop_offered_once_beside_the_cv_card():
    """Quiet control: an MI during the course: C-SAFE-ROMO-CV offers the stop, the limit card not again."""
    got = cards(record(med(ROMO, 380, rid="romo"), *ROMO_12, cond("I21.4", 20)))
    assert _updates(got) == {"C-SAFE-ROMO-CV": ["romo"]}


def test_no_bisphosphonate_follow_on_beside_active_denosumab():
    chart = (med(ROMO, 150, rid="romo"), given(ROMO, 25), cond("I21.4", 20), obs("33914-3", 20, 70))  # eGFR 70
    got = cards(record(*chart, med(DMAB, 40, rid="dmab"), given(DMAB, 30)))
    labels = [s["label"] for s in got["C-SAFE-ROMO-CV"]["suggestions"]]
    assert labels == ["Stop romosozumab: no further doses"]
    control = cards(record(*chart))
    assert "Order alendronate 70 mg once weekly to follow on" in [s["label"] for s in control["C-SAFE-ROMO-CV"]["suggestions"]]


def test_aff_on_alendronate_and_denosumab_names_denosumab_too():
    card = cards(record(AFF, med(ALN, 5 * 365, rid="aln"), med(DMAB, 100, rid="dmab"), given(DMAB, 100)))["C-AR-COMPLICATION"]
    assert "Denosumab is on board too: it is never simply stopped" in card["detail"] and "On denosumab since" in card["detail"]
    assert _stops(card["suggestions"][0]) == ["aln"]
    alone = cards(record(AFF, med(ALN, 5 * 365, rid="aln")))["C-AR-COMPLICATION"]
    assert "Denosumab is on board too" not in alone["detail"]
