"""Review 19 (clinical, fresh eyes): two drafts of one drug, and every bisphosphonate draft after
an atypical femoral fracture. Charts from tests.test_rules_second_pass's helpers, judged by the
engine as the app runs it (strict), as tests.test_review18_dup. Sources: Prolia label (PROLIA24,
5 Warnings: patients receiving Prolia should not receive Xgeva, same active ingredient); brief 8.6
(Xgeva is oncology's plan: never removed here); second-pass.md section 4 (C-AR-COMPLICATION: hold
the bisphosphonate and refer)."""

from __future__ import annotations

from tests.test_review16_switch import AFF, _deletes, _order, _stops
from tests.test_review17_stops import METASTASES
from tests.test_review18_dup import ON_DMAB
from tests.test_review18_oncology import PROLIA, XGEVA, _all_deletes, _words
from tests.test_rules_second_pass import ALN, DMAB, ZOL, draft, given, med

REMOVE_PROLIA = "Remove the draft Prolia order (Xgeva, oncology's, gives denosumab)"


# ---------------------------------------------------------------------------
# 1. e20_none_xg_prolia_drafts: Xgeva and Prolia drafted together, nothing active: no card.
#    e19_prolia_act_xg_prolia_drafts: the Prolia draft was not removed beside the Prolia stop.
# ---------------------------------------------------------------------------

def test_xgeva_and_prolia_drafted_together_the_prolia_draft_goes():
    for drafts in ([draft(XGEVA, "d-xg"), draft(PROLIA, "d-dmab")], [draft(PROLIA, "d-dmab"), draft(XGEVA, "d-xg")]):
        card = _order(METASTASES, drafts=drafts)["C-DUP-ANTIRES"]
        assert "the same drug (denosumab) twice" in card["summary"]
        assert "is being ordered too" in _words(card) and "should not receive Xgeva" in _words(card)
        assert [(s["label"], s["isRecommended"]) for s in card["suggestions"]] == [(REMOVE_PROLIA, True)]
        assert _all_deletes(card) == ["MedicationRequest/d-dmab"]  # never the Xgeva draft


def test_prolia_active_xgeva_and_prolia_drafted_removes_the_prolia_draft_beside_the_stop():
    chart = (METASTASES, med(DMAB, 3 * 365, rid="prolia"), given(DMAB, 350), given(DMAB, 170))
    card = _order(*chart, drafts=[draft(XGEVA, "d-xg"), draft(PROLIA, "d-dmab")])["C-DUP-ANTIRES"]
    first, *rest = card["suggestions"]
    assert first["label"] == REMOVE_PROLIA and first["isRecommended"]
    assert _deletes(first) == ["MedicationRequest/d-dmab"]
    assert [_stops(s) for s in rest] == [["prolia"]] and not rest[0]["isRecommended"]
    assert _all_deletes(card) == ["MedicationRequest/d-dmab"]


def test_quiet_controls_one_denosumab_draft():
    """Quiet controls: Xgeva drafted alone, nothing on record: no card; Xgeva drafted beside an
    active Prolia order: the stop of Prolia alone, as before."""
    assert "C-DUP-ANTIRES" not in _order(METASTASES, drafts=[draft(XGEVA, "d-xg")])
    chart = (METASTASES, med(DMAB, 3 * 365, rid="prolia"), given(DMAB, 350), given(DMAB, 170))
    card = _order(*chart, drafts=[draft(XGEVA, "d-xg")])["C-DUP-ANTIRES"]
    assert [_stops(s) for s in card["suggestions"]] == [["prolia"]] and not _all_deletes(card)


# ---------------------------------------------------------------------------
# 2. e10_aff_dmab_aln_zol: atypical femoral fracture, denosumab on board, alendronate and
#    zoledronic acid drafted: C-AR-COMPLICATION named and removed only alendronate.
# ---------------------------------------------------------------------------

def test_every_bisphosphonate_draft_is_held_after_an_atypical_fracture():
    for drafts in ([draft(ALN, "d-aln"), draft(ZOL, "d-zol")], [draft(ZOL, "d-zol"), draft(ALN, "d-aln")]):
        card = _order(AFF, *ON_DMAB, drafts=drafts)["C-AR-COMPLICATION"]
        assert "alendronate" in card["summary"].lower() and "zoledronic acid" in card["summary"].lower()
        first = card["suggestions"][0]
        assert first["isRecommended"] and not _stops(first)
        assert sorted(_deletes(first)) == ["MedicationRequest/d-aln", "MedicationRequest/d-zol"]
        assert "alendronate" in first["label"] and "zoledronic acid" in first["label"]
        assert sum(1 for s in card["suggestions"] if s["isRecommended"] and _deletes(s)) == 1


def test_zoledronic_acid_drafted_alone_after_an_atypical_fracture_unchanged():
    """Quiet control (e16_aff_zol_draft): one bisphosphonate draft: its hold, as before."""
    card = _order(AFF, drafts=[draft(ZOL, "d-zol")])["C-AR-COMPLICATION"]
    first = card["suggestions"][0]
    assert first["label"] == "Hold it: remove the draft zoledronic acid order" and first["isRecommended"]
    assert _deletes(first) == ["MedicationRequest/d-zol"]
    assert card["summary"].startswith("Zoledronic acid with atypical femoral fracture on record: hold it")
