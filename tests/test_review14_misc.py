"""The fourteenth clinical re-review's smaller fixes (charts rebuilt with
tests.test_rules_second_pass's helpers and judged by the engine as the app runs it, strict;
dates count back from TODAY): each with a chart that shows the fix and a quiet control."""

from __future__ import annotations

import datetime as dt

import pytest

from cds_service.fhir import terminology as t
from cds_service.record import glucocorticoid_daily_mg
from tests.conftest import TODAY, coding
from tests.test_rules_second_pass import ABL, DMAB, ROMO, TPTD, cond, draft, given, med, obs, record
from tests.test_rules_second_pass import cards as cards_of

# ---------------------------------------------------------------------------
# 1. A 25-OH vitamin D reported only as a bound ("<20 ng/mL", record.Lab.comparator) is below
# that bound (brief TX-8, SAFE-5; AACE20: deficient below 20, target at least 30 ng/mL). Charts
# 13_vitd_text_0/1: "<20" was read as 20 (insufficient) and "<30" as 30 (no card). A ">X" bound
# stays read as X.
# ---------------------------------------------------------------------------


def _vitd(text=None, quantity=None, drafts=()):
    v = obs("62292-8", 30, 0, "ng/mL", oid="vitd")
    if text is None:
        v["valueQuantity"] = quantity
    else:
        del v["valueQuantity"]
        v["valueString"] = text
    return record(v, *_LABS, drafts=list(drafts))


_LABS = (obs("98979-8", 30, 75), obs("17861-6", 30, 9.4, "mg/dL"))


@pytest.mark.parametrize("chart", [
    {"text": "<20 ng/mL"},
    {"text": "<12 ng/mL"},
    {"quantity": {"value": 20, "comparator": "<", "unit": "ng/mL"}},
    {"text": "<50 nmol/L"},  # the same cut-off in nmol/L (20.03 ng/mL)
    {"text": ">15 ng/mL"},  # quiet control: a lower bound reads as its value, as before
    {"text": "19 ng/mL"},  # quiet control: a value
])
def test_vitamin_d_below_20_as_a_bound_is_deficient(chart):
    card = cards_of(_vitd(**chart))["C-VITD-LOW"]
    assert card["indicator"] == "warning"
    assert card["summary"].startswith("Vitamin D deficient: replete")
    assert [s["label"] for s in card["suggestions"]] == ["Order vitamin D3 50,000 IU weekly for 8 weeks, then 1000 IU daily"]


@pytest.mark.parametrize("chart", [{"text": "<30 ng/mL"}, {"text": "<=20 ng/mL"}, {"text": "<25 ng/mL"}])
def test_vitamin_d_below_30_as_a_bound_is_at_least_insufficient(chart):
    card = cards_of(_vitd(**chart))["C-VITD-LOW"]
    assert card["indicator"] == "info" and card["summary"].startswith("Vitamin D insufficient")
    bound = chart["text"].split()[0].lstrip("<=")
    assert f"is below {bound} ng/mL (reported as {chart['text'].split()[0]}, so possibly below 20)" in card["detail"]
    assert "between 20 and 30" not in card["detail"]


def test_vitamin_d_value_between_20_and_30_keeps_its_words():
    """Quiet control: a measured 25 ng/mL is insufficient, between 20 and 30."""
    card = cards_of(_vitd("25 ng/mL"))["C-VITD-LOW"]
    assert card["indicator"] == "info" and "is between 20 and 30 ng/mL" in card["detail"]


@pytest.mark.parametrize("text", ["<35 ng/mL", ">150 ng/mL", "30 ng/mL"])
def test_vitamin_d_not_known_below_30_draws_no_card(text):
    """Quiet control: "<35" may be at target; ">150" and 30 are."""
    assert "C-VITD-LOW" not in cards_of(_vitd(text))


@pytest.mark.parametrize("text, fires", [("<20 ng/mL", True), ("20 ng/mL", False), ("<30 ng/mL", False)])
def test_denosumab_order_with_vitamin_d_below_20_as_a_bound(text, fires):
    """SAFE-5 on the order (PROLIA24: correct vitamin D deficiency first)."""
    got = cards_of(_vitd(text, drafts=[draft(DMAB)]), "order-sign")
    assert ("C-VITD-LOW" in got) is fires
    if fires:
        # The bound is below the cut-off by itself (review 17: no "<20 ng/mL, below 20 ng/mL").
        assert "This patient's 25-OH vitamin D is <20 ng/mL, while denosumab is being ordered" in got["C-VITD-LOW"]["detail"]


# ---------------------------------------------------------------------------
# 2. ICD-10-CM (and the other listed systems) under its OID spelt upper-case or bare
# (valuesets.SYSTEM_ALIASES; HL7 NamingSystem OIDs): chart 15b, dialysis coded Z99.2 under
# "URN:OID:2.16.840.1.113883.6.90" was missed beside a denosumab dose due (PROLIA24 boxed warning:
# C-SAFE-DMAB-CKD). Read on a miss only: the usual URIs never reach the other-spelling reader.
# ---------------------------------------------------------------------------

_DMAB_DUE = (given(DMAB, 190), med(DMAB, 190))


@pytest.mark.parametrize("system", ["urn:oid:2.16.840.1.113883.6.90", "URN:OID:2.16.840.1.113883.6.90",
                                    "2.16.840.1.113883.6.90", " Urn:Oid:2.16.840.1.113883.6.90 ", t.ICD10CM])
def test_dialysis_under_the_icd_oid_in_any_spelling(system):
    got = cards_of(record(cond("Z99.2", 100, system), *_LABS, *_DMAB_DUE))
    assert got["C-SAFE-DMAB-CKD"]["indicator"] == "critical" and "dialysis" in got["C-SAFE-DMAB-CKD"]["summary"]


@pytest.mark.parametrize("system", ["urn:oid:2.16.840.1.113883.6.3", "2.16.840.1.113883.6.3", "urn:oid:"])
def test_another_oid_is_not_read_as_icd_10_cm(system):
    """Quiet control: ICD-10 (WHO, 6.3) and an empty OID stay unknown: no dialysis."""
    assert "C-SAFE-DMAB-CKD" not in cards_of(record(cond("Z99.2", 100, system), *_LABS, *_DMAB_DUE))


def test_other_spellings_are_read_only_on_a_miss(monkeypatch):
    from cds_service.fhir import valuesets

    assert t.codings({"coding": [{"system": "2.16.840.1.113883.6.96", "code": "1"}]}) == [(t.SNOMED, "1")]

    def never(system):
        raise AssertionError(f"{system} read as another spelling")

    monkeypatch.setattr(valuesets, "other_spelling", never)
    assert t.codings({"coding": [{"system": t.ICD10CM, "code": "Z99.2"},
                                 {"system": "urn:oid:2.16.840.1.113883.6.90", "code": "N18.6"}]}) == [
        (t.ICD10CM, "Z99.2"), (t.ICD10CM, "N18.6")]
    assert valuesets.canonical_system(t.LOINC) == t.LOINC


# ---------------------------------------------------------------------------
# 3. A glucocorticoid dose written as a tablet count ("2 tablets daily") with the strength only in
# the drug's name ("prednisone 5 MG Oral Tablet"): 10 mg/day (ACR22: >= 7.5 mg/day for 3 months or
# more is high risk; C-GIOP). Chart 34_giop_tabs_text read it as an unreadable dose. mg written in
# the text wins; a fraction, a range or a drug with no strength stays unread (unknown, not low).
# ---------------------------------------------------------------------------

_STRENGTH = {"text": "prednisone 5 MG Oral Tablet"}


def _steroid(text, concept=_STRENGTH):
    return record(med(concept, 180, rid="gc", dosageInstruction=[{"text": text}]),
                  obs("62292-8", 20, 35, "ng/mL"), *_LABS, t_score=False, age=60)


@pytest.mark.parametrize("text, expected", [
    ("2 tablets daily", 10.0), ("Take two tablets by mouth every morning", 10.0), ("1 tab bid", 10.0),
    ("2 tablets (15 mg) daily", 15.0),  # the text's mg wins
    ("1/2 tablet daily", None), ("2-3 tablets daily", None), ("as directed", None),
    ("9" * 30_000 + " tablets daily", None),  # implausible (and read in one pass: possessive)
])
def test_tablet_count_in_the_text_times_the_strength(text, expected):
    assert glucocorticoid_daily_mg({"dosageInstruction": [{"text": text}]}, _STRENGTH) == expected


def test_giop_reads_tablets_in_the_text_as_a_dose():
    card = cards_of(_steroid("2 tablets daily"))["C-GIOP"]
    assert card["indicator"] == "warning" and "glucocorticoid 10 mg/day for 3+ months" in card["summary"]


def test_giop_tablets_with_no_strength_stay_unread():
    """Quiet control: a drug with no strength in its name: the dose is not readable, as before."""
    card = cards_of(_steroid("2 tablets daily", {"text": "prednisone"}))["C-GIOP"]
    assert card["indicator"] == "info" and "a dose not readable from the order" in card["summary"]


# ---------------------------------------------------------------------------
# 4. A romosozumab course recorded as completed single-dose orders (second-pass 3: each is a dose
# given on its date), 5 of 12 given and lapsed 75 days (chart 07c): the fact read "started
# <date>, about 0 months" and the course "over". It is an interrupted course: "stopped after 5 of
# 12 doses" (EVENITY: 12 monthly doses), still followed by an antiresorptive (SAFE-12; ACP23
# Rec 3). The same reading counts twelve such orders for C-SAFE-ROMO-LIMIT (SAFE-9, EVENITY).
# ---------------------------------------------------------------------------

_ROMO_LABS = (obs("17861-6", 10, 9.2, "mg/dL"), obs("62292-8", 10, 32, "ng/mL"), obs("98979-8", 10, 70),
              obs("38267-1", 400, -3.4, oid="dxa"))


def _romo_orders(last, n):
    return tuple(med(ROMO, last + 30 * k, "completed", rid=f"r{k}") for k in range(n))


def _romo_chart(*course, **kw):
    return record(*_ROMO_LABS, *course, t_score=False, age=69, **kw)


def test_an_interrupted_romosozumab_course_in_completed_orders_is_stopped_after_n_doses():
    card = cards_of(_romo_chart(*_romo_orders(75, 5)))["C-TX-BP"]
    first, last = (TODAY - dt.timedelta(days=75 + 120)), (TODAY - dt.timedelta(days=75))
    assert "romosozumab stopped early, follow-on due" in card["summary"]
    assert (f"- Romosozumab stopped after 5 of 12 monthly doses (started {first}, last dose on {last}, "
            "about 4 months)") in card["detail"]
    assert f"the anabolic course stopped after 5 of 12 romosozumab doses (last on {last})" in card["detail"]
    assert "about 0 months" not in card["detail"]


def test_the_follow_on_card_names_an_interrupted_course():
    card = cards_of(_romo_chart(*_romo_orders(120, 5)))["C-ANABOLIC-FOLLOW-ON"]
    last = TODAY - dt.timedelta(days=120)
    assert card["summary"].startswith(f"Anabolic course stopped after 5 of 12 romosozumab doses (last on {last}) "
                                      "with no antiresorptive since")


def test_twelve_completed_romosozumab_orders_are_the_course_limit():
    got = cards_of(_romo_chart(*_romo_orders(120, 12), drafts=[draft(ROMO)]), "order-sign")
    assert "12 monthly doses ordered and completed" in got["C-SAFE-ROMO-LIMIT"]["detail"]


def test_a_complete_course_and_one_under_way_keep_their_words():
    """Quiet controls: 12 doses given (complete, review 13); 5 orders, the last 20 days ago (under
    way: no follow-on); 11 orders with a 12th drafted (not past the limit)."""
    done = cards_of(_romo_chart(*(given(ROMO, 120 + 30 * k) for k in range(12))))["C-ANABOLIC-FOLLOW-ON"]
    assert done["summary"].startswith("Anabolic course complete (12 romosozumab doses, last dose on")
    under_way = cards_of(_romo_chart(*_romo_orders(20, 5)))
    assert not {"C-TX-BP", "C-ANABOLIC-FOLLOW-ON"} & set(under_way)
    assert "C-SAFE-ROMO-LIMIT" not in cards_of(_romo_chart(*_romo_orders(35, 11), drafts=[draft(ROMO)]), "order-sign")


# ---------------------------------------------------------------------------
# 5. C-SAFE-ROMO-CV (EVENITY boxed warning: not within a year of an MI or stroke; SAFE-8,
# second-pass 2) for an MI whose record bounds its date only partly inside the 12 months (an
# onset age, range or period, record.EventWindow): "possibly within the past 12 months", not
# "in the past 12 months". Still critical, as before.
# ---------------------------------------------------------------------------

def _mi(**onset):
    return {"resourceType": "Condition", "id": "mi", "code": coding(t.ICD10CM, "I21.4"), **onset}


_AGE = {"unit": "a", "system": "http://unitsofmeasure.org", "code": "a"}


@pytest.mark.parametrize("onset", [
    {"onsetAge": {"value": 71, **_AGE}},  # age 72 today: 2024-01-01 to 2024-12-31
    {"onsetPeriod": {"start": str(TODAY - dt.timedelta(days=900)), "end": str(TODAY - dt.timedelta(days=300))}},
])
def test_romosozumab_order_after_an_mi_possibly_within_the_year(onset):
    card = cards_of(record(*_ROMO_LABS, _mi(**onset), drafts=[draft(ROMO)], t_score=False), "order-sign")["C-SAFE-ROMO-CV"]
    assert card["indicator"] == "critical"
    assert card["summary"] == ("Romosozumab and a myocardial infarction or stroke possibly within the past 12 months: "
                               "do not give it")
    assert "after a myocardial infarction or stroke possibly within the past 12 months" in card["detail"]
    assert "recent" not in card["detail"].split("\n")[0]


@pytest.mark.parametrize("onset", [{"onsetAge": {"value": 72, **_AGE}},  # wholly within the year
                                   {"onsetDateTime": str(TODAY - dt.timedelta(days=100))}])
def test_romosozumab_order_after_an_mi_within_the_year_keeps_its_words(onset):
    """Quiet control: an MI dated, or bounded wholly inside the 12 months."""
    card = cards_of(record(*_ROMO_LABS, _mi(**onset), drafts=[draft(ROMO)], t_score=False), "order-sign")["C-SAFE-ROMO-CV"]
    assert card["summary"] == "Romosozumab and a myocardial infarction or stroke in the past 12 months: do not give it"
    assert "after a recent myocardial infarction or stroke: do not start it." in card["detail"]


def test_romosozumab_course_after_an_mi_possibly_within_the_year():
    course = tuple(given(ROMO, 30 + 30 * k) for k in range(5))  # started 150 days ago, under way
    card = cards_of(record(*_ROMO_LABS, *course, _mi(onsetAge={"value": 71, **_AGE}), t_score=False))["C-SAFE-ROMO-CV"]
    assert "possibly within the past 12 months" in card["summary"]
    assert card["detail"].startswith("Romosozumab may have been started within 12 months after a myocardial infarction")
    dated = cards_of(record(*_ROMO_LABS, *course, _mi(onsetDateTime=str(TODAY - dt.timedelta(days=200))),
                            t_score=False))["C-SAFE-ROMO-CV"]  # quiet control: a dated MI before the course
    assert "in the past 12 months" in dated["summary"] and dated["detail"].startswith("Romosozumab was started within")


# ---------------------------------------------------------------------------
# 6. The denosumab cards beside romosozumab or abaloparatide (follow_up.beside_anabolic, variant
# anabolic-unstudied; chart 10_dmab_overdue_plus_romo): the DATA-Switch evidence (Leder, Lancet
# 2015; AACE20, ES20 against the switch) is for teriparatide, and denosumab alongside either agent
# has not been studied, so the bone specialist referral leads as the recommended suggestion and
# the dose follows (brief SAFE-16: an anabolic with an antiresorptive is a specialist's
# combination). Teriparatide keeps its variant: the dose first (review 13).
# ---------------------------------------------------------------------------

_REFERRAL = "Plan the sequence with a bone specialist (endocrinology)"
_DMAB_LABS = (obs("98979-8", 20, 70), obs("17861-6", 20, 9.4, "mg/dL"), obs("62292-8", 20, 34, "ng/mL"))


def _overdue(*extra):
    stopped = med(DMAB, 900, "stopped", rid="dmab-order", statusReason={"text": "switched"})
    return record(*(given(DMAB, 213 + 182 * k) for k in range(4)), stopped, *_DMAB_LABS, *extra, age=69)


def _stopped(*extra):
    stopped = med(DMAB, 400, "stopped", rid="dmab-order", statusReason={"text": "switched"})
    return record(given(DMAB, 150), given(DMAB, 332), stopped, *_DMAB_LABS, *extra)


def _due(*extra):
    return record(given(DMAB, 190), given(DMAB, 372), med(DMAB, 372, rid="dmab-order"), *_DMAB_LABS, *extra)


_CHARTS = [(_overdue, "C-DMAB-OVERDUE", "Give the overdue denosumab 60 mg dose now"),
           (_stopped, "C-DMAB-STOP", f"Order the next denosumab 60 mg dose for {TODAY + dt.timedelta(days=33)}"),
           (_due, "C-DMAB-DUE", "Order the next denosumab 60 mg dose")]


def _labels(card):
    return [(s["label"], s["isRecommended"]) for s in card["suggestions"]]


@pytest.mark.parametrize("chart, card_id, dose", _CHARTS)
@pytest.mark.parametrize("concept, name", [(ROMO, "romosozumab"), (ABL, "abaloparatide")])
def test_beside_romosozumab_or_abaloparatide_the_specialist_leads(chart, card_id, dose, concept, name):
    card = cards_of(chart(med(concept, 30, rid="anabolic")))[card_id]
    assert _labels(card) == [(_REFERRAL, True), (dose, False)]
    detail = " ".join(card["detail"].split())
    assert "The evidence on switching is for teriparatide: in DATA-Switch" in detail
    assert f"Denosumab given alongside {name} has not been studied" in detail
    assert "advise against switching from denosumab to teriparatide" not in detail
    assert card["summary"].endswith(f"{name} has not been shown to prevent the rebound")
    dosed = [a["resource"] for s in card["suggestions"][1:] for a in s["actions"]]
    assert dosed[0]["medicationCodeableConcept"]["coding"][0]["code"] == "993452"


@pytest.mark.parametrize("chart, card_id, dose", _CHARTS)
def test_beside_teriparatide_the_dose_stays_first(chart, card_id, dose):
    """Quiet control: DATA-Switch's own agent keeps the review-13 variant and order."""
    card = cards_of(chart(med(TPTD, 30, rid="anabolic")))[card_id]
    assert [label for label, _ in _labels(card)] == [dose, _REFERRAL]
    detail = " ".join(card["detail"].split())
    assert "advise against switching from denosumab to teriparatide" in detail
    assert "not been studied" not in detail
