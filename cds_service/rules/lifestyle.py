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
from cds_service.record import PatientRecord, within_months
from cds_service.rules.base import NO_TRIGGER, Finding, code_token, rule
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


def cessation_medicine(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[str]:
    """Smoking-cessation pharmacotherapy (nicotine replacement, varenicline, Zyban) active or
    started within done_within_months: cessation therapy, as a referral is (second-pass 7;
    the card's guidance: "counselling, cessation therapy or a quit line, ordered or done")."""
    e = record.medications.get(t.SMOKING_CESSATION)
    if e is None or not (e.active or (e.start and within_months(e.start, today, settings.done_within_months))):
        return []
    return [f"Smoking-cessation medicine on the medication list since {e.start or 'an unknown date'}"]


@rule("patient-view")
def lifestyle(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-LIFESTYLE (info), seed 000 ("smoking cessation, limit alcohol"); README
    catalogue addition. Fires when record.smoker is True or record.alcohol_excess
    is True, in a patient with osteoporosis, osteopenia or a fragility
    fracture. None ("not coded") and False stay quiet: a missing smoking
    status is unknown, not a smoker. The smoking-cessation referral suggestion
    is offered only to a current smoker."""
    habits: list[str] = []
    support = [c.fact() for c in record.care_done((t.SMOKING_CESSATION_CARE,), settings.done_within_months)]
    support += cessation_medicine(record, today, settings)
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
    habits += [f"{support[-1]} (smoking addressed)"] if support and record.smoker is True else []
    topics = " and ".join(w for w, on in (("stop smoking", smoking),
                                           ("limit alcohol", record.alcohol_excess is True)) if on)
    # New trigger: a new alcohol diagnosis. Not a smoking status (re-recorded at most visits)
    # nor the bone facts (a repeat DXA): no new reason to give the same advice.
    trigger = hit.date if hit and hit.date else NO_TRIGGER
    return [Finding("C-LIFESTYLE", facts=tuple(habits + why), variables={"topics": topics},
                    suggestions=("smoking-cessation",) if smoking else (), trigger=trigger,
                    trigger_codes=tuple(sorted({code_token(h.code) for h in record.condition_hits("alcohol_excess")
                                                if h.code})))]
