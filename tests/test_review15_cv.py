"""Review 15 (re-review of 79be3f5..97c694e): each fix with a chart that fails without it and a
quiet control. Charts are built with tests.test_rules_second_pass's helpers and judged by the
engine as the app runs it; dates count back from TODAY (2025-06-01)."""

from __future__ import annotations

import pytest

from tests.test_review8_clinical import _drug_orders
from tests.test_rules_second_pass import ROMO, TPTD, ago, cards, cond, draft, obs, record

# ---------------------------------------------------------------------------
# 1. An MI or stroke with no date at all (no onset[x], abatement or recordedDate) was never
# counted: no C-SAFE-ROMO-CV on a romosozumab order, and C-TX-ANABOLIC offered romosozumab in one
# click (charts 11, 11g, 11h, 11i). EVENITY boxed warning, SAFE-8: not within 12 months of an MI
# or stroke. It now reads as an MI of unknown date (critical, asks for the date; facts.cv_undated).
# ---------------------------------------------------------------------------

CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VHR = (obs("38267-1", 60, -3.5), cond("M80.08XA", 60))


def _undated(code, status=None, **fields):
    c = cond(code, 30, system="http://snomed.info/sct" if code.isdigit() else "http://hl7.org/fhir/sid/icd-10-cm")
    del c["onsetDateTime"]
    if status:
        c["clinicalStatus"] = {"coding": [{"system": CLINICAL, "code": status}]}
    return {**c, **fields}


def _romo_cv(*conditions):
    return cards(record(*conditions, drafts=[draft(ROMO)]), "order-sign").get("C-SAFE-ROMO-CV")


@pytest.mark.parametrize("code, kind", [("I21.4", "a myocardial infarction"), ("I63.9", "a stroke"),
                                        ("22298006", "a myocardial infarction")])
@pytest.mark.parametrize("status", [None, "active"])
def test_an_undated_mi_or_stroke_asks_for_its_date_before_romosozumab(code, kind, status):
    c = _undated(code, status)
    card = _romo_cv(c)
    assert card["indicator"] == "critical"
    assert card["summary"] == ("Romosozumab and a myocardial infarction or stroke of unknown date: confirm it was "
                               "over 12 months ago")
    assert f"Romosozumab is being ordered and {kind} is on record without its date" in card["detail"]
    assert f"({code}): no date on record (no onset, abatement or recorded date)" in card["detail"]
    assert any(a.get("type") == "delete" for s in card["suggestions"] for a in s["actions"])
    anabolic = cards(record(c, *VHR))["C-TX-ANABOLIC"]
    assert f"Romosozumab not suggested: {kind[2:]} ({code}) on record with no date" in anabolic["detail"]
    assert not any("romosozumab" in a["description"].lower() for a in _drug_orders(anabolic))


@pytest.mark.parametrize("status", ["resolved", "inactive", "remission"])
def test_an_undated_mi_over_by_its_status_is_as_before(status):
    """Control (our choice): a resolved, inactive or in-remission MI with no date says it is over,
    with nothing that places it within the year: quiet, romosozumab offered, as before."""
    c = _undated("I21.4", status)
    assert _romo_cv(c) is None
    anabolic = cards(record(c, *VHR))["C-TX-ANABOLIC"]
    assert any("romosozumab" in a["description"].lower() for a in _drug_orders(anabolic))


def test_an_entered_in_error_undated_mi_and_an_mi_two_years_ago_stay_quiet():
    error = _undated("I21.4", verificationStatus={"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "entered-in-error"}]})
    assert _romo_cv(error) is None
    assert _romo_cv(cond("I21.4", 730)) is None


def test_an_undated_mi_beside_the_same_mi_dated_two_years_ago_is_that_mi():
    """Control (review 12's rule, now for every undated event): the undated entry names the dated one."""
    assert _romo_cv(_undated("I21.4"), cond("I21.4", 730)) is None
    assert _romo_cv(_undated("I63.9"), cond("I63.9", 730)) is None


def test_an_undated_stroke_beside_a_romosozumab_course_asks_for_its_date():
    from tests.test_rules_second_pass import given
    course = (given(ROMO, 95), given(ROMO, 65), given(ROMO, 33))
    card = cards(record(_undated("I63.9"), *course))["C-SAFE-ROMO-CV"]
    assert card["indicator"] == "critical"
    assert "Romosozumab is active and a stroke is on record without its date" in card["detail"]


# ---------------------------------------------------------------------------
# 1b. An acute MI dated only by its recordedDate (100 days ago) began on or before that day: it
# read "in the past 12 months" (chart 11e); it is "possibly within" them, as an abatement is.
# ---------------------------------------------------------------------------

def test_an_mi_dated_by_its_recorded_date_alone_is_possibly_within_the_year():
    c = _undated("I21.4", recordedDate=ago(100))
    card = _romo_cv(c)
    assert card["summary"] == ("Romosozumab and a myocardial infarction or stroke possibly within the past 12 "
                               "months: do not give it")
    assert f"Myocardial infarction (I21.4), no onset on record: on or before {ago(100)} (recorded)" in card["detail"]
    anabolic = cards(record(c, *VHR))["C-TX-ANABOLIC"]
    assert "(may be within 12 months; boxed warning)" in anabolic["detail"]


def test_an_mi_with_its_onset_100_days_ago_is_in_the_past_12_months():
    """Control: an onset day decides; "in the past 12 months" as before."""
    card = _romo_cv(cond("I21.4", 100))
    assert card["summary"] == "Romosozumab and a myocardial infarction or stroke in the past 12 months: do not give it"
    assert f"Myocardial infarction (I21.4) on {ago(100)}" in card["detail"]


# ---------------------------------------------------------------------------
# 2. With a low calcium no denosumab dose is offered (Prolia label, PROLIA24: correct hypocalcemia
# before dosing), yet C-DMAB-OVERDUE said "Act now: give the overdue denosumab 60 mg dose now"
# (charts 08b, 08e), and C-DMAB-DUE beside romosozumab "by <date>; the dose alongside romosozumab
# is the other choice" (chart 08). 29b16b5's wording for C-DMAB-DUE now reaches these too.
# ---------------------------------------------------------------------------

def _dmab_chart(days, calcium=7.9, egfr=70, anabolic=None):
    from tests.test_rules_second_pass import DMAB, given, med
    extra = (med(anabolic, 60, rid="an"), given(anabolic, 30)) if anabolic else ()
    return cards(record(obs("17861-6", 10, calcium, "mg/dL"), obs("62292-8", 10, 34, "ng/mL"), obs("98979-8", 10, egfr),
                        med(DMAB, days, rid="dm1"), given(DMAB, days), *extra))


@pytest.mark.parametrize("anabolic", [None, TPTD, ROMO])
def test_an_overdue_denosumab_with_a_low_calcium_says_correct_it_first(anabolic):
    card = _dmab_chart(250, anabolic=anabolic)["C-DMAB-OVERDUE"]
    assert "**Calcium is low:** correct it first (Prolia label: correct hypocalcemia before dosing); no dose is " \
           "offered here until then." in card["detail"]
    assert "dose now" not in card["detail"] and "60 mg dose once the calcium is corrected" in card["detail"]
    assert not any("denosumab" in (a.get("description") or "").lower()
                   for s in card.get("suggestions", ()) for a in s["actions"])


def test_a_due_denosumab_beside_romosozumab_with_a_low_calcium_says_correct_it_first():
    card = _dmab_chart(190, egfr=22, anabolic=ROMO)["C-DMAB-DUE"]
    assert card["summary"] == ("Denosumab due (last dose 2024-11-23, correct the low calcium first): romosozumab "
                               "has not been shown to prevent the rebound")
    assert "the dose alongside romosozumab, once the calcium is corrected, is the other choice" in card["detail"]
    assert "**Calcium is low:** correct it first; no dose is offered until then." in card["detail"]


def test_an_overdue_or_due_denosumab_with_a_normal_calcium_reads_as_before():
    """Control: calcium 9.5: "give the overdue dose now", "by <date>", the dose offered."""
    card = _dmab_chart(250, calcium=9.5)["C-DMAB-OVERDUE"]
    assert "- give the overdue denosumab 60 mg dose now and continue every 6 months; or" in card["detail"]
    assert "Calcium is low" not in card["detail"]
    assert any("denosumab" in (a.get("description") or "").lower() for s in card["suggestions"] for a in s["actions"])
    due = _dmab_chart(190, calcium=9.5, anabolic=ROMO)["C-DMAB-DUE"]
    assert due["summary"] == ("Denosumab due (last dose 2024-11-23, by 2025-06-22): romosozumab has not been shown "
                              "to prevent the rebound")
    assert "the dose alongside romosozumab is the other choice" in due["detail"]


@pytest.mark.parametrize("calcium, waits", [(7.9, True), (9.5, False)])
def test_a_stopped_denosumab_beside_teriparatide_says_the_dose_waits_for_a_low_calcium(calcium, waits):
    """C-DMAB-STOP beside an anabolic (beside_anabolic): "continue denosumab alongside: the next
    dose on or after ..." gains "correct the low calcium first"; a normal calcium (control) not."""
    from tests.test_rules_second_pass import DMAB, given, med
    chart = record(obs("17861-6", 10, calcium, "mg/dL"), obs("62292-8", 10, 34, "ng/mL"), obs("98979-8", 10, 70),
                   med(DMAB, 150, status="stopped", rid="dm1"), given(DMAB, 150), med(TPTD, 60, rid="an"),
                   given(TPTD, 30))
    detail = cards(chart)["C-DMAB-STOP"]["detail"]
    assert "continue denosumab alongside: the next 60 mg dose on or after" in detail
    assert ("correct the low calcium first (no dose is offered until then)" in detail) is waits
