"""The thirteenth review's smaller card fixes (a clinical reviewer's charts, rebuilt here with
tests.test_rules_second_pass's helpers and judged by the engine as the app runs it): each with a
chart that shows the fix and a quiet control."""

from __future__ import annotations

import pytest

from cds_service.fhir import terminology as t
from tests.conftest import coding
from tests.test_rules_second_pass import cards, record, sr

# ---------------------------------------------------------------------------
# C-MASSAGE-SAFETY, critical for manipulation near fragile bone (second-pass 6; SEED 002: avoid
# joint mobilisation near osteoporotic regions). A chiropractic or osteopathic manipulation code
# is the manipulation itself: "the same order, with no manipulation in its note" contradicts the
# order, so removing it is the only suggestion. Manual therapy (97140) can be done without
# mobilising, so the order with the precautions stays an option beside removal.
# ---------------------------------------------------------------------------


def _suggestion_types(code):
    card = cards(record(drafts=[sr(coding(t.CPT, code))]), "order-sign")["C-MASSAGE-SAFETY"]
    assert card["indicator"] == "critical"
    return [[a["type"] for a in s["actions"]] for s in card["suggestions"]]


@pytest.mark.parametrize("code", ["98940", "98941", "98942", "98925", "98929"])
def test_spinal_manipulation_is_only_offered_for_removal(code):
    assert _suggestion_types(code) == [["delete"]]


def test_manual_therapy_keeps_the_order_with_precautions_as_an_option():
    assert _suggestion_types("97140") == [["delete"], ["update"]]


# ---------------------------------------------------------------------------
# A converted 25-OH vitamin D is written on the side of the 20 and 30 ng/mL cut-offs it is on
# (brief TX-8, SAFE-5; AACE20): 49 nmol/L is 19.6 ng/mL, and "20 ng/mL" beside "below 20 ng/mL"
# contradicted the card. A value clear of the cut-offs keeps whole numbers.
# ---------------------------------------------------------------------------

def _vitamin_d(nmol, *drafts):
    from tests.test_rules_second_pass import obs
    return record(obs("62292-8", 30, nmol, "nmol/L"), obs("98979-8", 30, 75), obs("17861-6", 30, 9.4, "mg/dL"),
                  drafts=list(drafts))


def test_vitamin_d_just_below_20_is_not_written_as_20():
    from tests.test_rules_second_pass import ZOL, draft
    view = cards(_vitamin_d(49))["C-VITD-LOW"]
    assert "25-OH vitamin D 19.6 ng/mL" in view["detail"]
    order = cards(_vitamin_d(49, draft(ZOL)), "order-sign")["C-VITD-LOW"]
    assert "19.6 ng/mL, below 20 ng/mL" in order["detail"] and " 20 ng/mL, below" not in order["detail"]


def test_vitamin_d_clear_of_the_cut_offs_keeps_whole_numbers():
    view = cards(_vitamin_d(40))["C-VITD-LOW"]  # 16.0 ng/mL
    assert "25-OH vitamin D 16 ng/mL" in view["detail"]


# ---------------------------------------------------------------------------
# C-MON-DXA-DUE beside a T-score with no date (MON-1): the scan is on record, its day is not.
# "No DXA on file" contradicted C-TX-BP's "T-score -2.9 on an unknown date" on the same chart.
# ---------------------------------------------------------------------------

def test_an_undated_t_score_is_a_dxa_of_unknown_date_not_no_dxa():
    from tests.test_rules_second_pass import obs
    undated = obs("38267-1", 0, -2.9)
    del undated["effectiveDateTime"]
    card = cards(record(undated, t_score=False))["C-MON-DXA-DUE"]
    assert "No DXA on file" not in card["detail"] and "no DXA on file" not in card["detail"]
    assert "DXA date not on record: Lumbar spine T-score -2.9 on an unknown date" in card["detail"]


def test_no_t_score_at_all_is_still_no_dxa_on_file():
    from tests.test_rules_second_pass import cond
    card = cards(record(cond("M81.0"), t_score=False))["C-MON-DXA-DUE"]
    assert "No DXA on file" in card["detail"]


# ---------------------------------------------------------------------------
# C-GIOP writes the prednisone-equivalent dose as a clinician does (second-pass 5, ACR22):
# dexamethasone 4 mg/day is 26.7 mg, not "26.67"; a dose near ACR22's 7.5 mg/day keeps the side
# of the cut-off it is on.
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("drug, mg, written", [
    ("dexamethasone", 4, "26.7 mg/day"),
    ("prednisone", 10, "10 mg/day"),
    ("prednisone", 7.49, "7.49 mg/day"),
])
def test_giop_dose_is_written_as_a_clinician_writes_it(drug, mg, written):
    from tests.test_rules_second_pass import med, obs
    steroid = med({"text": drug}, 180, rid="gc", dosageInstruction=[{"text": f"{mg} mg daily"}])
    rec = record(steroid, obs("38267-1", 60, -2.2), obs("90265-0", 30, 15, "%"), obs("90266-8", 30, 2.5, "%"),
                 obs("17861-6", 20, 9.4, "mg/dL"), obs("62292-8", 20, 35, "ng/mL"), obs("98979-8", 20, 70),
                 t_score=False)
    detail = cards(rec)["C-GIOP"]["detail"]
    assert written in detail and "26.67" not in detail and "26.6667" not in detail


# ---------------------------------------------------------------------------
# A lab result sent as text (valueString "<5.0 ng/mL") is read as the same valueQuantity would be:
# unread, the 25-OH vitamin D a month old was "missing" and C-TX-BP asked for it again, and the
# deficiency (brief TX-8, SAFE-5) went unseen. Text that is not a number stays unread.
# ---------------------------------------------------------------------------

def _vitamin_d_text(text):
    from tests.test_rules_second_pass import obs
    vit_d = obs("62292-8", 30, 0, "ng/mL")
    del vit_d["valueQuantity"]
    vit_d["valueString"] = text
    return cards(record(vit_d, obs("98979-8", 30, 75), obs("17861-6", 30, 9.4, "mg/dL")))


@pytest.mark.parametrize("text, written", [("<5.0 ng/mL", "25-OH vitamin D <5 ng/mL"),
                                           ("30 nmol/L (L)", "25-OH vitamin D 12 ng/mL")])
def test_a_vitamin_d_written_as_text_is_read(text, written):
    got = _vitamin_d_text(text)
    assert written in got["C-VITD-LOW"]["detail"]
    assert "25-OH vitamin D" not in got["C-TX-BP"]["detail"].split("**Patient data used:**")[0]


@pytest.mark.parametrize("text", ["pending", "see report", "12 furlongs"])
def test_text_that_is_not_a_reading_stays_unread(text):
    got = _vitamin_d_text(text)
    assert "C-VITD-LOW" not in got
    assert "25-OH vitamin D" in got["C-TX-BP"]["detail"].split("**Patient data used:**")[0]


# ---------------------------------------------------------------------------
# Text values, adversarial review 13. The text readers are linear (possessive quantifiers, ASCII
# digits): a vitamin D text of "5" + 1,500 spaces took 4-5 s and an eGFR bound of 60,000 digits
# 13.7 s, a gevent worker stalled the while. These hostile values are answered as no reading.
# An eGFR sent as a plain number in text ("20") is read (it was no reading: no kidney card).
# ---------------------------------------------------------------------------

def _egfr_text(text, *drafts):
    from tests.test_rules_second_pass import obs
    egfr = obs("98979-8", 20, 0)
    del egfr["valueQuantity"]
    egfr["valueString"] = text
    return record(egfr, obs("17861-6", 20, 9.4, "mg/dL"), obs("62292-8", 20, 34, "ng/mL"), drafts=list(drafts))


@pytest.mark.parametrize("text", ["20", "20 mL/min/1.73m2", "<20"])
def test_an_egfr_of_20_as_text_is_read(text):
    from tests.test_rules_second_pass import ZOL, draft
    got = cards(_egfr_text(text, draft(ZOL)), "order-sign")
    assert got["C-SAFE-RENAL"]["indicator"] == "critical"
    assert "eGFR" in got["C-SAFE-RENAL"]["detail"] and "20" in got["C-SAFE-RENAL"]["detail"]


@pytest.mark.parametrize("text", ["5" + " " * 1500 + "!", "<" + "1" * 60_000 + "!", "1" * 30_000,
                                  "\u0665 ng/mL", "\uff15 ng/mL", "20" + " " * 70 + "ng/mL"])
def test_hostile_or_foreign_digit_text_is_no_reading(text):
    from cds_service.record import glucocorticoid_daily_mg
    from tests.test_rules_second_pass import obs
    vit_d = obs("62292-8", 20, 0)
    del vit_d["valueQuantity"]
    vit_d["valueString"] = text
    egfr = dict(vit_d, id="egfr-text", code=coding(t.LOINC, "98979-8"))
    steroid = {"resourceType": "MedicationRequest", "id": "gc", "status": "active", "intent": "order",
               "medicationCodeableConcept": {"text": "prednisone"}, "dosageInstruction": [{"text": text}]}
    rec = record(vit_d, egfr, steroid, t_score=False)
    assert rec.lab("vitamin_d") is None and rec.lab("egfr") is None
    assert glucocorticoid_daily_mg(steroid, steroid["medicationCodeableConcept"]) is None
