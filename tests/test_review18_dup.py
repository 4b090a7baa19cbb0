"""Review 18 (clinical, fresh eyes): duplicate drafts and duplicate orders on one screen.
Charts from tests.test_rules_second_pass's helpers, judged by the engine as the app runs it
(engine.evaluate, strict), as tests.test_review17_stops. Sources: second-pass.md section 4
(denosumab is never simply stopped: rebound, it needs a follow-on plan; C-AR-COMPLICATION: hold
the bisphosphonate and refer); ECTS 2021 (a bisphosphonate about 6 months after the last
denosumab dose prevents the rebound; raloxifene does not); SAFE-15 (C-DUP-ANTIRES: an
antiresorptive ordered while a different one is active, or also in the draft orders)."""

from __future__ import annotations

import pytest

from tests.test_review16_switch import AFF, _deletes, _order, _stops
from tests.test_review17_stops import RALOX, ROMO_12, _updates
from tests.test_rules_second_pass import ALN, DMAB, ROMO, ZOL, cards, cond, draft, given, med, record

ON_DMAB = (med(DMAB, 3 * 365, rid="dmab"), given(DMAB, 330), given(DMAB, 150))
BAZEDOXIFENE = {"text": "conjugated estrogens / bazedoxifene 0.45 MG / 20 MG Oral Tablet"}


# ---------------------------------------------------------------------------
# 1. n12_dmab_ralox: "Switch to raloxifene: stop the active denosumab order".
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("serm", [RALOX, BAZEDOXIFENE], ids=["raloxifene", "bazedoxifene"])
def test_no_denosumab_stop_for_a_serm_draft(serm):
    got = _order(*ON_DMAB, drafts=[draft(serm, "d-serm")])
    dup = got["C-DUP-ANTIRES"]
    assert "C-DUP-ANTIRES" not in _updates(got)
    assert len(dup["suggestions"]) == 1 and _deletes(dup["suggestions"][0]) == ["MedicationRequest/d-serm"]
    assert dup["suggestions"][0]["label"].startswith("Keep denosumab: remove the new")
    assert "does not prevent that rebound" in dup["detail"] and "keep denosumab" in dup["detail"]


def test_bisphosphonate_draft_still_offers_the_denosumab_stop():
    """Quiet control: alendronate is denosumab's follow-on (ECTS 2021): the stop stays, not recommended."""
    dup = _order(*ON_DMAB, drafts=[draft(ALN, "d-aln")])["C-DUP-ANTIRES"]
    stops = [s for s in dup["suggestions"] if _stops(s)]
    assert len(stops) == 1 and _stops(stops[0]) == ["dmab"] and not stops[0]["isRecommended"]
    assert len(dup["suggestions"]) == 2


# ---------------------------------------------------------------------------
# 2. n13_dmab_aln_zol_sign, x04_dmab_zol_sign: the second duplicate draft got no card.
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("drafts", [[(ALN, "d-aln"), (ZOL, "d-zol")], [(ZOL, "d-zol"), (ALN, "d-aln")]],
                         ids=["aln_first", "zol_first"])
def test_every_duplicate_draft_is_on_the_card(drafts):
    dup = _order(*ON_DMAB, drafts=[draft(c, i) for c, i in drafts])["C-DUP-ANTIRES"]
    removed = [d for s in dup["suggestions"] if not _stops(s) for d in _deletes(s)]
    assert sorted(removed) == ["MedicationRequest/d-aln", "MedicationRequest/d-zol"]
    assert "alendronate" in dup["summary"] and "zoledronic acid" in dup["summary"] and "denosumab" in dup["summary"]
    assert "orders also duplicate each other" in dup["detail"]
    # the stop of the one denosumab order is offered once
    assert sum(1 for s in dup["suggestions"] if _stops(s)) == 1


def test_two_drafts_nothing_current_card_unchanged():
    """Quiet control: two drafts and nothing current: keep either one, as before."""
    dup = _order(drafts=[draft(ALN, "d-aln"), draft(ZOL, "d-zol")])["C-DUP-ANTIRES"]
    assert [s["label"] for s in dup["suggestions"]] == [
        "Keep the zoledronic acid order: remove the alendronate order",
        "Keep the alendronate order: remove the zoledronic acid order"]
    assert dup["summary"].startswith("Two antiresorptives at once (alendronate and zoledronic acid)")
    assert "duplicate each other" not in dup["detail"]


# ---------------------------------------------------------------------------
# 3. n17_aln_aff_aln_renew: the renewal was removed, the active alendronate order left running.
# ---------------------------------------------------------------------------

def test_renewal_after_atypical_fracture_holds_the_active_order():
    card = _order(AFF, med(ALN, 2 * 365, rid="aln"), drafts=[draft(ALN, "d-aln")])["C-AR-COMPLICATION"]
    first = card["suggestions"][0]
    assert first["isRecommended"] and _stops(first) == ["aln"] and _deletes(first) == ["MedicationRequest/d-aln"]
    assert first["label"] == "Hold alendronate: stop its active order and remove the draft"


def test_new_bisphosphonate_after_atypical_fracture_card_unchanged():
    """Quiet control: no alendronate order on board: the draft's removal alone, as before."""
    card = _order(AFF, drafts=[draft(ALN, "d-aln")])["C-AR-COMPLICATION"]
    first = card["suggestions"][0]
    assert first["isRecommended"] and not _stops(first) and _deletes(first) == ["MedicationRequest/d-aln"]
    assert first["label"] == "Hold it: remove the draft alendronate order"


# ---------------------------------------------------------------------------
# 4. n07_romo12_mi: C-SAFE-ROMO-CV and C-SAFE-ROMO-LIMIT each offered the follow-on denosumab.
# ---------------------------------------------------------------------------

def _drug_orders(card):
    return [a["resource"]["medicationCodeableConcept"].get("text") for s in card.get("suggestions", ())
            for a in s["actions"] if a["type"] == "create" and a["resource"]["resourceType"] == "MedicationRequest"]


def test_a_drug_order_is_offered_on_one_card_of_a_screen():
    got = cards(record(med(ROMO, 380, rid="romo"), *ROMO_12, cond("I21.4", 20)))
    cv, limit = got["C-SAFE-ROMO-CV"], got["C-SAFE-ROMO-LIMIT"]
    assert any("denosumab" in d for d in _drug_orders(cv))
    assert not _drug_orders(limit)
    assert "Not repeated here: denosumab" in limit["detail"] and cv["summary"] in limit["detail"]


def test_limit_card_alone_keeps_its_follow_on():
    """Quiet control: no MI: the limit card alone offers the follow-on denosumab, recommended."""
    limit = cards(record(med(ROMO, 380, rid="romo"), *ROMO_12))["C-SAFE-ROMO-LIMIT"]
    assert any("denosumab" in d for d in _drug_orders(limit))
    assert "Not repeated here" not in limit["detail"]
