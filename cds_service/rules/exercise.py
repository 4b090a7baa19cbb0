"""Exercise, rehabilitation and fall prevention (brief section 6, card family d).

Rules:
- EX-1 C-EXERCISE (info, patient-view): osteopenia, osteoporosis or a
  fragility fracture -> combined progressive resistance, balance and
  weight-bearing exercise; spinal precautions when osteoporosis or a vertebral
  fracture (SEED 000; TFTF); fear of falling and adherence (SEED 001).
- EX-2 PT referral suggestion inside C-EXERCISE (SNOMED 444831000124102) for a
  vertebral or hip fracture, fall history, gait/balance abnormality or fresh
  fracture rehabilitation (SEED).
- FALL-1 C-FALLS (info, patient-view): age >= settings.fall_prevention_min_age
  with osteopenia/osteoporosis/fragility fracture, or any fall history at
  >= 50 (SEED; BHOF22; CDC STEADI).
"""

from __future__ import annotations

import datetime as dt

from cds_service.fhir import terminology as t
from cds_service.record import Fracture, PatientRecord, within_months
from cds_service.rules.base import Finding, rule
from cds_service.rules.diagnosis import OSTEOPENIA, OSTEOPOROSIS, assess
from cds_service.rules.settings import ClinicalSettings

FALL_HISTORY_MIN_AGE = 50        # FALL-1: "any fall history at any age >= 50" (brief, not a local choice)
FALL_SCREEN_VALID_MONTHS = 12    # STEADI screens yearly: a fall-risk assessment this recent is not re-ordered

# Spinal precautions (EX-1, SEED 000 / TFTF). Framed as how to move, not as a
# ban on bending: the seed warns that generic prohibitions breed fear and
# activity avoidance.
SPINAL_PRECAUTIONS = (
    "**Spine-sparing movement (osteoporosis or vertebral fracture).** Keep the patient active and "
    "teach them how to move rather than what to fear: modify movements that load the spine in "
    "flexion or rotation, that is rapid, repetitive, sustained, weighted or end-range spinal flexion "
    "and twisting (sit-ups, crunches, toe touches, twisting while lifting); lift with a hip hinge and "
    "the load close to the body. Emphasise spine-extensor strengthening and posture training."
)


def _fresh(f: Fracture, today: dt.date, settings: ClinicalSettings) -> bool:
    return f.date is not None and 0 <= (today - f.date).days <= settings.fresh_fracture_weeks * 7


def _bone_reasons(record: PatientRecord, settings: ClinicalSettings) -> tuple[str, list[str]]:
    """(diagnosis, facts) for osteoporosis / osteopenia / fragility fracture;
    diagnosis "" when none applies. Problem-list entries count at any age."""
    a = assess(record, settings)
    facts: list[str] = []
    diagnosis = ""
    if a.diagnosis in (OSTEOPOROSIS, OSTEOPENIA):
        diagnosis = a.diagnosis
        facts += [f"{a.diagnosis.capitalize()}: {r}" for r in a.reasons[:3]]
    elif record.has("osteoporosis"):
        diagnosis = OSTEOPOROSIS
        facts.append(f"Osteoporosis on the problem list ({record.condition_hits('osteoporosis')[0].code})")
    elif record.has("osteopenia"):
        diagnosis = OSTEOPENIA
        facts.append(f"Osteopenia on the problem list ({record.condition_hits('osteopenia')[0].code})")
    seen = " ".join(facts)
    for f in record.fragility_fractures():
        if f.fact() not in seen:
            facts.append(f.fact())
    if not diagnosis and record.fragility_fractures():
        diagnosis = "fragility fracture"
    return diagnosis, facts


def _fall_history(record: PatientRecord) -> list[str]:
    # A resolved "history of falling" is still history: inactive entries count.
    return [f"History of falling on record ({h.code}, {h.date or 'date unknown'})"
            for h in record.condition_hits("falls", active_only=False)]


@rule("patient-view")
def exercise_prescription(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-EXERCISE (info), EX-1/EX-2 (SEED 000/001; TFTF): exercise prescription
    for osteopenia, osteoporosis or a fragility fracture, spinal precautions
    with osteoporosis or a vertebral fracture, supervision when balance is
    impaired, and a physical-therapy referral (SNOMED 444831000124102) for a
    vertebral or hip fracture, fall history, gait/balance abnormality or a
    fresh fracture (<= fresh_fracture_weeks)."""
    diagnosis, facts = _bone_reasons(record, settings)
    if not diagnosis:
        return []
    vertebral = [f for f in record.fractures if f.site == t.VERTEBRAL]
    hip = [f for f in record.fractures if f.site == t.HIP]
    fresh = [f for f in record.fractures if _fresh(f, today, settings)]
    falls = _fall_history(record)
    gait = [f"Gait or balance abnormality on the problem list ({h.code})" for h in record.condition_hits("gait_balance")]
    for f in vertebral + hip + fresh:
        if f.fact() not in " ".join(facts):
            facts.append(f.fact())
    facts += falls + gait

    spinal = diagnosis == OSTEOPOROSIS or bool(vertebral)
    balance_impaired = bool(falls or gait)
    referral_reasons = []
    if vertebral:
        referral_reasons.append("vertebral fracture")
    if hip:
        referral_reasons.append("hip fracture")
    if falls:
        referral_reasons.append("history of falls")
    if gait:
        referral_reasons.append("gait or balance abnormality")
    if fresh:
        referral_reasons.append(f"rehabilitation after a fracture in the last {settings.fresh_fracture_weeks} weeks")

    variables = {
        "focus": " with spinal precautions" if spinal else "",
        "supervision": ("Balance is impaired (falls or a gait/balance problem on record): start **supervised**, "
                        "e.g. with a physical therapist, until the exercises are done safely alone."
                        if balance_impaired else
                        "Supervise the first sessions if balance turns out to be impaired."),
        # one slot for the conditional safety paragraphs, so an absent one leaves no gap
        "precautions": "\n\n".join(p for p in (
            SPINAL_PRECAUTIONS if spinal else "",
            (f"**Fresh fracture (last {settings.fresh_fracture_weeks} weeks).** Agree loading of the fracture "
             "site with the treating clinician; rehabilitation starts under a physical therapist.") if fresh else "",
        ) if p),
        "referral_reason": "; ".join(referral_reasons) or "none",
        "therapist_note": ("Osteoporosis exercise programme: progressive resistance, balance and weight-bearing "
                           "training; " + ("spine-sparing movement (modify rapid, repetitive, weighted or end-range "
                                           "spinal flexion and twisting), spine-extensor and posture training; "
                                           if spinal else "")
                           + "address fear of falling and build a routine the patient can keep."),
    }
    return [Finding("C-EXERCISE", facts=tuple(facts), variables=variables,
                    suggestions=("pt-referral",) if referral_reasons else ())]


@rule("patient-view")
def fall_prevention(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-FALLS (info), FALL-1 (SEED; BHOF22; CDC STEADI): age >=
    fall_prevention_min_age with osteopenia, osteoporosis or a fragility
    fracture, or any fall history at >= 50 -> multifactorial fall prevention
    and a fall-risk assessment order (LOINC 73830-2) unless one was done in the
    last 12 months. Quiet when age is unknown, and when a negative assessment in
    the last 12 months stands without any fall history (screened low risk)."""
    if record.age is None:
        return []
    falls = _fall_history(record)
    facts = [f"Age {record.age} on {today}"]
    fires = False
    if record.age >= settings.fall_prevention_min_age:
        diagnosis, bone = _bone_reasons(record, settings)
        if diagnosis:
            fires = True
            facts += bone
    if falls and record.age >= FALL_HISTORY_MIN_AGE:
        fires = True
        facts += falls
    if not fires:
        return []
    recent = [a for a in record.fall_risk if within_months(a.date, today, FALL_SCREEN_VALID_MONTHS)]
    latest = recent[-1] if recent else None
    if latest is not None:
        result = {True: "positive", False: "negative", None: "result not readable"}[latest.positive]
        facts.append(f"Fall-risk assessment on {latest.date}: {result}")
        if latest.positive is False and not falls:
            return []  # screened low risk this year, never fallen: nothing to add
    return [Finding("C-FALLS", facts=tuple(facts),
                    variables={"min_age": str(settings.fall_prevention_min_age),
                               "assessment": ("A fall-risk assessment was done on "
                                              f"{latest.date}; act on its findings."
                                              if latest else
                                              "No fall-risk assessment in the last 12 months: order one "
                                              "(e.g. STEADI: screen, assess gait, strength and balance).")},
                    suggestions=() if latest else ("fall-risk-assessment",))]
