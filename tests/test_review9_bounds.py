"""Bounds the clinical reviewer (ninth round) showed read wrongly: an eGFR upper bound that leaves
alendronate's 35 open ("<60", "<45") still offered alendronate in one click; a lower bound below 35
(">30", ">=30") was read as exactly 30 (zoledronic acid "contraindicated"); a T-score written with
the Unicode minus sign (U+2212) was not read. Each case has a quiet control."""

from __future__ import annotations

import pytest

from cds_service.rules import facts
from tests.test_review7_values import egfr, egfr_text
from tests.test_review8_clinical import _screening_woman, _t_text
from tests.test_rules_second_pass import ALN, S, ZOL, cards, draft, record

# ---------------------------------------------------------------------------
# 1. "<60" / "<45": may be below alendronate's 35, no one-click bisphosphonate
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [60, 45])
def test_an_upper_bound_above_35_offers_no_one_click_bisphosphonate(value):
    rec = record(egfr(value, "<"))
    assert facts.kidney(rec, S).may_be_below(35)
    card = cards(rec)["C-TX-BP"]
    assert card["summary"] == ("Osteoporosis at high fracture risk, no bone drug: consider oral alendronate "
                               "70 mg weekly once an exact eGFR is 35+")
    assert not card.get("suggestions")
    assert "No order yet: the baseline-labs card orders the eGFR." in card["detail"]
    assert "nothing on record against" not in card["detail"]
    assert f"eGFR <{value} mL/min/1.73m2: reported only as a bound that may be below 35" in card["detail"]
    # The order on the same chart asks for the same recheck.
    renal = cards(record(egfr(value, "<"), drafts=[draft(ALN)]), "order-sign")["C-SAFE-RENAL"]
    assert "may be below 35" in renal["summary"]


def test_an_exact_egfr_still_offers_alendronate_in_one_click():
    card = cards(record(egfr(60)))["C-TX-BP"]
    assert card["summary"].endswith("alendronate 70 mg weekly")
    assert [s["label"] for s in card["suggestions"]][0] == "Order alendronate 70 mg once weekly"
    assert "nothing on record against an oral bisphosphonate" in card["detail"]


def test_below_35_as_a_bound_is_unchanged():
    card = cards(record(egfr(35, "<")))["C-TX-BP"]
    assert card["summary"].endswith("risedronate 35 mg weekly once an exact eGFR is 30+")


# ---------------------------------------------------------------------------
# 2. ">30" / ">=30": "at least 30" is no reading against 35, never "below"
# ---------------------------------------------------------------------------

LOWER_BOUNDS = [egfr(30, ">"), egfr(30, ">="), egfr_text(">30"), egfr_text(">= 30 mL/min/1.73m2")]


@pytest.mark.parametrize("obs", LOWER_BOUNDS)
def test_a_lower_bound_below_35_is_no_reading(obs):
    rec = record(obs)
    reading = facts.kidney(rec, S)
    assert reading.band == facts.UNKNOWN and reading.value is None and not reading.below(35)
    assert [reason for _, reason in rec.ignored] == ["unreadable-value"]
    got = cards(record(obs, drafts=[draft(ZOL)]), "order-sign")
    assert "C-SAFE-RENAL" not in got
    assert "no kidney function" in got["C-SAFE-PREDOSE-LABS"]["summary"]


@pytest.mark.parametrize("obs", [egfr(60, ">"), egfr(90, ">="), egfr_text(">60"), egfr(35, ">=")])
def test_a_lower_bound_at_or_above_35_is_still_a_normal_egfr(obs):
    rec = record(obs)
    reading = facts.kidney(rec, S)
    assert reading.band == facts.MEASURED and not reading.below(35) and rec.ignored == ()
    got = cards(record(obs, drafts=[draft(ZOL)]), "order-sign")
    assert "C-SAFE-RENAL" not in got and "kidney" not in got.get("C-SAFE-PREDOSE-LABS", {}).get("summary", "")


def test_a_creatinine_clearance_beside_a_lower_bound_is_still_read():
    from tests.test_rules_second_pass import obs
    rec = record(egfr(30, ">", days=40), obs("2160-0", 20, 2.0, "mg/dL"), obs("29463-7", 20, 50, "kg"))
    reading = facts.kidney(rec, S)
    assert reading.kind == "CrCl" and reading.below(35)


# ---------------------------------------------------------------------------
# 3. A T-score with the Unicode minus sign (U+2212)
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("text,value", [("\u22123.4", -3.4), (" \u22122.6 ", -2.6), ("+0.5", 0.5)])
def test_a_unicode_minus_t_score_is_read(text, value):
    rec = _screening_woman(_t_text(text))
    assert [s.value for s in rec.t_scores()] == [value] and rec.ignored == ()


@pytest.mark.parametrize("text", ["-2,6", "\u20132.6", "\u2212", "\u2212-2.6"])
def test_other_minus_like_text_stays_unread(text):
    rec = _screening_woman(_t_text(text))
    assert rec.t_scores() == [] and rec.ignored == (("Observation/t-text", "unreadable-value"),)
