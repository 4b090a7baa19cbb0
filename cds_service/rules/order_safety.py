"""Drug-safety checks on orders and on active therapy (brief section 4).

Written here (card ids from brief section 7 and ../shared/clinical/README.md):
  SAFE-1/2/3 C-SAFE-RENAL (orders and active drugs), SAFE-4 C-SAFE-HYPOCA,
  SAFE-5 C-VITD-LOW on order hooks, SAFE-6 C-SAFE-DMAB-CKD, SAFE-7 C-SAFE-ESOPH,
  SAFE-8 C-SAFE-ROMO-CV, SAFE-9 C-SAFE-ROMO-LIMIT, SAFE-10 C-SAFE-PTH-LIMIT,
  SAFE-11 C-SAFE-ANABOLIC-CONTRA, SAFE-15 C-DUP-ANTIRES; second pass
  (../shared/clinical/second-pass.md 2): C-SAFE-PREGNANCY, C-SAFE-ROMO-CV on
  patient-view, the wider C-SAFE-HYPOCA and C-SAFE-ANABOLIC-CONTRA, the
  PROLIA24 plan on C-SAFE-DMAB-CKD.
Not here: SAFE-12..14 (follow_up), SAFE-16 (anabolic + antiresorptive is not a
duplicate), dose intervals / pre-dose labs / two anabolics (dosing), AFF / ONJ
(on_therapy).

Order hooks judge record.judged_drafts (the selections on order-select, every
draft on order-sign); the other drafts are context (SAFE-15 counts them as
concurrent). A draft that names no drug (the public sandbox sends one when Rx
View opens) matches nothing and stays quiet. Oncology products (Xgeva 120 mg,
Zometa 4 mg) are not osteoporosis regimens: their own labels govern them, so
only SAFE-15 looks at them (brief 8.6). Safety cards need an actual value: an
unknown kidney function, calcium or vitamin D is never read as abnormal; kidney
function is the one reading of rules/facts.kidney (coded kidney failure and
dialysis count whatever the last lab says).

An unsafe draft gets one suggestion per mutually exclusive alternative, each a
`delete` of the draft (its relative reference) plus the `create` of the safe
alternative where the brief names one; cards say at-most-one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable

from cds_service.card_render import load_card
from cds_service.fhir import terminology as t
from cds_service.record import (
    KIDNEY_CUTOFFS,
    LAB_LABELS,
    VITAMIN_D_CUTOFFS,
    AgentExposure,
    ConditionHit,
    DraftOrder,
    PatientRecord,
    months_between,
    written_beside,
)
from cds_service.rules.base import Action, Finding, Suggestion, record_codes, rule, trigger_tokens
from cds_service.rules.facts import (
    DAYS_PER_MONTH,
    FAILURE,
    HYPOCALCEMIA,
    KidneyReading,
    kidney_band_tokens,
    ORAL_BP_INSTRUCTIONS,
    antiresorptive_complications,
    calcium,
    ckd_4_5,
    condition_fact,
    course_start,
    current_pregnancy,
    cv_date_unknown,
    cv_fact,
    cv_hits,
    cv_possibly_recent,
    cv_undated,
    denosumab_timing,
    draft_fact,
    drug_label,
    drug_title,
    high_calcium,
    hypocalcemia_code_facts,
    kidney,
    ckd_mbd_done,
    ckd_mbd_done_facts,
    kidney_egfr,
    kidney_fact,
    low_calcium,
    mi_date_unknown,
    on_board,
    ordered,
    pth_course_facts,
    pth_months_used,
    romosozumab_course,
    romosozumab_order_at_limit,
    unexplained_alp,
    vitamin_d_deficient,
    vitamin_d_hold_note,
    vitamin_d_repletion_hold,
)
from cds_service.rules.orders import (
    PROLIA24_TEXT,
    ckd_mbd_work_up,
    cholecalciferol_repletion,
    follow_on_suggestions,
    predose_lab_actions,
    pregnancy_referral,
    prolia24_actions,
    pth_analog_daily,
    prolia24_suggestion,
    stop_suggestion,
)
from cds_service.rules.on_therapy import complication_name, treatment_failure
from cds_service.rules.settings import ClinicalSettings

ORDERS = ("order-select", "order-sign")


def _date(value: dt.date | None) -> str:
    return value.isoformat() if value else "an unknown date"


def _active(record: PatientRecord, agent: str) -> bool:
    e = record.medications.get(agent)
    return bool(e and e.active)


def _delete(draft: DraftOrder, agent: str) -> Action:
    return Action("delete", f"Remove the draft {drug_label(agent)} order", resource_id=(draft.reference,))


def _remove(draft: DraftOrder, agent: str) -> Suggestion:
    """Delete only: always the last of the alternatives."""
    return Suggestion(f"Remove the draft {drug_label(agent)} order", (_delete(draft, agent),))


def _ckd_workup(record: PatientRecord, settings: ClinicalSettings, draft: DraftOrder, agent: str) -> Suggestion:
    """Instead of one-click denosumab in advanced kidney disease (PROLIA24): remove the
    draft, evaluate CKD-MBD and refer (less what is on record recently, facts.ckd_mbd_done);
    denosumab is started under that supervision."""
    return Suggestion(f"Remove the {drug_label(agent)} order; CKD-MBD work-up and nephrology referral before "
                      "denosumab", (_delete(draft, agent),) + prolia24_actions(
                          after_dose=False, done=ckd_mbd_done(record, settings)), True)


def _exact_kidney_first(draft: DraftOrder, agent: str) -> Suggestion:
    """Instead of one-click denosumab when the eGFR is known only as a bound that leaves 30
    open ("<35"): below 30 denosumab needs the PROLIA24 work-up first, so an exact kidney
    function decides before any alternative is ordered."""
    return Suggestion(f"Remove the {drug_label(agent)} order; an exact eGFR first (below 30, denosumab needs the "
                      "CKD-MBD work-up)", (_delete(draft, agent), *predose_lab_actions(kidney=True, calcium=False)),
                      True)


def _replacements(record: PatientRecord, settings: ClinicalSettings, draft: DraftOrder, agent: str, *,
                  zoledronate: bool = False, denosumab: bool = True, alendronate: bool = False,
                  risedronate: bool = False) -> tuple[tuple[str, ...], tuple[Suggestion, ...]]:
    """(YAML suggestion keys, built suggestions) replacing `draft` (delete + create), safest
    first; "remove" (delete only) last. Only alternatives the record does not rule out: no
    injection with known low calcium, no bisphosphonate unless kidney function is known to
    be at or above its limit, no drug the patient already takes, no antiresorptive after a
    coded atypical femoral fracture or jaw osteonecrosis, nothing in pregnancy. In advanced
    kidney disease denosumab comes as the PROLIA24 work-up, not as an order."""
    if not draft.reference:
        return (), ()  # nothing to delete: the card still explains
    remove = (_remove(draft, agent),)
    if current_pregnancy(record, settings) or antiresorptive_complications(record):
        return (), remove
    keys: list[str] = []
    built: tuple[Suggestion, ...] = ()
    reading = kidney(record, settings)
    hypoca = low_calcium(record, settings)
    if risedronate and risedronate_within_label(record, settings) and not _oral_bp_problem(record) \
            and not _active(record, "risedronate"):
        keys.append("risedronate-instead")  # the same kind of drug, within its label: first
    if denosumab and not hypoca and not _active(record, "denosumab"):
        dmab_reading = kidney_egfr(record, settings)  # PROLIA24: the lower of clearance and eGFR (review 20)
        if dmab_reading.below(settings.egfr_denosumab_ckd):
            work_up = _ckd_workup(record, settings, draft, agent)
            built = (work_up,) if len(work_up.actions) > 1 else ()  # all on record: "remove" is the same
        elif dmab_reading.may_be_below(settings.egfr_denosumab_ckd):
            built = (_exact_kidney_first(draft, agent),)
        else:
            keys.append("denosumab-instead")
    if zoledronate and not hypoca and reading.known and not reading.below(settings.egfr_zoledronate_min) \
            and not _active(record, "zoledronic_acid"):
        keys.append("zoledronate-instead")
    if alendronate and reading.known and not reading.below(settings.egfr_alendronate_min) \
            and not _oral_bp_problem(record) and not _active(record, "alendronate"):
        keys.append("alendronate-instead")
    return tuple(keys), built + remove


# ---------------------------------------------------------------------------
# SAFE-1/2/3: kidney function (the one kidney reading, second-pass 1)
# ---------------------------------------------------------------------------

RENAL_AGENTS = ("alendronate", "risedronate", "ibandronate", "zoledronic_acid")


def _renal_limit(agent: str, settings: ClinicalSettings) -> float:
    return {"alendronate": settings.egfr_alendronate_min, "risedronate": settings.egfr_risedronate_min,
            "ibandronate": settings.egfr_risedronate_min, "zoledronic_acid": settings.egfr_zoledronate_min}[agent]


def _renal_problem(record: PatientRecord, settings: ClinicalSettings, agent: str) -> tuple[str, list[str]] | None:
    """(indicator, facts) when `agent` is unsafe for this kidney function: the kidney
    reading (coded kidney failure, dialysis or CKD 4 count whatever the last lab says;
    unknown counts as nothing) below the label limit, or acute kidney injury (zoledronate)."""
    reading = kidney(record, settings)
    limit = _renal_limit(agent, settings)
    facts = []
    if reading.below(limit):
        facts.append(kidney_fact(reading, limit, drug_label(agent)))
    if agent == "zoledronic_acid":
        aki = record.condition_hits("acute_kidney_injury")
        if aki:
            facts.append(condition_fact(aki[0], "Acute kidney injury"))
    if not facts:
        return None
    return ("critical" if agent == "zoledronic_acid" else "warning"), facts


def _renal_recheck(record: PatientRecord, settings: ClinicalSettings, agent: str, first_fact: str,
                   situation: str, when: str = "the next dose of") -> list[Finding]:
    """C-SAFE-RENAL as a recheck (issue 14: an old abnormal result prompts a recheck rather than
    vanishing): kidney function is unknown now, but the last value on file, older than
    kidney_lab_max_age_months, was below this drug's limit -> warning with a creatinine / eGFR
    order. Nothing is deleted: the value may have recovered."""
    reading = kidney(record, settings)
    limit = _renal_limit(agent, settings)
    # A recent eGFR reported only as a bound above the limit ("<35" for risedronate's 30) may be
    # below it: a recheck as well, never silence (review: "<30" and "<35" passed a risedronate order).
    open_bound = reading.may_be_below(limit)
    if not (reading.recheck_below(limit) or open_bound):
        return []
    months = settings.kidney_lab_max_age_months
    variables = _renal_variables(record, agent, "warning", settings, situation,
                                 f"Recheck creatinine and eGFR before {when} {drug_label(agent)}; until "
                                 "then its kidney safety is unknown, not assured.")
    if open_bound:
        variables.update({
            "verdict": "needs a kidney recheck",
            "kidney_problem": f"kidney function ({reading.label}) may be below {limit:g} mL/min",
            "kidney_status": (f"The last kidney function was reported only as {reading.label}: it may be below "
                              "the labelled limit for this drug"),
        })
        return [Finding("C-SAFE-RENAL", facts=(first_fact, *reading.facts), indicator="warning",
                        variables=variables, suggestions=("recheck-kidney",), source_url=t.label_url(agent))]
    bound = reading.bound if reading.last_value is not None else ""
    last = f"last {bound}{written_beside(reading.last_value, 0, KIDNEY_CUTOFFS)} on {_date(reading.last_date)}, over {months} months old"
    variables.update({
        "verdict": "needs a kidney recheck",
        "kidney": last,
        "kidney_problem": f"kidney function ({last}) was below {limit:g} mL/min",
        "kidney_status": (f"The last kidney function on file was below the labelled limit for this drug, but it is "
                          f"older than {months} months, so today's kidney function is unknown"),
    })
    return [Finding("C-SAFE-RENAL", facts=(first_fact, *reading.facts), indicator="warning", variables=variables,
                    suggestions=("recheck-kidney",), source_url=t.label_url(agent))]


def _renal_tokens(record: PatientRecord, settings: ClinicalSettings, facts: list[str]) -> tuple[str, ...]:
    """C-SAFE-RENAL's new triggers by content (Finding.trigger_codes), on every hook alike (feedback
    on an order's card quiets the card on patient-view): the codes its kidney facts quote, and the
    kidney band, so a lab crossing into a worse band on the very day of the feedback (no newer
    date) wakes the card."""
    quoted = trigger_tokens(Finding("C-SAFE-RENAL", facts=tuple(facts)), record_codes(record))
    return tuple(sorted(quoted.union(kidney_band_tokens(kidney(record, settings)))))


def _renal_variables(record: PatientRecord, agent: str, indicator: str, settings: ClinicalSettings,
                     situation: str, advice: str) -> dict[str, str]:
    critical = indicator == "critical"
    brand = t.AGENTS[agent].label_brand or drug_label(agent)
    reading = kidney(record, settings)
    aki = record.condition_hits("acute_kidney_injury") if agent == "zoledronic_acid" else []
    # Review: acute kidney injury with a normal eGFR read "kidney function (eGFR 52) below 35".
    problem = (f"kidney function ({reading.label}) below {_renal_limit(agent, settings):g} mL/min"
               if reading.below(_renal_limit(agent, settings)) else
               f"acute kidney injury ({aki[0].code or 'coded'})" if aki else f"kidney function ({reading.label})")
    return {
        "kidney_problem": problem,
        "drug": drug_title(agent),
        "drug_name": drug_label(agent),
        "verdict": "contraindicated" if critical else "not recommended",
        "kidney_status": "Kidney function is below the labelled limit for this drug",
        "renal_limit": f"{_renal_limit(agent, settings):g}",
        "kidney": kidney(record, settings).label,
        "label_text": ("Reclast label: contraindicated with creatinine clearance < 35 mL/min and in acute renal "
                       "impairment" if critical else
                       f"{brand} label: not recommended with creatinine clearance < "
                       f"{_renal_limit(agent, settings):g} mL/min"),
        "situation": situation,
        "advice": advice,
    }


def risedronate_within_label(record: PatientRecord, settings: ClinicalSettings) -> bool:
    """Kidney function known, below alendronate's limit (35) but not below risedronate's (30):
    risedronate is the bisphosphonate still within its label there (Actonel: not recommended
    below a creatinine clearance of 30 mL/min), as C-TX-BP offers it (ACP 2023 Rec 1a)."""
    reading = kidney(record, settings)
    return reading.known and not reading.below(settings.egfr_risedronate_min)


def _renal_advice(record: PatientRecord, settings: ClinicalSettings, critical: bool, prefix: str,
                  agent: str = "") -> str:
    if agent == "alendronate" and risedronate_within_label(record, settings):
        return (f"{prefix} Risedronate 35 mg once weekly is labelled down to a creatinine clearance of "
                f"{settings.egfr_risedronate_min:g} mL/min (Actonel): it keeps a bisphosphonate, the first choice "
                "(ACP 2023, Recommendation 1a). Denosumab 60 mg every 6 months, with a serum calcium check before the "
                "first dose, is the alternative.")
    reading = kidney_egfr(record, settings)  # the advice is about denosumab: PROLIA24 (kidney_egfr)
    if reading.below(settings.egfr_denosumab_ckd):
        return (f"{prefix} Denosumab is the usual alternative when a bisphosphonate is ruled out by kidney function, "
                f"but at this level it needs the CKD-MBD plan first. {PROLIA24_TEXT}")
    if reading.may_be_below(settings.egfr_denosumab_ckd):
        # "<35" leaves 30 open: risedronate's limit and the Prolia boxed warning's both.
        risedronate = (f"from {settings.egfr_risedronate_min:g} mL/min risedronate 35 mg once weekly is within its "
                       "label (Actonel); " if agent == "alendronate" else "")
        return (f"{prefix} An exact eGFR decides the alternative, {reading.label} may be below "
                f"{settings.egfr_denosumab_ckd:g}: {risedronate}below {settings.egfr_denosumab_ckd:g}, denosumab needs "
                "a CKD-MBD work-up with nephrology first (Prolia boxed warning, 2024).")
    if critical:
        return (f"{prefix} Denosumab 60 mg every 6 months is the usual alternative when a bisphosphonate is ruled "
                "out by kidney function; check serum calcium before the first dose.")
    return f"{prefix} Consider denosumab 60 mg every 6 months instead, with a serum calcium check before the first dose."


@rule(*ORDERS, cards=("C-SAFE-RENAL",))
def renal_order(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-SAFE-RENAL. SAFE-1: alendronate ordered with kidney function < 35 -> warning;
    SAFE-2: risedronate or ibandronate < 30 -> warning; SAFE-3: zoledronic acid < 35 or
    acute renal impairment -> critical (LABEL: Fosamax, Actonel, Boniva, Reclast; AACE20;
    SEED). Kidney function is the one kidney reading (second-pass 1): coded kidney
    failure, dialysis or CKD 4 count whatever the last lab says, then Cockcroft-Gault
    creatinine clearance (the labels' own measure), then eGFR. Alternatives: for alendronate
    at 30 to below 35, risedronate 35 mg weekly first (Actonel label limit 30; ACP23 Rec 1a:
    a bisphosphonate first; the same answer as C-TX-BP there); denosumab 60 mg every 6
    months with a calcium check (TX-3; ACP23 Rec 2), or the PROLIA24 work-up below 30."""
    findings = []
    for draft, agent in ordered(record, RENAL_AGENTS):
        problem = _renal_problem(record, settings, agent)
        if not problem:
            stage = _ckd_stage(record, today, settings, draft, agent)
            if stage:
                findings.append(stage)
            # An injectable's order meets C-SAFE-PREDOSE-LABS, which asks for fresh labs already.
            elif agent not in INJECTABLE_ANTIRESORPTIVES:
                # Review: a first order read "before the next dose".
                findings += _renal_recheck(record, settings, agent, draft_fact(draft, agent),
                                           f"{drug_title(agent)} is being ordered.", "giving")
            continue
        indicator, facts = problem
        keys, built = _replacements(record, settings, draft, agent, risedronate=agent == "alendronate")
        advice = _renal_advice(record, settings, indicator == "critical",
                               "Do not give it." if indicator == "critical" else "", agent)
        findings.append(Finding(
            "C-SAFE-RENAL", facts=(draft_fact(draft, agent), *facts), indicator=indicator,
            trigger_codes=_renal_tokens(record, settings, facts),
            variables=_renal_variables(record, agent, indicator, settings, f"{drug_title(agent)} is being ordered.",
                                       advice.strip()),
            suggestions=keys, extra_suggestions=built, delete_draft=draft.reference or None,
            source_url=t.label_url(agent)))
    return findings


def _ckd_stage(record: PatientRecord, today: dt.date, settings: ClinicalSettings, draft: DraftOrder,
               agent: str) -> Finding | None:
    """C-SAFE-RENAL (warning), variant ckd-stage, review 15: a bisphosphonate ordered with the
    clearance within its label but CKD stage 4-5 by eGFR (facts.ckd_4_5; coded CKD 4-5 and
    dialysis are below every label limit already). The label is not crossed, so a warning, for
    zoledronic acid too; but KDIGO 2017 (4.3.4: G4-5D, address CKD-MBD before an antiresorptive)
    and AACE20 ask for the CKD-MBD work-up first, as C-TX-ANABOLIC says on patient-view. The
    suggestions are anabolic-ckd's (_hold_or_keep)."""
    reading = ckd_4_5(record, settings)
    if not reading:
        return None
    # Only here do the readings differ: kidney() took a clearance over the eGFR (facts.kidney_egfr);
    # its first fact is that clearance (the next says the eGFR is "not used", which it is here).
    clearance = kidney(record, settings)
    limit = f"{_renal_limit(agent, settings):g}"
    return Finding(
        "C-SAFE-RENAL", indicator="warning", variant="ckd-stage",
        facts=(draft_fact(draft, agent), f"{'; '.join(reading.facts)} (CKD stage 4-5 by eGFR)",
               *(f"{fact} (at or above the label limit of {limit} mL/min)" for fact in clearance.facts[:1]),
               *ckd_mbd_done_facts(record, settings)),
        variables={"drug": drug_title(agent), "drug_name": drug_label(agent), "kidney": reading.label,
                   "clearance": clearance.label, "renal_limit": limit,
                   "stage": "CKD stage 5" if reading.band == FAILURE else "CKD stage 4"},
        suggestions=(), extra_suggestions=_hold_or_keep(record, today, settings, draft, agent),
        delete_draft=draft.reference or None, source_url=t.label_url(agent))


ANABOLIC_AGENTS = ("teriparatide", "abaloparatide", "romosozumab")


def _ckd_mbd_first(record: PatientRecord, settings: ClinicalSettings, agent: str) -> tuple[Action, ...]:
    """The CKD-MBD work-up (labs and referral) before a bone drug in CKD 4-5 or on dialysis.
    With a low calcium the order meets C-SAFE-HYPOCA, whose recheck is the calcium order (one
    per screen)."""
    low = agent in HYPOCALCEMIA_AGENTS and low_calcium(record, settings)
    return tuple(a for a in ckd_mbd_work_up(f"{drug_title(agent)} ordered in CKD stage 4-5 or on dialysis: "
                                            "evaluate CKD-mineral bone disorder first", ckd_mbd_done(record, settings))
                 if not (low and a.resource and "17861-6" in str(a.resource.get("code"))))


def label_stop(record: PatientRecord, today: dt.date, settings: ClinicalSettings, draft: DraftOrder,
               agent: str) -> bool:
    """Does another card on this same draft say not to give it now? Then C-SAFE-RENAL's
    anabolic-ckd and C-SAFE-DMAB-CKD offer no "keep the order", and C-SAFE-PREDOSE-LABS asks
    for no labs "before the dose" (dosing.predose_labs_order). The cards' own rules decide
    (a card names its draft in its facts): C-SAFE-PREGNANCY (second-pass 2), C-SAFE-HYPOCA
    (LABEL: correct hypocalcemia first), C-VITD-LOW's replete or hold first (SAFE-5, TX-8),
    C-SAFE-ROMO-CV (EVENITY boxed warning), C-SAFE-ANABOLIC-CONTRA (SAFE-11; romosozumab for a
    man), C-SAFE-ROMO-LIMIT (EVENITY: 12 doses, SAFE-9), C-SAFE-PTH-LIMIT (SAFE-10),
    C-SAFE-DOSE-INTERVAL (too soon) and C-DUP-ANABOLIC (second-pass 3), and C-AR-COMPLICATION
    on a bisphosphonate (second-pass 4: hold it; denosumab is never simply stopped, so not
    there). Review 14 added the first to C-SAFE-RENAL, review 15 the rest and C-SAFE-DMAB-CKD
    (PROLIA24). Not a stop: C-DUP-ANTIRES ("keep one": the draft may be the one kept, a switch)
    and C-SAFE-DMAB-CKD (its plan keeps a course under way). C-SAFE-RENAL's critical zoledronic
    acid card is not read here (its ckd-stage variant asks this very question): the pre-dose
    labs card reads the same kidney reading itself."""
    from cds_service.rules.dosing import dose_interval_order, duplicate_anabolic_order  # sibling rules
    from cds_service.rules.on_therapy import antiresorptive_complication_order

    named = draft_fact(draft, agent)
    stops = (pregnancy_order, hypocalcemia_order, vitamin_d_order, romosozumab_cv_order,
             anabolic_contraindication_order, romosozumab_limit_order, pth_limit_order,
             dose_interval_order, duplicate_anabolic_order) + (
        (antiresorptive_complication_order,) if t.AGENTS[agent].drug_class in t.BISPHOSPHONATE_CLASSES else ())
    return any(named in f.facts for stop in stops for f in stop(record, today, settings))


def _hold_or_keep(record: PatientRecord, today: dt.date, settings: ClinicalSettings, draft: DraftOrder,
                  agent: str) -> tuple[Suggestion, ...]:
    """C-SAFE-RENAL in CKD 4-5 or on dialysis (anabolic-ckd, ckd-stage): hold the draft for the
    CKD-MBD work-up and a specialist (recommended), or keep it under that supervision with the
    work-up added; no "keep" beside a card that says not to give it now (label_stop)."""
    work_up = _ckd_mbd_first(record, settings, agent)
    built = [] if label_stop(record, today, settings, draft, agent) else [Suggestion(
        f"Keep the {drug_label(agent)} order under CKD-MBD supervision: add the CKD-MBD labs and the referral",
        work_up)]
    if draft.reference:
        built.insert(0, Suggestion(f"Hold {drug_label(agent)}: remove the draft; CKD-MBD labs and a referral to "
                                   "nephrology or a bone specialist first", (_delete(draft, agent),) + work_up, True))
    return tuple(built)


@rule(*ORDERS, cards=("C-SAFE-RENAL",))
def renal_anabolic_order(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-SAFE-RENAL (warning), review 13: teriparatide, abaloparatide or romosozumab ordered in
    CKD stage 4-5 or on dialysis (facts.ckd_4_5: coded CKD 4-5 or dialysis, else eGFR below
    30, where CKD stage 4 starts). A low T-score there does not
    tell osteoporosis from CKD-mineral bone disorder (AACE20, ES19; KDIGO 2017 CKD-MBD), as
    C-TX-ANABOLIC says on patient-view; romosozumab: severe renal impairment or dialysis carry
    a greater hypocalcemia risk, monitor calcium (EVENITY label). Not a contraindication in
    the labels, so a warning: hold for the CKD-MBD work-up and a specialist (recommended), or
    keep the order under that supervision with the work-up added. No "keep" when another card on
    the same draft says not to give it now (label_stop; review 14, 15: C-SAFE-ROMO-CV,
    C-SAFE-PREGNANCY, romosozumab for a man, C-SAFE-ROMO-LIMIT, C-DUP-ANABOLIC, a dose too soon);
    with a low calcium C-SAFE-HYPOCA's recheck is the calcium order."""
    reading = ckd_4_5(record, settings)
    if not reading:
        return []
    findings = []
    for draft, agent in ordered(record, ANABOLIC_AGENTS):
        built = _hold_or_keep(record, today, settings, draft, agent)
        note = ("Romosozumab: patients with severe renal impairment or on dialysis are at greater risk of "
                "hypocalcemia (Evenity label): correct calcium and vitamin D first and monitor serum calcium."
                if agent == "romosozumab" else
                f"{drug_title(agent)} is a PTH analogue; with CKD-MBD the PTH is often already high (secondary "
                "hyperparathyroidism), so whether it suits the bone disease is a specialist's call.")
        findings.append(Finding(
            "C-SAFE-RENAL", indicator="warning", variant="anabolic-ckd",
            facts=(draft_fact(draft, agent), f"{'; '.join(reading.facts)} (CKD stage 4-5 or dialysis)",
                   *ckd_mbd_done_facts(record, settings)),
            variables={"drug": drug_title(agent), "drug_name": drug_label(agent), "drug_note": note,
                       "kidney": reading.label},
            suggestions=(), extra_suggestions=built, delete_draft=draft.reference or None,
            source_url=t.label_url(agent)))
    return findings


@rule("patient-view")
def renal_active(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-SAFE-RENAL on patient-view (brief 4: "ordered/active"): an ACTIVE alendronate /
    risedronate / ibandronate / zoledronic acid (dose within its interval) with kidney
    function below the same limits, by the same one kidney reading. No order to delete:
    the card asks for a review of the therapy."""
    findings = []
    for agent in RENAL_AGENTS:
        e = record.medications.get(agent)
        if not e or not e.active or e.oncology_only:
            continue
        problem = _renal_problem(record, settings, agent)
        since = f"On {drug_label(agent)} since {_date(e.start)}"
        if e.last_dose and e.dose_count:
            since += f", last dose {_date(e.last_dose)}"
        if not problem:
            findings += _renal_recheck(record, settings, agent, since, f"The patient is on {drug_label(agent)}.")
            continue
        indicator, facts = problem
        advice = _renal_advice(record, settings, True,
                               "Review the therapy: do not give the next dose at this kidney function.", agent)
        findings.append(Finding(
            "C-SAFE-RENAL", facts=(since, *facts), indicator=indicator, suggestions=(),
            trigger_codes=_renal_tokens(record, settings, facts),
            variables=_renal_variables(record, agent, indicator, settings, f"The patient is on {drug_label(agent)}.",
                                       advice),
            source_url=t.label_url(agent)))
    return findings


# ---------------------------------------------------------------------------
# SAFE-4 hypocalcemia, SAFE-5 vitamin D, SAFE-6 denosumab in advanced CKD
# ---------------------------------------------------------------------------

INJECTABLE_ANTIRESORPTIVES = ("zoledronic_acid", "denosumab")
# Second-pass 2: every drug whose label says to correct hypocalcemia first.
HYPOCALCEMIA_AGENTS = ("alendronate", "risedronate", "ibandronate", "zoledronic_acid", "denosumab", "romosozumab")


@rule(*ORDERS, cards=("C-SAFE-HYPOCA",))
def hypocalcemia_order(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-SAFE-HYPOCA (critical), SAFE-4 as second-pass 2 widens it: an oral
    bisphosphonate, zoledronic acid, denosumab or romosozumab ordered with corrected
    calcium below calcium_lower_mg_dl (8.5 mg/dL, within calcium_max_age_months) or an
    active hypocalcemia Condition: correct it first (LABEL Fosamax, Actonel, Boniva,
    Reclast, Prolia, Evenity: hypocalcemia must be corrected before starting; SEED)."""
    low = low_calcium(record, settings)
    hits = ordered(record, HYPOCALCEMIA_AGENTS) if low else []
    if not hits:
        return []
    vit_d = record.lab("vitamin_d", settings.lab_max_age_months)
    # Review 20: a coded hypocalcemia lists the (older) calcium measured beside it.
    facts = tuple([draft_fact(draft, agent) for draft, agent in hits] + [low] + hypocalcemia_code_facts(record, settings, low)
                  + ([vit_d.fact()] if vit_d else []))
    first_draft, first = hits[0]
    # What is low, as the detail says it: the one reading that fired (an ionized calcium: review 8,
    # e72; a code: review 20, which no calcium measured since outdates).
    if low.startswith(LAB_LABELS["calcium_ionized"]):
        low_what = "an ionized calcium\nbelow its lower limit"
    elif low.startswith(f"{HYPOCALCEMIA} ("):
        low_what = "hypocalcemia on the problem list,\nwith no calcium measured since"
    else:
        low_what = ("corrected calcium" if low.startswith(LAB_LABELS["calcium_corrected"]) else "serum calcium") + \
            "\nbelow the lower limit"
    if len(hits) == 1:
        return [Finding(
            "C-SAFE-HYPOCA", facts=facts,
            variables={"drug": drug_title(first), "drug_name": drug_label(first), "being": "is being", "low_what": low_what,
                       "orders": "order", "drugs": "drug", "brand": t.AGENTS[first].label_brand or drug_label(first), "labels_say": "label says"},
            suggestions=("defer-and-recheck", "remove") if first_draft.reference else (),
            delete_draft=first_draft.reference or None, source_url=t.label_url(first))]
    # Review (e09): denosumab and alendronate drafted together, calcium 7.9: the card (one per
    # card id) named and removed only the denosumab, and the alendronate passed unmentioned.
    # Every draft of HYPOCALCEMIA_AGENTS counts (second-pass 2): one card names them all, with a
    # "hold them all and recheck" and a "remove" for each draft.
    agents = list(dict.fromkeys(agent for _, agent in hits))
    names = _and([drug_label(a) for a in agents])
    brands = _and(list(dict.fromkeys(t.AGENTS[a].label_brand or drug_label(a) for a in agents)))
    refs = tuple(dict.fromkeys(draft.reference for draft, _ in hits if draft.reference))
    built: list[Suggestion] = []
    if refs:
        built.append(Suggestion(f"Hold {names}: remove the drafts and recheck serum calcium", (
            Action("delete", "Remove the draft order until calcium is corrected", resource_id=refs),
            # the card's own calcium-check resource, as its one-draft "defer-and-recheck" orders it
            Action("create", "Serum calcium (with albumin) after correction",
                   resource=load_card("C-SAFE-HYPOCA")["resources"]["calcium-check"])), True))
    labels = [drug_label(agent) for _, agent in hits]
    for draft, agent in hits:
        if draft.reference:
            which = f" ({draft.reference})" if labels.count(drug_label(agent)) > 1 else ""
            built.append(Suggestion(f"Remove the draft {drug_label(agent)} order{which}", (
                Action("delete", f"Remove the draft {drug_label(agent)} order", resource_id=(draft.reference,)),)))
    return [Finding(
        "C-SAFE-HYPOCA", facts=facts,
        variables={"drug": names[0].upper() + names[1:], "drug_name": names, "being": "are being", "low_what": low_what,
                   "orders": "orders", "drugs": "drugs", "brand": brands, "labels_say": "labels say"},
        suggestions=(), extra_suggestions=tuple(built), source_url=t.label_url(first))]


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


@rule(*ORDERS, cards=("C-VITD-LOW",))
def vitamin_d_order(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-VITD-LOW at warning on order hooks, SAFE-5: zoledronic acid or
    denosumab ordered with 25-OH vitamin D < vitamin_d_deficient_ng_ml (20):
    replete vitamin D first (AACE20; SEED; TX-8). The patient-view C-VITD-LOW
    rule lives in supplementation.py; this order-time card builds its text
    variables and suggestions in code so the two share one card template."""
    vit_d = vitamin_d_deficient(record, settings)  # a "<20" bound too (review 14)
    if not vit_d:
        return []
    findings = []
    hold = vitamin_d_repletion_hold(record, settings)  # dialysis / CKD 4-5, high calcium: no D3 order
    for draft, agent in ordered(record, INJECTABLE_ANTIRESORPTIVES):
        suggestions: tuple[Suggestion, ...] = ()
        if draft.reference and hold:
            suggestions = (Suggestion(f"Hold the {drug_label(agent)} order until vitamin D is corrected",
                                      (Action("delete", f"Remove the draft {drug_label(agent)} order until vitamin D "
                                                        "is replete", resource_id=(draft.reference,)),), True),)
        elif draft.reference:
            suggestions = (Suggestion(
                f"Replete vitamin D first: cancel the {drug_label(agent)} order, start cholecalciferol repletion",
                (Action("delete", f"Remove the draft {drug_label(agent)} order until vitamin D is replete",
                        resource_id=(draft.reference,)),
                 Action("create", "Cholecalciferol 50,000 IU weekly for 8 weeks, then maintenance",
                        resource=cholecalciferol_repletion())),
                is_recommended=True),)
        findings.append(Finding(
            "C-VITD-LOW", indicator="warning",
            facts=(draft_fact(draft, agent), f"{vit_d.fact()} (below {settings.vitamin_d_deficient_ng_ml:g} ng/mL)",
                   *((f"{hold}; no vitamin D order is suggested",) if hold else ())),
            # Variables of the shared C-VITD-LOW template (patient-view owns its wording).
            variables={
                "level": "deficient",
                "headline": f"replete before {drug_label(agent)}",
                # A bound ("<20", "<50 nmol/L") is below the cut-off by itself: not said twice (review 17).
                "status": (f"{vit_d.comparator}{written_beside(vit_d.value, 0, VITAMIN_D_CUTOFFS)} ng/mL"
                           + (f" (reported as {vit_d.reported})" if vit_d.reported else "")
                           + ("" if vit_d.comparator.startswith("<") else
                              f", below {settings.vitamin_d_deficient_ng_ml:g} ng/mL")
                           + f", while {drug_label(agent)} is being ordered: replete first, recheck 25-OH vitamin D and "
                           f"calcium, then give the {drug_label(agent)}"),
                "target": f"{settings.vitamin_d_target_ng_ml:g}",
                "maintenance_start": (today + dt.timedelta(weeks=8)).isoformat(),
                "hold_note": vitamin_d_hold_note(record, settings) or "",
            },
            suggestions=(), extra_suggestions=suggestions, variant="held" if hold else None))
    return findings


@rule(*ORDERS, cards=("C-SAFE-DMAB-CKD",))
def denosumab_ckd_order(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-SAFE-DMAB-CKD, SAFE-6 as second-pass 2 sets it (PROLIA24: January 2024 boxed
    warning): denosumab ordered with kidney function below egfr_denosumab_ckd (30) by the
    one kidney reading. Critical on dialysis or CKD 5 (coded, or below
    kidney_failure_egfr), warning at 15-29 or coded CKD 4. The card carries the whole
    plan: evaluate CKD-MBD first (intact PTH, calcium, 25-OH and 1,25-(OH)2 vitamin D),
    calcium weekly for the first month then monthly, supervision by a clinician with
    CKD-MBD expertise (nephrology referral). The brief had warning only and calcium/PTH;
    the review was right that the label asks for more. The boxed warning is written on eGFR
    (mL/min/1.73m2); kidney_egfr reads the lower of it and a creatinine clearance (second-pass 1,
    one reading; review 20: a clearance of 20 beside eGFR 38 left a denosumab draft silent)."""
    reading = kidney_egfr(record, settings)
    if not reading.below(settings.egfr_denosumab_ckd):
        return []
    indicator = "critical" if reading.band == FAILURE else "warning"
    findings = []
    for draft, agent in ordered(record, ("denosumab",)):
        known = [lab.fact() for lab in (calcium(record, settings.calcium_max_age_months),
                                        record.lab("pth", settings.lab_max_age_months),
                                        record.lab("vitamin_d", settings.lab_max_age_months)) if lab]
        # Review 15: no "keep the order" beside a card that says not to give it now (C-SAFE-HYPOCA,
        # C-SAFE-PREGNANCY, C-VITD-LOW, C-SAFE-DOSE-INTERVAL; PROLIA24, SAFE-5, second-pass 2).
        low = low_calcium(record, settings)
        done = ckd_mbd_done(record, settings)  # review 14: the work-up on record recently is not ordered again
        built = [] if label_stop(record, today, settings, draft, agent) else [prolia24_suggestion(
            "Keep the denosumab order and add the whole plan: CKD-MBD labs, calcium weekly x 4 then monthly, "
            "nephrology", recommended=False, done=done)]
        if draft.reference:
            # with a low calcium C-SAFE-HYPOCA's recheck is the calcium order (one per screen)
            work_up = tuple(a for a in prolia24_actions(after_dose=False, done=done)
                            if not (low and a.resource and "17861-6" in str(a.resource.get("code"))))
            built.insert(0, Suggestion("Hold denosumab: remove the draft; CKD-MBD work-up and nephrology referral first",
                                       (_delete(draft, agent),) + work_up, True))
        findings.append(Finding(
            "C-SAFE-DMAB-CKD", indicator=indicator,
            # kidney_fact says why coded CKD 4 beside an eGFR of 50 is "below 30" (review: it read bare).
            facts=(draft_fact(draft, agent), kidney_fact(reading, settings.egfr_denosumab_ckd, "denosumab"), *known),
            variables={"kidney": reading.label, "plan": PROLIA24_TEXT,
                       "severity": _dmab_ckd_severity(reading, settings)},
            suggestions=(), extra_suggestions=tuple(built), delete_draft=draft.reference or None,
            source_url=t.label_url("denosumab")))
    return findings


def _dmab_ckd_severity(reading: KidneyReading, settings: ClinicalSettings) -> str:
    if reading.band == FAILURE:
        return "Dialysis or CKD stage 5: the risk is highest."
    if reading.bound and not reading.below(settings.kidney_failure_egfr):
        # Re-review: "<30" leaves 15 open; it is no CKD 4 reading.
        return (f"Kidney function {reading.label}: at least CKD stage 4, and it may be below 15 (CKD 5), where the "
                "risk is highest; an exact eGFR decides.")
    return "CKD stage 4 (kidney function 15-29)."


@rule("patient-view", cards=("C-SAFE-DMAB-CKD",))
def denosumab_ckd_due(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-SAFE-DMAB-CKD on patient-view, second-pass 2 ("denosumab ordered **or due** with
    eGFR < 30 or dialysis: critical for dialysis/CKD 5, warning for eGFR 15-29"; review 13: a
    dose due on dialysis drew only the info C-DMAB-DUE). Fires when C-DMAB-DUE or
    C-DMAB-OVERDUE does (the same course, the same quiet cases) and kidney_egfr is below
    egfr_denosumab_ckd (PROLIA24: eGFR < 30 mL/min/1.73m2 or dialysis). Text only: the dose
    card beside it carries the PROLIA24 plan as orders (no test ordered twice on one screen)."""
    reading = kidney_egfr(record, settings)
    if not reading.below(settings.egfr_denosumab_ckd):
        return []
    from cds_service.rules.follow_up import denosumab_due, denosumab_overdue  # sibling rules, read at call time

    course = denosumab_overdue(record, today, settings) or denosumab_due(record, today, settings)
    if not course:
        return []
    timing = denosumab_timing(record, settings)
    phase = "overdue" if course[0].card_id == "C-DMAB-OVERDUE" else "due"
    known = [lab.fact() for lab in (calcium(record, settings.calcium_max_age_months),
                                    record.lab("pth", settings.lab_max_age_months),
                                    record.lab("vitamin_d", settings.lab_max_age_months)) if lab]
    return [Finding(
        "C-SAFE-DMAB-CKD", indicator="critical" if reading.band == FAILURE else "warning", variant="dose-due",
        facts=(*(timing.facts() if timing else ()), kidney_fact(reading, settings.egfr_denosumab_ckd, "denosumab"),
               *known),
        variables={"kidney": reading.label, "plan": PROLIA24_TEXT, "phase": phase,
                   "severity": _dmab_ckd_severity(reading, settings)},
        suggestions=(), source_url=t.label_url("denosumab"))]


# ---------------------------------------------------------------------------
# SAFE-7 oral bisphosphonate and the esophagus
# ---------------------------------------------------------------------------

ORAL_BPS = ("alendronate", "risedronate", "ibandronate")


def _oral_bp_problem(record: PatientRecord) -> list[str]:
    facts = []
    for group, label, active_only in (("esophageal", "Esophageal disorder", True),
                                      ("bariatric", "Bariatric surgery", False),
                                      ("cannot_stay_upright", "Cannot stay upright for 30 minutes", True)):
        hits = record.condition_hits(group, active_only=active_only)
        if hits:
            facts.append(condition_fact(hits[0], label))
    return facts


@rule(*ORDERS, cards=("C-SAFE-ESOPH",))
def esophageal_order(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-SAFE-ESOPH (warning), SAFE-7: oral bisphosphonate ordered with an
    esophageal disorder (stricture, achalasia, dysmotility, varices, Barrett's),
    bariatric (Roux-en-Y) surgery, or inability to stay upright for 30 minutes:
    suggest IV zoledronic acid (kidney function known and >= 35) or denosumab
    (LABEL Fosamax; AACE20; TX-3)."""
    problems = _oral_bp_problem(record)
    if not problems:
        return []
    findings = []
    for draft, agent in ordered(record, ORAL_BPS):
        if t.ORAL_BP not in draft.drug_classes:
            continue  # IV ibandronate (review 16): not taken by mouth
        reading = kidney(record, settings)
        keys, built = _replacements(record, settings, draft, agent, zoledronate=True)
        findings.append(Finding(
            "C-SAFE-ESOPH", facts=(draft_fact(draft, agent), *problems, *reading.facts),
            variables={"drug": drug_title(agent), "drug_name": drug_label(agent)},
            suggestions=keys, extra_suggestions=built, delete_draft=draft.reference or None,
            source_url=t.label_url(agent)))
    return findings


# ---------------------------------------------------------------------------
# SAFE-8..11 anabolic agents
# ---------------------------------------------------------------------------

PTH_AGENTS = ("teriparatide", "abaloparatide")
ANABOLIC_CONTRA_GROUPS = (
    ("paget", "Paget disease of bone", True),
    ("skeletal_malignancy", "Bone metastases / skeletal malignancy", False),  # history too (facts.PTH_CONTRA_GROUPS)
    ("skeletal_radiation", "Prior skeletal radiation", False),
    ("open_epiphyses", "Open epiphyses", True),
    ("hypercalcemia", "Hypercalcemia", True),
    ("hyperparathyroidism", "Hyperparathyroidism", True),
)


def _anabolic_contra(record: PatientRecord, settings: ClinicalSettings) -> list[str]:
    """SAFE-11 facts; second-pass 2 adds a measured corrected calcium above the upper limit
    (not only coded hypercalcemia) and an unexplained raised alkaline phosphatase."""
    facts = []
    for group, label, active_only in ANABOLIC_CONTRA_GROUPS:
        hits = record.condition_hits(group, active_only=active_only)
        if hits:
            facts.append(condition_fact(hits[0], label))
    high = high_calcium(record, settings, settings.calcium_max_age_months)
    if high:
        facts.append(high)
    alp = unexplained_alp(record, settings)
    if alp:
        facts.append(alp)
    return facts


def _pth_instead(record: PatientRecord, settings: ClinicalSettings,
                 draft: DraftOrder) -> tuple[tuple[str, ...], tuple[Suggestion, ...]]:
    """Teriparatide / abaloparatide instead of a romosozumab `draft` (SAFE-8; a man),
    unless a PTH analog is ruled out (SAFE-10 limit reached, SAFE-11 contraindication,
    pregnancy). The draft's "remove" stays last."""
    if not draft.reference:
        return (), ()
    remove = (_remove(draft, "romosozumab"),)
    if (_anabolic_contra(record, settings) or current_pregnancy(record, settings)
            or pth_months_used(record) >= settings.pth_max_months):
        return (), remove
    if ckd_4_5(record, settings):
        # Review 14: in CKD 4-5 or on dialysis a PTH analog waits for the CKD-MBD work-up as
        # C-SAFE-RENAL and C-TX-ANABOLIC say (AACE20, ES19; KDIGO 2017 CKD-MBD): that work-up,
        # not a one-click teriparatide, is the alternative here.
        work_up = _ckd_mbd_first(record, settings, "romosozumab")
        return (), (Suggestion("Remove the romosozumab order; CKD-MBD labs and a referral to nephrology or a bone "
                               "specialist before any anabolic agent", (_delete(draft, "romosozumab"), *work_up),
                               True),) * bool(work_up) + remove
    built = tuple(Suggestion(f"Order {drug_label(a)} {dose} daily instead", (
        _delete(draft, "romosozumab"),
        Action("create", f"{drug_title(a)} {dose} subcutaneously once daily", resource=pth_analog_daily(a))),
        a == "teriparatide") for a, dose in (("teriparatide", "20 mcg"), ("abaloparatide", "80 mcg")))
    return (), built + remove


def _pth_ckd_note(record: PatientRecord, settings: ClinicalSettings) -> str:
    """What _pth_instead offers in CKD 4-5 or on dialysis, said on the card ("" otherwise)."""
    reading = ckd_4_5(record, settings)
    if not reading:
        return ""
    return (f" Kidney function {reading.label} (CKD stage 4-5 or dialysis): a PTH analog too waits for the "
            "CKD-mineral bone disorder work-up and a specialist (AACE 2020, Endocrine Society 2019; KDIGO 2017 "
            "CKD-MBD), so that work-up is suggested instead of teriparatide or abaloparatide.")


def _cv_fact(hit: ConditionHit) -> str:
    if cv_undated(hit):
        return (f"{'Myocardial infarction' if hit.group == 'mi' else 'Stroke'} ({hit.code}): no date on record "
                "(no onset, abatement or recorded date)")
    if mi_date_unknown(hit):
        return (f"Myocardial infarction, old or history of ({hit.code}): the date of the MI is not on record "
                f"(recorded on {_date(hit.date)})")
    return cv_fact(hit, "Myocardial infarction" if hit.group == "mi" else "Stroke")


def _sex_male_fact(record: PatientRecord) -> str:
    if record.male and not record.sex_conflict:
        return "Sex: male"
    # Only FHIR's own words are quoted: a copy's gender is patient-supplied text (adversarial
    # review 13: a markdown link, or 200 kB, went into a critical card).
    others = sorted({sex if sex in _GENDERS else "another value" for sex in record.sex_conflict if sex != "male"})
    return f"Sex: male on one copy of the patient's record, {', '.join(others)} on another"


_GENDERS = frozenset({"female", "other", "unknown"})  # FHIR administrative-gender, male aside


def _cv_events(record: PatientRecord, settings: ClinicalSettings, since: dt.date | None = None) -> list[str]:
    return [_cv_fact(h) for h in cv_hits(record, settings, since)]


def _cv_variant(hits: list[ConditionHit]) -> str | None:
    """"mi-date-unknown" when the only event is an old MI of unknown date: the card still stops a
    one-click start (critical: the boxed warning rules out starting within a year of an MI, and
    I25.2 is coded from 4 weeks after one, so it may be recent) but asks for the MI's date
    instead of asserting a recent MI. "cv-date-unknown" the same when an MI or stroke has no date
    at all (facts.cv_undated; review 15)."""
    if not hits or not all(map(cv_date_unknown, hits)):
        return None
    return "cv-date-unknown" if any(map(cv_undated, hits)) else "mi-date-unknown"


def _cv_undated_words(hits: list[ConditionHit]) -> str:
    """What is on record without its date, for the date-unknown situations."""
    return " or ".join(sorted({"a myocardial infarction" if h.group == "mi" else "a stroke" for h in hits}))


@rule(*ORDERS, cards=("C-SAFE-ROMO-CV",))
def romosozumab_cv_order(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-SAFE-ROMO-CV (critical), SAFE-8: romosozumab ordered with an MI or
    stroke with onset <= mi_stroke_window_months (12) ago: do not initiate;
    suggest teriparatide or abaloparatide (LABEL Evenity boxed warning; ES20)."""
    hits = cv_hits(record, settings)
    if not hits:
        return []
    events = [_cv_fact(h) for h in hits]
    variant = _cv_variant(hits)
    if record.male_on_record:  # this card then owns the "not for men" point too (one card per draft)
        events.append(f"{_sex_male_fact(record)} (Not approved for men either: Evenity is for postmenopausal women)")
    window = settings.mi_stroke_window_months
    possibly = cv_possibly_recent(hits, record, settings)  # its record bounds the date, partly inside
    situation = (f"Romosozumab is being ordered and {_cv_undated_words(hits)} is on record without its date: confirm "
                 f"it was more than {window} months ago before starting romosozumab."
                 if variant else
                 f"Romosozumab is being ordered after a myocardial infarction or stroke possibly within the past {window} "
                 f"months (its record bounds the date, not the day): do not start it unless it was more than {window} "
                 "months ago." if possibly else
                 "Romosozumab is being ordered after a recent myocardial infarction or stroke: do not start it.")
    situation += _pth_ckd_note(record, settings)
    findings = []
    for draft, agent in ordered(record, ("romosozumab",)):
        keys, built = _pth_instead(record, settings, draft)
        findings.append(Finding("C-SAFE-ROMO-CV", facts=(draft_fact(draft, agent), *events),
                                variables={"window": str(window), "situation": situation,
                                           "when": f"{'possibly within' if possibly else 'in'} the past {window} months"},
                                suggestions=keys, extra_suggestions=built, delete_draft=draft.reference or None,
                                variant=variant))
    return findings


@rule("patient-view")
def romosozumab_cv_active(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-SAFE-ROMO-CV (critical) on patient-view, second-pass 2: romosozumab still active
    and an MI or stroke within mi_stroke_window_months (12). Evenity boxed warning: it
    "should not be initiated in patients who have had a myocardial infarction or stroke
    within the preceding year" and "If a patient experiences a myocardial infarction or
    stroke during therapy, EVENITY should be discontinued." An event on or after the
    course start occurred during it; an earlier one means the course was started against
    the warning (review cv8: only the first case fired). Either way: no further doses, and
    the antiresorptive that follows (denosumab or alendronate) is suggested. Second-pass 2
    "suggest stopping it": the stop is offered too (review 16), its active orders marked
    stopped (rules.orders.stop_suggestion)."""
    e = record.medications.get("romosozumab")
    if not e or not e.active:
        return []
    start = course_start(e) or e.start
    during_hits = cv_hits(record, settings, since=start)
    hits = [] if during_hits else cv_hits(record, settings)
    events = [_cv_fact(h) for h in during_hits or hits]
    if not events:
        return []
    during = bool(during_hits)
    variant = _cv_variant(hits)
    window = settings.mi_stroke_window_months
    possibly = cv_possibly_recent(during_hits or hits, record, settings)
    if variant:
        situation = (f"Romosozumab is active and {_cv_undated_words(hits)} is on record without its date: confirm it "
                     f"was more than {settings.mi_stroke_window_months} months before the course started; if "
                     "not, give no further doses and plan the antiresorptive that follows it.")
    elif during:
        situation = ("A myocardial infarction or stroke occurred during the romosozumab course: stop "
                     "romosozumab (no further doses) and plan the antiresorptive that follows it.")
    elif possibly:
        situation = (f"Romosozumab may have been started within {window} months after a myocardial infarction or "
                     "stroke (its record bounds the date, not the day), when the label says not to start it: unless "
                     f"it was more than {window} months before the course, give no further doses and plan the "
                     "antiresorptive that follows it.")
    else:
        situation = (f"Romosozumab was started within {settings.mi_stroke_window_months} months after a "
                     "myocardial infarction or stroke, when the label says not to start it: give no further "
                     "doses and plan the antiresorptive that follows it.")
    keys, built = _transition_keys(record, settings, None)
    # The stop itself (review 16: the card said stop romosozumab and offered only the follow-on):
    # its active orders marked stopped. First and recommended when the event is dated in the
    # window; after the follow-on orders when the date is unknown or only possibly inside it
    # (the card asks to confirm first). None when no order of it is active (doses given only).
    certain = not variant and not possibly
    stop = stop_suggestion(record, "romosozumab", "romosozumab", "Stop romosozumab: no further doses",
                           "Myocardial infarction or stroke: Evenity boxed warning", recommended=certain)
    if stop:  # render keeps the recommended flag of the first suggestion that has one
        built = (stop, *built) if certain else (*built, stop)
    return [Finding("C-SAFE-ROMO-CV", facts=(f"On romosozumab since {_date(start)}, last dose {_date(e.last_dose)}",
                                             *events),
                    variables={"window": str(window), "situation": situation,
                               "when": f"{'possibly within' if possibly else 'in'} the past {window} months"},
                    suggestions=keys, extra_suggestions=built, variant=variant)]


def _transition_keys(record: PatientRecord, settings: ClinicalSettings,
                     draft: DraftOrder | None, agent: str = "") -> tuple[tuple[str, ...], tuple[Suggestion, ...]]:
    """Follow-on antiresorptive after an anabolic course: denosumab (with a calcium check;
    the PROLIA24 work-up below kidney function 30) or alendronate (kidney function known
    and >= 35); with a draft, each replaces it."""
    if draft is not None:
        return _replacements(record, settings, draft, agent, alendronate=True)
    if current_pregnancy(record, settings) or antiresorptive_complications(record):
        return (), ()
    kinds = []
    built: tuple[Suggestion, ...] = ()
    reading = kidney(record, settings)
    if not low_calcium(record, settings) and not _active(record, "denosumab"):
        dmab_reading = kidney_egfr(record, settings)  # PROLIA24: the lower of clearance and eGFR (review 20)
        if dmab_reading.below(settings.egfr_denosumab_ckd):
            built = (prolia24_suggestion("CKD-MBD work-up and nephrology referral before denosumab follows on",
                                         after_dose=False, done=ckd_mbd_done(record, settings)),)
        elif dmab_reading.may_be_below(settings.egfr_denosumab_ckd):
            built = (Suggestion("An exact eGFR before denosumab follows on (below 30 it needs the CKD-MBD work-up)",
                                predose_lab_actions(kidney=True, calcium=False), True),)
        else:
            kinds.append("denosumab")
    # Denosumab active is the follow-on already on board: no bisphosphonate beside it (review 17,
    # r06: two antiresorptives at once, SAFE-15).
    if reading.known and not reading.below(settings.egfr_alendronate_min) and not _oral_bp_problem(record) \
            and not _active(record, "alendronate") and not _active(record, "denosumab"):
        kinds.append("alendronate")
    return (), built + follow_on_suggestions(tuple(kinds), ORAL_BP_INSTRUCTIONS)


@rule(*ORDERS, cards=("C-SAFE-ROMO-LIMIT",))
def romosozumab_limit_order(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-SAFE-ROMO-LIMIT (warning), SAFE-9 on order hooks: romosozumab ordered
    when romo_max_doses (12) monthly doses are already given, so the draft
    would be the 13th: stop, transition to an antiresorptive (LABEL)."""
    course = romosozumab_course(record)
    if not course or course.doses < settings.romo_max_doses:
        return []
    findings = []
    pregnancy = current_pregnancy(record, settings)
    for draft, agent in ordered(record, ("romosozumab",)):
        keys, built = _transition_keys(record, settings, draft, agent)
        findings.append(Finding("C-SAFE-ROMO-LIMIT", facts=(draft_fact(draft, agent), course.fact, *pregnancy),
                                variables={"max_doses": str(settings.romo_max_doses)},
                                variant="pregnancy" if pregnancy else None,
                                suggestions=keys, extra_suggestions=(*built, *_romo_limit_referral(pregnancy)),
                                delete_draft=draft.reference or None))
    return findings


def _romo_limit_referral(pregnancy: list[str]) -> tuple[Suggestion, ...]:
    """Review 21: C-SAFE-ROMO-LIMIT in a current pregnancy (variant pregnancy) advises no follow-on
    drug (Prolia, Evista: contraindicated; bisphosphonates: not for use in pregnancy; second-pass 2)
    and offers the bone specialist referral C-SAFE-PREGNANCY offers beside it (one builder,
    orders.pregnancy_referral: the engine keeps one a screen)."""
    return (pregnancy_referral("Romosozumab course complete during a pregnancy: plan the follow-on "
                               "antiresorptive after it"),) if pregnancy else ()


@rule("patient-view")
def romosozumab_limit_active(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-SAFE-ROMO-LIMIT (warning), SAFE-9 on patient-view (the catalogue lists every hook): the
    romosozumab order still active with romo_max_doses (12) monthly doses or more given
    (facts.romosozumab_order_at_limit). At 12 the active order invites a 13th, as a draft does on
    the order hooks (review 16, chart e28c: nothing was said until a 13th dose was on record; LABEL:
    EVENITY, 12 monthly doses). Stop it and follow on: the follow-on antiresorptive orders
    (C-ANABOLIC-FOLLOW-ON steps aside). Review 17 (r01): "the romosozumab order is still active:
    stop it" comes with the order that does it (rules.orders.stop_suggestion), first and
    recommended, as C-SAFE-ROMO-CV's stop; not beside that card, which offers the same stop."""
    at_limit = romosozumab_order_at_limit(record, settings)
    if not at_limit:
        return []
    course, ordered = at_limit
    keys, built = _transition_keys(record, settings, None)
    stop = None if not ordered or romosozumab_cv_active(record, today, settings) else stop_suggestion(
        record, "romosozumab", "romosozumab", f"Stop romosozumab: course complete ({settings.romo_max_doses} monthly "
        "doses)", f"Course complete: {settings.romo_max_doses} monthly doses (Evenity label)", recommended=True)
    built = (stop, *built) if stop else built
    pregnancy = current_pregnancy(record, settings)  # review 21: no follow-on drug advised in pregnancy
    return [Finding("C-SAFE-ROMO-LIMIT", facts=(course.fact, *(["The romosozumab order is still active: stop it"]
                                                             if ordered else []), *pregnancy),
                    variables={"max_doses": str(settings.romo_max_doses)},
                    variant="pregnancy" if pregnancy else None,
                    suggestions=keys, extra_suggestions=(*built, *_romo_limit_referral(pregnancy)))]


PEN_MONTHS = 28 / DAYS_PER_MONTH  # one teriparatide or abaloparatide pen: 28 daily doses


@rule(*ORDERS, cards=("C-SAFE-PTH-LIMIT",))
def pth_limit_order(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-SAFE-PTH-LIMIT (warning), SAFE-10 on order hooks: teriparatide or
    abaloparatide ordered when cumulative PTH-analog exposure (both agents
    summed, overlaps merged) has already reached pth_max_months (24):
    transition to an antiresorptive (LABEL; SEED). Re-review: also when the draft, at least
    one 28-day pen, takes the total past the limit (23.9 months used passed silently)."""
    months = pth_months_used(record)
    if months + PEN_MONTHS <= settings.pth_max_months:
        return []
    past = ([] if months >= settings.pth_max_months else
            [f"The draft adds at least one 28-day pen: {months:.1f} + {PEN_MONTHS:.1f} months is past "
             f"{settings.pth_max_months}"])
    findings = []
    for draft, agent in ordered(record, PTH_AGENTS):
        keys, built = _transition_keys(record, settings, draft, agent)
        findings.append(Finding("C-SAFE-PTH-LIMIT", facts=(draft_fact(draft, agent), *pth_course_facts(record, months),
                                                           *past),
                                variables={"max_months": str(settings.pth_max_months), "drug_name": drug_label(agent)},
                                suggestions=keys, extra_suggestions=built, delete_draft=draft.reference or None,
                                source_url=t.label_url(agent)))
    return findings


@rule("patient-view")
def pth_limit_active(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-SAFE-PTH-LIMIT (warning), SAFE-10 on patient-view: a PTH analog still
    active with cumulative exposure at or beyond pth_max_months (24). Review 8: read as the
    order rule reads it (pth_months_used), a course still active at 24 calendar months
    (730 or 731 days) has reached the limit: transition now."""
    months = pth_months_used(record)
    active = record.active_agents([t.PTH_ANALOG])
    if months < settings.pth_max_months or not active:
        return []
    keys, built = _transition_keys(record, settings, None)
    return [Finding("C-SAFE-PTH-LIMIT", facts=tuple(pth_course_facts(record, months)),
                    variables={"max_months": str(settings.pth_max_months), "drug_name": "teriparatide/abaloparatide"},
                    suggestions=keys, extra_suggestions=built, source_url=t.label_url(active[0].agent))]


@rule(*ORDERS, cards=("C-SAFE-ANABOLIC-CONTRA",))
def anabolic_contraindication_order(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-SAFE-ANABOLIC-CONTRA (warning). SAFE-11: teriparatide or abaloparatide
    ordered with Paget disease, open epiphyses, prior skeletal radiation, bone
    metastases / skeletal malignancy, hypercalcemia or hyperparathyroidism, and (second
    pass 2) a measured corrected calcium above calcium_upper_mg_dl or an unexplained
    raised alkaline phosphatase (LABEL Forteo, Tymlos). Second-pass 2 also: romosozumab
    ordered for a man (Evenity is approved for postmenopausal women only): offer
    teriparatide or abaloparatide."""
    findings = []
    problems = _anabolic_contra(record, settings)
    if problems:
        findings += [Finding("C-SAFE-ANABOLIC-CONTRA", facts=(draft_fact(draft, agent), *problems),
                             variables={"drug": drug_title(agent), "drug_name": drug_label(agent),
                                        "problem": "bone or calcium condition against a PTH analog",
                                        "advice": ("Avoid it with Paget disease of bone, unexplained raised alkaline "
                                                   "phosphatase, open epiphyses, prior radiation involving the "
                                                   "skeleton, bone metastases or skeletal malignancy (osteosarcoma "
                                                   "signal in animal studies), and with high calcium or "
                                                   "hyperparathyroidism. Consider an antiresorptive instead, or "
                                                   "discuss with a bone specialist.")},
                             suggestions=("remove",) if draft.reference else (), delete_draft=draft.reference or None,
                             source_url=t.label_url(agent))
                     for draft, agent in ordered(record, PTH_AGENTS)]
    # Fails closed (LABEL Evenity): also when copies of the Patient disagree and one says male.
    if record.male_on_record and not _cv_events(record, settings):  # with an MI or stroke C-SAFE-ROMO-CV says it
        for draft, agent in ordered(record, ("romosozumab",)):
            keys, built = _pth_instead(record, settings, draft)
            findings.append(Finding(
                "C-SAFE-ANABOLIC-CONTRA", facts=(draft_fact(draft, agent), _sex_male_fact(record)),
                variables={"drug": "Romosozumab", "drug_name": "romosozumab", "problem": "not approved for men",
                           "advice": ("Romosozumab (Evenity) is approved only for postmenopausal women. For a man "
                                      "at very high fracture risk the anabolic options are teriparatide or "
                                      "abaloparatide." + _pth_ckd_note(record, settings))},
                suggestions=keys, extra_suggestions=built, delete_draft=draft.reference or None,
                source_url=t.label_url("romosozumab")))
    return findings


# ---------------------------------------------------------------------------
# Pregnancy (second-pass 2)
# ---------------------------------------------------------------------------

@rule(*ORDERS, cards=("C-SAFE-PREGNANCY",))
def pregnancy_order(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-SAFE-PREGNANCY (critical), second-pass 2: any osteoporosis drug ordered in a
    current pregnancy (an active pregnancy Condition, or a positive pregnancy test within
    pregnancy_months, with no later negative test or coded end of pregnancy). LABEL:
    Prolia (contraindicated in pregnancy: fetal harm), Evista and Evenity (not for use in
    pregnancy), bisphosphonates and PTH analogs (not recommended; bisphosphonates stay in
    bone for years). Suggests removing the draft."""
    pregnancy = current_pregnancy(record, settings)
    if not pregnancy:
        return []
    return [Finding("C-SAFE-PREGNANCY", facts=(draft_fact(draft, agent), *pregnancy),
                    variables={"drug": drug_title(agent), "drug_name": drug_label(agent),
                               "situation": f"{drug_title(agent)} is being ordered during a pregnancy.",
                               "months": str(settings.pregnancy_months),
                               "advice": "Do not give it. Remove the order and plan bone treatment after the "
                                         "pregnancy (and breastfeeding) with the obstetric team."},
                    suggestions=("remove",) if draft.reference else (), delete_draft=draft.reference or None,
                    source_url=t.label_url(agent))
            for draft, agent in ordered(record, [a for a, x in t.AGENTS.items()
                                                 if x.drug_class in t.OSTEOPOROSIS_DRUG_CLASSES])]


@rule("patient-view")
def pregnancy_active(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-SAFE-PREGNANCY (critical) on patient-view, second-pass 2: denosumab or a
    bisphosphonate active during a current pregnancy. Stop it; denosumab is not simply
    dropped without a plan (rebound bone loss), so a bone specialist plans what follows
    (suggested: referral to endocrinology, SNOMED 306278007, V). Review: denosumab whose
    next dose is due or overdue counts (facts.on_board), else the card fell silent exactly
    when C-DMAB-DUE asked for the next dose (Prolia label: contraindicated in pregnancy).
    Clinical review 20: every osteoporosis drug on board counts, as on the order hooks (the
    contract's row names "any osteoporosis drug ordered"; its patient-view words name denosumab
    and bisphosphonates only). A romosozumab course is a monthly clinician-given injection, like
    denosumab, so the next dose is given unless a card says stop (as C-SAFE-ROMO-CV on
    patient-view, second-pass 2); Evenity is for postmenopausal women only (EVENITY) and not for
    use in pregnancy, raloxifene is contraindicated in it (Evista), and teriparatide and
    abaloparatide are not for use in it (Forteo, Tymlos)."""
    pregnancy = current_pregnancy(record, settings)
    active = on_board(record, settings, t.OSTEOPOROSIS_DRUG_CLASSES)
    if not pregnancy or not active:
        return []
    e = active[0]
    since = f"On {drug_label(e.agent)} since {_date(e.start)}" + (f", last dose {_date(e.last_dose)}"
                                                                 if e.dose_count else "")
    return [Finding("C-SAFE-PREGNANCY", facts=(since, *pregnancy),
                    variables={"drug": drug_title(e.agent), "drug_name": drug_label(e.agent),
                               "situation": f"The patient is on {drug_label(e.agent)} and is pregnant.",
                               "months": str(settings.pregnancy_months),
                               "advice": "Stop it: no further doses in pregnancy. " + (
                                   "A bone specialist plans what follows: bone loss rebounds when denosumab wears "
                                   "off." if e.agent == "denosumab" else
                                   "A bone specialist plans bone treatment after the pregnancy and breastfeeding.")},
                    suggestions=(), source_url=t.label_url(e.agent),
                    extra_suggestions=(pregnancy_referral(
                        f"{drug_title(e.agent)} during pregnancy: plan stopping and follow-on bone treatment"),))]


# ---------------------------------------------------------------------------
# SAFE-15 duplicate antiresorptives
# ---------------------------------------------------------------------------

def _current_start(e: AgentExposure) -> dt.date | None:
    """Start of the current course: the latest start among its events (an old,
    finished course of the same drug does not make a new one look old)."""
    starts = [ev.start or ev.dose_date for ev in e.events if ev.start or ev.dose_date]
    return max(starts) if starts else None


def _is_transition(bp_start: dt.date | None, dmab: AgentExposure | None, settings: ClinicalSettings) -> bool:
    """SAFE-15 exemption: a bisphosphonate started >= bp_after_dmab_transition_months
    (5) after the last denosumab dose is the planned follow-on (ECTS21)."""
    if dmab is None or dmab.last_dose is None or bp_start is None:
        return False
    # months of 30.4 days, like every other window in the record (calendar months would move
    # the boundary by a day or two depending on which months are crossed)
    return months_between(dmab.last_dose, bp_start) >= settings.bp_after_dmab_transition_months


def _duplicate(a_agent: str, a_start: dt.date | None, b_agent: str, b_start: dt.date | None,
               dmab: AgentExposure | None, settings: ClinicalSettings) -> bool:
    """Two different antiresorptive agents at once, bar the denosumab -> BP transition."""
    if a_agent == b_agent:
        return False
    classes = {t.AGENTS[a_agent].drug_class, t.AGENTS[b_agent].drug_class}
    if t.DENOSUMAB in classes and classes & t.BISPHOSPHONATE_CLASSES:
        bp_start = a_start if t.AGENTS[a_agent].drug_class in t.BISPHOSPHONATE_CLASSES else b_start
        if _is_transition(bp_start, dmab, settings):
            return False
    return True


def _exposure_fact(e: AgentExposure) -> str:
    name = f"{drug_title(e.agent)}{' (oncology product)' if e.oncology_only else ''}"
    if e.dose_count:  # clinician-given: the last dose is what counts
        return f"{name}: {e.dose_count} doses on record, last dose {_date(e.last_dose)}"
    return f"{name}: active, current course since {_date(_current_start(e))}"


def _antiresorptive_drafts(drafts: Iterable[DraftOrder]) -> list[tuple[DraftOrder, str]]:
    return [(d, a) for d in drafts if d.kind == "medication"
            for a in d.agents if t.AGENTS[a].drug_class in t.ANTIRESORPTIVE_CLASSES]


@rule(*ORDERS, cards=("C-DUP-ANTIRES",))
def duplicate_antiresorptive_order(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-DUP-ANTIRES (warning), SAFE-15 on order hooks: an antiresorptive
    ordered while a different one is active, or is also in the draft orders
    (bisphosphonate + denosumab, two bisphosphonates, bisphosphonate or
    denosumab + raloxifene). Exemption: a bisphosphonate started (today) >= 5
    months after the last denosumab dose is the transition (ECTS21). Oncology
    products count as exposure (brief 8.6). Anabolic + antiresorptive is
    SAFE-16, not this card. Sources: AACE20 (combination not recommended,
    memory); SEED. Against an active drug the card offers the switch too (_switch).
    One card for all the drafts (review 18: the engine keeps one card per id, so with
    denosumab active and alendronate and zoledronic acid both drafted the second draft got no
    removal and the two drafts were never named as a pair): _one_card."""
    active = record.active_agents(t.ANTIRESORPTIVE_CLASSES)
    dmab = record.medications.get("denosumab")
    everything = _antiresorptive_drafts(record.drafts)
    findings = []
    paired: list[str] = []  # drafts that duplicate another draft, beside an active drug
    said: list[tuple[str, str] | None] = []  # per finding against an active drug: its sentence, the switch's
    for draft, agent in _antiresorptive_drafts(record.judged_drafts):
        # ordering denosumab gives a dose today: the BP -> denosumab direction is never a transition
        last_dmab = None if agent == "denosumab" else dmab
        # an order for a later day starts then (review: the planned follow-on bisphosphonate,
        # 6 months after the last denosumab dose, read as starting today)
        start = draft.planned if draft.planned and draft.planned > today else today
        clashing = [e for e in active if _duplicate(agent, start, e.agent, _current_start(e), last_dmab, settings)]
        drafted = [(d, a) for d, a in everything if d is not draft and _duplicate(agent, today, a, today, None, settings)]
        if clashing or drafted:
            other = clashing[0].agent if clashing else drafted[0][1]
            keys: tuple[str, ...] = ("remove",) if draft.reference else ()
            either: tuple[Suggestion, ...] = ()
            situation = (f"{drug_title(agent)} is being ordered while {drug_label(other)} is "
                         f"{'active' if clashing else 'being ordered too'}.")
            head, why = situation, ""
            switch = (_oncology_draft(record, draft, agent, clashing[0]) if draft.oncology and clashing else
                      _switch(record, today, settings, draft, agent, clashing[0]) if clashing else None)
            if switch:
                keys, either, why = (), switch[0], switch[1]
                situation += f" {why}"
            elif not clashing:
                # Two new orders, nothing current (clinical review: the card removed one of them as
                # "duplicating current therapy"): either may be the one to keep.
                keys = ()
                pairs = [(draft, agent, drafted[0][1]), *((d, a, agent) for d, a in drafted)]  # (draft, drug, kept)
                either = tuple(Suggestion(f"Keep the {drug_label(kept)} order: remove the {drug_label(a)} order",
                                          (_delete(d, a),)) for d, a, kept in pairs
                               if d.reference and not d.oncology)  # an oncology draft is oncology's (review 18)
            said.append((head, why) if clashing else None)
            if clashing and drafted:
                paired.append(drug_label(agent))
            findings.append(Finding(
                "C-DUP-ANTIRES",
                facts=(draft_fact(draft, agent), *(_exposure_fact(e) for e in clashing),
                       *(draft_fact(d, a) for d, a in drafted)),
                variables={"drug_a": drug_label(agent), "drug_b": drug_label(other), "situation": situation},
                suggestions=keys, extra_suggestions=either,
                delete_draft=None if draft.oncology else draft.reference or None))
    if findings:
        return _one_card(findings, said, paired)
    # Prolia beside Xgeva (review 18): its own variant, when no other duplicate speaks (one card per id).
    found = [f for draft, agent in _antiresorptive_drafts(record.judged_drafts) if agent == "denosumab"
             for f in (_two_denosumab_order(record, today, settings, draft),) if f]
    if len(found) < 2:
        return found
    # Both products drafted (review 19, e19): one card, the one offering most (it names both drafts),
    # with every offer once.
    first = max(found, key=lambda f: len(f.extra_suggestions))
    offered = {_offer_key(s): s for f in found for s in f.extra_suggestions}
    return [dataclasses.replace(first, extra_suggestions=tuple(sorted(offered.values(),
                                                                      key=lambda s: not s.is_recommended)))]


def _one_card(findings: list[Finding], said: list[tuple[str, str] | None], paired: list[str]) -> list[Finding]:
    """C-DUP-ANTIRES for every duplicate draft on one card (review 18, n13: one card per id, so
    the findings of the second and later drafts were lost). The card names every drug, says each
    clashing draft's sentence (the switch sentences once each) and that drafts duplicating each
    other are a pair too, and offers
    each finding's suggestions, a removal of each draft among them, once per set of actions (the
    stop of one active order, offered for each draft, is offered once). Two drafts and nothing
    current: the first draft's card already names both and offers keeping either."""
    if len(findings) < 2:
        return findings
    names = list(dict.fromkeys([*(f.variables["drug_a"] for f in findings),
                                *(f.variables["drug_b"] for f in findings)]))
    clashed = [x for x in said if x]
    # each draft's sentence, then the switch sentences once each (the same hold for every draft)
    situation = " ".join(dict.fromkeys([*(head for head, _ in clashed), *(why for _, why in clashed if why)])
                         ) or findings[0].variables["situation"]
    if clashed and len(paired) > 1:
        situation += f" The {' and '.join(paired)} orders also duplicate each other: keep one at most."
    offered: list[Suggestion] = []
    seen: set[tuple[tuple[str, tuple[str, ...], object], ...]] = set()
    for f in findings:
        removal = (Suggestion(f"Remove the new {f.variables['drug_a']} order",
                              (Action("delete", f"Remove the draft {f.variables['drug_a']} order",
                                      resource_id=(f.delete_draft,)),)),) if f.suggestions and f.delete_draft else ()
        for s in (*removal, *f.extra_suggestions):
            key = _offer_key(s)
            if key not in seen:
                seen.add(key)
                offered.append(s)
    return [Finding("C-DUP-ANTIRES", facts=tuple(dict.fromkeys(x for f in findings for x in f.facts)),
                    variables={"drug_a": ", ".join(names[:-1]), "drug_b": names[-1], "situation": situation},
                    suggestions=(), extra_suggestions=tuple(offered))]


def _offer_key(s: Suggestion) -> tuple[tuple[str, tuple[str, ...], object], ...]:
    """What a suggestion does, whatever its label: each action's type, the draft it removes and the
    resource it creates or updates (by id: a stop of one order offered for two drafts is one offer)."""
    return tuple((a.type, a.resource_id, (a.resource or {}).get("id")) for a in s.actions)


def _two_denosumab_order(record: PatientRecord, today: dt.date, settings: ClinicalSettings,
                         draft: DraftOrder) -> Finding | None:
    """C-DUP-ANTIRES, variant two-denosumab on order hooks (review 18): a Prolia or Xgeva draft
    while the other product has an order in force (active or on-hold), and no dose of it within
    the denosumab interval (that is C-SAFE-DOSE-INTERVAL's other-product variant: one card per
    draft). An order in force, not a dose's cover: Prolia ordered 5.5 months after a last Xgeva
    dose, Xgeva's course over, is the follow-on, as Prolia after Prolia. The other product drafted
    too (review 19) is the same drug twice as well: the Prolia draft is removed. Prolia label (PROLIA24):
    patients receiving Prolia should not receive Xgeva. The words and offers:
    denosumab_products_plan (Xgeva is oncology's); a Prolia draft is removed (recommended)."""
    from cds_service.rules.dosing import PRODUCT, other_denosumab  # sibling rule (label_stop's way)

    other = record.product_exposure("denosumab", not draft.oncology)
    in_force = other is not None and _order_in_force(record, other)
    if in_force and other_denosumab(record, today, settings, draft):
        return None
    # Review 19 (e19, e20): the other product drafted too is the same drug twice as well; the
    # Prolia draft among them is the one removed (recommended), never the Xgeva one.
    drafted = [d for d in record.drafts if d is not draft and d.kind == "medication"
               and "denosumab" in d.agents and d.oncology != draft.oncology]
    if not (in_force or drafted):
        return None
    new, old = PRODUCT[draft.oncology], PRODUCT[not draft.oncology]
    what, stop = denosumab_products_plan(record, new if in_force else "Prolia")
    prolia = drafted if draft.oncology else [draft]
    remove = tuple(Suggestion("Remove the draft Prolia order (Xgeva, oncology's, gives denosumab)",
                              (_delete(d, "denosumab"),), True) for d in prolia if d.reference)
    situation = (f"{new} is being ordered while {old} is active." + (f" {old} is being ordered too." if drafted else "")
                 if in_force else f"{new} is being ordered while {old} is being ordered too.")
    return Finding("C-DUP-ANTIRES", variant="two-denosumab",
                   facts=(draft_fact(draft, "denosumab"), f"The draft is {new}",
                          *((_product_fact(other, old),) if in_force else ()),
                          *(f"Draft order: {old} ({d.reference or 'draft without id'})" for d in drafted)),
                   variables={"drug_a": new, "drug_b": old, "what": what, "situation": situation},
                   suggestions=(), extra_suggestions=remove + stop,
                   delete_draft=None if draft.oncology else draft.reference or None,
                   source_url=t.label_url("denosumab"))


def _switch(record: PatientRecord, today: dt.date, settings: ClinicalSettings, draft: DraftOrder, agent: str,
            current: AgentExposure) -> tuple[tuple[Suggestion, ...], str] | None:
    """C-DUP-ANTIRES when a new antiresorptive is ordered while another is active: most
    often a switch, so the card offers both ways of keeping one (review 16: it offered only
    "remove the new order", which after an atypical femoral fracture kept the alendronate
    C-AR-COMPLICATION says to hold). Stop the current drug (its active MedicationRequests
    marked stopped, rules.orders.stop_actions), or keep it and remove the new draft.
    The stop comes first and is recommended when the contract intends the switch
    (second-pass 4): an atypical femoral fracture or jaw osteonecrosis on record with a
    bisphosphonate current (hold the bisphosphonate; LABEL Fosamax/Actonel/Boniva/Reclast,
    AACE20), or C-TX-FAILURE's fracture on the current drug (consider a switch; AACE20,
    ES19). Otherwise removing the new draft stays first, neither recommended: the card
    cannot tell a switch from a duplicate. Review 17:
    - an oncology product (Xgeva, Zometa) is never stopped here (brief 8.6: oncology's plan,
      left out of osteoporosis logic): the osteoporosis draft is the redundant order, and
      removing it is the one suggestion (_oncology);
    - denosumab is never simply stopped (second-pass 4: rebound, it needs a follow-on plan):
      its stop is never recommended, and is not offered when another card says not to give
      the new draft now (label_stop, or C-SAFE-RENAL's kidney limit; _draft_stopped): the
      follow-on would be gone, and the card says to keep denosumab. Nor for raloxifene or
      bazedoxifene (review 18): they do not prevent the rebound, a bisphosphonate does (ECTS21).
      A bisphosphonate follows denosumab about 6 months after the
      last dose (ECTS21; the Prolia label's 6-month interval), so the card names that date
      (_after_denosumab).
    Returns the suggestions and a sentence for the card, or None when no order of the
    current drug can be stopped (on record only as a statement or a dose given): the card
    is then as before."""
    old, new = drug_label(current.agent), drug_label(agent)
    if current.oncology_only:
        return _oncology(draft, agent, current)
    denosumab = current.agent == "denosumab"
    if denosumab and t.AGENTS[agent].drug_class not in t.BISPHOSPHONATE_CLASSES:
        # Review 18 (n12): raloxifene (or bazedoxifene) does not prevent the rebound; a bisphosphonate
        # about 6 months after the last dose does (ECTS21): no stop of denosumab is offered.
        why = (f"Denosumab is never simply stopped (bone turnover rebounds), and {new} does not prevent that "
               "rebound (a bisphosphonate about 6 months after the last dose does): keep denosumab.")
        return (Suggestion(f"Keep {old}: remove the new {new} order", (_delete(draft, agent),)),) \
            if draft.reference else (), why
    if denosumab and _draft_stopped(record, today, settings, draft, agent):
        # Stand-alone words (no pointer to the card that stops it: the cross-reference convention).
        why = (f"The new {new} order is not to be given now (a safety check on it says so), so it cannot follow "
               "denosumab, which is never simply stopped (bone turnover rebounds): keep denosumab.")
        return (Suggestion(f"Keep {old}: remove the new {new} order", (_delete(draft, agent),)),) \
            if draft.reference else (), why
    complications = antiresorptive_complications(record)
    held = bool(complications) and current.drug_class in t.BISPHOSPHONATE_CLASSES
    failed = not held and any(f.variables.get("drug") == old for f in treatment_failure(record, today, settings))
    if held:
        what = complication_name(complications)
        label, reason = f"Hold {old} after the {what}: stop its active order", f"Held: {what} on record"
        why = f"{drug_title(current.agent)} is to be held after the {what} on record: stop its order."
    elif failed:
        label = f"Switch to {new} after the fracture on {old}: stop the active {old} order"
        reason = f"Switched to {new}: fracture on {old} (possible treatment failure)"
        why = (f"A fracture on {old} suggests treatment failure and a switch is the usual step: if {new} is "
               f"the switch, stop the {old} order.")
    else:
        label, reason = f"Switch to {new}: stop the active {old} order", f"Switched to {new}"
        why = f"If this is a switch, stop the {old} order; if not, remove the new {new} order."
    if denosumab:
        label, why = _after_denosumab(record, settings, agent, failed)
    recommended = (held or failed) and not denosumab
    stop = stop_suggestion(record, current.agent, old, label, reason, recommended=recommended)
    if stop is None:
        return None
    # After AFF/ONJ the current bisphosphonate is not kept whatever happens to the new order.
    keep = (Suggestion(f"Remove the new {new} order ({old} is held either way)" if held else
                       f"Keep {old}: remove the new {new} order", (_delete(draft, agent),)),) if draft.reference else ()
    return ((stop, *keep) if recommended else (*keep, stop)), why


def _oncology(draft: DraftOrder, agent: str, current: AgentExposure) -> tuple[tuple[Suggestion, ...], str]:
    """C-DUP-ANTIRES beside an oncology product (review 17: the card offered to stop Zometa or
    Xgeva given for bone metastases as a "switch to alendronate"): the oncology drug is
    oncology's plan (brief 8.6), so it is named as such and the one suggestion removes the
    new osteoporosis draft, the redundant order (AACE20: no combination)."""
    old, new = drug_label(current.agent), drug_label(agent)
    why = (f"The {old} on record is an oncology product: its plan belongs to oncology and is not changed here. "
           f"It already acts on bone, so the new {new} order is the redundant one.")
    keep = (Suggestion(f"Remove the new {new} order ({old} is oncology's: leave it to oncology)",
                       (_delete(draft, agent),), True),) if draft.reference else ()
    return keep, why


def _oncology_draft(record: PatientRecord, draft: DraftOrder, agent: str,
                    current: AgentExposure) -> tuple[tuple[Suggestion, ...], str]:
    """C-DUP-ANTIRES on an oncology draft (Zometa 4 mg, Xgeva 120 mg) beside an active osteoporosis
    antiresorptive (review 18: the card offered "Keep alendronate: remove the new zoledronic acid
    order" and called it a switch). The oncology product is oncology's plan (brief 8.6): its draft
    is never removed here. Given for bone metastases in a larger dose and more often, it makes the
    osteoporosis drug redundant (AACE20: no combination), so the card offers to stop that drug's
    order, not recommended: the stop is right once the oncology drug is given, which is oncology's
    word, and denosumab is never simply stopped (second-pass 4; rebound)."""
    old, new = drug_label(current.agent), drug_label(agent)
    why = (f"The new {new} order is an oncology product: its plan belongs to oncology and is not changed here.")
    if current.oncology_only:
        return (), why + f" The {old} on record is oncology's too: agree the plan with oncology."
    why += (f" Once it is given it acts on bone more strongly than the {old}, which then adds nothing: "
            f"stop the {old} order" + (" when the first dose is given (denosumab is never simply stopped: bone "
                                       "turnover rebounds when it wears off)." if current.agent == "denosumab"
                                       else " when oncology gives the first dose."))
    stop = stop_suggestion(record, current.agent, old,
                           f"{drug_title(agent)} (oncology's) makes {old} redundant: stop the active {old} order",
                           f"Redundant beside {new} given by oncology")
    return (stop,) if stop else (), why


def _draft_stopped(record: PatientRecord, today: dt.date, settings: ClinicalSettings, draft: DraftOrder,
                   agent: str) -> bool:
    """Does another card say not to give this draft now (label_stop, or C-SAFE-RENAL: kidney
    function below the bisphosphonate label's limit, "Do not give it" or "not recommended",
    its first suggestion removing the draft)? Then it cannot be denosumab's follow-on (review 17)."""
    return label_stop(record, today, settings, draft, agent) or (
        agent in RENAL_AGENTS and bool(_renal_problem(record, settings, agent)))


def _after_denosumab(record: PatientRecord, settings: ClinicalSettings, agent: str,
                     failed: bool) -> tuple[str, str]:
    """The stop-denosumab label and sentence (review 17): the bisphosphonate that follows
    denosumab is given about 6 months after its last dose (ECTS21; Prolia label: one dose
    covers 6 months), not now; after a fracture on denosumab C-TX-FAILURE's usual switch is
    an anabolic agent (AACE20), so a bisphosphonate is not called "the usual step"."""
    timing = denosumab_timing(record, settings)
    when = f" (on or about {timing.due})" if timing else ""
    label = (f"Stop denosumab with {drug_label(agent)} to follow about 6 months after its last dose{when}: "
             "stop the active denosumab order")
    why = (("A fracture on denosumab suggests treatment failure; an anabolic agent is the usual switch (very "
            "high risk after a fracture on therapy, AACE 2020). " if failed else "") +
           f"Denosumab is never simply stopped (bone turnover rebounds). If {drug_label(agent)} is to follow it, "
           f"it is given about 6 months after the last denosumab dose{when}, not now: order it for that date.")
    return label, why


@rule("patient-view")
def duplicate_antiresorptive_active(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-DUP-ANTIRES (warning), SAFE-15 on patient-view: two different active
    antiresorptives, with the same transition exemption. An oncology product (Xgeva, Zometa)
    counts (brief 8.6) but its plan is oncology's: the card says so, as the order hooks' does
    (_oncology; review 18). Prolia and Xgeva both active: _two_denosumab."""
    both = _two_denosumab(record)
    if both:
        return [both]
    active = record.active_agents(t.ANTIRESORPTIVE_CLASSES)
    dmab = record.medications.get("denosumab")
    for i, a in enumerate(active):
        for b in active[i + 1:]:
            if _duplicate(a.agent, _current_start(a), b.agent, _current_start(b), dmab, settings):
                stale = _listed_before(a, b, today) or _listed_before(b, a, today)
                if stale:
                    return [stale]
                situation = f"The patient is on {drug_label(a.agent)} and {drug_label(b.agent)} at the same time."
                onc = next((e for e in (a, b) if e.oncology_only), None)
                if onc:
                    kept = b if onc is a else a
                    situation += (f" The {drug_label(onc.agent)} on record is an oncology product: its plan "
                                  f"belongs to oncology and is not changed here. It already acts on bone, so the "
                                  f"{drug_label(kept.agent)} is the redundant one.")
                return [Finding("C-DUP-ANTIRES", facts=(_exposure_fact(a), _exposure_fact(b)),
                                variables={"drug_a": drug_label(a.agent), "drug_b": drug_label(b.agent),
                                           "situation": situation},
                                suggestions=())]
    return []


def denosumab_products_plan(record: PatientRecord, ordering: str | None,
                            earliest: dt.date | None = None) -> tuple[str, tuple[Suggestion, ...]]:
    """What to do when Prolia and Xgeva meet (review 18; Prolia label, PROLIA24: patients
    receiving Prolia should not receive Xgeva, the same active ingredient). Xgeva is oncology's
    plan (brief 8.6) and is never stopped or removed here; Prolia is the redundant one. `ordering`:
    "Xgeva" (an Xgeva draft, Prolia on record), "Prolia" (a Prolia draft, Xgeva on record; the
    caller removes the draft) or None (both active, patient-view). `earliest`: when Prolia could
    follow Xgeva (the denosumab interval after the last Xgeva dose). The stop of Prolia is offered,
    not recommended: whether Xgeva goes on is oncology's word, and Prolia is never simply stopped
    without it (bone turnover rebounds when denosumab wears off)."""
    if ordering == "Prolia":
        return ("Xgeva is oncology's plan (bone metastases) and is not changed here: it already gives "
                "denosumab, in a larger dose, so the Prolia order is the redundant one: remove it. If oncology "
                "stops Xgeva, plan Prolia with them from then"
                + (f" (not before {earliest})." if earliest else ".")), ()
    stop = stop_suggestion(record, "denosumab", "Prolia", "Xgeva replaces Prolia: stop the active Prolia order "
                           "(Xgeva is oncology's: leave it to oncology)",
                           "Xgeva (denosumab) given by oncology: same active ingredient")
    first = ("Xgeva is oncology's plan (bone metastases) and is not changed here; tell oncology when the last "
             "Prolia dose was. If Xgeva goes ahead" if ordering else
             "Xgeva is oncology's plan (bone metastases) and is not changed here. While Xgeva goes on")
    return (first + " it replaces Prolia: agree it with oncology and stop the Prolia order (denosumab goes on as "
            "Xgeva, so nothing wears off). If oncology stops Xgeva, Prolia goes on: it is never simply stopped "
            "(bone turnover rebounds)."), (stop,) if stop else ()


def _order_in_force(record: PatientRecord, e: AgentExposure) -> bool:
    """An active or on-hold MedicationRequest among `e`'s events (PatientRecord.orders_in_force)."""
    in_force = dict(record.orders_in_force)
    return any(ev.ref in in_force for ev in e.events if ev.resource_type == "MedicationRequest")


def _product_fact(e: AgentExposure, name: str) -> str:
    """One denosumab product's exposure (e: PatientRecord.product_exposure), named."""
    if e.dose_count:
        return (f"{name} (denosumab): {e.dose_count} dose{'s' if e.dose_count != 1 else ''} on record, last dose "
                f"{_date(e.last_dose)}")
    return f"{name} (denosumab): active, current course since {_date(_current_start(e))}"


def _two_denosumab(record: PatientRecord) -> Finding | None:
    """C-DUP-ANTIRES, variant two-denosumab (review 18): Xgeva active (an order in force or a dose
    within the 6-month interval) while a Prolia order is in force: the next Prolia dose would be
    given beside it. A Prolia course whose order is over (its last dose still covering) is the
    handover to Xgeva, nothing to do. One agent for the record, so the pairwise check above
    never saw it. Prolia label (PROLIA24, 5 Warnings): patients receiving Prolia
    should not receive Xgeva (same active ingredient). Xgeva is oncology's plan (brief 8.6):
    the card offers to stop the Prolia order, not recommended (whether Xgeva goes on is
    oncology's word, and denosumab is never simply stopped)."""
    prolia, xgeva = record.product_exposure("denosumab", False), record.product_exposure("denosumab", True)
    if not (prolia and xgeva and xgeva.active and _order_in_force(record, prolia)):
        return None
    what, stop = denosumab_products_plan(record, None)
    return Finding("C-DUP-ANTIRES", variant="two-denosumab",
                   facts=(_product_fact(prolia, "Prolia"), _product_fact(xgeva, "Xgeva")),
                   variables={"drug_a": "Prolia", "drug_b": "Xgeva", "what": what,
                              "situation": "The patient is on Prolia and Xgeva at the same time."},
                   suggestions=(), extra_suggestions=stop, source_url=t.label_url("denosumab"))


def _listed_before(listed: AgentExposure, other: AgentExposure, today: dt.date) -> Finding | None:
    """C-DUP-ANTIRES, variant stale-statement (review 13): `listed` is active only through a
    MedicationStatement (no active order, no dose given) last confirmed (dateAsserted, else its
    effective dates) before `other`'s course began: most likely a medication list not updated
    when `other` was started. Still SAFE-15's card (the statement says taken, and both may be),
    but worded as "reconcile the medication list", not as a combination being given."""
    current = [ev for ev in listed.events if ev.status in ("active", "on-hold") and (ev.end is None or ev.end >= today)]
    if not current or any(ev.resource_type != "MedicationStatement" for ev in current) or any(
            ev.resource_type == "MedicationAdministration" for ev in listed.events):
        return None
    seen = max((d for ev in listed.events for d in (ev.asserted, ev.start, ev.end, ev.dose_date) if d), default=None)
    began = course_start(other)
    if seen is None or began is None or seen >= began:
        return None
    name, other_name = drug_label(listed.agent), drug_label(other.agent)
    return Finding("C-DUP-ANTIRES", variant="stale-statement", suggestions=(),
                   facts=(_exposure_fact(listed), _exposure_fact(other),
                          f"{drug_title(listed.agent)} on the medication list ({current[0].ref}), last confirmed on "
                          f"{seen}: before {other_name} began on {began}"),
                   variables={"drug_a": name, "drug_b": other_name, "seen": seen.isoformat(),
                              "began": began.isoformat(), "listed_title": drug_title(listed.agent)})


__all__ = ["renal_order", "renal_active", "hypocalcemia_order", "vitamin_d_order", "denosumab_ckd_order",
           "esophageal_order", "romosozumab_cv_order", "romosozumab_cv_active", "romosozumab_limit_order",
           "romosozumab_limit_active", "pth_limit_order", "pth_limit_active", "anabolic_contraindication_order",
           "pregnancy_order", "pregnancy_active", "duplicate_antiresorptive_order", "duplicate_antiresorptive_active"]
