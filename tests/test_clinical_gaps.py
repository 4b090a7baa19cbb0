"""Known clinical gaps closed on the clinfix branch: each fix with a chart that fails without it
and a quiet control. Charts are built with tests.test_rules_second_pass's helpers and judged by
the engine as the app runs it (engine.evaluate, strict); dates count back from TODAY
(2025-06-01); record() gives a woman of 72 born 1953-01-01."""

from __future__ import annotations

import pytest

from tests.test_review8_clinical import _drug_orders
from tests.test_review11_clinical import _old_mi
from tests.test_rules_second_pass import ROMO, ago, cards, cond, draft, obs, record

# ---------------------------------------------------------------------------
# 1. An MI or stroke dated only by an onset age, age range or date string, or by its abatement,
# read as "date unknown" (an old-MI code: the critical mi-date-unknown variant) or by its
# recordedDate (a stroke recorded last month: a recent stroke). EVENITY label: do not start
# within 12 months of an MI or stroke. The latest day the record allows decides (facts.cv_latest,
# record.EventWindow): over 12 months ago, not recent; possibly within them, recent (cautious);
# nothing bounding it, unknown as before.
# ---------------------------------------------------------------------------

AGE = "http://unitsofmeasure.org"


def _age(years):
    return {"value": years, "unit": "years", "system": AGE, "code": "a"}


def _cv(code="I25.2", **bounds):
    """An MI (old-MI code by default) recorded 30 days ago, with no onsetDateTime."""
    c = _old_mi(code) if code != "I63.9" else {**_old_mi("I25.2"), "code": cond("I63.9")["code"], "id": "stroke"}
    c.update(bounds)
    return c


def _romo_cv(condition):
    return cards(record(condition, drafts=[draft(ROMO)]), "order-sign").get("C-SAFE-ROMO-CV")


OLD = [  # each puts the event more than 12 months before TODAY
    {"onsetAge": _age(60)},                                          # 2013
    {"onsetRange": {"low": _age(55), "high": _age(60)}},             # 2008-2013
    {"onsetString": "2019"},
    {"onsetString": "2023-04-17"},
    {"abatementDateTime": "2020-01-01"},
    {"abatementAge": _age(65)},
    {"abatementString": "2021-03"},
]


@pytest.mark.parametrize("code", ["I25.2", "I21.4", "I63.9"])
@pytest.mark.parametrize("bounds", OLD)
def test_an_mi_or_stroke_bounded_more_than_a_year_ago_is_not_recent(code, bounds):
    assert _romo_cv(_cv(code, **bounds)) is None


def test_an_old_mi_bounded_more_than_a_year_ago_leaves_romosozumab_offered():
    vhr = (obs("38267-1", 60, -3.5), cond("M80.08XA", 60))
    anabolic = cards(record(_cv(onsetAge=_age(60)), *vhr))["C-TX-ANABOLIC"]
    assert "Romosozumab not suggested" not in anabolic["detail"]
    assert any("romosozumab" in a["description"].lower() for a in _drug_orders(anabolic))


# when: the bounds wholly inside the 12 months, or reaching before them ("possibly within": review 14)
@pytest.mark.parametrize("bounds, fact, when", [
    ({"onsetAge": _age(72)}, "Myocardial infarction (I25.2), onset at age 72: between 2025-01-01 and " + ago(30), "in"),
    ({"onsetString": "2024-09"}, "Myocardial infarction (I25.2), onset 2024-09: between 2024-09-01 and 2024-09-30",
     "in"),
    ({"onsetRange": {"low": _age(70), "high": _age(71)}},
     "Myocardial infarction (I25.2), onset at age 70 to 71: between 2023-01-01 and 2024-12-31", "possibly within"),
    ({"abatementDateTime": "2025-03-01"}, "Myocardial infarction (I25.2), abated 2025-03-01: on or before 2025-03-01",
     "possibly within"),
])
def test_an_mi_possibly_within_the_year_is_a_recent_mi_with_its_bounds(bounds, fact, when):
    card = _romo_cv(_cv(**bounds))
    assert card["indicator"] == "critical"
    assert card["summary"] == f"Romosozumab and a myocardial infarction or stroke {when} the past 12 months: do not give it"
    assert fact in card["detail"]
    vhr = (obs("38267-1", 60, -3.5), cond("M80.08XA", 60))
    anabolic = cards(record(_cv(**bounds), *vhr))["C-TX-ANABOLIC"]
    assert f"Romosozumab not suggested: {fact} (may be within 12 months; boxed warning)" in anabolic["detail"]


def test_a_partial_onset_date_counts_by_its_last_day():
    """I21.4 with onsetDateTime "2024": read as 1 January 2024 it was 17 months ago; it may have
    been in December 2024, within the year."""
    c = {**cond("I21.4"), "onsetDateTime": "2024"}
    assert "onset 2024: between 2024-01-01 and 2024-12-31" in _romo_cv(c)["detail"]
    assert _romo_cv({**c, "onsetDateTime": "2023"}) is None


@pytest.mark.parametrize("bounds", [{}, {"onsetString": "after his bypass surgery"}, {"onsetString": "2019 or so"},
                                    {"abatementString": "long ago"}, {"onsetAge": {"value": 60}},
                                    {"onsetAge": {"value": 60, "code": "a", "comparator": ">"}},
                                    {"abatementDateTime": "2030-01-01"}, {"abatementDateTime": "9999-12"},
                                    {"onsetAge": {"value": 1e308, "code": "a"}}, {"onsetRange": "junk"},
                                    {"abatementAge": {"value": "60", "code": "a"}}, {"onsetAge": _age(90)}])
def test_an_old_mi_with_nothing_that_bounds_it_keeps_the_unknown_date_card(bounds):
    """Control: free text, an age with no unit or only a lower bound, a future abatement or onset
    age, malformed values: no bound, so the MI's date is unknown as before (critical, asks for the
    date), and nothing fails."""
    card = _romo_cv(_cv(**bounds))
    assert card["indicator"] == "critical"
    assert "unknown date: confirm it was over 12 months ago" in card["summary"]


def test_a_stroke_with_its_onset_day_is_read_as_before():
    """Control: an onsetDateTime day decides alone (an abatement adds nothing)."""
    card = _romo_cv({**cond("I63.9", 100), "abatementDateTime": "2019-01-01"})
    assert f"Stroke (I63.9) on {ago(100)}" in card["detail"]
    assert _romo_cv(cond("I63.9", 400)) is None


@pytest.mark.parametrize("bounds, words", [
    ({"onsetString": "2025-04"}, "occurred during the romosozumab course"),  # all after the first dose
    ({"onsetAge": _age(72)}, "started within 12 months after a myocardial infarction"),  # may be before it
])
def test_an_mi_bounded_within_a_romosozumab_course_is_during_it_only_if_wholly_after_its_start(bounds, words):
    from tests.test_rules_second_pass import given
    course = (given(ROMO, 95), given(ROMO, 65), given(ROMO, 33))  # first dose 2025-02-26
    card = cards(record(_cv(**bounds), *course))["C-SAFE-ROMO-CV"]
    assert words in card["detail"] and "unknown date" not in card["summary"]


# ---------------------------------------------------------------------------
# 2. A high calcium with a low vitamin D: C-VITD-LOW says to find the calcium's cause before
# repleting (facts.vitamin_d_repletion_hold; cholecalciferol / ergocalciferol labels:
# contraindicated in hypercalcemia), while C-TX-BP said "replete it when starting". The drug-start
# cards now say what the vitamin D card says (and, with dialysis or CKD 4-5, "with nephrology").
# ---------------------------------------------------------------------------

def _vit_d_chart(*extra, calcium=9.5, egfr=70):
    return record(obs("62292-8", 20, 15, "ng/mL"), obs("17861-6", 20, calcium, "mg/dL"), obs("98979-8", 20, egfr),
                  *extra)


def test_a_high_calcium_puts_its_cause_before_vitamin_d_repletion_on_the_bisphosphonate_card():
    got = cards(_vit_d_chart(calcium=11.2))
    assert "find the cause before repleting" in got["C-VITD-LOW"]["summary"]
    detail = got["C-TX-BP"]["detail"]
    assert "**Vitamin D is deficient:** find the high calcium's cause (PTH) before repleting it" in detail
    assert "replete it when starting" not in detail


def test_severely_reduced_kidney_function_repletes_vitamin_d_with_nephrology_on_the_denosumab_card():
    got = cards(_vit_d_chart(egfr=25))
    assert "replete with nephrology" in got["C-VITD-LOW"]["summary"]
    assert "**Vitamin D is deficient:** replete it with nephrology" in got["C-TX-DMAB-ALT"]["detail"]


def test_a_normal_calcium_still_repletes_vitamin_d_when_starting():
    """Control: the same chart with a normal calcium keeps the words it had."""
    detail = cards(_vit_d_chart())["C-TX-BP"]["detail"]
    assert "**Vitamin D is deficient:** replete it when starting (the vitamin D card)." in detail


# ---------------------------------------------------------------------------
# 3. C-TX-DMAB-ALT with a 25-OH vitamin D below 20 ng/mL offered denosumab (and zoledronic acid)
# in one click with no word on the order. Brief TX-8 / SAFE-5 (AACE20; Prolia and Reclast labels:
# hypocalcemia risk): corrected before the first dose. Still one click (SAFE-5 is a warning on the
# order, not a veto); the label and the order's dosage text say the first dose waits for repletion.
# ---------------------------------------------------------------------------

def _dmab_alt(vitamin_d):
    esophagus = cond("K22.2")  # an oral-route problem only: denosumab, zoledronic acid the alternative
    return cards(record(esophagus, obs("62292-8", 20, vitamin_d, "ng/mL"), obs("17861-6", 20, 9.5, "mg/dL"),
                        obs("98979-8", 20, 70)))["C-TX-DMAB-ALT"]


def test_denosumab_offered_with_a_low_vitamin_d_says_the_first_dose_waits_for_repletion():
    card = _dmab_alt(15)
    labels = [s["label"] for s in card["suggestions"]]
    assert labels == ["Order denosumab 60 mg SC every 6 months and a calcium check; first dose after vitamin D "
                      "repletion",
                      "Order zoledronic acid 5 mg IV yearly and a calcium check (alternative; first dose after "
                      "vitamin D repletion)"]
    for s in card["suggestions"]:
        text = s["actions"][0]["resource"]["dosageInstruction"][0]["text"]
        assert text.endswith("First dose only once 25-OH vitamin D is repleted (it was below 20 ng/mL): risk of "
                             "hypocalcemia.")


def test_denosumab_offered_with_vitamin_d_at_20_is_as_before():
    """Control: 20 ng/mL is not deficient (TX-8 < 20): the orders read as they did."""
    card = _dmab_alt(20)
    assert [s["label"] for s in card["suggestions"]] == [
        "Order denosumab 60 mg SC every 6 months and a calcium check",
        "Order zoledronic acid 5 mg IV yearly and a calcium check (alternative)"]
    assert card["suggestions"][0]["actions"][0]["resource"]["dosageInstruction"][0]["text"] == (
        "60 mg subcutaneously once every 6 months (upper arm, thigh or abdomen), given by a clinician.")


# ---------------------------------------------------------------------------
# 4. A romosozumab course recorded only as completed single-dose MedicationRequests (EHRs close
# each clinic order as completed, one dose each: second-pass 3) had no grace: it stopped being
# current 30 days after the last order, while a course of MedicationAdministrations stays current
# until the next monthly dose is 28 days overdue (Agent.course_doses / overdue_grace_days; Evenity:
# 12 monthly doses). C-SAFE-ROMO-CV went quiet and C-TX-BP offered alendronate mid-course.
# ---------------------------------------------------------------------------

START_CARDS = {"C-TX-BP", "C-TX-ANABOLIC", "C-TX-DMAB-ALT"}


def _romo_orders(*days):
    from tests.test_rules_second_pass import med
    return tuple(med(ROMO, d, "completed") for d in days)


def test_an_mi_during_a_course_of_completed_orders_fires_when_the_next_dose_is_due():
    got = cards(record(cond("I21.4", 50), *_romo_orders(100, 70, 40)))
    assert "occurred during the romosozumab course" in got["C-SAFE-ROMO-CV"]["detail"]
    assert not START_CARDS & set(got)


def test_a_course_of_completed_orders_mid_way_is_no_time_to_start_alendronate():
    assert not START_CARDS & set(cards(record(*_romo_orders(100, 70, 40))))


def test_a_course_of_completed_orders_lapsed_beyond_the_grace_or_finished_is_not_current():
    """Controls: the last order 60 days ago (30 + 28 days passed), or 12 doses given: no longer
    current, as with administrations (C-SAFE-ROMO-CV on patient-view needs an active course)."""
    lapsed = cards(record(cond("I21.4", 50), *_romo_orders(120, 90, 60)))
    assert "C-SAFE-ROMO-CV" not in lapsed
    done = cards(record(cond("I21.4", 50), *_romo_orders(*(40 + 30 * i for i in range(12)))))
    assert "C-SAFE-ROMO-CV" not in done


# ---------------------------------------------------------------------------
# 5. C-SECONDARY-EVAL said the high-calcium / PTH sentence twice, in the men's branch and the
# general one, in different words ("needs its cause found (intact PTH first)" / "find its cause
# before or alongside any bone treatment ..."). One wording (treatment._high_calcium_text; brief
# SEC-1, Endocrine Society 2012, PTH a MON-7 baseline lab).
# ---------------------------------------------------------------------------

def _high_ca(*extra, **kw):
    from tests.test_review12_clinical import _ca_chart
    return cards(_ca_chart(*extra, vitamin_d=True, **kw))["C-SECONDARY-EVAL"]["detail"]


@pytest.mark.parametrize("pth", [None, 40, 120])
def test_a_man_and_a_woman_hear_the_same_high_calcium_sentence(pth):
    from tests.test_review12_clinical import _pth
    extra = (_pth(40, value=pth),) if pth else ()
    man, woman = _high_ca(*extra, sex="male", age=70), _high_ca(*extra)
    calcium = "A **high calcium** (Serum calcium 11.2 mg/dL on " + ago(20) + " (above 10.5 mg/dL))"
    assert man.startswith("A man with osteoporosis: secondary causes are common in men")
    sentence = man.split("(Endocrine Society 2012). ", 1)[1].split("\n", 1)[0]
    assert sentence.startswith(calcium)
    # The woman's names the bone finding beside it; the rest is word for word the man's.
    woman_sentence = woman.split("\n", 1)[0]
    named = " and osteoporosis points" if pth == 120 else " with osteoporosis:"
    assert named in woman_sentence
    assert sentence == woman_sentence.replace(named, named.replace(" and osteoporosis", "").replace(
        " with osteoporosis", ""))


def test_a_man_with_a_normal_calcium_hears_no_calcium_sentence():
    """Control: no high calcium, the men's reason alone."""
    from tests.test_rules_second_pass import obs
    detail = cards(record(obs("17861-6", 20, 9.5, "mg/dL"), obs("38267-1", 60, -2.8), obs("98979-8", 20, 70),
                          sex="male", age=70, t_score=False))["C-SECONDARY-EVAL"]["detail"]
    assert "high calcium" not in detail


# ---------------------------------------------------------------------------
# 6. C-SUPP-CAVD's calcium part read any coded hypercalcemia, while facts.vitamin_d_repletion_hold
# (C-VITD-LOW, C-GIOP, the vitamin D part) reads it outdated by a newer measured calcium (review
# 10: E83.52 coded 700 days ago outweighed a normal calcium of 20 days ago). One reading:
# facts.coded_hypercalcemia (brief TX-7: no calcium with hypercalcemia). SAFE-11
# (C-SAFE-ANABOLIC-CONTRA) keeps the raw code on purpose (cautious before a PTH analog).
# ---------------------------------------------------------------------------

def _supp(hypercalcemia_days):
    got = cards(record(cond("E83.52", hypercalcemia_days), obs("17861-6", 20, 9.5, "mg/dL"), obs("98979-8", 20, 70)))
    return got.get("C-SUPP-CAVD")


def test_a_hypercalcemia_code_outdated_by_a_newer_normal_calcium_no_longer_holds_calcium():
    card = _supp(700)
    labels = [s["label"].lower() for s in card["suggestions"]]
    assert any("calcium" in label for label in labels)
    assert not any("calcium supplement not suggested" in f for f in card["detail"].splitlines())


def test_a_hypercalcemia_code_newer_than_the_calcium_still_holds_both_parts():
    """Control: coded after the last calcium, the hypercalcemia stands: no calcium, and no vitamin D
    either (vitamin_d_repletion_hold), so no card, as before."""
    assert _supp(10) is None


# Through the app (order-sign on the c-safe-romo-cv-mi-11-months chart, its MI given no onset day).

def _http_cards(client, bounds):
    import copy
    from tests.test_review3_edges import bundle, cards as http_cards
    from tests.test_review3_edges import ago as today_ago
    b = copy.deepcopy(bundle("c-safe-romo-cv-mi-11-months"))
    for e in b["entry"]:
        r = e["resource"]
        if r["resourceType"] == "Condition" and r["code"]["coding"][0]["code"] == "I21.9":
            r.pop("onsetDateTime")
            r.update({"recordedDate": today_ago(30), **bounds})
    return http_cards(client, b, "order-sign")


def _http_age(years_before_now):
    import datetime as dt
    from tests.test_review3_edges import bundle
    birth = dt.date.fromisoformat(next(e["resource"]["birthDate"] for e in bundle("c-safe-romo-cv-mi-11-months")["entry"]
                                       if e["resource"]["resourceType"] == "Patient"))
    today = dt.date.today()
    age = today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))
    return _age(age - years_before_now)


def test_through_the_app_an_mi_at_an_age_years_ago_is_not_recent_and_bad_bounds_do_not_fail(client):
    assert "C-SAFE-ROMO-CV" not in _http_cards(client, {"onsetAge": _http_age(5)})
    now = _http_cards(client, {"onsetAge": _http_age(0)})["C-SAFE-ROMO-CV"]
    assert now["indicator"] == "critical" and ", onset at age " in now["detail"]
    # Malformed or impossible bounds: ignored, the recordedDate (30 days ago) dates it, as before.
    odd = _http_cards(client, {"onsetAge": {"value": "x"}, "abatementDateTime": "9999-12", "onsetRange": [],
                               "abatementString": 7, "onsetString": "2019-13-45"})
    assert odd["C-SAFE-ROMO-CV"]["indicator"] == "critical"
