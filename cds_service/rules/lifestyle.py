"""Lifestyle (seed 000; card id added in ../shared/clinical/README.md).

Rules here:
  C-LIFESTYLE (info, patient-view): smoking cessation and limiting alcohol for
  a current smoker, or alcohol use above recommended limits, in a patient with
  osteoporosis, osteopenia or a fragility fracture.
"""

from __future__ import annotations

import datetime as dt

from cds_service.record import PatientRecord
from cds_service.rules.base import Finding, rule
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
    if record.smoker is True:
        habits.append(f"Current smoker (recorded {record.smoking_date or 'on an unknown date'})")
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
    topics = " and ".join(w for w, on in (("stop smoking", record.smoker is True),
                                           ("limit alcohol", record.alcohol_excess is True)) if on)
    return [Finding("C-LIFESTYLE", facts=tuple(habits + why), variables={"topics": topics},
                    suggestions=("smoking-cessation",) if record.smoker is True else ())]
