"""The eleventh clinical review (review 10's findings, fixed): each with a chart that makes the
fixed rule fire and a quiet control. Charts are built with tests.test_rules_second_pass's helpers
and judged by the engine as the app runs it (engine.evaluate, strict); dates count back from TODAY."""

from __future__ import annotations

import pytest

from tests.test_review8_clinical import _drug_orders
from tests.test_review10_clinical import _alendronate, _giop
from tests.test_rules_second_pass import DMAB, ROMO, ago, cards, cond, draft, given, obs, record

START_CARDS = {"C-TX-BP", "C-TX-ANABOLIC", "C-TX-DMAB-ALT"}


# ---------------------------------------------------------------------------
# HIGH 1. A romosozumab course recorded only as clinic administrations is under way until the
# next monthly dose is overdue (interval + the project's 4-week grace, SAFE-13's), while the
# 12-dose course (Evenity label) is unfinished. It stopped counting on day 31, exactly when the
# next dose falls due: C-SAFE-ROMO-CV (SAFE-8, second-pass 2: "If a patient experiences a
# myocardial infarction or stroke during therapy, EVENITY should be discontinued") fell silent.
# ---------------------------------------------------------------------------

def test_an_mi_during_a_romosozumab_course_given_in_clinic_fires_when_the_next_dose_is_due():
    got = cards(record(cond("I21.4", 50), given(ROMO, 95), given(ROMO, 65), given(ROMO, 33)))
    assert "occurred during the romosozumab course" in got["C-SAFE-ROMO-CV"]["detail"]
    assert not START_CARDS & set(got)


def test_romosozumab_started_within_a_year_after_an_mi_fires_a_month_after_the_first_dose():
    got = cards(record(cond("I21.4", 90), given(ROMO, 35)))
    assert "started within 12 months after a myocardial infarction" in got["C-SAFE-ROMO-CV"]["detail"]


def test_a_course_mid_way_is_no_time_to_start_alendronate():
    got = cards(record(given(ROMO, 95), given(ROMO, 65), given(ROMO, 33)))
    assert not START_CARDS & set(got)


@pytest.mark.parametrize("doses", [
    (95, 60),                                   # last dose 60 days ago: the next one overdue
    tuple(33 + 30 * i for i in range(12)),      # the 12-dose course finished 33 days ago
])
def test_a_lapsed_or_finished_romosozumab_course_is_not_current(doses):
    """Quiet control: no C-SAFE-ROMO-CV once the next dose is overdue or the course is done."""
    got = cards(record(cond("I21.4", 50 if len(doses) < 12 else 20), *[given(ROMO, d) for d in doses]))
    assert "C-SAFE-ROMO-CV" not in got


# ---------------------------------------------------------------------------
# HIGH 2. C-GIOP offered alendronate beside C-DMAB-DUE / C-DMAB-OVERDUE when denosumab is on
# record only as administrations: a denosumab course whose dose is due or overdue is on board
# (facts.on_board, as for the drug-start cards and C-LAB-BASELINE; second-pass 4, SAFE-13).
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("days, course_card", [(200, "C-DMAB-DUE"), (250, "C-DMAB-OVERDUE"),
                                               (400, "C-DMAB-OVERDUE"), (800, "C-DMAB-OVERDUE"),
                                               (3000, "C-DMAB-OVERDUE")])
def test_giop_offers_no_alendronate_beside_a_denosumab_dose_due(days, course_card):
    """Review 12: the card named a course lapsed for years "on board" ("On denosumab since ...")
    beside the critical C-DMAB-OVERDUE: it now names the dose due or overdue and its card."""
    got = cards(_giop(given(DMAB, days)))
    card = got["C-GIOP"]
    assert course_card in got and not _alendronate(card)
    assert "A denosumab dose is due or overdue: the denosumab card decides it" in card["detail"]
    assert "on board" not in card["detail"] and "offered below" not in card["detail"]
    assert f"Denosumab last given {ago(days)}: a dose is due or overdue" in card["detail"]


def test_giop_still_offers_alendronate_with_no_denosumab_on_record():
    """Quiet control: with no denosumab the same chart offers alendronate (review 10 M6)."""
    assert _alendronate(cards(_giop())["C-GIOP"])


# ---------------------------------------------------------------------------
# MEDIUM 4. An old / history-of MI code (ICD-10-CM I25.2, SNOMED CT 1755008, 399211009, 32574007)
# with no onset is dated only by its recordedDate, the day of a problem-list entry: the card no
# longer asserts "after a recent myocardial infarction"; it says the MI's date is not on record
# and asks to confirm it was over 12 months ago. Still critical (Evenity boxed warning: not to be
# started within a year of an MI; I25.2 is coded from 4 weeks after one), and C-TX-ANABOLIC still
# withholds its one-click romosozumab, with the same words.
# ---------------------------------------------------------------------------

def _old_mi(code, days=30, onset=False):
    system = "http://hl7.org/fhir/sid/icd-10-cm" if code.startswith("I") else "http://snomed.info/sct"
    c = cond(code, days, system=system)
    if not onset:
        del c["onsetDateTime"]
        c["recordedDate"] = ago(days)
    return c


@pytest.mark.parametrize("code", ["I25.2", "399211009", "1755008", "32574007"])
def test_an_old_mi_dated_only_by_its_recorded_date_asks_for_the_mi_date(code):
    card = cards(record(_old_mi(code), drafts=[draft(ROMO)]), "order-sign")["C-SAFE-ROMO-CV"]
    assert card["indicator"] == "critical"
    assert "unknown date: confirm it was over 12 months ago" in card["summary"]
    assert f"({code}): the date of the MI is not on record (recorded on {ago(30)})" in card["detail"]
    assert "after a recent myocardial infarction" not in card["detail"]
    anabolic = cards(record(_old_mi(code), obs("38267-1", 60, -3.5), cond("M80.08XA", 60)))["C-TX-ANABOLIC"]
    assert "Romosozumab not suggested: myocardial infarction" in anabolic["detail"]
    assert "without its date" in anabolic["detail"]
    assert not any("romosozumab" in a["description"].lower() for a in _drug_orders(anabolic))


def test_an_mi_with_its_onset_keeps_the_recent_mi_wording():
    """Control: the same codes with an onset, and an acute MI, read as a recent MI as before."""
    for c in (_old_mi("I25.2", onset=True), cond("I21.4", 30)):
        card = cards(record(c, drafts=[draft(ROMO)]), "order-sign")["C-SAFE-ROMO-CV"]
        assert card["summary"] == "Romosozumab and a myocardial infarction or stroke in the past 12 months: do not give it"
        assert "after a recent myocardial infarction or stroke: do not start it" in card["detail"]


def test_an_old_mi_code_beside_a_dated_mi_is_that_mi():
    """Review 12: I25.2 recorded last month beside I21.4 with its onset 600 days ago is the history
    of that MI, not an MI of unknown date (a critical card): quiet, as the dated MI alone is. With
    the dated MI inside the year, its own date decides (control)."""
    old = _old_mi("I25.2")
    got = cards(record(old, cond("I21.4", 600), drafts=[draft(ROMO)]), "order-sign")
    assert "C-SAFE-ROMO-CV" not in got
    anabolic = cards(record(old, cond("I21.4", 600), obs("38267-1", 60, -3.5), cond("M80.08XA", 60)))["C-TX-ANABOLIC"]
    assert "without its date" not in anabolic["detail"]
    assert any("romosozumab" in a["description"].lower() for a in _drug_orders(anabolic))
    card = cards(record(old, cond("I21.4", 200), drafts=[draft(ROMO)]), "order-sign")["C-SAFE-ROMO-CV"]
    assert "unknown date" not in card["summary"] and f"(I21.4) on {ago(200)}" in card["detail"]


# ---------------------------------------------------------------------------
# LOW 9. A glucocorticoid dose beyond any usual regimen (above 1250 mg prednisone-equivalent a
# day, pulse methylprednisolone 1 g/day; plausibility.RANGES) is a unit or entry error: "a dose
# not readable from the order" (brief 1: unknown is never a value), not "10000 mg/day" (ACR22).
# ---------------------------------------------------------------------------

def _steroid(text, value, unit):
    from tests.test_rules_second_pass import med
    dosage = [{"timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
               "doseAndRate": [{"doseQuantity": {"value": value, "unit": unit}}]}]
    return med({"text": text}, 200, rid="gc", dosageInstruction=dosage)


@pytest.mark.parametrize("text, value, unit, shown", [
    ("prednisone", 10, "g", "glucocorticoid a dose not readable from the order"),
    ("prednisone", 2000, "mg", "glucocorticoid a dose not readable from the order"),
    ("prednisone", 10, "mg", "glucocorticoid 10 mg/day"),                 # control
    ("methylprednisolone", 1000, "mg", "glucocorticoid 1250 mg/day"),     # control: pulse dose, at the bound
])
def test_an_implausible_glucocorticoid_dose_is_not_read(text, value, unit, shown):
    card = cards(record(_steroid(text, value, unit), t_score=False))["C-GIOP"]
    assert shown in card["summary"]


# ---------------------------------------------------------------------------
# LOW 6. A coded hypercalcemia is outdated by a newer normal measured calcium (brief SEC-1 /
# MON-7: the measured calcium is the reading; review 10 "high calcium" work-up): no
# C-SECONDARY-EVAL and no "high calcium" on C-TX-BP. The code newer than the calcium still counts.
# ---------------------------------------------------------------------------

def _coded_high(code_days, calcium_days):
    return record(obs("38267-1", 60, -2.8), cond("E83.52", code_days),
                  obs("17861-6", calcium_days, 9.5, "mg/dL"), obs("98979-8", 20, 70), t_score=False)


def test_a_newer_normal_calcium_outdates_a_coded_hypercalcemia():
    got = cards(_coded_high(700, 20))
    assert "C-SECONDARY-EVAL" not in got and "high calcium" not in got["C-TX-BP"]["detail"].lower()


def test_a_coded_hypercalcemia_newer_than_the_calcium_still_asks_for_its_cause():
    """Control: the code after the normal calcium is the newer word."""
    assert "Hypercalcemia (E83.52)" in cards(_coded_high(10, 20))["C-SECONDARY-EVAL"]["detail"]


# ---------------------------------------------------------------------------
# LOW 7. A high calcium already explained by a coded cause asks for no cause (review 10
# "high calcium" work-up, brief SEC-1): hyperparathyroidism of renal origin (N25.81) and primary
# hyperparathyroidism in SNOMED CT (36348003) join condition-hyperparathyroidism. Hypervitaminosis
# D (E67.3) and sarcoidosis (D86-) do not explain it (review 12: the code does not show the calcium
# came from it, most sarcoidosis has none, and the work-up starts with PTH either way).
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("code, system", [("N25.81", None), ("36348003", "http://snomed.info/sct")])
def test_a_coded_cause_explains_a_high_calcium(code, system):
    from tests.test_review10_clinical import _high_ca_chart
    c = cond(code, 300) if system is None else cond(code, 300, system=system)
    got = cards(_high_ca_chart(11.0, c))
    assert "C-SECONDARY-EVAL" not in got and "high calcium" not in got["C-TX-BP"]["detail"].lower()


@pytest.mark.parametrize("code", ["E67.3", "D86.0", "D86.9"])
def test_hypervitaminosis_d_or_sarcoidosis_still_asks_for_the_cause(code):
    from tests.test_review10_clinical import _high_ca_chart
    got = cards(_high_ca_chart(13.8, cond(code, 300)))
    assert "C-SECONDARY-EVAL" in got and "high calcium" in got["C-TX-BP"]["detail"].lower()


def test_an_unrelated_code_leaves_the_high_calcium_unexplained():
    """Control: a high calcium beside an unrelated code (N18.3, CKD 3) still asks for its cause."""
    from tests.test_review10_clinical import _high_ca_chart
    assert "C-SECONDARY-EVAL" in cards(_high_ca_chart(11.0, cond("N18.3", 300)))


# ---------------------------------------------------------------------------
# Review 12 (high). C-SUPP-CAVD offered vitamin D3 in one click beside a high calcium (measured
# or coded), which C-VITD-LOW and C-GIOP hold (vitamin D labels: contraindicated in hypercalcemia).
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("extra", [(), (cond("E67.3", 300),)])
def test_no_vitamin_d_order_beside_a_high_calcium(extra):
    from tests.test_review10_clinical import _high_ca_chart
    got = cards(_high_ca_chart(13.8, *extra))
    orders = [s for card in got.values() for s in card.get("suggestions") or ()
              for a in s.get("actions") or () if "vitamin d" in str(a.get("resource", {})).lower()]
    assert orders == []


def test_vitamin_d_is_still_offered_with_a_normal_calcium():
    """Control: the same chart with a calcium of 9.5 is offered vitamin D (with or without calcium)."""
    from tests.test_review10_clinical import _high_ca_chart
    card = cards(_high_ca_chart(9.5))["C-SUPP-CAVD"]
    assert any("vitamin d" in s["label"].lower() for s in card["suggestions"])
