"""Review 18, denosumab's two products and the oncology drafts. Charts from
tests.test_rules_second_pass's helpers, judged by the engine as the app runs it (engine.evaluate,
strict: order review included), as tests.test_review17_stops. Sources: Prolia label (PROLIA24, 5
Warnings: patients receiving Prolia should not receive Xgeva, same active ingredient); brief 8.6
(oncology products still count as antiresorptive exposure, but their plan is oncology's);
second-pass.md section 3 (C-SAFE-DOSE-INTERVAL: denosumab < 5 months; C-DUP-ANTIRES)."""

from __future__ import annotations

from tests.test_review16_switch import _deletes, _stops
from tests.test_review17_stops import METASTASES, _updates
from tests.test_rules_second_pass import ALN, DMAB, cards, draft, given, med, record

PROLIA = {"text": "Prolia (denosumab) 60 MG/ML Prefilled Syringe"}
XGEVA = {"text": "Xgeva 120 MG/1.7ML (denosumab)"}
ZOMETA = {"text": "Zoledronic acid 4 MG/5ML Injection (Zometa)"}


def _select(*resources, drafts):
    return cards(record(*resources, drafts=drafts), "order-select")


def _words(card):
    return " ".join(card["detail"].split())  # the YAML's line breaks


def _all_deletes(card):
    return [d for s in card.get("suggestions", ()) for d in _deletes(s)]


# ---------------------------------------------------------------------------
# 1. Prolia and Xgeva together drew no card (n06, x01, x02): the oncology exclusion removed the
# same-drug check.
# ---------------------------------------------------------------------------

def test_prolia_drafted_20_days_after_an_xgeva_dose_is_too_soon_and_the_prolia_draft_goes():
    # n06_xgeva_prolia
    got = _select(METASTASES, med(XGEVA, 300, rid="xg"), given(XGEVA, 20), drafts=[draft(PROLIA, "d-dmab")])
    card = got["C-SAFE-DOSE-INTERVAL"]
    assert card["indicator"] == "warning"
    assert "Prolia" in card["summary"] and "Xgeva" in card["summary"]
    assert "should not receive Xgeva" in _words(card) and "oncology's plan" in _words(card)
    assert _all_deletes(card) == ["MedicationRequest/d-dmab"] and card["suggestions"][0]["isRecommended"]
    assert not _updates(got)  # Xgeva is never stopped here
    assert "setid=49e5afe9" in card["source"]["url"]  # the Prolia label
    assert "C-DUP-ANTIRES" not in got  # one card per draft, though the Xgeva order is in force too


def test_xgeva_drafted_60_days_after_a_prolia_dose_keeps_xgeva_and_offers_stopping_prolia():
    # x01_prolia_xgeva_draft
    got = _select(METASTASES, med(DMAB, 3 * 365, rid="prolia"), given(DMAB, 240), given(DMAB, 60),
                  drafts=[draft(XGEVA, "d-xg")])
    card = got["C-SAFE-DOSE-INTERVAL"]
    assert "Xgeva" in card["summary"] and "Prolia" in card["summary"]
    assert "oncology's plan" in _words(card)
    assert not _all_deletes(card)  # the oncology draft is never removed
    assert [_stops(s) for s in card["suggestions"]] == [["prolia"]]
    assert not card["suggestions"][0]["isRecommended"]


def test_prolia_and_xgeva_both_active_on_patient_view():
    # x02_xgeva_prolia_both_pv
    got = cards(record(METASTASES, med(DMAB, 3 * 365, rid="prolia"), given(DMAB, 60),
                       med(XGEVA, 100, rid="xg"), given(XGEVA, 20)))
    card = got["C-DUP-ANTIRES"]
    assert card["indicator"] == "warning"
    assert "Prolia" in card["summary"] and "Xgeva" in card["summary"]
    assert "should not receive Xgeva" in _words(card) and "oncology's plan" in _words(card)
    assert [_stops(s) for s in card["suggestions"]] == [["prolia"]]  # never the Xgeva order
    assert not card["suggestions"][0]["isRecommended"]


def test_xgeva_drafted_while_a_prolia_order_is_in_force_beyond_the_interval():
    # Prolia's last dose 5.5 months ago, its order still active: not too soon, but both at once
    got = _select(METASTASES, med(DMAB, 3 * 365, rid="prolia"), given(DMAB, 168), drafts=[draft(XGEVA, "d-xg")])
    assert "C-SAFE-DOSE-INTERVAL" not in got
    card = got["C-DUP-ANTIRES"]
    assert "Xgeva is being ordered while Prolia is active" in _words(card) and "oncology's plan" in _words(card)
    assert not _all_deletes(card) and [_stops(s) for s in card["suggestions"]] == [["prolia"]]


def test_prolia_drafted_while_an_xgeva_order_is_in_force_is_removed():
    got = _select(METASTASES, med(XGEVA, 30, rid="xg"), drafts=[draft(PROLIA, "d-dmab")])
    card = got["C-DUP-ANTIRES"]
    assert _all_deletes(card) == ["MedicationRequest/d-dmab"] and card["suggestions"][0]["isRecommended"]
    assert not _updates(got)


def test_prolia_course_over_when_xgeva_starts_is_the_handover():
    # Prolia's order completed, last dose 5.5 months ago; oncology gives Xgeva: no card either way
    chart = (METASTASES, med(DMAB, 3 * 365, status="completed", rid="prolia"), given(DMAB, 168))
    got = _select(*chart, drafts=[draft(XGEVA, "d-xg")])
    assert "C-SAFE-DOSE-INTERVAL" not in got and "C-DUP-ANTIRES" not in got
    assert "C-DUP-ANTIRES" not in cards(record(*chart, med(XGEVA, 10, rid="xg"), given(XGEVA, 10)))


def test_quiet_controls_for_denosumab_products():
    # Xgeva alone, monthly, re-ordered by oncology: oncology's schedule, no card.
    monthly = (METASTASES, med(XGEVA, 300, rid="xg"), *(given(XGEVA, d) for d in (80, 52, 24)))
    got = _select(*monthly, drafts=[draft(XGEVA, "d-xg2")])
    assert "C-SAFE-DOSE-INTERVAL" not in got and "C-DUP-ANTIRES" not in got
    assert "C-DUP-ANTIRES" not in cards(record(*monthly))
    # Prolia ordered more than 6 months after a last Xgeva dose, Xgeva's course over: allowed.
    got = _select(METASTASES, med(XGEVA, 400, status="completed", rid="xg"), given(XGEVA, 200),
                  drafts=[draft(PROLIA, "d-dmab")])
    assert "C-SAFE-DOSE-INTERVAL" not in got
    # Prolia re-ordered 60 days after its own dose: the same-product card as before.
    got = _select(med(DMAB, 3 * 365, rid="prolia"), given(DMAB, 60), drafts=[draft(PROLIA, "d-dmab")])
    card = got["C-SAFE-DOSE-INTERVAL"]
    assert "Xgeva" not in _words(card) and card["summary"].startswith("Denosumab ordered 60 days after")


# ---------------------------------------------------------------------------
# 2. n21_aln_zometa_draft: C-DUP-ANTIRES offered to remove the oncology draft and called it a switch.
# ---------------------------------------------------------------------------

def test_oncology_draft_beside_alendronate_is_never_removed_alendronate_is_the_redundant_one():
    got = _select(METASTASES, med(ALN, 2 * 365, rid="aln"), drafts=[draft(ZOMETA, "d-zom")])
    card = got["C-DUP-ANTIRES"]
    assert not _all_deletes(card)
    assert "oncology product: its plan belongs to oncology" in _words(card)
    assert "switch" not in _words(card).lower().split("combining")[0]
    assert [_stops(s) for s in card["suggestions"]] == [["aln"]]
    assert not card["suggestions"][0]["isRecommended"]


def test_osteoporosis_zoledronic_acid_beside_alendronate_is_still_a_switch():
    # quiet control: Reclast 5 mg, not an oncology product, keeps review 16's two ways
    got = _select(med(ALN, 2 * 365, rid="aln"), drafts=[draft({"text": "Zoledronic acid 5 MG in 100 ML Injection"},
                                                              "d-zol")])
    labels = [s["label"] for s in got["C-DUP-ANTIRES"]["suggestions"]]
    assert labels[0].startswith("Keep alendronate: remove") and labels[1].startswith("Switch to zoledronic acid")


# ---------------------------------------------------------------------------
# 3. n05_zometa_aln_dmab on patient-view: Zometa counted as "keep one" without oncology's wording.
# ---------------------------------------------------------------------------

def test_patient_view_names_the_oncology_product_as_oncologys():
    got = cards(record(METASTASES, med(ZOMETA, 300, rid="zom"), given(ZOMETA, 20), med(ALN, 3 * 365, rid="aln")))
    card = got["C-DUP-ANTIRES"]
    assert "oncology product: its plan belongs to oncology" in _words(card)
    assert "alendronate is the redundant one" in _words(card)


def test_patient_view_two_osteoporosis_drugs_unchanged():
    got = cards(record(med(ALN, 3 * 365, rid="aln"), med({"text": "Risedronate 35 MG weekly"}, 100, rid="ris")))
    assert "oncology" not in _words(got["C-DUP-ANTIRES"])
