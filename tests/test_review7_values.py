"""Values the adversarial review (seventh round) showed read wrongly: an eGFR reported as an
upper bound ("<30"), T-scores with a comparator or a BMD unit, malformed deceased markers and
invalid dates. Each case builds a small chart (tests.test_rules_second_pass's helpers) and reads
the reading or the cards the engine returns; the deceased and date cases go through the Flask
test client as the review's repros did."""

from __future__ import annotations

import json

import pytest

from cds_service.rules import facts
from tests.test_rules_second_pass import ALN, DMAB, S, TODAY as TODAY_, ZOL, cards, cond, draft, given, med, obs, record

RIS = {"text": "risedronate 35 mg oral tablet"}


def egfr(value, comparator=None, days=20, oid=None):
    o = obs("98979-8", days, value, "mL/min/1.73m2", oid=oid)
    if comparator:
        o["valueQuantity"]["comparator"] = comparator
    return o


def egfr_text(text, days=20):
    o = obs("98979-8", days, 0, oid=f"egfr-text-{days}")
    del o["valueQuantity"]
    o["valueString"] = text
    return o


# ---------------------------------------------------------------------------
# Finding 1: an eGFR upper bound is below every limit at or above it
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("value,comparator,band,below", [
    (30, "<", facts.SEVERE, {15: False, 30: True, 35: True}),
    (30, "<=", facts.SEVERE, {15: False, 30: True, 35: True}),
    (25, "<", facts.SEVERE, {15: False, 30: True, 35: True}),
    (15, "<", facts.FAILURE, {15: True, 30: True, 35: True}),
    (29, None, facts.SEVERE, {15: False, 30: True, 35: True}),     # the plain value, as before
    (30, None, facts.MEASURED, {15: False, 30: False, 35: True}),  # 30 itself is not below 30
])
def test_an_upper_bound_reads_below_every_limit_at_or_above_it(value, comparator, band, below):
    reading = facts.kidney(record(egfr(value, comparator)), S)
    assert reading.band == band and reading.known
    assert {limit: reading.below(limit) for limit in below} == below
    assert reading.label == f"eGFR {comparator or ''}{value} mL/min/1.73m2"


@pytest.mark.parametrize("text", ["<30 mL/min/1.73m2", "<30 mL/min/1.73m\u00b2", "<30 (CKD-EPI)", "< 30"])
def test_a_bound_written_as_text_reads_as_the_same_bound(text):
    reading = facts.kidney(record(egfr_text(text)), S)
    assert reading.band == facts.SEVERE and reading.below(30) and reading.label == "eGFR <30 mL/min/1.73m2"


def test_below_30_patient_view_offers_no_oral_bisphosphonate():
    got = cards(record(egfr(30, "<")))
    assert "C-TX-BP" not in got
    alt = got["C-TX-DMAB-ALT"]
    assert "eGFR <30 mL/min/1.73m2" in alt["detail"] and "Prolia boxed warning" in alt["detail"]
    # Quiet control: exactly 30 is within risedronate's label.
    quiet = cards(record(egfr(30)))
    assert "C-TX-DMAB-ALT" not in quiet and "risedronate" in quiet["C-TX-BP"]["summary"]


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_risedronate_ordered_below_30_gets_the_renal_card(hook):
    card = cards(record(egfr(30, "<"), drafts=[draft(RIS)]), hook)["C-SAFE-RENAL"]
    assert card["indicator"] == "warning"
    assert card["summary"] == "Risedronate not recommended: kidney function (eGFR <30 mL/min/1.73m2) below 30 mL/min"
    assert "C-SAFE-RENAL" not in cards(record(egfr(30), drafts=[draft(RIS)]), hook)


def test_below_15_is_kidney_failure_for_denosumab():
    card = cards(record(egfr(15, "<"), drafts=[draft(DMAB)]), "order-sign")["C-SAFE-DMAB-CKD"]
    assert card["indicator"] == "critical" and "eGFR <15 mL/min/1.73m2" in card["summary"]
    assert cards(record(egfr(15), drafts=[draft(DMAB)]), "order-sign")["C-SAFE-DMAB-CKD"]["indicator"] == "warning"


def test_below_35_is_no_reading_but_rules_out_alendronate_and_zoledronic_acid():
    """"<35" says alendronate (Fosamax, <35) and zoledronic acid (Reclast, <35) are out, but not
    whether risedronate's 30 (Actonel) is met: the kidney function stays unknown (an exact eGFR
    is asked for), never offered as "within risedronate's label"."""
    rec = record(egfr(35, "<"))
    reading = facts.kidney(rec, S)
    assert reading.band == facts.UNKNOWN and not reading.known
    assert reading.below(35) and not reading.below(30) and reading.may_be_below(30)
    got = cards(rec)
    tx = got["C-TX-BP"]
    # Clinical review: no one-click risedronate beside "only if an exact eGFR is 30 or more".
    assert "alendronate" not in tx["summary"] and tx.get("suggestions", []) == []
    assert tx["summary"].endswith("consider oral risedronate 35 mg weekly once an exact eGFR is 30+")
    assert "once an exact eGFR shows 30 or more" in tx["detail"] and "eGFR <35 mL/min/1.73m2" in tx["detail"]
    assert "No order yet" in tx["detail"] and "The order carries" not in tx["detail"]
    assert ("eGFR <35 mL/min/1.73m2: not alendronate, and risedronate only if an exact eGFR is 30 or more"
            in tx["detail"] and "still within risedronate's label" not in tx["detail"])
    baseline = got["C-LAB-BASELINE"]  # the exact value is asked for, and why
    assert "eGFR" in baseline["summary"] and "eGFR <35 mL/min/1.73m2" in baseline["detail"]
    aln = cards(record(egfr(35, "<"), drafts=[draft(ALN)]), "order-sign")["C-SAFE-RENAL"]
    assert aln["indicator"] == "warning" and "eGFR <35 mL/min/1.73m2) below 35" in aln["summary"]
    zol = cards(record(egfr(35, "<"), drafts=[draft(ZOL)]), "order-sign")["C-SAFE-RENAL"]
    assert zol["indicator"] == "critical"
    ris = cards(record(egfr(35, "<"), drafts=[draft(RIS)]), "order-sign")["C-SAFE-RENAL"]
    assert ris["summary"].startswith("Risedronate needs a kidney recheck") and "may be below 30" in ris["summary"]
    # Quiet control: a measured 36 is above every bisphosphonate limit.
    assert "C-SAFE-RENAL" not in cards(record(egfr(36), drafts=[draft(ALN)]), "order-sign")


def test_below_60_is_no_reading_and_asks_for_a_recheck_before_an_oral_bisphosphonate():
    rec = record(egfr(60, "<"))
    reading = facts.kidney(rec, S)
    assert not reading.known and not reading.below(35)
    assert "alendronate" in cards(rec)["C-TX-BP"]["summary"]  # as with no eGFR (TX-1a): labs first
    card = cards(record(egfr(60, "<"), drafts=[draft(ALN)]), "order-sign")["C-SAFE-RENAL"]
    assert card["indicator"] == "warning" and "recheck" in card["summary"]
    assert "C-SAFE-RENAL" not in cards(record(egfr(60, ">"), drafts=[draft(ALN)]), "order-sign")


def test_the_newer_of_a_bound_and_an_exact_value_counts():
    older_bound = facts.kidney(record(egfr(35, "<", days=200, oid="b"), egfr(52, days=20, oid="v")), S)
    assert older_bound.band == facts.MEASURED and older_bound.value == 52
    newer_bound = facts.kidney(record(egfr(35, "<", days=20, oid="b"), egfr(52, days=200, oid="v")), S)
    assert not newer_bound.known and newer_bound.below(35)
    same_day = facts.kidney(record(egfr(35, "<", oid="b"), egfr(33, oid="v")), S)
    assert same_day.band == facts.MEASURED and same_day.value == 33  # consistent with the bound: the value


@pytest.mark.parametrize("bound", [35, 60])
def test_a_newer_wider_bound_leaves_a_lower_value_standing(bound):
    """Clinical review: eGFR 25, then "<60" (or "<35"), had erased the 25 and offered an
    oral bisphosphonate. The bound does not contradict the value: the value stands."""
    rec = record(egfr(25, days=60, oid="v"), egfr(bound, "<", days=10, oid="b"))
    reading = facts.kidney(rec, S)
    assert reading.band == facts.SEVERE and reading.value == 25 and reading.below(30)
    got = cards(rec)
    assert "C-TX-BP" not in got and "C-TX-DMAB-ALT" in got
    # Quiet control: a value the newer bound contradicts (52, then "<35") is replaced by it.
    assert not facts.kidney(record(egfr(52, days=60, oid="v"), egfr(35, "<", days=10, oid="b")), S).known


def test_an_old_bound_below_30_asks_for_a_recheck():
    reading = facts.kidney(record(egfr(30, "<", days=400)), S)
    assert not reading.known and reading.recheck_below(30) and reading.recheck_below(35)
    card = cards(record(egfr(30, "<", days=400), drafts=[draft(RIS)]), "order-sign")["C-SAFE-RENAL"]
    assert "last <30 on" in card["summary"]


# ---------------------------------------------------------------------------
# Finding 9: T-scores with a comparator or a BMD unit are no reading; shown as reported
# ---------------------------------------------------------------------------

def spine_t(value, oid="spine", **quantity):
    o = obs("38267-1", 30, value, "{T-score}", oid=oid)
    o["valueQuantity"].update(quantity)
    return o


@pytest.mark.parametrize("quantity", [
    {"comparator": ">"}, {"comparator": ">="}, {"comparator": "<"}, {"comparator": "ad"},
    {"unit": "g/cm2", "code": "g/cm2"}, {"unit": "g/cm²"}, {"unit": "g/cm2", "code": None},
])
def test_a_bounded_or_bmd_unit_t_score_is_no_reading(quantity):
    quantity = {k: v for k, v in quantity.items() if v is not None}
    rec = record(spine_t(-3.0, **quantity), t_score=False)
    assert rec.t_scores() == [] and rec.ignored == (("Observation/spine", "unreadable-value"),)
    assert not {"C-TX-BP", "C-TX-ANABOLIC", "C-TX-DMAB-ALT"} & set(cards(rec))
    # Quiet control: the same score as a plain value starts a drug card.
    plain = record(spine_t(-3.0), t_score=False)
    assert [s.value for s in plain.t_scores()] == [-3.0] and plain.ignored == ()
    assert {"C-TX-BP", "C-TX-ANABOLIC"} & set(cards(plain))


def test_a_bounded_score_beside_a_plain_one_leaves_the_plain_one():
    rec = record(spine_t(-3.0, comparator=">"), spine_t(-1.2, oid="hip"), t_score=False)
    assert [s.value for s in rec.t_scores()] == [-1.2]


@pytest.mark.parametrize("value,shown", [
    (-2.45, "-2.45"), (-2.46, "-2.46"), (-2.44, "-2.4"), (-2.55, "-2.6"), (-3.04, "-3.04"), (-3.73865, "-3.7"),
    (-1.04, "-1.04"), (-2.0, "-2.0"),
])
def test_a_t_score_is_never_shown_across_a_cut_off(value, shown):
    rec = record(spine_t(value), t_score=False)
    assert rec.lowest_t.fact().startswith(f"Lumbar spine T-score {shown} on")


def test_minus_2_45_is_osteopenia_and_says_so():
    """-2.45 is above -2.5 (DX-2 osteopenia): its card must not read "T-score -2.5"."""
    text = " ".join(c["detail"] for c in cards(record(spine_t(-2.45), t_score=False)).values())
    assert "T-score -2.45" in text and "T-score -2.5 " not in text


# ---------------------------------------------------------------------------
# Finding 5: a deceased marker fails closed
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from tests.unbudgeted import unbudgeted_client

    return unbudgeted_client(tmp_path_factory, "review7")


@pytest.mark.parametrize("deceased,expect_cards", [
    ({"deceasedBoolean": "true"}, False), ({"deceasedBoolean": " TRUE "}, False), ({"deceasedBoolean": True}, False),
    ({"deceasedDateTime": "2025-13-45"}, False), ({"deceasedDateTime": "2025-02-30"}, False),
    ({"deceasedDateTime": ""}, False), ({"deceasedDateTime": "1850-01-01"}, False), ({"deceasedDateTime": "2025"}, False),
    ({"deceasedDateTime": "2025-01-01T25:00:00Z"}, False), ({"deceasedDateTime": 20250101}, False),
    ({"deceasedBoolean": False, "deceasedDateTime": "2025-01-01"}, False),
    ({"deceasedBoolean": "yes"}, False), ({"deceasedBoolean": 1}, False), ({"deceasedBoolean": "1"}, False),
    # alive: false / "false", no marker, a null, and (as before) a well-formed death after tomorrow
    ({"deceasedBoolean": "false"}, True), ({"deceasedBoolean": False}, True), ({}, True),
    ({"deceasedBoolean": "no"}, True), ({"deceasedBoolean": 0}, True),
    ({"deceasedDateTime": None}, True), ({"deceasedDateTime": "2999-01-01"}, True),
])
def test_a_malformed_deceased_marker_means_deceased(client, deceased, expect_cards):
    from tests.test_plausibility import OWN_T, cards as pv_cards, prefetch_with

    prefetch = prefetch_with(OWN_T)
    prefetch["patient"].update(deceased)
    assert bool(pv_cards(client, prefetch)) is expect_cards


# ---------------------------------------------------------------------------
# Finding 10, as the clinical review decided it: a date that is no date ("2025-06-31")
# reads as no date, as a missing one does, and the resource is used undated. Refusing
# it (tried first) dropped coded dialysis, kidney failure, pregnancy or an active drug,
# and with them the safety cards they raise.
# ---------------------------------------------------------------------------

def test_an_invalid_date_reads_as_undated_so_no_safety_fact_is_lost():
    from cds_service.fhir import terminology as t
    from tests.conftest import coding

    rec = record(
        {"resourceType": "Condition", "id": "c", "code": coding(t.ICD10CM, "Z99.2"), "onsetDateTime": "2025-06-31"},
        {"resourceType": "MedicationRequest", "id": "m", "status": "active", "intent": "order",
         "authoredOn": "2019-02-29", "medicationCodeableConcept": DMAB},
    )
    assert rec.ignored == ()
    assert facts.kidney(rec, S).dialysis
    assert rec.medications


@pytest.mark.parametrize("when", ["2024", "2024-03"])
def test_a_partial_date_is_quoted_as_written_and_reads_as_its_first_day(client, when):
    import datetime as dt

    from cds_service.rules.base import Finding, trigger_date
    from tests.test_plausibility import cards as pv_cards, obs as pobs, prefetch_with

    rec = record({**obs("38267-1", 5, -3.6, oid="t"), "effectiveDateTime": when}, t_score=False)
    [score] = rec.t_scores()
    assert score.date == dt.date(2024, int(when[5:] or 1), 1) and score.fact() == f"Lumbar spine T-score -3.6 on {when}"
    assert score.date + dt.timedelta(days=1) == dt.date(2024, int(when[5:] or 1), 2)  # computed days are full days
    assert str(score.date + dt.timedelta(days=1)).count("-") == 2
    text = json.dumps(pv_cards(client, prefetch_with(pobs("x", "38267-1", when, -3.6, "{T-score}"))))
    assert f"T-score -3.6 on {when}" in text and f"T-score -3.6 on {score.date.isoformat()}" in text
    assert f"T-score -3.6 on {dt.date(2024, int(when[5:] or 1), 1).strftime('%Y-%m-%d')}" not in text
    # A quieted card still wakes for it: the partial date is the fact's trigger, as its first day.
    assert trigger_date(Finding("C-TX-BP", facts=(score.fact(), "ACP 2023 Rec 1a")), TODAY_) == score.date


def test_a_full_date_is_quoted_in_full():
    rec = record({**obs("38267-1", 5, -3.6, oid="t"), "effectiveDateTime": "2024-03-05T10:00:00Z"}, t_score=False)
    assert rec.t_scores()[0].fact() == "Lumbar spine T-score -3.6 on 2024-03-05"


@pytest.mark.parametrize("value,shown", [(34.6, "34.6"), (29.6, "29.6"), (14.6, "14.6"), (34.4, "34"),
                                         (35.4, "35"), (61.6, "62"), (34.96, "34.96")])
def test_an_egfr_is_never_shown_across_a_label_limit(value, shown):
    """Clinical review: eGFR 34.6 read "Alendronate not recommended: (eGFR 35) below 35"."""
    rec = record(egfr(value))
    reading = facts.kidney(rec, S)
    assert reading.label == f"eGFR {shown} mL/min/1.73m2"
    assert rec.lab("egfr").fact().startswith(f"eGFR {shown} mL/min/1.73m2 on ")


@pytest.mark.parametrize("quantity", [{"unit": "g/cm2"}, {"comparator": "<"}])
def test_an_unreadable_t_score_still_shows_the_scan_was_done(quantity):
    """Clinical review: a T-score in g/cm2 or given as a bound, ignored as a score, also erased
    its DXA, and C-SCREEN-DXA said "No DXA on file"."""
    rec = record(spine_t(-3.0, **quantity), t_score=False)
    assert rec.t_scores() == [] and rec.latest_dxa_date is not None
    assert "C-SCREEN-DXA" not in cards(rec)


def test_the_predose_card_names_a_recent_egfr_bound_instead_of_saying_there_is_none():
    """Clinical review: zoledronic acid ordered 20 days after an eGFR "<60" got "no kidney
    function in the last 90 days", the bound unlisted. It needs an exact value (Reclast: a
    creatinine before every dose), and says so beside the bound."""
    card = cards(record(egfr(60, "<"), drafts=[draft(ZOL)]), "order-sign")["C-SAFE-PREDOSE-LABS"]
    assert "no exact kidney function" in card["summary"]
    assert "eGFR <60 mL/min/1.73m2 on" in card["detail"] and "exact value unknown" in card["detail"]
    # Quiet control: with nothing on file the card reads as before.
    plain = cards(record(drafts=[draft(ZOL)]), "order-sign")["C-SAFE-PREDOSE-LABS"]
    assert "no kidney function (creatinine / eGFR)" in plain["summary"] and "exact" not in plain["detail"]


@pytest.mark.parametrize("old", [egfr(25, days=400), egfr(30, "<", days=400)])
def test_a_stale_low_egfr_is_not_nothing_on_record(old):
    """Clinical review: a stale "<30" (or 25) gave C-TX-BP "nothing on record against an oral
    bisphosphonate" beside "it was below 35 then: recheck it" in the same card."""
    card = cards(record(old))["C-TX-BP"]
    assert "nothing on record against" not in card["detail"]
    assert "an old kidney function below 35 on record, to recheck before the first dose" in card["detail"]
    # Quiet control: a stale normal value leaves the usual wording.
    assert "nothing on record against" in cards(record(egfr(72, days=400)))["C-TX-BP"]["detail"]


def test_a_stale_egfr_in_the_recheck_card_is_not_shown_across_its_limit():
    """The recheck card's "last <value>" is written as every other kidney value is (34.6, not 35,
    beside "below 35")."""
    card = cards(record(egfr(34.6, days=400), drafts=[draft(ALN)]), "order-sign")["C-SAFE-RENAL"]
    assert "last 34.6 on" in card["summary"] + card["detail"]


def _created(card):
    return [a["resource"] for s in card.get("suggestions", []) for a in s["actions"] if a["type"] == "create"]


def _drugs(card):
    return [r["medicationCodeableConcept"]["text"] for r in _created(card) if r["resourceType"] == "MedicationRequest"]


def test_a_bound_leaving_30_open_never_offers_denosumab_in_one_click():
    """Clinical review: "<35" may be below 30, where denosumab needs the CKD-MBD work-up first
    (Prolia boxed warning, 2024), yet an alendronate order got a one-click denosumab with only a
    calcium check. An exact eGFR comes first; the text names both limits."""
    card = cards(record(egfr(35, "<"), drafts=[draft(ALN)]), "order-sign")["C-SAFE-RENAL"]
    assert _drugs(card) == []
    first = card["suggestions"][0]
    assert first["label"].startswith("Remove the alendronate order; an exact eGFR first")
    assert [a["type"] for a in first["actions"]] == ["delete", "create"]
    assert first["actions"][1]["resource"]["code"]["coding"][0]["code"] == "2160-0"
    assert "may be below 30" in card["detail"] and "risedronate 35 mg once weekly is within its label" in card["detail"]
    assert "Prolia boxed warning" in card["detail"]
    # Quiet controls: an exact 33 offers risedronate first and denosumab as the alternative;
    # an exact 25 the CKD-MBD work-up.
    exact = cards(record(egfr(33), drafts=[draft(ALN)]), "order-sign")["C-SAFE-RENAL"]
    assert _drugs(exact) == ["risedronate 35 mg oral tablet", "denosumab 60 mg/mL prefilled syringe"]
    assert "may be below" not in exact["detail"]
    low = cards(record(egfr(25), drafts=[draft(ALN)]), "order-sign")["C-SAFE-RENAL"]
    assert _drugs(low) == [] and "CKD-MBD" in low["suggestions"][0]["label"]


def test_a_denosumab_order_beside_a_bound_leaving_30_open_says_so():
    card = cards(record(egfr(35, "<"), drafts=[draft(DMAB)]), "order-sign")["C-SAFE-PREDOSE-LABS"]
    assert ("eGFR <35 mL/min/1.73m2 may be below 30: then denosumab needs a CKD-MBD work-up with nephrology first"
            in card["detail"])
    # "<60" leaves 30 open as well; an exact 45 does not (quiet control).
    wide = cards(record(egfr(60, "<"), drafts=[draft(DMAB)]), "order-sign")["C-SAFE-PREDOSE-LABS"]
    assert "may be below 30" in wide["detail"]
    exact = cards(record(egfr(45), drafts=[draft(DMAB)]), "order-sign")["C-SAFE-PREDOSE-LABS"]
    assert "may be below" not in exact["detail"]


@pytest.mark.parametrize("days,card_id", [(185, "C-DMAB-DUE"), (260, "C-DMAB-OVERDUE")])
def test_a_denosumab_dose_due_beside_a_bound_leaving_30_open_names_the_plan(days, card_id):
    card = cards(record(egfr(35, "<"), given(DMAB, days)))[card_id]
    assert "eGFR <35 mL/min/1.73m2 may be below 30: an exact eGFR first" in card["detail"]
    assert "calcium weekly x 4 then monthly" in card["detail"]
    exact = cards(record(egfr(45), given(DMAB, days)))[card_id]
    assert "may be below" not in exact["detail"]


def test_coded_ckd_4_beside_a_normal_egfr_says_why_it_counts_as_below_30():
    """Clinical review: "eGFR 50 mL/min/1.73m2 ... (below 30)" read as a contradiction."""
    card = cards(record(cond("N18.4"), egfr(50), drafts=[draft(DMAB)]), "order-sign")["C-SAFE-DMAB-CKD"]
    assert "coded CKD stage 4 counts as below 30 for denosumab" in card["detail"]
    plain = cards(record(egfr(25), drafts=[draft(DMAB)]), "order-sign")["C-SAFE-DMAB-CKD"]
    assert "counts as" not in plain["detail"] and "eGFR 25 mL/min/1.73m2" in plain["detail"]


def test_a_recheck_on_an_order_asks_before_giving_it_not_before_the_next_dose():
    """Clinical review: a first alendronate order read "before the next dose"."""
    order = cards(record(egfr(25, days=400), drafts=[draft(ALN)]), "order-sign")["C-SAFE-RENAL"]
    assert "before giving alendronate" in order["detail"] and "next dose" not in order["detail"]


def test_two_new_antiresorptive_orders_offer_to_keep_either():
    """Clinical review: denosumab and alendronate drafted together, nothing current: the card
    removed the denosumab as 'the draft order that duplicates current therapy'."""
    card = cards(record(egfr(45), drafts=[draft(DMAB, "d-dmab"), draft(ALN, "d-aln")]), "order-sign")["C-DUP-ANTIRES"]
    assert [(s["label"], [a["resourceId"] for a in s["actions"]]) for s in card["suggestions"]] == [
        ("Keep the alendronate order: remove the denosumab order", ["MedicationRequest/d-dmab"]),
        ("Keep the denosumab order: remove the alendronate order", ["MedicationRequest/d-aln"])]
    assert "being ordered too" in card["detail"] and "current therapy" not in json.dumps(card)
    # Against an active drug: keep it (remove the new order) first, or switch (review 16: stop the
    # active order; tests/test_review16_switch.py).
    active = cards(record(egfr(45), med(ALN, 30), drafts=[draft(DMAB, "d-dmab")]), "order-sign")["C-DUP-ANTIRES"]
    assert [s["label"] for s in active["suggestions"]] == ["Keep alendronate: remove the new denosumab order",
                                                           "Switch to denosumab: stop the active alendronate order"]
    assert "alendronate is active" in active["detail"]
