"""Lifestyle (seed 000; card id added in ../shared/clinical/README.md).

Rules here:
  C-LIFESTYLE (info, patient-view): smoking cessation and limiting alcohol for
  a current smoker, or alcohol use above recommended limits, in a patient with
  osteoporosis, osteopenia or a fragility fracture. Second pass section 7: a
  smoking-cessation referral, counselling or therapy on record within
  done_within_months (12) answers the smoking part; the card then speaks of
  alcohol only, or is quiet.
"""

from __future__ import annotations

import datetime as dt

from cds_service.fhir import terminology as t
from cds_service.record import PatientRecord
from cds_service.rules.base import NO_TRIGGER, Finding, rule
from cds_service.rules.diagnosis import OSTEOPENIA, OSTEOPOROSIS, assess
from cds_service.rules.settings import ClinicalSettings


def bone_reasons(record: PatientRecord, settings: ClinicalSettings) -> list[str]:
    """Facts showing osteoporosis, osteopenia or a fragility fracture (empty if none)."""
    a = assess(record, settings)
    out: list[str] = []
    if a.diagnosis in (OSTEOPOROSIS, OSTEOPENIA):
        out += [f"{a.diagnosis.capitalize()}: {r}" for r in a.reasons[:3]]
    # Coded diagnoses count even where assess() cannot classify (sex or age unknown).
    for group in ("osteoporosis", "osteopenia"):
        hits = record.condition_hits(group)
        if hits and not out:
            out.append(f"{group.capitalize()} on the problem list ({hits[0].code})")
    joined = " ".join(out)
    out += [f.fact() for f in record.fragility_fractures() if f.fact() not in joined]
    return out


@rule("patient-view")
def lifestyle(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-LIFESTYLE (info), seed 000 ("smoking cessation, limit alcohol"); README
    catalogue addition. Fires when record.smoker is True or record.alcohol_excess
    is True, in a patient with osteoporosis, osteopenia or a fragility
    fracture. None ("not coded") and False stay quiet: a missing smoking
    status is unknown, not a smoker. The smoking-cessation referral suggestion
    is offered only to a current smoker."""
    habits: list[str] = []
    support = record.care_done((t.SMOKING_CESSATION_CARE,), settings.done_within_months)
    smoking = record.smoker is True and not support
    if smoking:
        habits.append(f"Current smoker (recorded {record.smoking_date or 'on an unknown date'})")
    hit = None
    if record.alcohol_excess is True:
        hits = record.condition_hits("alcohol_excess")
        hit = max(hits, key=lambda h: h.date or dt.date.min) if hits else None
        habits.append(f"Alcohol use above recommended limits ({hit.code if hit else 'coded'}, "
                      f"recorded {hit.date if hit and hit.date else 'on an unknown date'})")
    if not habits:
        return []
    why = bone_reasons(record, settings)
    if not why:
        return []
    habits += [f"{support[-1].fact()} (smoking addressed)"] if support and record.smoker is True else []
    topics = " and ".join(w for w, on in (("stop smoking", smoking),
                                           ("limit alcohol", record.alcohol_excess is True)) if on)
    # New trigger: a new alcohol diagnosis. Not a smoking status (re-recorded at most visits)
    # nor the bone facts (a repeat DXA): no new reason to give the same advice.
    trigger = hit.date if hit and hit.date else NO_TRIGGER
    return [Finding("C-LIFESTYLE", facts=tuple(habits + why), variables={"topics": topics},
                    suggestions=("smoking-cessation",) if smoking else (), trigger=trigger)]
