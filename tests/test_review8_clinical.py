"""The eighth clinical review (cards the reviewer replayed, /tmp/clinrev e36, e09, e76, e24, e72):
each finding with a chart that makes the fixed rule fire and a control that keeps it quiet.
Charts are built with tests.test_rules_second_pass's helpers; dates count back from TODAY."""

from __future__ import annotations

import datetime as dt

import pytest

from cds_service import card_render
from cds_service.rules.base import Finding
from tests.test_rules_second_pass import ALN, DMAB, TODAY, TPTD, ZOL, cards, cond, draft, med, obs, record


def _iso(day: dt.date) -> str:
    return day.isoformat()


def _years_ago(years: int, months: int = 0) -> dt.date:
    total = TODAY.year * 12 + TODAY.month - 1 - years * 12 - months
    return TODAY.replace(year=total // 12, month=total % 12 + 1)


# ---------------------------------------------------------------------------
# 1. A 24-calendar-month PTH-analog course is the lifetime limit (e36)
# ---------------------------------------------------------------------------

def _after_teriparatide(course_months: int, *, drafts=()):
    """e36: teriparatide for `course_months` calendar months ending 3 years ago, then alendronate
    (stopped), now a hip fracture with T -3.3: very high risk, no bone drug on board."""
    end = _years_ago(3)
    start = _years_ago(3, course_months)
    tptd = med(TPTD, (TODAY - start).days, status="completed", rid="tptd",
               dispenseRequest={"validityPeriod": {"start": _iso(start), "end": _iso(end)}})
    aln = med(ALN, (TODAY - end).days - 30, status="stopped", rid="aln",
              dispenseRequest={"validityPeriod": {"start": _iso(end + dt.timedelta(days=30)),
                                                  "end": _iso(TODAY - dt.timedelta(days=365))}})
    return record(tptd, aln, cond("S72.001A", 30), obs("38267-1", 60, -3.3), obs("98979-8", 20, 70),
                  obs("17861-6", 20, 9.5, "mg/dL"), obs("62292-8", 20, 35, "ng/mL"), t_score=False, drafts=drafts)


def _keys(card):
    return [s["label"] for s in card.get("suggestions", [])]


def test_24_calendar_months_of_teriparatide_rule_pth_analogues_out_of_the_anabolic_card():
    card = cards(_after_teriparatide(24))["C-TX-ANABOLIC"]
    assert _keys(card) == ["Order romosozumab 210 mg SC monthly x 12"]
    assert "Teriparatide/abaloparatide not suggested: 24 months used (lifetime limit 24 months)" in card["detail"]
    assert "- Teriparatide: 24.0 months since " in card["detail"]  # the earlier course is in the data used
    assert "**Suggested: an anabolic agent first, followed by an antiresorptive:** romosozumab" in card["detail"]


def test_24_calendar_months_of_teriparatide_meet_the_limit_at_signing_too():
    rec = _after_teriparatide(24, drafts=[draft(TPTD)])
    assert "C-SAFE-PTH-LIMIT" in cards(rec, "order-sign")


def test_a_23_month_course_still_leaves_the_pth_analogues_open():
    card = cards(_after_teriparatide(23))["C-TX-ANABOLIC"]
    assert _keys(card)[:2] == ["Order teriparatide 20 mcg SC daily", "Order abaloparatide 80 mcg SC daily"]
    assert "not suggested: 23" not in card["detail"]
    assert "C-SAFE-PTH-LIMIT" not in cards(_after_teriparatide(23, drafts=[draft(TPTD)]), "order-sign")


# ---------------------------------------------------------------------------
# 2. C-SAFE-HYPOCA names every drafted agent of HYPOCALCEMIA_AGENTS (e09)
# ---------------------------------------------------------------------------

def _dmab_and_aln(calcium: float):
    return record(obs("17861-6", 20, calcium, "mg/dL"), obs("62292-8", 20, 15, "ng/mL"), obs("98979-8", 20, 70),
                  drafts=[draft(DMAB, "d-dmab"), draft(ALN, "d-aln")])


def _deletes(suggestion):
    return [a["resourceId"] for a in suggestion["actions"] if a["type"] == "delete"]


def test_low_calcium_with_denosumab_and_alendronate_drafted_names_and_removes_both():
    card = cards(_dmab_and_aln(7.9), "order-sign")["C-SAFE-HYPOCA"]
    assert card["indicator"] == "critical"
    assert card["summary"] == "Low calcium: correct hypocalcemia before giving denosumab and alendronate"
    assert len(card["summary"]) < 140
    assert "Denosumab and alendronate are being ordered" in card["detail"]
    assert "the Prolia and Fosamax labels say" in card["detail"]
    assert "Draft order: denosumab (MedicationRequest/d-dmab)" in card["detail"]
    assert "Draft order: alendronate (MedicationRequest/d-aln)" in card["detail"]
    hold, *removes = card["suggestions"]
    assert hold["isRecommended"] and _deletes(hold) == ["MedicationRequest/d-dmab", "MedicationRequest/d-aln"]
    assert [a["resource"]["code"]["coding"][0]["code"] for a in hold["actions"] if a["type"] == "create"] == [
        "17861-6"]
    assert [(s["label"], _deletes(s)) for s in removes] == [
        ("Remove the draft denosumab order", ["MedicationRequest/d-dmab"]),
        ("Remove the draft alendronate order", ["MedicationRequest/d-aln"])]


def test_one_hypocalcemia_draft_reads_as_before_and_a_normal_calcium_stays_quiet():
    assert "C-SAFE-HYPOCA" not in cards(_dmab_and_aln(9.5), "order-sign")
    one = record(obs("17861-6", 20, 7.9, "mg/dL"), obs("98979-8", 20, 70), drafts=[draft(ALN, "d-aln")])
    card = cards(one, "order-sign")["C-SAFE-HYPOCA"]
    assert card["summary"] == "Low calcium: correct hypocalcemia before giving alendronate"
    assert "Alendronate is being ordered" in card["detail"] and "the Fosamax label says" in card["detail"]
    assert "hold the order, correct calcium" in card["detail"] and "then give the drug." in card["detail"]
    assert [s["label"] for s in card["suggestions"]] == [
        "Hold alendronate: remove the draft and recheck serum calcium", "Remove the draft alendronate order"]


# ---------------------------------------------------------------------------
# 3. Active skeletal malignancy / bone metastases: no one-click drug, a referral (e76)
# ---------------------------------------------------------------------------

def _mets_chart(t_score: float, *extra, status="active"):
    return record(cond("C79.51", 200, status=status), obs("38267-1", 60, t_score), obs("17861-6", 20, 9.4, "mg/dL"),
                  obs("62292-8", 20, 35, "ng/mL"), *extra, t_score=False)


def _drug_orders(card):
    return [a for s in card.get("suggestions", []) for a in s["actions"]
            if a.get("resource", {}).get("resourceType") == "MedicationRequest"]


def _assert_refers(card):
    assert "bone metastases or skeletal malignancy" in card["summary"] and len(card["summary"]) < 140
    assert "with osteoporosis" not in card["detail"]
    assert "Bone metastases / skeletal malignancy (C79.51)" in card["detail"]
    assert "not the primary\nosteoporosis" in card["detail"] and "Forteo and Tymlos labels" in card["detail"]
    assert not _drug_orders(card)
    [referral] = card["suggestions"]
    assert referral["actions"][0]["resource"]["resourceType"] == "ServiceRequest"
    assert referral["actions"][0]["resource"]["code"]["coding"][0]["code"] == "306278007"


def test_bone_metastases_at_very_high_risk_refer_instead_of_romosozumab():
    got = cards(_mets_chart(-3.4, obs("98979-8", 20, 70)))
    card = got["C-TX-ANABOLIC"]
    assert card["indicator"] == "warning"
    _assert_refers(card)
    assert "at very high fracture risk" in card["detail"]
    assert "C-SUPP-CAVD" in got  # the other cards as the contract says


def test_bone_metastases_at_high_risk_refer_from_the_bisphosphonate_and_denosumab_cards():
    bp = cards(_mets_chart(-2.7, obs("98979-8", 20, 70)))
    _assert_refers(bp["C-TX-BP"])
    dmab = cards(_mets_chart(-2.7, obs("98979-8", 20, 25)))
    assert "C-TX-BP" not in dmab
    _assert_refers(dmab["C-TX-DMAB-ALT"])


def test_without_an_active_skeletal_malignancy_the_drug_start_cards_offer_drugs():
    no_mets = record(obs("38267-1", 60, -3.4), obs("98979-8", 20, 70), obs("17861-6", 20, 9.4, "mg/dL"),
                     obs("62292-8", 20, 35, "ng/mL"), t_score=False)
    card = cards(no_mets)["C-TX-ANABOLIC"]
    assert card["summary"].startswith("Very high fracture risk, no bone drug") and len(_drug_orders(card)) == 3
    resolved = cards(_mets_chart(-2.7, obs("98979-8", 20, 70), status="resolved"))["C-TX-BP"]
    assert resolved["summary"].startswith("Osteoporosis at high fracture risk") and _drug_orders(resolved)


def test_an_unknown_card_variant_is_a_template_error():
    with pytest.raises(card_render.CardTemplateError):
        card_render.render(Finding("C-TX-BP", variant="no-such-variant"), patient_id="p", today=TODAY, strict=True)


# ---------------------------------------------------------------------------
# 4. A T-score sent as valueString (e24)
# ---------------------------------------------------------------------------

def _t_text(text, days=60):
    o = obs("38267-1", days, 0, "{T-score}", oid="t-text")
    del o["valueQuantity"]
    o["valueString"] = text
    return o


def _screening_woman(*resources):
    return record(*resources, obs("98979-8", 20, 70), obs("17861-6", 20, 9.5, "mg/dL"),
                  obs("62292-8", 20, 35, "ng/mL"), age=70, t_score=False)


def test_a_plain_decimal_t_score_in_text_is_the_score_and_the_dxa_is_done():
    rec = _screening_woman(_t_text("-2.6"))
    assert [(s.site, s.value) for s in rec.t_scores()] == [("LS", -2.6)] and rec.ignored == ()
    got = cards(rec)
    assert "C-SCREEN-DXA" not in got
    assert "Lumbar spine T-score -2.6 on" in got["C-TX-BP"]["detail"]
    assert [s.value for s in _screening_woman(_t_text(" -2.6 ")).t_scores()] == [-2.6]


@pytest.mark.parametrize("text", ["<-2.5", "-2.6 SD", "T-score -2.6", "-2,6", "osteoporosis", ""])
def test_other_t_score_text_is_no_score_but_the_dxa_still_counts(text):
    rec = _screening_woman(_t_text(text))
    assert rec.t_scores() == [] and rec.ignored == (("Observation/t-text", "unreadable-value"),)
    got = cards(rec)
    assert "C-SCREEN-DXA" not in got and not {"C-TX-BP", "C-TX-ANABOLIC", "C-TX-DMAB-ALT"} & set(got)


def test_with_no_dxa_at_all_the_screening_card_still_fires():
    assert "C-SCREEN-DXA" in cards(_screening_woman())


# ---------------------------------------------------------------------------
# 5. Ionized calcium (LOINC 1995-0, brief 8.2): a low one is hypocalcemia (e72)
# ---------------------------------------------------------------------------

def _ionized(value, unit="mmol/L", days=20, low=None, oid="ica"):
    o = obs("1995-0", days, value, unit, oid=oid)
    if low is not None:
        o["referenceRange"] = [{"low": {"value": low, "unit": unit}, "high": {"value": 1.32, "unit": unit}}]
    return o


def _zol_with(*labs):
    return record(obs("98979-8", 20, 70), obs("62292-8", 20, 35, "ng/mL"), *labs, drafts=[draft(ZOL, "d-zol")])


def test_a_low_ionized_calcium_stops_zoledronic_acid_like_a_low_total_calcium():
    got = cards(_zol_with(_ionized(0.98)), "order-sign")
    card = got["C-SAFE-HYPOCA"]
    assert card["indicator"] == "critical"
    assert f"Ionized calcium 0.98 mmol/L on {(TODAY - dt.timedelta(days=20)).isoformat()} (below 1.12 mmol/L" \
        in card["detail"]
    assert "calcium is low (an ionized calcium\nbelow its lower limit)" in card["detail"]
    assert "C-SAFE-PREDOSE-LABS" not in got  # was: "no serum calcium in the last 90 days"
    assert "C-SAFE-HYPOCA" in cards(_zol_with(_ionized(4.0, "mg/dL")), "order-sign")  # 1.00 mmol/L


def test_the_results_own_lower_limit_wins_over_the_default():
    assert "C-SAFE-HYPOCA" in cards(_zol_with(_ionized(1.10)), "order-sign")
    assert "C-SAFE-HYPOCA" not in cards(_zol_with(_ionized(1.10, low=1.05)), "order-sign")
    card = cards(_zol_with(_ionized(1.12, low=1.15)), "order-sign")["C-SAFE-HYPOCA"]
    assert "(below 1.15 mmol/L, the lab's lower limit)" in card["detail"]


def test_a_normal_ionized_calcium_is_a_calcium_on_file_and_a_newer_normal_total_stands():
    got = cards(_zol_with(_ionized(1.20)), "order-sign")
    assert "C-SAFE-HYPOCA" not in got and "C-SAFE-PREDOSE-LABS" not in got
    newer_total = _zol_with(_ionized(0.98, days=40), obs("17861-6", 10, 9.4, "mg/dL"))
    assert "C-SAFE-HYPOCA" not in cards(newer_total, "order-sign")
    older_total = _zol_with(_ionized(0.98, days=10), obs("17861-6", 40, 9.4, "mg/dL"))
    assert "C-SAFE-HYPOCA" in cards(older_total, "order-sign")
    # No calcium of either kind: the pre-dose labs card asks for one, as before.
    assert "C-SAFE-PREDOSE-LABS" in cards(_zol_with(), "order-sign")


def test_ionized_calcium_is_asked_for_in_the_prefetch():
    from cds_service.services.prefetch_templates import OBSERVATION_KEYS

    assert "lab-calcium-ionized" in OBSERVATION_KEYS["safetyLabs"]


def _on_teriparatide(days: int):
    return record(med(TPTD, days, status="active", rid="tptd"))


def test_teriparatide_still_active_at_24_calendar_months_has_reached_the_limit():
    # 730 days is 24 calendar months without a 29 February (23.98 months of 30.4375 days).
    assert "C-SAFE-PTH-LIMIT" in cards(_on_teriparatide(730))
    assert "C-SAFE-PTH-LIMIT" not in cards(_on_teriparatide(700))
