"""What counts as a believable value or date (values outside are not evidence).

A T-score of -99, an age of 2025 or a DXA dated 2099 is a data-entry or
interface error, not a finding: the record ignores such a value (counted,
logged by resource type and id only), so it neither drives a card nor
silences one, and no card quotes it. The ranges are wide on purpose: they
reject the impossible, not the alarming (a calcium of 15 mg/dL is real and
must reach the rules).
"""

from __future__ import annotations

import datetime as dt

# Inclusive ranges, in the record's normalised units (see cds_service.record).
RANGES: dict[str, tuple[float, float]] = {
    "t_score": (-8.0, 8.0),
    "z_score": (-8.0, 8.0),
    "frax": (0.0, 100.0),              # percent
    "egfr": (0.0, 200.0),              # mL/min/1.73m2
    "egfr_upper_bound": (0.0, 200.0),  # an eGFR reported as "<60" (record.EGFR_UPPER_BOUND)
    "calcium": (3.0, 20.0),            # mg/dL, total
    "calcium_corrected": (3.0, 20.0),  # mg/dL
    "calcium_ionized": (0.2, 5.0),     # mmol/L
    "albumin": (0.5, 7.0),             # g/dL
    "vitamin_d": (0.0, 300.0),         # 25-OH vitamin D, ng/mL
    "pth": (0.0, 5000.0),              # pg/mL
    "creatinine": (0.1, 30.0),         # mg/dL
    "crcl": (0.0, 300.0),              # creatinine clearance reported by the lab, mL/min
    "weight": (20.0, 350.0),           # kg
    "bmi": (8.0, 100.0),               # kg/m2
    "alp": (1.0, 10000.0),             # alkaline phosphatase, U/L
    "age": (0.0, 120.0),               # years
    # Prednisone-equivalent mg/day: the largest usual regimen is pulse methylprednisolone 1 g/day
    # (= 1250 mg prednisone at terminology.PREDNISONE_EQUIVALENT's 1.25); review 10: "10 g" of
    # prednisone read as 10000 mg/day.
    "glucocorticoid_mg_day": (0.0, 1250.0),
}

EARLIEST = dt.date(1900, 1, 1)
# Clinical dates after today are impossible, but an EHR a time zone ahead of
# this server may write tomorrow's date: one day of slack.
FUTURE_SLACK = dt.timedelta(days=1)

IMPLAUSIBLE_VALUE = "implausible-value"
FUTURE_DATE = "future-date"
IMPLAUSIBLE_DATE = "implausible-date"
UNREADABLE_VALUE = "unreadable-value"  # a value that is not the reading it claims (a bounded T-score, say)


def value_ok(kind: str, value: float) -> bool:
    low, high = RANGES[kind]
    return low <= value <= high


def believable_dates(today: dt.date) -> tuple[dt.date, dt.date]:
    """The first and last believable date: date_problem is None exactly between them."""
    return EARLIEST, today + FUTURE_SLACK


def date_problem(when: dt.date | None, today: dt.date) -> str | None:
    """None for a believable (or unknown) date; otherwise the reason to ignore it."""
    if when is None:
        return None
    if when > today + FUTURE_SLACK:
        return FUTURE_DATE
    if when < EARLIEST:
        return IMPLAUSIBLE_DATE
    return None
