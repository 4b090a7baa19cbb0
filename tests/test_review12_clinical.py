"""The twelfth round of clinical fixes: each with a chart that makes the fixed rule fire and a
quiet control. Charts are built with tests.test_rules_second_pass's helpers and judged by the
engine as the app runs it (engine.evaluate, strict); dates count back from TODAY."""

from __future__ import annotations

import pytest

from tests.test_review10_clinical import _alendronate, _giop
from tests.test_rules_second_pass import DMAB, ROMO, given, med

# ---------------------------------------------------------------------------
# 1. C-GIOP offered alendronate beside C-DMAB-STOP (denosumab stopped) and C-ANABOLIC-FOLLOW-ON
# (an anabolic course over): those cards own the next drug (brief SAFE-14 as second-pass 3
# corrects it; SAFE-12, ACP23 Rec 3), as the engine leaves it to them over the drug-start cards
# (engine.COURSE_CARDS). C-GIOP keeps its DXA and calcium/vitamin D (second-pass 5, ACR22).
# ---------------------------------------------------------------------------

_STOPPED = (med(DMAB, 190, "stopped"), given(DMAB, 190))  # stopped, next dose due
_ROMO_DONE = tuple(given(ROMO, 130 + 30 * i) for i in range(12))  # 12 doses, the last 130 days ago


@pytest.mark.parametrize("course, course_card, words", [
    (_STOPPED, "C-DMAB-STOP", "Denosumab was stopped: the follow-on bisphosphonate is on the denosumab-stop card"),
    (_ROMO_DONE, "C-ANABOLIC-FOLLOW-ON", "The anabolic course is over: the antiresorptive to follow it is on the"),
])
def test_giop_leaves_the_next_drug_to_the_course_card(course, course_card, words):
    got = cards_of(_giop(*course))
    assert course_card in got
    card = got["C-GIOP"]
    assert not _alendronate(card) and "offered below" not in card["detail"]
    assert words in card["detail"]
    assert "A bone drug is on board" not in card["detail"]


def test_giop_still_offers_alendronate_with_no_course_card():
    """Quiet control: the same GIOP chart with no denosumab or anabolic on record."""
    got = cards_of(_giop())
    assert not {"C-DMAB-STOP", "C-ANABOLIC-FOLLOW-ON"} & set(got)
    assert _alendronate(got["C-GIOP"])


def cards_of(rec):
    from tests.test_rules_second_pass import cards
    return cards(rec)


# ---------------------------------------------------------------------------
# 2. An unexplained high calcium with an intact PTH on record within the lab window
# (lab_max_age_months, brief MON-7: "if not measured in the last 12 months"): no PTH is ordered
# again on the screen (C-SECONDARY-EVAL's panel leaves the basic labs to C-LAB-BASELINE when it
# fires, and that card ordered PTH anyway), and a high PTH is named as pointing to
# hyperparathyroidism (brief SEC-1), not "find its cause (intact PTH with the calcium)".
# ---------------------------------------------------------------------------

def _pth(days, value=120, high=65):
    from tests.test_rules_second_pass import obs
    return obs("2731-8", days, value, "pg/mL", referenceRange=[{"high": {"value": high, "unit": "pg/mL"}}])


def _ca_chart(*extra, vitamin_d=False, **kw):
    """High calcium, T -2.8, eGFR on file; no 25-OH vitamin D, so C-LAB-BASELINE fires too."""
    from tests.test_rules_second_pass import obs, record
    labs = [obs("17861-6", 20, 11.2, "mg/dL"), obs("38267-1", 60, -2.8), obs("98979-8", 20, 70)]
    if vitamin_d:
        labs.append(obs("62292-8", 20, 35, "ng/mL"))
    return record(*labs, *extra, t_score=False, **kw)


def _pth_orders(got):
    return [k for k, c in got.items() for s in c.get("suggestions", ()) for a in s["actions"]
            if a.get("resource", {}).get("code", {}).get("coding", [{}])[0].get("code") == "2731-8"]


@pytest.mark.parametrize("vitamin_d", [False, True])
def test_a_recent_high_pth_is_not_ordered_again_and_points_to_hyperparathyroidism(vitamin_d):
    got = cards_of(_ca_chart(_pth(40), vitamin_d=vitamin_d))
    assert _pth_orders(got) == []
    sec = got["C-SECONDARY-EVAL"]
    assert "with a **high PTH** (PTH 120 pg/mL" in sec["detail"]
    assert "points to primary hyperparathyroidism" in sec["detail"]
    assert "find its cause" not in sec["detail"]
    if not vitamin_d:  # the baseline card still orders what is missing, less the PTH
        extra = [s for s in got["C-LAB-BASELINE"]["suggestions"] if "secondary-cause" in s["label"]]
        assert [a["description"] for a in extra[0]["actions"]] == [
            "Serum phosphate (LOINC 2777-1)", "Alkaline phosphatase (LOINC 6768-6)"]


def test_a_man_with_a_recent_high_pth_hears_it_points_to_hyperparathyroidism():
    sec = cards_of(_ca_chart(_pth(40), vitamin_d=True, sex="male", age=70))["C-SECONDARY-EVAL"]
    assert "with a **high PTH** (PTH 120 pg/mL" in sec["detail"] and "intact PTH first" not in sec["detail"]


def test_a_recent_normal_pth_is_read_with_the_calcium_not_ordered_again():
    got = cards_of(_ca_chart(_pth(40, value=40)))
    assert _pth_orders(got) == []
    sec = got["C-SECONDARY-EVAL"]["detail"]
    assert "find its cause" in sec and "the PTH on record (PTH 40 pg/mL" in sec and "high PTH" not in sec


@pytest.mark.parametrize("vitamin_d, orderer", [(False, "C-LAB-BASELINE"), (True, "C-SECONDARY-EVAL")])
def test_an_old_pth_is_ordered_again_and_the_cause_is_still_sought(vitamin_d, orderer):
    """Control: a PTH older than the lab window (12 months) is no reading: PTH is ordered once."""
    got = cards_of(_ca_chart(_pth(400), vitamin_d=vitamin_d))
    assert _pth_orders(got) == [orderer]
    assert "find its cause" in got["C-SECONDARY-EVAL"]["detail"]
    assert "high PTH" not in got["C-SECONDARY-EVAL"]["detail"]


# ---------------------------------------------------------------------------
# 3. Hospice or palliative care (condition-palliative-care: ICD-10-CM Z51.5, SNOMED CT hospice /
# palliative care codes of the eCQM hospice and palliative-care value sets): no screening DXA.
# Screening pays off over years; second-pass 9 gives C-SCREEN-DXA the override reason "limited
# life expectancy". The contract says nothing more, so only screening goes quiet.
# ---------------------------------------------------------------------------

def _screening(*extra):
    from tests.test_rules_second_pass import record
    return record(*extra, age=70, t_score=False)  # a woman of 70 with no DXA: USPSTF25 screening


@pytest.mark.parametrize("code, system", [("Z51.5", "http://hl7.org/fhir/sid/icd-10-cm"),
                                          ("385763009", "http://snomed.info/sct"),
                                          ("170935008", "http://snomed.info/sct"),
                                          ("103735009", "http://snomed.info/sct")])
def test_no_screening_dxa_in_hospice_or_palliative_care(code, system):
    from tests.test_rules_second_pass import cond
    assert "C-SCREEN-DXA" not in cards_of(_screening(cond(code, 30, system=system)))


def test_a_recent_hospice_procedure_quiets_screening_an_old_one_does_not():
    from tests.test_rules_second_pass import ago
    def proc(days):
        return {"resourceType": "Procedure", "id": f"hospice{days}", "status": "completed",
                "subject": {"reference": "Patient/p2"}, "performedDateTime": ago(days),
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "385763009"}]}}
    assert "C-SCREEN-DXA" not in cards_of(_screening(proc(30)))
    assert "C-SCREEN-DXA" in cards_of(_screening(proc(800)))


def test_screening_dxa_still_fires_without_palliative_care():
    """Quiet control: the same woman with a resolved palliative-care code and with none."""
    from tests.test_rules_second_pass import cond
    assert "C-SCREEN-DXA" in cards_of(_screening())
    assert "C-SCREEN-DXA" in cards_of(_screening(cond("Z51.5", 300, status="resolved")))
