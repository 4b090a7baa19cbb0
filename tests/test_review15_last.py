"""The fifteenth clinical re-review's last fixes (charts rebuilt with tests.test_rules_second_pass's
helpers and judged by the engine as the app runs it, strict; dates count back from TODAY): each
with a chart that shows the fix and a quiet control."""

from __future__ import annotations

import pytest

from tests.test_review14_misc import _vitd
from tests.test_rules_second_pass import DMAB, ago, given, med, obs, record
from tests.test_rules_second_pass import cards as cards_of

# ---------------------------------------------------------------------------
# 1. An active denosumab statement confirmed after the last dose on record fell due (review 14
# chart 04c, finding L10): the dose history on record is incomplete (doses likely given
# elsewhere). C-DMAB-OVERDUE stays critical (ECTS21, Prolia label: the rebound if the doses did
# lapse) but asks for the date of the last injection, with no one-click dose; C-DMAB-DUE likewise.
# ---------------------------------------------------------------------------

_LABS = (obs("17861-6", 10, 9.2, "mg/dL"), obs("62292-8", 10, 32, "ng/mL"), obs("98979-8", 10, 70))


def _statement(asserted=30, start=1095):
    st = {"resourceType": "MedicationStatement", "id": "ms-dmab", "status": "active",
          "medicationCodeableConcept": {"text": "Prolia 60 mg SC every 6 months"},
          "effectivePeriod": {"start": ago(start)}}
    if asserted is not None:
        st["dateAsserted"] = ago(asserted)
    return st


def _labels(card):
    return [s["label"] for s in card.get("suggestions", ())]


def test_overdue_with_a_statement_confirmed_since_asks_for_the_date():
    card = cards_of(record(*_LABS, _statement(), med(DMAB, 700, "completed", rid="old")))["C-DMAB-OVERDUE"]
    assert card["indicator"] == "critical"
    assert card["summary"] == (f"Denosumab overdue on record (last dose {ago(700)}, 700 days ago), yet listed as "
                               f"current on {ago(30)}: confirm the last injection date")
    assert "**Confirm the date of the last injection now**" in card["detail"]
    assert "MedicationStatement/ms-dmab" in card["detail"]
    assert _labels(card) == []


def test_overdue_statement_start_stands_in_for_a_missing_date_asserted():
    """No dateAsserted: the statement's effective start (after the due date) says current too."""
    chart = record(*_LABS, _statement(asserted=None, start=60), med(DMAB, 700, "completed", rid="old"))
    card = cards_of(chart)["C-DMAB-OVERDUE"]
    assert card["indicator"] == "critical" and _labels(card) == []
    assert f"listed as current on {ago(60)}" in card["summary"]


def test_overdue_without_the_statement_keeps_the_one_click_dose():
    """Quiet control: the same chart without the statement, as before."""
    card = cards_of(record(*_LABS, med(DMAB, 700, "completed", rid="old")))["C-DMAB-OVERDUE"]
    assert card["summary"].startswith(f"Denosumab overdue (last dose {ago(700)}, 700 days ago)")
    assert "Give the overdue denosumab 60 mg dose now" in _labels(card)


def test_overdue_statement_confirmed_before_the_due_date_keeps_the_dose():
    """Quiet control: a statement last confirmed before the dose fell due says nothing newer."""
    card = cards_of(record(*_LABS, _statement(asserted=600), med(DMAB, 700, "completed", rid="old")))["C-DMAB-OVERDUE"]
    assert "Give the overdue denosumab 60 mg dose now" in _labels(card)


def test_due_with_a_statement_confirmed_since_asks_for_the_date():
    card = cards_of(record(*_LABS, _statement(asserted=3), given(DMAB, 190)))["C-DMAB-DUE"]
    assert card["summary"] == (f"Denosumab due on record (last dose {ago(190)}) but listed as current on "
                               f"{ago(3)}: confirm the date of the last injection")
    assert _labels(card) == []


def test_due_with_the_statement_confirmed_before_the_due_date_keeps_the_dose():
    """Quiet control: confirmed 30 days ago, before the dose fell due (7 days ago)."""
    card = cards_of(record(*_LABS, _statement(asserted=30), given(DMAB, 190)))["C-DMAB-DUE"]
    assert card["summary"].startswith(f"Denosumab due: last dose {ago(190)}; give the next 60 mg dose by")
    assert _labels(card)

# ---------------------------------------------------------------------------
# 2. A 25-OH vitamin D bound in nmol/L at the SI cut-off: "<75 nmol/L" is the form of "<30 ng/mL"
# (TX-8; AACE20: target at least 30 ng/mL, 75 nmol/L). It converted to 30.05 ng/mL and drew no card.
# ---------------------------------------------------------------------------


def test_vitamin_d_below_75_nmol_is_insufficient():
    card = cards_of(_vitd("<75 nmol/L"))["C-VITD-LOW"]
    assert card["indicator"] == "info" and card["summary"].startswith("Vitamin D insufficient")
    # Review 16: the lab's own bound, not "<30" (a number it never reported).
    assert "is below 30 ng/mL (reported as <75 nmol/L, so possibly below 20)" in card["detail"]


def test_vitamin_d_below_50_nmol_stays_deficient():
    """Quiet control: the lower SI cut-off, as before."""
    assert cards_of(_vitd("<50 nmol/L"))["C-VITD-LOW"]["summary"].startswith("Vitamin D deficient")


@pytest.mark.parametrize("text", ["<80 nmol/L", "<76 nmol/L"])
def test_vitamin_d_bound_above_75_nmol_draws_no_card(text):
    """Quiet control: a bound above the SI cut-off may be at target."""
    assert "C-VITD-LOW" not in cards_of(_vitd(text))
