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
- Second pass (second-pass.md 5 and 8), folded into the two cards: a positive
  fall-risk screen makes C-EXERCISE supervised (PT referral) and C-FALLS
  suggest its follow-up (occupational-therapy home-safety referral, and the PT
  referral for balance training itself whenever C-EXERCISE is not on the
  screen: beside_exercise_card, review 16); fear of
  falling (coded, or FES-I / Short FES-I at moderate concern or more) makes
  supervised or group exercise the suggestion; pain after a vertebral
  fracture, psychological support after a fracture, a dietitian referral when
  calcium intake or weight is low, and yoga with the end-range flexion caution.
- Second pass section 7 (quiet by default): each card fires only when
  something is to be done. C-EXERCISE is quiet with a physical-therapy or
  exercise referral, procedure or visit on record within done_within_months
  (12), unless a fracture came after it. C-FALLS is quiet with a fall-risk
  assessment in that time that was negative, is still pending (ordered), or was
  positive or unreadable and followed up (PT, exercise or occupational therapy
  since), unless a fall or fracture came after it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from cds_service.fhir import terminology as t
from cds_service.record import BinaryResult, CareEvent, Fracture, PatientRecord, within_months
from cds_service.rules.base import NO_TRIGGER, Finding, Suggestion, code_token, rule
from cds_service.rules.catalogue import TEST_TIER
from cds_service.rules.diagnosis import OSTEOPENIA, OSTEOPOROSIS, assess
from cds_service.rules.memo import per_call
from cds_service.rules.orders import DIETITIAN, OCCUPATIONAL_THERAPY, PHYSICAL_THERAPY, referral_suggestion
from cds_service.rules.settings import ClinicalSettings

FALL_HISTORY_MIN_AGE = 50        # FALL-1: "any fall history at any age >= 50" (brief, not a local choice)
FALL_SCREEN_VALID_MONTHS = 12    # STEADI screens yearly: a positive screen this recent asks for supervised training
EXERCISE_CARE = (t.PT_CARE, t.EXERCISE_CARE)
FALL_FOLLOW_UP_CARE = (t.PT_CARE, t.EXERCISE_CARE, t.OT_CARE)

# C-FALLS after a positive fall-risk screen (second-pass 5): supervised balance training, offered on
# the falls card unless C-EXERCISE, whose physical-therapy referral carries it, is shown beside it.
BALANCE_REFERRAL = referral_suggestion(PHYSICAL_THERAPY, "Refer to physical therapy for supervised balance training",
                                       "Positive fall-risk screen: supervised gait, strength and balance training",
                                       True)
_BESIDE_EXERCISE = "assessment_beside_exercise"  # C-FALLS's text when C-EXERCISE is on the screen too

# Spinal precautions (EX-1, SEED 000 / TFTF), the card's short form (the guidance page has the
# full text). Framed as how to move, not as a ban on bending: the seed warns that generic
# prohibitions breed fear and activity avoidance.
SPINAL_PRECAUTIONS = (
    "**Spine-sparing:** no rapid, loaded or end-range bending or twisting (sit-ups, toe touches); lift with a "
    "hip hinge; add spine-extensor and posture work. Yoga without end-range flexion."
)


def positive_fall_screen(record: PatientRecord, today: dt.date) -> list[str]:
    """A positive fall-risk assessment in the last 12 months, as a fact (second-pass 5:
    it asks for supervised balance training and its follow-up, not for anabolic drugs)."""
    recent = [a for a in record.fall_risk if a.positive and within_months(a.date, today, FALL_SCREEN_VALID_MONTHS)]
    return [f"Positive fall-risk assessment on {recent[-1].date} ({recent[-1].ref})"] if recent else []


def fear_of_falling(record: PatientRecord, settings: ClinicalSettings) -> list[str]:
    """Fear of falling (seed 001; second-pass 8): coded, or the latest FES-I >= fes_i_concern
    (Short FES-I >= short_fes_i_concern) within 12 months: moderate or high concern."""
    out = [f"Fear of falling on record ({h.code or 'coded'}, {h.date or 'undated'})"
           for h in record.condition_hits("fear_of_falling")[:1]]
    scores = [c for c in record.fall_concern if within_months(c.date, record.today, 12)]
    if scores:
        c = scores[-1]
        cut = settings.short_fes_i_concern if c.short_form else settings.fes_i_concern
        if c.score >= cut:
            out.append(f"{'Short FES-I' if c.short_form else 'FES-I'} {c.score:g} on {c.date} (concern about "
                       f"falling: {cut:g} or more)")
    return out


def low_intake_or_weight(record: PatientRecord, settings: ClinicalSettings) -> list[str]:
    """Low calcium intake or low weight (second-pass 8: dietitian referral): coded, or the
    latest BMI within 24 months below low_bmi."""
    out = [f"{h.code or 'Coded'}: low intake or low weight on the problem list ({h.date or 'undated'})"
           for h in record.condition_hits("low_intake_or_weight")[:1]]
    bmi = record.lab("bmi", 24)
    if bmi and bmi.value < settings.low_bmi:
        out.append(f"{bmi.fact()} (below {settings.low_bmi:g})")
    return out


def _fresh(f: Fracture, today: dt.date, settings: ClinicalSettings) -> bool:
    return f.date is not None and 0 <= (today - f.date).days <= settings.fresh_fracture_weeks * 7


@per_call
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
    done = record.care_done(EXERCISE_CARE, settings.done_within_months)
    if done and not [f for f in record.fractures if f.date and f.date > done[-1].date]:  # type: ignore[operator]
        return []  # in a programme already, and no fracture since that needs rehabilitation again
    vertebral = [f for f in record.fractures if f.site == t.VERTEBRAL]
    hip = [f for f in record.fractures if f.site == t.HIP]
    fresh = [f for f in record.fractures if _fresh(f, today, settings)]
    falls = _fall_history(record)
    gait = [f"Gait or balance abnormality on the problem list ({h.code})" for h in record.condition_hits("gait_balance")]
    screen = positive_fall_screen(record, today)
    fear = fear_of_falling(record, settings)
    diet = low_intake_or_weight(record, settings)
    for f in vertebral + hip + fresh:
        if f.fact() not in " ".join(facts):
            facts.append(f.fact())
    facts += falls + gait + screen + fear + diet

    seen_dietitian = record.care_done((t.DIETITIAN_CARE,), settings.done_within_months)
    spinal = diagnosis == OSTEOPOROSIS or bool(vertebral)
    balance_impaired = bool(falls or gait or screen)
    recent_vertebral = [f for f in vertebral if within_months(f.date, today, settings.recent_fracture_months)]
    recent_fracture = [f for f in record.fragility_fractures()
                       if within_months(f.date, today, settings.recent_fracture_months)]
    referral_reasons = []
    if vertebral:
        referral_reasons.append("vertebral fracture")
    if hip:
        referral_reasons.append("hip fracture")
    if falls:
        referral_reasons.append("history of falls")
    if gait:
        referral_reasons.append("gait or balance abnormality")
    if screen:
        referral_reasons.append("positive fall-risk screen: supervised balance training")
    if fear:
        referral_reasons.append("fear of falling: supervised or group exercise")
    if fresh:
        referral_reasons.append(f"rehabilitation after a fracture in the last {settings.fresh_fracture_weeks} weeks")

    variables = {
        "focus": " with spinal precautions" if spinal else "",
        "supervision": ("Balance is impaired: start **supervised** (physical therapy)." if balance_impaired else
                        "" if fear else "Ask about fear of falling (FES-I)."),
        "rehab": "\n".join(f"- {p}" for p in (
            "**Fear of falling** on record: supervised or group exercise first." if fear else "",
            "**Pain after the vertebral fracture:** analgesia and physical therapy." if recent_vertebral else "",
            "**After the fracture:** offer psychological support." if recent_fracture else "",
            "**Low calcium intake or weight:** refer to a dietitian." if diet and not seen_dietitian else "",
        ) if p),
        # one slot for the conditional safety paragraphs, so an absent one leaves no gap
        "precautions": "\n\n".join(p for p in (
            SPINAL_PRECAUTIONS if spinal else "",
            (f"**Fresh fracture (last {settings.fresh_fracture_weeks} weeks):** agree loading with the treating "
             "clinician.") if fresh else "",
        ) if p),
        "referral_reason": "; ".join(referral_reasons) or "none",
        "therapist_note": ("Osteoporosis exercise programme: progressive resistance, balance and weight-bearing "
                           "training; " + ("spine-sparing movement (modify rapid, repetitive, weighted or end-range "
                                           "spinal flexion and twisting), spine-extensor and posture training; "
                                           if spinal else "")
                           + "address fear of falling and build a routine the patient can keep."),
    }
    facts += [c.fact() for c in seen_dietitian[-1:] if diet]
    dietitian = (referral_suggestion(DIETITIAN, "Refer to a dietitian (calcium intake or weight)",
                                     "Osteoporosis care: low calcium intake or low body weight"),
                 ) if diet and not seen_dietitian else ()
    return [Finding("C-EXERCISE", facts=tuple(facts), variables=variables,
                    suggestions=("pt-referral",) if referral_reasons else (), extra_suggestions=dietitian,
                    trigger=_new_trigger(record, settings),
                    trigger_codes=_trigger_codes(record))]


@per_call  # both cards ask for it
def _new_trigger(record: PatientRecord, settings: ClinicalSettings) -> dt.date:
    """New trigger for the exercise and falls cards (card_policy): a fracture, a fall, a
    gait or balance problem, a fall-risk screen or fear of falling recorded since the
    card was acted on. Not a repeat DXA, BMI or age: no new reason to advise again."""
    days = [f.date for f in record.fractures if f.date]
    days += [h.date for group in ("falls", "gait_balance", "fear_of_falling")
             for h in record.condition_hits(group, active_only=False) if h.date]
    days += [a.date for a in record.fall_risk if a.date and a.positive]
    days += [c.date for c in record.fall_concern if c.date]
    return max(days, default=NO_TRIGGER)


@per_call
def _trigger_codes(record: PatientRecord) -> tuple[str, ...]:
    """The same new triggers by content (Finding.trigger_codes): the codes of the fractures and of
    the falls, gait or balance problems and fear of falling on record, dated or not."""
    codes = {c for f in record.fractures for c in (f.code, *f.codes) if c}
    codes.update(h.code for group in ("falls", "gait_balance", "fear_of_falling")
                 for h in record.condition_hits(group, active_only=False) if h.code)
    return tuple(sorted({code_token(c) for c in codes}))


def _last_assessment(record: PatientRecord, today: dt.date,
                     months: int) -> tuple[BinaryResult | None, CareEvent | None]:
    """(latest fall-risk assessment within `months`, or an order for one placed after it
    and still pending). A result is an Observation; a Procedure or visit without one
    reads as "result not readable"."""
    results = [a for a in record.fall_risk if within_months(a.date, today, months)]
    latest = results[-1] if results else None
    arranged = record.care_done((t.FALL_ASSESSMENT_CARE,), months)
    if arranged and (latest is None or arranged[-1].date > latest.date):  # type: ignore[operator]
        newest = arranged[-1]
        if newest.source == "ServiceRequest":
            return latest, newest
        return BinaryResult(newest.date, None, newest.ref), None
    return latest, None


@rule("patient-view")
def fall_prevention(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-FALLS (info), FALL-1 (SEED; BHOF22; CDC STEADI): age >=
    fall_prevention_min_age with osteopenia, osteoporosis or a fragility
    fracture, or any fall history at >= 50 -> multifactorial fall prevention
    and a fall-risk assessment order (LOINC 73830-2) unless one was done in the
    last done_within_months (12). Quiet (second-pass 7) when age is unknown, and
    when no fall or fracture came after the last assessment and that assessment
    is pending (ordered), negative, or was followed up (PT, exercise or
    occupational therapy on or after it). A positive screen without follow-up
    asks for it (CDC STEADI: intervene on what it found): supervised balance training (PT
    referral) and an OT home-safety referral, the PT one left to C-EXERCISE when that card is
    shown beside this one (beside_exercise_card); a result that cannot be read, to act on it."""
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
    latest, pending = _last_assessment(record, today, settings.done_within_months)
    last = pending or latest
    # A fall or fracture after the assessment: it no longer describes the patient.
    since = [f"{f.fact()} (after the fall-risk assessment)" for f in record.fractures
             if last and f.date and f.date > last.date]
    since += [f"History of falling recorded {h.date} ({h.code}, after the fall-risk assessment)"
              for h in record.condition_hits("falls", active_only=False) if last and h.date and h.date > last.date]
    if not since:
        if pending is not None:
            return []  # a fall-risk assessment is ordered: wait for its result
        if latest is not None and (latest.positive is False or record.care_done(
                FALL_FOLLOW_UP_CARE, settings.done_within_months, since=latest.date)):
            return []  # screened low risk, or screened and followed up: nothing to add
    if latest is not None:
        result = {True: "positive", False: "negative", None: "result not readable"}[latest.positive]
        facts.append(f"Fall-risk assessment on {latest.date}: {result}")
    facts += [pending.fact()] if pending else []
    facts += since
    fear = fear_of_falling(record, settings)
    facts += fear
    follow_up: tuple[Suggestion, ...] = ()
    beside_exercise = ""  # the positive-screen text when C-EXERCISE is shown too
    # A fall or fracture in the last 12 months with no assessment since: the assessment is part
    # of that event's care (World Falls Guidelines 2022, Montero-Odasso et al., Age Ageing:
    # multifactorial assessment for anyone presenting with a fall or fracture; CDC STEADI), so
    # it does not wait behind drug and test cards as routine care does (card_policy).
    recent = [(f.date, "A fracture") for f in record.fractures
              if within_months(f.date, today, settings.recent_fracture_months)]
    recent += [(h.date, "A fall") for group in ("falls", "injurious_fall")
               for h in record.condition_hits(group, active_only=False)
               if within_months(h.date, today, settings.recent_fracture_months)]
    recent = [(d, what) for d, what in recent if d and (last is None or d > last.date)]  # type: ignore[operator]
    if since:
        assessment = ("A fall or fracture since the last fall-risk assessment: assess again "
                      "(STEADI: screen, assess gait, strength and balance).")
        latest = None  # order a new one
    elif latest is None and recent:
        day, what = max(recent)
        assessment = (f"{what} on {day} and no fall-risk assessment since: assess now "
                      "(STEADI: screen, assess gait, strength and balance).")
    elif latest is None:
        assessment = ("No fall-risk assessment in the last 12 months: order one "
                      "(e.g. STEADI: screen, assess gait, strength and balance).")
    elif latest.positive:
        # Second-pass 5: a positive screen asks for its follow-up (STEADI: intervene on what
        # the assessment found): supervised balance training (physical therapy) and home safety
        # (occupational therapy). The balance training is C-EXERCISE's when that card is on the
        # screen (beside_exercise_card); otherwise this card offers it, so a positive screen never
        # goes without it (review 16: the budget held C-EXERCISE back).
        head = f"The fall-risk screen on {latest.date} was **positive** and no follow-up is on record: "
        assessment = (head + "refer for supervised balance training (physical therapy) and have the home checked "
                      "for hazards (occupational therapy), both suggested below.")
        beside_exercise = (head + "have the home checked for hazards (occupational therapy, suggested below); the "
                           "exercise card beside this one refers for supervised balance training.")
        follow_up = (BALANCE_REFERRAL, referral_suggestion(
            OCCUPATIONAL_THERAPY, "Refer to occupational therapy for a home-safety evaluation",
            "Positive fall-risk screen: home hazards and assistive devices", True))
    else:
        assessment = (f"A fall-risk assessment was done on {latest.date} and no follow-up is on record: act on "
                      "its findings (physical therapy, home safety).")
    variables = {"min_age": str(settings.fall_prevention_min_age), "assessment": assessment}
    if beside_exercise:
        variables[_BESIDE_EXERCISE] = beside_exercise
    if fear:
        for key in (k for k in ("assessment", _BESIDE_EXERCISE) if k in variables):
            variables[key] += " Fear of falling is on record: supervised or group exercise builds confidence."
    return [Finding("C-FALLS", facts=tuple(facts), variables=variables,
                    suggestions=() if latest else ("fall-risk-assessment",), extra_suggestions=follow_up,
                    trigger=_new_trigger(record, settings),
                    trigger_codes=_trigger_codes(record), tier=TEST_TIER if latest is None and recent else None)]


def beside_exercise_card(shown: list[Finding]) -> list[Finding]:
    """The cards on the screen after the card policy, with C-FALLS worded for its company.
    After a positive fall-risk screen C-FALLS offers the supervised balance training itself
    (physical therapy): the budget or quieting may hold C-EXERCISE back, or it may not fire (no
    bone diagnosis, a PT episode before the screen), and a card must not point to one that is
    not on the screen (review 16). With C-EXERCISE shown and offering its physical-therapy
    referral (second-pass 5: "C-EXERCISE suggest supervised balance training / PT and C-FALLS
    suggest its follow-up"), C-FALLS points to it and leaves its own out: one referral, not two."""
    if not any(f.card_id == "C-EXERCISE" and f.suggestions and "pt-referral" in f.suggestions for f in shown):
        return shown
    return [dataclasses.replace(f, variables={**f.variables, "assessment": f.variables[_BESIDE_EXERCISE]},
                                extra_suggestions=tuple(s for s in f.extra_suggestions if s != BALANCE_REFERRAL))
            if f.card_id == "C-FALLS" and _BESIDE_EXERCISE in f.variables else f for f in shown]
