"""Course of therapy: what has to happen next after a bone drug (brief section 4).

Rules here (all patient-view, card family a):
  C-DMAB-DUE           SAFE-13b  info      denosumab dose due (6 months + grace window)
  C-DMAB-OVERDUE       SAFE-13   critical  denosumab overdue, no bisphosphonate since
  C-DMAB-STOP          SAFE-14   warning   denosumab stopped with no follow-on bisphosphonate
  C-ANABOLIC-FOLLOW-ON SAFE-12   warning   anabolic course over, no antiresorptive after it

Time convention (chosen so that fixtures shifted by whole days keep their
meaning): a month is 30.4375 days and intervals are rounded to whole days,
so dmab_interval_months=6 is 183 days, dmab_grace_weeks=4 is 28 days and
anabolic_followon_months=3 is 91 days. Days since the last denosumab dose:
  < 183            nothing (not yet due)
  183 .. 211       C-DMAB-DUE (both ends inclusive: on the day the grace
                   period ends the dose is still "due", not "overdue")
  >= 212           C-DMAB-OVERDUE
The three denosumab cards never fire together: OVERDUE (critical) replaces
STOP and DUE; a stopped course gets STOP, not DUE (suggesting the next dose
would contradict the documented decision to stop).
"""

from __future__ import annotations

import datetime as dt

from cds_service.card_render import yaml_suggestion
from cds_service.fhir import terminology as t
from cds_service.record import AgentExposure, MedEvent, PatientRecord
from cds_service.rules.base import Action, Finding, Suggestion, cross_ref, rule
from cds_service.rules.facts import (
    DUE,
    NOT_DUE,
    ORAL_BP_INSTRUCTIONS,
    OVERDUE,
    DmabTiming,
    anabolic_course_end,
    antiresorptive_complications,
    complication_name,
    course_end_words,
    bisphosphonate_since,
    bp_contraindications,
    ckd_mbd_before_bisphosphonate,
    current_pregnancy,
    denosumab_stop_order,
    denosumab_timing,
    drug_label,
    kidney,
    ckd_mbd_done,
    ckd_mbd_done_facts,
    kidney_egfr,
    kidney_fact,
    low_calcium,
    months_to_days,
    predose_labs_missing,
    romosozumab_order_at_limit,
)
from cds_service.rules.orders import (ENDOCRINOLOGY, PROLIA24_TEXT, denosumab_dose, predose_lab_actions,
                                     pregnancy_referral, prolia24_suggestion, referral_suggestion)
from cds_service.rules.settings import ClinicalSettings


def _when(event: MedEvent) -> dt.date | None:
    return event.dose_date or event.start


def _later_denosumab_order(timing: DmabTiming) -> MedEvent | None:
    """A denosumab order written after the last administration (next dose already ordered)."""
    if not timing.from_administration:
        return None
    later = [ev for ev in timing.exposure.events if ev.resource_type == "MedicationRequest"
             and ev.status in ("active", "on-hold") and ev.start and ev.start > timing.last_dose]
    return max(later, key=lambda ev: ev.start) if later else None  # type: ignore[arg-type, return-value]


def _listed_after_due(timing: DmabTiming) -> tuple[MedEvent, dt.date] | None:
    """An active denosumab MedicationStatement confirmed (dateAsserted, else its effective dates)
    after the last dose on record fell due (last dose + 6 months), with that date: the medication
    list says denosumab is current, so doses were likely given elsewhere and the history on record
    is incomplete (review 15 chart 04c: a statement confirmed 30 days ago beside a completed order
    700 days old drew a one-click dose). None otherwise."""
    listed = [(ev, ev.asserted or ev.end or ev.start) for ev in timing.exposure.events
              if ev.resource_type == "MedicationStatement" and ev.status == "active"]
    later = [(ev, seen) for ev, seen in listed if seen and seen > timing.due]
    return max(later, key=lambda pair: pair[1]) if later else None


def _history_incomplete(card_id: str, timing: DmabTiming, listed: tuple[MedEvent, dt.date]) -> Finding:
    """C-DMAB-DUE / C-DMAB-OVERDUE, variant history-incomplete (review 15): the card keeps its
    indicator (the rebound is real if the doses lapsed: ECTS21, Prolia label) but offers no dose
    and no bisphosphonate: the date of the last injection first, as on C-DMAB-DUE's
    last-dose-unknown (a dose too soon is C-SAFE-DOSE-INTERVAL's concern)."""
    ev, seen = listed
    facts = [*timing.facts(), f"Denosumab on the medication list as current ({ev.ref}), confirmed on {seen}: "
                              f"after the last dose on record fell due ({timing.due})"]
    return Finding(card_id, facts=tuple(facts), variant="history-incomplete", suggestions=(),
                   variables={"last_dose": timing.last_dose.isoformat(), "days_since": str(timing.days_since),
                              "listed": seen.isoformat()})


# ---------------------------------------------------------------------------
# Suggestion choice shared by the cards
# ---------------------------------------------------------------------------

def ckd_plan_note(record: PatientRecord, settings: ClinicalSettings, *, start: bool = False,
                  short: bool = False) -> str:
    """The PROLIA24 paragraph for the detail of a card whose denosumab plan denosumab_plan built
    ("" when kidney_egfr is not below egfr_denosumab_ckd). Review 14: it sat inside a "Patient
    data used" bullet; the facts keep the kidney reading only. `short`: for an info card (about
    80 words, second-pass 7), beside C-SAFE-DMAB-CKD, which carries the whole text."""
    if not kidney_egfr(record, settings).below(settings.egfr_denosumab_ckd):
        return ""
    if short:
        return ("**eGFR below 30 or dialysis (Prolia boxed warning 2024):** severe hypocalcemia risk; the dose comes "
                "only with the CKD-MBD plan ("
                + cross_ref("C-SAFE-DMAB-CKD", "the kidney card",
                            "CKD-MBD labs, calcium weekly for 4 weeks then monthly, nephrology") + ").")
    return PROLIA24_TEXT + (" No denosumab dose is suggested until that work-up is done." if start else "")


def denosumab_plan(record: PatientRecord, settings: ClinicalSettings, facts: list[str],
                   key: str = "denosumab", *, start: bool = False,
                   on: dt.date | None = None) -> tuple[tuple[str, ...], tuple[Suggestion, ...]]:
    """The next denosumab dose as (YAML keys, built suggestions). With kidney function
    below egfr_denosumab_ckd (30) or on dialysis the dose rides with the whole PROLIA24
    plan (second-pass 2): CKD-MBD labs, calcium weekly x 4 then monthly, nephrology.
    `start`: denosumab would be new to the patient; below 30 that is the CKD-MBD work-up
    and referral first, no dose (as C-TX-DMAB-ALT; PROLIA24: evaluate CKD-MBD before
    starting, under a CKD-MBD specialist). PROLIA24 reads kidney_egfr (the lower of clearance and eGFR).
    `on`: the dose is not given before that date (a stopped course's next dose, C-DMAB-STOP)."""
    reading = kidney_egfr(record, settings)
    if reading.below(settings.egfr_denosumab_ckd):
        # the plan's text: ckd_plan_note; the work-up done recently is not ordered again (review 14)
        facts += [kidney_fact(reading, settings.egfr_denosumab_ckd, "denosumab"), *ckd_mbd_done_facts(record, settings)]
    done = ckd_mbd_done(record, settings) if reading.below(settings.egfr_denosumab_ckd) else {}
    if reading.below(settings.egfr_denosumab_ckd) and start:
        return (), (prolia24_suggestion("CKD-MBD work-up and nephrology referral before denosumab is started",
                                        after_dose=False, done=done),)
    if reading.below(settings.egfr_denosumab_ckd):
        return (), (prolia24_suggestion(
            "Give denosumab 60 mg with the CKD-MBD plan: PTH, 25-OH and 1,25-(OH)2 vitamin D, calcium before, "
            "weekly x 4 then monthly; nephrology",
            dose=denosumab_dose("Advanced kidney disease: calcium weekly for 4 weeks, then monthly (Prolia 2024).",
                                on), done=done),)
    if reading.may_be_below(settings.egfr_denosumab_ckd):
        # An eGFR known only as a bound that leaves 30 open ("<35"): below 30 the dose needs the
        # PROLIA24 plan, and a start its work-up first (review: nothing said so).
        facts.append(f"{reading.label} may be below {settings.egfr_denosumab_ckd:g}: an exact eGFR first; below "
                     f"{settings.egfr_denosumab_ckd:g}, denosumab needs a CKD-MBD work-up, calcium weekly x 4 then "
                     "monthly and nephrology (Prolia boxed warning, 2024)")
        if start:
            return (), (Suggestion(f"An exact eGFR before denosumab is started (below {settings.egfr_denosumab_ckd:g} "
                                   "it needs the CKD-MBD work-up)", predose_lab_actions(kidney=True, calcium=False),
                                   True),)
    no_kidney, no_calcium = predose_labs_missing(record, settings)
    if no_kidney or no_calcium:
        # Review: a one-click dose with no recent kidney function or calcium met
        # C-SAFE-PREDOSE-LABS at signing; the labs ride with the dose (Prolia label: correct
        # hypocalcemia before each dose).
        return (), (Suggestion("Order the next denosumab 60 mg dose, with the pre-dose labs", (
            Action("create", "Denosumab 60 mg subcutaneously", resource=denosumab_dose(
                "Check the pre-dose labs first; repeat every 6 months.", on)),
            *predose_lab_actions(kidney=no_kidney, calcium=no_calcium)), True),)
    return (key,), ()


def zoledronate_blockers(record: PatientRecord, settings: ClinicalSettings) -> list[str]:
    """Why IV zoledronic acid should not be suggested (SAFE-3, SAFE-4, intolerance, AFF /
    ONJ). Review: an unknown kidney function blocks it too, as on C-TX-DMAB-ALT (Reclast
    label: creatinine clearance before each dose, contraindicated below 35; a one-click
    infusion with no kidney value met C-SAFE-PREDOSE-LABS at signing). Review 20: the AFF /
    ONJ of this docstring was never checked (Reclast label: both are its warnings; second-pass
    4, C-AR-COMPLICATION: hold the bisphosphonate and refer)."""
    out = []
    reading = kidney(record, settings)
    if reading.below(settings.egfr_zoledronate_min):
        out.append(kidney_fact(reading, settings.egfr_zoledronate_min, "zoledronic acid"))
    elif not reading.known:
        out.append(f"no kidney function in the last {settings.kidney_lab_max_age_months} months (needed before "
                   "each infusion)")
    else:  # review 21: CKD 4-5 by the lower reading, the clearance within the label (C-SAFE-RENAL ckd-stage)
        stage = ckd_mbd_before_bisphosphonate(record, settings)
        if stage:
            out.append(stage)
    low = low_calcium(record, settings)
    if low:
        out.append(low)
    hits = record.condition_hits("bp_intolerance")
    if hits:
        out.append(f"Bisphosphonate intolerance on the problem list ({hits[0].code or 'coded'})")
    return out + antiresorptive_complications(record)


BONE_SPECIALIST = "Refer to a bone specialist (endocrinology) for the treatment plan"  # C-AR-COMPLICATION's words


def with_complication(card_id: str, complications: list[str], facts: list[str], keys: tuple[str, ...],
                      built: tuple[Suggestion, ...], variables: dict[str, str], *,
                      referral_first: bool) -> Finding:
    """A denosumab course card (C-DMAB-STOP, C-DMAB-OVERDUE), variant complication (review 20):
    an atypical femoral fracture or jaw osteonecrosis is on record, so no bisphosphonate, oral or
    IV, is offered (Fosamax and Reclast labels list both; second-pass 4, C-AR-COMPLICATION: hold
    the bisphosphonate and refer). The rebound is still real (ECTS21; Prolia label: multiple
    vertebral fractures after stopping), so the patient is not left without a plan: a bone
    specialist decides what follows (Prolia label: interrupting denosumab after AFF or ONJ is
    an individual benefit-risk decision; AACE20), and the next denosumab dose is offered with
    that referral, to keep the rebound off while it is decided ("do not let the next dose lapse",
    C-AR-COMPLICATION). `referral_first`: the referral alone leads, recommended (a stop whose dose
    is not yet due); else the dose leads (overdue: the rebound is under way)."""
    reason = f"{'; '.join(complications)} on denosumab"
    referral = referral_suggestion(ENDOCRINOLOGY, BONE_SPECIALIST, reason, recommended=referral_first)
    doses = tuple(Suggestion(f"{d.label}, and refer to a bone specialist", (*d.actions, *referral.actions),
                             d.is_recommended)
                  for d in (*(yaml_suggestion(card_id, key, variables) for key in keys), *built))
    facts = [*facts, f"No bisphosphonate suggested (oral or IV): {'; '.join(complications)}"]
    variables = {**variables, "complication": complication_name(complications)}
    return Finding(card_id, facts=tuple(facts), variant="complication", variables=variables, suggestions=(),
                   extra_suggestions=(referral, *doses) if referral_first else (*doses, referral))


def follow_on_plan(zoledronate: bool, alendronate: bool, otherwise: str) -> str:
    """The follow-on a summary names: only the drugs actually offered."""
    drugs = [name for name, offered in (("zoledronic acid", zoledronate), ("alendronate", alendronate)) if offered]
    return f"plan {' or '.join(drugs)}" if drugs else otherwise


def bisphosphonate_keys(record: PatientRecord, settings: ClinicalSettings, facts: list[str],
                        zoledronate_key: str = "zoledronic-acid") -> list[str]:
    """Bisphosphonate suggestions that are not contraindicated on record."""
    keys = []
    zol = zoledronate_blockers(record, settings)
    if zol:
        facts.append(f"Zoledronic acid not suggested: {'; '.join(zol)}")
    else:
        keys.append(zoledronate_key)
    oral = bp_contraindications(record, settings)
    if oral:
        facts.append(f"Oral alendronate not suggested: {'; '.join(oral)}")
    else:
        keys.append("alendronate")
    return keys


# ---------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------

@rule("patient-view")
def denosumab_due(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-DMAB-DUE (info), brief SAFE-13b; ES20/ECTS21, AACE20, seed, Prolia label.
    Last denosumab dose 183-211 days ago (dmab_interval_months=6 as 183 days,
    plus dmab_grace_weeks=4; both ends inclusive, see the module docstring).
    Last dose = latest MedicationAdministration/MedicationStatement, else the
    latest MedicationRequest authoredOn (a `completed` single-dose order is a dose
    given). Quiet when: the course was explicitly stopped (C-DMAB-STOP speaks), a
    bisphosphonate was given since the last dose or is active (transition done),
    or a new denosumab order was written after the last administration (next dose
    already ordered). Suggests the next 60 mg SC dose; with kidney function below
    30 or dialysis the dose rides with the PROLIA24 plan (second-pass 2).
    Quiet in a current pregnancy: "give the next dose" beside C-SAFE-PREGNANCY ("must not
    be given"; Prolia label: contraindicated in pregnancy) would contradict it; that card
    carries the rebound warning and the specialist referral. Beside an active anabolic agent
    (variant anabolic-on-board, beside_anabolic): it does not prevent the rebound (DATA-Switch;
    AACE20, ES20); the dose stays, with a bone specialist referral as the other choice."""
    if current_pregnancy(record, settings):
        return []
    timing = denosumab_timing(record, settings)
    if timing is None:
        return _denosumab_date_unknown(record, today, settings)
    if timing.phase != DUE:
        return []
    if denosumab_stop_order(record) or bisphosphonate_since(record, timing.last_dose):
        return []
    if _later_denosumab_order(timing):
        return []
    listed = _listed_after_due(timing)
    if listed:  # the medication list says current: the date first, no dose (review 15)
        return [_history_incomplete("C-DMAB-DUE", timing, listed)]
    facts = timing.facts()
    keys, built = denosumab_plan(record, settings, facts)
    anabolic = active_anabolic(record)
    # Review 14: with a low calcium the engine withholds the dose (C-SAFE-HYPOCA; Prolia label:
    # correct hypocalcemia before each dose), so the summary does not say "give the next dose by".
    low = low_calcium(record, settings)
    next_step = f"give the next 60 mg dose by {timing.grace_end}"
    if low:
        next_step = ("correct the low calcium before the next dose" if anabolic else
                     f"correct the low calcium before the next 60 mg dose (due by {timing.grace_end}; none offered "
                     "until then)")
    variables = {"last_dose": timing.last_dose.isoformat(), "grace_end": timing.grace_end.isoformat(),
                 "next_step": next_step, "ckd_plan": ckd_plan_note(record, settings, short=True),
                 "calcium_note": "**Calcium is low:** correct it first; no dose is offered until then." if low else "",
                 # variant anabolic-unstudied (review 15 chart 08: it still read "by <date>", the dose the other choice)
                 "due_by": "correct the low calcium first" if low else f"by {timing.grace_end}",
                 "after_calcium": ", once the calcium is corrected," if low else ""}
    if anabolic:  # the dose stays, the card says the anabolic does not replace it (beside_anabolic)
        return [beside_anabolic("C-DMAB-DUE", "Denosumab due", anabolic, facts, keys, built, variables)]
    return [Finding("C-DMAB-DUE", facts=tuple(facts), variables=variables,
                    suggestions=keys, extra_suggestions=built)]


def _denosumab_date_unknown(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-DMAB-DUE, variant last-dose-unknown (review 13): denosumab is on the medication list
    (an active statement) but no dose date is (no administration, no single-dose statement,
    no dated order), so neither DUE nor OVERDUE can be told and no card spoke. A dose more
    than 7 months late lets bone turnover rebound (ECTS21; Prolia label: vertebral fractures
    after stopping). Ask for the date of the last injection. No one-click dose: given less
    than 5 months after an unrecorded one it is too early (C-SAFE-DOSE-INTERVAL), and late
    or not is exactly what is unknown. Quiet when the statement began less than one
    interval ago (no dose since can be due yet), with a bisphosphonate on board (the
    transition), or on an explicit stop (C-DMAB-STOP). Beside an active anabolic agent (review 15:
    the other denosumab cards named it, this one did not): the card says it does not prevent the
    rebound (DATA-Switch; AACE20, ES20) and offers the bone specialist referral (_anabolic_parts),
    still no dose."""
    e = record.medications.get("denosumab")
    if e is None or e.oncology_only or not e.active or e.last_dose is not None:
        return []
    if e.start and (today - e.start).days < months_to_days(settings.dmab_interval_months):
        return []
    if denosumab_stop_order(record) or bisphosphonate_since(record, None):
        return []
    listed = [ev for ev in e.events if ev.status in ("active", "on-hold")]
    facts = [f"Denosumab on the medication list ({listed[0].ref if listed else e.events[0].ref}, "
             f"since {e.start or 'an unknown date'}); no injection date on record"]
    variables = {"since": f" since {e.start}" if e.start else "",
                 "ask": "date of the last injection unknown: confirm it (due every 6 months)", "anabolic_note": ""}
    anabolic = active_anabolic(record)
    if not anabolic:
        return [Finding("C-DMAB-DUE", facts=tuple(facts), variant="last-dose-unknown", suggestions=(),
                        variables=variables)]
    facts, referral, variables, _ = _anabolic_parts("Denosumab, last injection date unknown,", anabolic, facts,
                                                    variables)
    variables["ask"] = f"last injection date unknown: confirm it; {variables['anabolic']} {variables['prevents']} " \
                       "the rebound"
    variables["anabolic_note"] = (
        f"**{variables['anabolic_title']}** is on board but {variables['prevents']} the rebound after denosumab "
        "(DATA-Switch, Leder et al., Lancet 2015, studied teriparatide; AACE 2020 and the Endocrine Society 2020 "
        "advise against switching from denosumab to teriparatide). Plan the sequence with a bone specialist "
        "(referral below) before a dose lapses.")
    return [Finding("C-DMAB-DUE", facts=tuple(facts), variant="last-dose-unknown", suggestions=(),
                    variables=variables, extra_suggestions=(referral,))]


def _in_pregnancy(card_id: str, facts: list[str], pregnancy: list[str], variables: dict[str, str]) -> Finding:
    """C-DMAB-OVERDUE or C-DMAB-STOP in a current pregnancy (facts.current_pregnancy, the reading
    C-SAFE-PREGNANCY decides on), variant `pregnancy` (clinical review 20, M2): "give the overdue dose
    now" or "plan zoledronic acid or alendronate" stood beside C-SAFE-PREGNANCY's "must not be given".
    Neither is for pregnancy: denosumab is contraindicated (Prolia label: fetal harm), bisphosphonates
    are not for use in it (Fosamax, Reclast labels; they stay in bone for years); second-pass 2. The
    rebound is still the risk (ECTS21), so the card says so and offers the bone specialist referral
    C-SAFE-PREGNANCY offers (one per screen: engine.offer_each_order_once); no drug."""
    return Finding(card_id, facts=tuple(dict.fromkeys([*facts, *pregnancy])), variant="pregnancy",
                   variables=variables, suggestions=(), extra_suggestions=(pregnancy_referral(
                       "Denosumab during pregnancy: plan stopping and follow-on bone treatment"),))


@rule("patient-view")
def denosumab_overdue(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-DMAB-OVERDUE (critical), brief SAFE-13; ES20/ECTS21 ("alternative
    antiresorptive treatment should be initiated 6 months after the final
    denosumab injection"), AACE20, seed. Last denosumab dose 212 days or more
    ago (more than 6 months + 4 weeks, see the module docstring) and no
    bisphosphonate given or started after it: bone loss and multiple vertebral
    fractures rebound after denosumab wears off. Fires whether or not the
    order was stopped. Suggestions (at most one): denosumab now (with the
    PROLIA24 plan below kidney function 30 or on dialysis), or zoledronic acid
    5 mg IV, or alendronate 70 mg weekly (each only when not contraindicated on
    record, by the one kidney reading)."""
    timing = denosumab_timing(record, settings)
    if timing is None or timing.phase != OVERDUE:
        return []
    if bisphosphonate_since(record, timing.last_dose):
        return []
    pregnancy = current_pregnancy(record, settings)
    listed = _listed_after_due(timing)
    if listed and not pregnancy:  # still critical, but the date of the last injection first (review 15 chart 04c)
        return [_history_incomplete("C-DMAB-OVERDUE", timing, listed)]
    facts = timing.facts()
    stopped = denosumab_stop_order(record)
    if stopped:
        facts.append(f"Denosumab order {stopped.status} ({stopped.ref})")
    pending = [ev for ev in timing.exposure.events if ev.resource_type == "MedicationRequest"
               and ev.status in ("active", "on-hold") and ev.start and ev.start > timing.last_dose]
    if pending and timing.from_administration:
        facts.append(f"A denosumab order dated {max(ev.start for ev in pending if ev.start)} is on file "
                     "but no dose was given after it")
    facts.append("No bisphosphonate given since the last denosumab dose")
    if pregnancy:  # no dose, no bisphosphonate, whatever the history (review 20; Prolia, Fosamax, Reclast)
        return [_in_pregnancy("C-DMAB-OVERDUE", facts, pregnancy, {
            "last_dose": timing.last_dose.isoformat(), "days_since": str(timing.days_since)})]
    keys, built = denosumab_plan(record, settings, facts)
    # Review 15 (charts 08b, 08e): with a low calcium no dose is offered (Prolia label, PROLIA24:
    # correct hypocalcemia before dosing; the bisphosphonate labels too), so "Act now" no longer
    # says "give the overdue dose now".
    low = low_calcium(record, settings)
    variables = {"last_dose": timing.last_dose.isoformat(), "days_since": str(timing.days_since),
                 "patient_instruction": ORAL_BP_INSTRUCTIONS, "ckd_plan": ckd_plan_note(record, settings),
                 "now": " once the calcium is corrected" if low else " now",
                 "calcium_note": ("**Calcium is low:** correct it first (Prolia label: correct hypocalcemia before "
                                  "dosing); no dose is offered here until then." if low else "")}
    anabolic = active_anabolic(record)
    if anabolic:
        return [beside_anabolic("C-DMAB-OVERDUE", "Denosumab overdue", anabolic, facts, keys, built, variables)]
    complications = antiresorptive_complications(record)
    if complications:  # review 20: no bisphosphonate; the dose now, and the bone specialist
        return [with_complication("C-DMAB-OVERDUE", complications, facts, keys, built, variables,
                                  referral_first=False)]
    keys += tuple(bisphosphonate_keys(record, settings, facts))
    return [Finding("C-DMAB-OVERDUE", facts=tuple(facts), variables=variables,
                    suggestions=keys, extra_suggestions=built)]


def active_anabolic(record: PatientRecord) -> AgentExposure | None:
    """The anabolic agent (teriparatide, abaloparatide, romosozumab) on board, if any."""
    anabolic = [e for e in record.active_agents(t.ANABOLIC_CLASSES) if not e.oncology_only]
    return anabolic[0] if anabolic else None


def _anabolic_parts(why: str, e: AgentExposure, facts: list[str], variables: dict[str, str],
                    ) -> tuple[list[str], Suggestion, dict[str, str], bool]:
    """What every denosumab card says of an anabolic agent `e` on board (beside_anabolic,
    C-DMAB-DUE's last-dose-unknown): its fact, the bone specialist referral (recommended when the
    combination is unstudied: romosozumab, abaloparatide), the text variables, and unstudied."""
    name = drug_label(e.agent)
    facts = [*facts, f"{name.capitalize()} active since {e.start or 'an unknown date'}"]
    unstudied = e.agent != "teriparatide"
    referral = referral_suggestion(ENDOCRINOLOGY, "Plan the sequence with a bone specialist (endocrinology)",
                                   f"{why} with {name} started: rebound risk", recommended=unstudied)
    variables = {**variables, "anabolic": name, "anabolic_title": name.capitalize(),
                 "prevents": "has not been shown to prevent" if unstudied else "does not prevent"}
    return facts, referral, variables, unstudied


def beside_anabolic(card_id: str, why: str, e: AgentExposure, facts: list[str], keys: tuple[str, ...],
                    built: tuple[Suggestion, ...], variables: dict[str, str]) -> Finding:
    """A denosumab card's variant anabolic-on-board (C-DMAB-OVERDUE, -STOP, -DUE; review 13:
    denosumab -> teriparatide). An anabolic agent started in denosumab's place does not hold
    off the rebound: in DATA-Switch (Leder, Lancet 2015) women switched from denosumab to
    teriparatide lost bone at the hip and spine, and AACE20 / ES20 advise against that switch.
    The card names the anabolic and offers the denosumab dose (continued alongside; brief
    SAFE-16: an anabolic with an antiresorptive is a specialist combination) or a bone
    specialist. No one-click bisphosphonate beside it: starting a bisphosphonate with an
    anabolic agent is also such a combination (alendronate blunts teriparatide's effect), the
    specialist's call.
    Romosozumab or abaloparatide (variant anabolic-unstudied; review 14): DATA-Switch studied
    teriparatide, and denosumab beside either agent is an unstudied combination, so the card says
    so and the specialist referral leads as the recommended suggestion, the dose after it."""
    facts, referral, variables, unstudied = _anabolic_parts(why, e, facts, variables)
    if unstudied:  # the referral first: the card's YAML dose is built after it
        doses = tuple(yaml_suggestion(card_id, key, variables) for key in keys)
        return Finding(card_id, facts=tuple(facts), variant="anabolic-unstudied", variables=variables,
                       suggestions=(), extra_suggestions=(referral, *doses, *built))
    return Finding(card_id, facts=tuple(facts), variant="anabolic-on-board", variables=variables,
                   suggestions=keys, extra_suggestions=(*built, referral))


@rule("patient-view")
def denosumab_stop(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-DMAB-STOP (warning), brief SAFE-14 as second-pass 3 corrects it; ECTS21,
    ES19/ES20, AACE20. Fires only on an EXPLICIT stop (facts.denosumab_stop_order:
    the newest denosumab order stopped or cancelled, or its statusReason says so,
    and no active or newer order) with no bisphosphonate started after the last
    dose or active/planned: do not stop denosumab without a follow-on
    bisphosphonate (zoledronic acid 6 months after the last dose, or oral
    alendronate). The brief also counted `completed` as stopped; the review was
    right that this fires on patients dosed on schedule (each single-dose order
    closed as completed) and put zoledronic acid on top of continuing denosumab,
    so a completed order never counts. Not when C-DMAB-OVERDUE fires (it carries
    the same transition). Beside an active anabolic agent: variant anabolic-on-board (see
    _stop_beside_anabolic)."""
    e = record.medications.get("denosumab")
    if e is not None and e.oncology_only:
        return []
    stopped = denosumab_stop_order(record)
    if stopped is None:
        return []
    timing = denosumab_timing(record, settings)
    if timing and timing.phase == OVERDUE:
        return []
    if bisphosphonate_since(record, e.last_dose if e else None):
        return []
    why = f", reason: {stopped.status_reason}" if stopped.status_reason else ""
    written = f"dated {stopped.start or 'an unknown date'}"
    if e and stopped.start and any(ev.resource_type != "MedicationRequest" and ev.dose_date
                                   and ev.dose_date > stopped.start for ev in e.events):
        # Review 20 (L4): a dose given after the stopped order's date read as given after the stop.
        # FHIR R4 dates no status change (authoredOn is when the order was written), and a standing
        # order written long before its last dose, then stopped, is the usual shape (fixture
        # c-dmab-stop-no-bisphosphonate): still the explicit stop of second-pass 3, said as such.
        written = f"written on {stopped.start}, before the last dose; the stop itself is not dated"
    facts = [f"Denosumab order {stopped.status}{why} ({stopped.ref}, {written})"]
    if timing:
        facts += timing.facts()
        zol_day = max(timing.due, today)
    else:
        facts.append("Last denosumab dose date unknown")
        zol_day = today
    facts.append("No bisphosphonate started or planned after denosumab")
    pregnancy = current_pregnancy(record, settings)
    if pregnancy:  # no bisphosphonate follow-on in pregnancy (review 20; Fosamax, Reclast labels)
        return [_in_pregnancy("C-DMAB-STOP", facts, pregnancy, {"zoledronate_date": zol_day.isoformat()})]
    anabolic = active_anabolic(record)
    if anabolic:
        return [_stop_beside_anabolic(record, settings, anabolic, timing, zol_day, facts)]
    complications = antiresorptive_complications(record)
    if complications:  # review 20: no bisphosphonate; the bone specialist, the next dose meanwhile
        dmab_keys, built, when = _next_dose(record, settings, timing, zol_day, facts)
        return [with_complication("C-DMAB-STOP", complications, facts, dmab_keys, built,
                                  {"dose_date": zol_day.isoformat(), "next_dose": when,
                                   "ckd_plan": ckd_plan_note(record, settings) if timing else ""},
                                  referral_first=True)]
    keys = bisphosphonate_keys(record, settings, facts, zoledronate_key="zoledronic-acid-scheduled")
    plan = follow_on_plan("zoledronic-acid-scheduled" in keys, "alendronate" in keys,
                          "no bisphosphonate possible: continue denosumab or refer")
    return [Finding("C-DMAB-STOP", facts=tuple(facts),
                    variables={"zoledronate_date": zol_day.isoformat(), "patient_instruction": ORAL_BP_INSTRUCTIONS,
                               "plan": plan},
                    suggestions=tuple(keys))]


def _stop_beside_anabolic(record: PatientRecord, settings: ClinicalSettings, e: AgentExposure,
                          timing: DmabTiming | None, dose_day: dt.date, facts: list[str]) -> Finding:
    """C-DMAB-STOP, variant anabolic-on-board (review 13): denosumab stopped for an anabolic
    agent is DATA-Switch's denosumab -> teriparatide (beside_anabolic: no bisphosphonate, the
    dose alongside or a bone specialist). The dose is the next one, on or after 6 months from
    the last (earlier is C-SAFE-DOSE-INTERVAL's too soon); with no dose date on record, none is
    offered (too early or late is unknown, as on C-DMAB-DUE's last-dose-unknown)."""
    keys, built, when = _next_dose(record, settings, timing, dose_day, facts)
    return beside_anabolic("C-DMAB-STOP", "Denosumab stopped", e, facts, keys, built,
                           {"dose_date": dose_day.isoformat(), "next_dose": when,
                            "ckd_plan": ckd_plan_note(record, settings) if timing else ""})


def _next_dose(record: PatientRecord, settings: ClinicalSettings, timing: DmabTiming | None, dose_day: dt.date,
               facts: list[str]) -> tuple[tuple[str, ...], tuple[Suggestion, ...], str]:
    """A stopped course's next denosumab dose (C-DMAB-STOP's variants): its YAML keys, built
    suggestions and words; none without a last dose date on record."""
    if not timing:
        return (), (), "the next 60 mg dose once the date of the last injection is confirmed (none on record)"
    keys, built = denosumab_plan(record, settings, facts, on=dose_day)
    when = f"the next 60 mg dose on or after {dose_day} (6 months after the last dose), then every 6 months"
    if low_calcium(record, settings):  # no dose offered (Prolia label; review 15, as C-DMAB-DUE/-OVERDUE)
        when += "; correct the low calcium first (no dose is offered until then)"
    return keys, built, when


@rule("patient-view")
def anabolic_follow_on(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-ANABOLIC-FOLLOW-ON (warning), brief SAFE-12; ACP23 Rec 3 ("followed
    by a bisphosphonate"), AACE20, ES19. The anabolic course finished more
    than anabolic_followon_months (3 months = 91 days) ago and no
    antiresorptive (bisphosphonate, denosumab, raloxifene) is active or was
    started after it. At 91 days or less: quiet, there is still time.
    Suggestions (at most one): alendronate 70 mg weekly, denosumab 60 mg (with
    the PROLIA24 plan in advanced kidney disease)."""
    course = anabolic_course_end(record, settings)
    if course is None or romosozumab_order_at_limit(record, settings):
        return []  # review 16: an active romosozumab order at 12 doses is C-SAFE-ROMO-LIMIT's (stop, follow on)
    end, facts = course
    days = (today - end).days
    if days <= months_to_days(settings.anabolic_followon_months):
        return []
    for e in record.exposures(t.ANTIRESORPTIVE_CLASSES):
        if e.active or any((_when(ev) or dt.date.min) >= end for ev in e.events):
            return []
    ended, since = course_end_words(record, settings, end)  # a 12-dose or interrupted romosozumab course
    facts = facts + [f"{days} days since {since}; no antiresorptive started since"]
    pregnancy = current_pregnancy(record, settings)
    if pregnancy:
        # Review 20 (M2): "start alendronate or denosumab" in a pregnancy (Prolia label:
        # contraindicated; Fosamax: not for use in it; second-pass 2). The follow-on waits, planned
        # by a bone specialist (the referral C-SAFE-PREGNANCY offers); no drug.
        return [Finding("C-ANABOLIC-FOLLOW-ON", facts=tuple(facts + pregnancy), variables={
            "ended": ended, "patient_instruction": ORAL_BP_INSTRUCTIONS, "ckd_plan": "",
            "start": "none in pregnancy: specialist",
            "suggested": ("no antiresorptive while pregnant: denosumab and raloxifene are contraindicated in "
                          "pregnancy (Prolia, Evista labels), bisphosphonates are not for use in it (labels). A bone "
                          "specialist plans the follow-on after the pregnancy and breastfeeding with the obstetric "
                          "team (referral below)")}, suggestions=(), extra_suggestions=(pregnancy_referral(
                "Anabolic course over during pregnancy: plan the follow-on antiresorptive"),))]
    keys: tuple[str, ...] = ()
    oral = bp_contraindications(record, settings)
    if oral:
        facts.append(f"Oral alendronate not suggested: {'; '.join(oral)}")
    else:
        keys = ("alendronate",)  # ACP23 Rec 3 names a bisphosphonate first
    # Review 20 (L5): denosumab as the only drug is not labelled "(alternative)".
    dmab_keys, built = denosumab_plan(record, settings, facts, "denosumab" if keys else "denosumab-first", start=True)
    complications = antiresorptive_complications(record)
    if complications:
        # Review 20: an atypical femoral fracture or jaw osteonecrosis on record (bp_problems has kept
        # alendronate off): no bisphosphonate (Fosamax, Reclast labels; second-pass 4: hold it and
        # refer), and denosumab, new to the patient, carries the same label warnings and cannot simply
        # be stopped once started (C-AR-COMPLICATION on a new start): the bone specialist leads.
        name = complication_name(complications)
        variables = {"ended": ended, "patient_instruction": ORAL_BP_INSTRUCTIONS,
                     "start": "specialist's plan",  # the summary fits 139 characters
                     "suggested": (f"a bone specialist's plan (referral below). With {name} on record no "
                                   "bisphosphonate is offered (Fosamax and Reclast labels: hold it and refer). "
                                   "Denosumab 60 mg every 6 months is the other option offered, but the Prolia label "
                                   "lists the same complications and, once started, it cannot simply be stopped "
                                   "(rebound)"),
                     "ckd_plan": ckd_plan_note(record, settings, start=True)}
        referral = referral_suggestion(ENDOCRINOLOGY, BONE_SPECIALIST, f"{'; '.join(complications)}: "
                                       "antiresorptive after the anabolic course", recommended=True)
        return [Finding("C-ANABOLIC-FOLLOW-ON", facts=tuple(facts), variables=variables, suggestions=(),
                        extra_suggestions=(referral, *(yaml_suggestion("C-ANABOLIC-FOLLOW-ON", k, variables)
                                                       for k in dmab_keys), *built))]
    if keys:
        start, suggested = "start alendronate or denosumab", (
            "alendronate 70 mg weekly (denosumab 60 mg every 6 months is the alternative, for example when an "
            "oral bisphosphonate is not suitable)")
    elif kidney_egfr(record, settings).below(settings.egfr_denosumab_ckd):
        start, suggested = "plan denosumab with nephrology", (
            "denosumab, started only after a CKD-MBD work-up with nephrology (an oral bisphosphonate is not "
            "suitable here)")
    else:
        start, suggested = "start denosumab", "denosumab 60 mg every 6 months (an oral bisphosphonate is not suitable here)"
    return [Finding("C-ANABOLIC-FOLLOW-ON", facts=tuple(facts),
                    variables={"ended": ended, "patient_instruction": ORAL_BP_INSTRUCTIONS,
                               "start": start, "suggested": suggested,
                               "ckd_plan": ckd_plan_note(record, settings, start=True)},
                    suggestions=keys + dmab_keys, extra_suggestions=built)]


__all__ = ["denosumab_due", "denosumab_overdue", "denosumab_stop", "anabolic_follow_on", "denosumab_timing",
           "denosumab_stop_order", "bisphosphonate_since", "anabolic_course_end", "months_to_days",
           "DmabTiming", "DUE", "OVERDUE", "NOT_DUE"]
