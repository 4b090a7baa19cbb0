"""The fifteenth review's record fixes: each with a chart that shows it and a quiet control."""

from __future__ import annotations

import pytest

from cds_service.record import glucocorticoid_daily_mg
from tests.test_patient_copies import _frail_kidney_prefetch, _renal, with_copy
from tests.test_rules_second_pass import med

# ---------------------------------------------------------------------------
# Doses a week (ACR22 thresholds are per day): "three times a week" read as three a day, so
# prednisone 5 mg three times a week was 15 mg/day and a C-GIOP warning. "daily for 2 weeks" is
# still daily.
# ---------------------------------------------------------------------------

PRED_5 = {"text": "prednisone 5 MG Oral Tablet"}


@pytest.mark.parametrize("text, mg", [
    ("1 tablet three times a week", 2.14),
    ("2 tablets twice weekly", 2.86),
    ("5 mg once weekly", 0.71),
    ("5 mg 3x/wk", 2.14),
    ("5 mg daily for 2 weeks", 5.0),     # the controls: daily, whatever follows
    ("5 mg twice a day for one week", 10.0),
])
def test_doses_a_week_are_divided_by_seven(text, mg):
    steroid = med(PRED_5, 200, rid="gc", dosageInstruction=[{"text": text}])
    assert glucocorticoid_daily_mg(steroid, PRED_5) == pytest.approx(mg, abs=0.01)


def test_an_ambiguous_biweekly_is_no_dose():
    steroid = med(PRED_5, 200, rid="gc", dosageInstruction=[{"text": "5 mg biweekly"}])
    assert glucocorticoid_daily_mg(steroid, PRED_5) is None


# ---------------------------------------------------------------------------
# A disagreeing Patient copy's birth date is used for the kidney estimate only when it is a
# plausible age (plausibility: 0-120 years): one 125 years ago gave a 70-year-old a clearance of
# 12 and removed her alendronate order.
# ---------------------------------------------------------------------------

def test_an_implausible_birth_date_on_a_copy_does_not_drive_the_clearance(client):
    from test_patient_binding import ago
    prefetch = _frail_kidney_prefetch()  # 86 years old: clearance 16
    card = _renal(client, with_copy(prefetch, birthDate=ago(125 * 366)))
    assert "Creatinine clearance 16 mL/min" in card["detail"] and "oldest" not in card["detail"]


def test_the_control_a_plausible_older_copy_still_fails_closed(client):
    from test_patient_binding import ago
    card = _renal(client, with_copy(_frail_kidney_prefetch(), birthDate=ago(100 * 366)))
    assert "Creatinine clearance 12 mL/min" in card["detail"] and "the oldest of the birth dates" in card["detail"]
