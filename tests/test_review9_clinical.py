"""The ninth clinical review (a re-review of the eighth round's fixes): a skeletal malignancy
in remission or resolved, and a high ionized calcium, keep teriparatide and abaloparatide out
(SAFE-11; Forteo/Tymlos labels: "bone metastases or a history of skeletal malignancies";
second-pass 2: a measured calcium above the upper limit). Each case with a quiet control."""

from __future__ import annotations

import datetime as dt

from tests.test_review8_clinical import _drug_orders, _ionized
from tests.test_review7_values import egfr
from tests.test_rules_second_pass import DMAB, TODAY, TPTD, _pred, cards, cond, draft, med, obs, record


def _mets_chart(t_score, *extra, status="active", drafts=()):
    return record(cond("C79.51", 200, status=status), obs("38267-1", 60, t_score), obs("17861-6", 20, 9.4, "mg/dL"),
                  obs("62292-8", 20, 35, "ng/mL"), *extra, t_score=False, drafts=drafts)


def _anabolic_drugs(card):
    return sorted(a["resource"]["medicationCodeableConcept"]["text"].split()[0] for a in _drug_orders(card))


def test_a_resolved_skeletal_malignancy_still_rules_out_the_pth_analogues():
    for status in ("resolved", "remission"):
        card = cards(_mets_chart(-3.4, obs("98979-8", 20, 70), status=status))["C-TX-ANABOLIC"]
        assert _anabolic_drugs(card) == ["romosozumab"], status
        assert "Teriparatide/abaloparatide not suggested: Skeletal malignancy or bone metastases (C79.51)" in card["detail"]
        order = cards(_mets_chart(-3.4, obs("98979-8", 20, 70), status=status, drafts=[draft(TPTD)]), "order-sign")
        assert "Bone metastases / skeletal malignancy" in order["C-SAFE-ANABOLIC-CONTRA"]["detail"]
    # Quiet control: with no malignancy on record both PTH analogues are offered.
    plain = record(obs("38267-1", 60, -3.4), obs("98979-8", 20, 70), obs("17861-6", 20, 9.4, "mg/dL"),
                   obs("62292-8", 20, 35, "ng/mL"), t_score=False)
    assert _anabolic_drugs(cards(plain)["C-TX-ANABOLIC"]) == ["abaloparatide", "romosozumab", "teriparatide"]


def _very_high(*labs, drafts=()):
    return record(obs("38267-1", 60, -3.4), obs("98979-8", 20, 70), obs("62292-8", 20, 35, "ng/mL"), *labs,
                  t_score=False, drafts=drafts)


def test_a_high_ionized_calcium_rules_out_the_pth_analogues_like_a_high_total_calcium():
    card = cards(_very_high(_ionized(1.45)))["C-TX-ANABOLIC"]
    assert _anabolic_drugs(card) == ["romosozumab"]
    assert "(above 1.32 mmol/L, usual upper limit)" in card["detail"]
    order = cards(_very_high(_ionized(1.45), drafts=[draft(TPTD)]), "order-sign")["C-SAFE-ANABOLIC-CONTRA"]
    assert "Ionized calcium" in order["detail"] and "above 1.32 mmol/L" in order["detail"]
    # The result's own upper limit wins: 1.40 within a range up to 1.42 is not high.
    ranged = _ionized(1.40, low=1.05)
    ranged["referenceRange"][0]["high"]["value"] = 1.42
    assert _anabolic_drugs(cards(_very_high(ranged))["C-TX-ANABOLIC"]) == ["abaloparatide", "romosozumab",
                                                                          "teriparatide"]
    # Quiet controls: a normal ionized calcium; a newer normal total calcium beside an old high ionized one.
    assert "C-SAFE-ANABOLIC-CONTRA" not in cards(_very_high(_ionized(1.25), drafts=[draft(TPTD)]), "order-sign")
    newer = _very_high(_ionized(1.45, days=60), obs("17861-6", 20, 9.6, "mg/dL"), drafts=[draft(TPTD)])
    assert "C-SAFE-ANABOLIC-CONTRA" not in cards(newer, "order-sign")


def test_a_bound_below_30_with_denosumab_says_it_may_be_below_15():
    """Re-review: eGFR "<30" with a denosumab order read "CKD stage 4 (kidney function 15-29)"."""
    card = cards(record(egfr(30, "<"), drafts=[draft(DMAB)]), "order-sign")["C-SAFE-DMAB-CKD"]
    assert "at least CKD stage 4, and it may be below 15" in card["detail"] and "(kidney function 15-29)" not in card["detail"]
    exact = cards(record(egfr(25), drafts=[draft(DMAB)]), "order-sign")["C-SAFE-DMAB-CKD"]
    assert "CKD stage 4 (kidney function 15-29)." in exact["detail"]


def _tptd_used(days: int, drafts=()):
    end = TODAY - dt.timedelta(days=400)
    start = end - dt.timedelta(days=days)
    tptd = med(TPTD, (TODAY - start).days, status="completed", rid="tptd",
               dispenseRequest={"validityPeriod": {"start": start.isoformat(), "end": end.isoformat()}})
    return record(tptd, obs("38267-1", 60, -3.1), obs("98979-8", 20, 70), obs("17861-6", 20, 9.4, "mg/dL"),
                  t_score=False, drafts=drafts)


def test_a_pth_order_that_would_take_the_total_past_24_months_is_warned():
    """Re-review: 23.9 months used and a new teriparatide order passed silently; one more pen
    (28 days) takes the lifetime total past 24 months (SAFE-10)."""
    card = cards(_tptd_used(727, drafts=[draft(TPTD)]), "order-sign")["C-SAFE-PTH-LIMIT"]
    assert "The draft adds at least one 28-day pen: 23.9 + 0.9 months is past 24" in card["detail"]
    # Quiet control: 22 months used leaves room for the pen.
    assert "C-SAFE-PTH-LIMIT" not in cards(_tptd_used(670, drafts=[draft(TPTD)]), "order-sign")


def test_a_steroid_user_with_osteopenia_and_no_frax_is_offered_calcium_and_vitamin_d():
    """Re-review: prednisone 10 mg/day for 6 months, T -1.8 on a DXA 100 days old, no FRAX: C-GIOP
    left the supplements to C-SUPP-CAVD, which is quiet for untreated osteopenia, so nothing
    fired (ACR 2022: calcium and vitamin D, and a dose-adjusted FRAX)."""
    got = cards(record(_pred(10, 180), obs("38263-0", 100, -1.8), obs("98979-8", 20, 70), t_score=False))
    card = got["C-GIOP"]
    assert "C-SUPP-CAVD" not in got and card["summary"].endswith("risk not yet assessed")
    assert any("calcium" in s["label"].lower() for s in card["suggestions"])
    assert "Decide with a dose-adjusted FRAX" in card["detail"]
    # With a vitamin D deficiency C-VITD-LOW's repletion speaks: no second vitamin D order here.
    low_d = cards(record(_pred(10, 180), obs("38263-0", 100, -1.8), obs("98979-8", 20, 70),
                         obs("62292-8", 20, 12, "ng/mL"), t_score=False))
    assert "C-VITD-LOW" in low_d
    assert not any("vitamin" in s["label"].lower() for s in low_d.get("C-GIOP", {}).get("suggestions", []))


def test_c_tx_bp_at_very_high_risk_says_very_high_in_its_summary():
    """Re-review: 'Osteoporosis at high fracture risk' in the summary beside 'very high fracture
    risk, but no anabolic agent can be suggested' in the detail. A man (no romosozumab) with
    Paget disease (no PTH analogue) and a T-score of -3.4 (very high risk)."""
    man = record(cond("M88.9", 300), obs("38267-1", 60, -3.4), obs("98979-8", 20, 70), obs("17861-6", 20, 9.4, "mg/dL"),
                 sex="male", age=70, t_score=False)
    card = cards(man)["C-TX-BP"]
    assert card["summary"].startswith("Osteoporosis at very high fracture risk")
    assert "no anabolic agent can be suggested" in card["detail"]
    plain = cards(record(obs("38267-1", 60, -2.8), obs("98979-8", 20, 70), t_score=False))["C-TX-BP"]
    assert plain["summary"].startswith("Osteoporosis at high fracture risk")
