"""Dosing: intervals, pre-dose labs and two anabolic agents at once
(../shared/clinical/second-pass.md sections 2 and 3; card family a).

Rules:
  C-SAFE-DOSE-INTERVAL  warning  order hooks       the same drug re-ordered too soon after its last dose
  C-SAFE-PREDOSE-LABS   warning  order hooks       zoledronic acid / denosumab without recent kidney function or calcium
  C-DUP-ANABOLIC        warning  order hooks + PV  two anabolic agents at once

A dose is one actually given: an administration or statement, or a `completed`
single-dose order (facts.last_given). An active order not yet given is not a
dose, so re-ordering a pending dose is not judged "too soon" here.
"""

from __future__ import annotations

import datetime as dt

from cds_service.fhir import terminology as t
from cds_service.record import EGFR_UPPER_BOUND, DraftOrder, PatientRecord
from cds_service.rules.base import Finding, Suggestion, rule
from cds_service.rules.facts import (
    DAYS_PER_MONTH,
    draft_fact,
    drug_label,
    drug_title,
    kidney,
    kidney_egfr,
    last_given,
    months_to_days,
    ordered,
    predose_labs_missing,
)
from cds_service.rules.order_safety import denosumab_products_plan, label_stop
from cds_service.rules.orders import predose_lab_actions
from cds_service.rules.settings import ClinicalSettings

ORDERS = ("order-select", "order-sign")


def _min_interval_days(agent: str, settings: ClinicalSettings) -> int:
    return {"zoledronic_acid": months_to_days(settings.zoledronate_min_interval_months),
            "denosumab": months_to_days(settings.dmab_min_interval_months),
            "romosozumab": settings.romo_min_interval_weeks * 7,
            "ibandronate": settings.ibandronate_iv_min_interval_weeks * 7}[agent]


def _interval_text(agent: str, settings: ClinicalSettings) -> str:
    return {"zoledronic_acid": f"{settings.zoledronate_min_interval_months} months",
            "denosumab": f"{settings.dmab_min_interval_months} months",
            "romosozumab": f"{settings.romo_min_interval_weeks} weeks",
            "ibandronate": f"{settings.ibandronate_iv_min_interval_weeks} weeks"}[agent]


SCHEDULE = {"zoledronic_acid": "once a year", "denosumab": "every 6 months", "romosozumab": "once a month",
            "ibandronate": "every 3 months"}
# IV ibandronate's label: no set id verified (terminology.iv_ibandronate); a DailyMed search for it.
IV_IBANDRONATE_LABEL = "https://dailymed.nlm.nih.gov/dailymed/search.cfm?labeltype=all&query=IBANDRONATE+INJECTION"


@rule(*ORDERS, cards=("C-SAFE-DOSE-INTERVAL",))
def dose_interval_order(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-SAFE-DOSE-INTERVAL (warning), second-pass 3: the same drug ordered for a day
    (the order's own planned date, else today) too soon after its last dose: zoledronic
    acid < zoledronate_min_interval_months (11), denosumab < dmab_min_interval_months (5:
    a dose at 5.5 months is fine), romosozumab < romo_min_interval_weeks (3), IV ibandronate
    < ibandronate_iv_min_interval_weeks (11) after its last IV dose (review 16; the monthly
    tablet is not judged here). LABEL: Reclast once yearly, Prolia every 6 months, Evenity
    monthly, Boniva injection 3 mg every 3 months (LABEL, U; AACE20 names it). Months are
    30.4375 days (follow_up's convention). Oncology products are left out (their own schedules),
    bar denosumab's two products: a Prolia or Xgeva draft within the interval after a dose of
    the other (other_denosumab, review 18); a Prolia draft is judged on Prolia's doses."""
    findings = [f for draft in record.judged_drafts if draft.kind == "medication" and "denosumab" in draft.agents
                for f in (other_denosumab(record, today, settings, draft),) if f]
    for draft, agent in ordered(record, ("zoledronic_acid", "denosumab", "romosozumab", "ibandronate")):
        iv = agent == "ibandronate"
        if iv and not draft.interval_days:
            continue  # the monthly tablet: taken by the patient, no clinic-given dose to count from
        if agent == "denosumab" and any(draft_fact(draft, agent) in f.facts for f in findings):
            continue  # one card per draft: the other product's dose says it (other_denosumab)
        # Denosumab: Prolia's own doses here (Xgeva's: other_denosumab, its words).
        e = record.product_exposure(agent, False) if agent == "denosumab" else record.medications.get(agent)
        last = (last_given(e, draft.interval_days) if iv else last_given(e)) if e and not e.oncology_only else None
        if last is None:
            continue
        planned = draft.planned if draft.planned and draft.planned > today else today
        days = (planned - last).days
        minimum = _min_interval_days(agent, settings)
        if days < 0 or days >= minimum:
            continue
        earliest = last + dt.timedelta(days=minimum)
        name = "IV ibandronate" if iv else drug_label(agent)
        findings.append(Finding(
            "C-SAFE-DOSE-INTERVAL",
            facts=(draft_fact(draft, agent), f"Last {name} dose on {last}",
                   f"Planned for {planned}: {days} days after the last dose; the minimum is "
                   f"{_interval_text(agent, settings)}, so not before {earliest}"),
            variables={"drug": name if iv else drug_title(agent), "drug_name": name, "days": str(days),
                       "last_dose": last.isoformat(), "earliest": earliest.isoformat(),
                       "interval": _interval_text(agent, settings), "schedule": SCHEDULE[agent]},
            suggestions=("remove",) if draft.reference else (), delete_draft=draft.reference or None,
            source_url=IV_IBANDRONATE_LABEL if iv else t.label_url(agent)))
    return findings


PRODUCT = {False: "Prolia", True: "Xgeva"}  # denosumab: osteoporosis (60 mg) / oncology (120 mg) product


def other_denosumab(record: PatientRecord, today: dt.date, settings: ClinicalSettings,
                     draft: DraftOrder) -> Finding | None:
    """C-SAFE-DOSE-INTERVAL, variant other-product (review 18): a denosumab draft of one product
    (Prolia 60 mg, or Xgeva 120 mg, oncology's) within dmab_min_interval_months (5) of a dose of
    the other. Both are denosumab: Prolia label (PROLIA24, 5 Warnings: drug products with the
    same active ingredient): "patients receiving Prolia should not receive Xgeva". Oncology
    products count as antiresorptive exposure (brief 8.6), but their plan is oncology's: a
    Prolia draft is the one removed (recommended); an Xgeva draft is never removed here
    (order_safety.denosumab_products_plan: the words, and the offer to stop Prolia)."""
    other = record.product_exposure("denosumab", not draft.oncology)
    last = last_given(other) if other else None
    if last is None:
        return None
    planned = draft.planned if draft.planned and draft.planned > today else today
    days = (planned - last).days
    minimum = _min_interval_days("denosumab", settings)
    if days < 0 or days >= minimum:
        return None
    new, old = PRODUCT[draft.oncology], PRODUCT[not draft.oncology]
    earliest = last + dt.timedelta(days=minimum)
    what, extra = denosumab_products_plan(record, new, earliest)
    return Finding(
        "C-SAFE-DOSE-INTERVAL", variant="other-product",
        facts=(draft_fact(draft, "denosumab"), f"The draft is {new}; the last {old} (denosumab) dose was on {last}",
               f"Planned for {planned}: {days} days after the {old} dose; the shortest denosumab interval is "
               f"{_interval_text('denosumab', settings)}"),
        variables={"new": new, "old": old, "days": str(days), "last_dose": last.isoformat(),
                   "earliest": earliest.isoformat(), "interval": _interval_text("denosumab", settings),
                   "what": what, "drug_name": "Prolia (denosumab)"},
        suggestions=("remove",) if draft.reference and not draft.oncology else (), extra_suggestions=extra,
        delete_draft=(draft.reference or None) if not draft.oncology else None,
        source_url=t.label_url("denosumab"))


@rule(*ORDERS, cards=("C-SAFE-PREDOSE-LABS",))
def predose_labs_order(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-SAFE-PREDOSE-LABS (warning), second-pass 2: zoledronic acid or denosumab
    ordered with no creatinine / eGFR or no calcium within predose_lab_days (90). Reclast
    label: creatinine before each dose; Prolia label: correct hypocalcemia before each
    dose. Coded kidney failure or dialysis counts as a known kidney function (the kidney
    safety cards speak then); calcium is always needed. Suggests the missing labs.
    Review: quiet for a zoledronic acid draft contraindicated by kidney function or acute
    kidney injury (no labs before a dose not to be given: C-SAFE-RENAL speaks), and leaves
    the calcium to C-SAFE-DMAB-CKD's plan below 30 (no test ordered twice on one screen).
    Quiet for a draft another card says not to give now (order_safety.label_stop, the test
    C-SAFE-RENAL and C-SAFE-DMAB-CKD use for their "keep the order"): labs "before the dose"
    beside "do not give it" contradicted it (clinical review 15: C-SAFE-PREGNANCY; likewise
    C-SAFE-HYPOCA, whose recheck owns the calcium, C-VITD-LOW's replete or hold first,
    C-SAFE-DOSE-INTERVAL, C-AR-COMPLICATION on zoledronic acid). The labs belong to the dose:
    the label asks for them before each dose (Reclast, Prolia), and the window
    (predose_lab_days) counts back from it; a dose re-ordered later meets this card again then.
    Still fires beside C-DUP-ANTIRES ("keep one": the draft may be the one kept)."""
    reading = kidney(record, settings)
    dmab_reading = kidney_egfr(record, settings)  # PROLIA24: C-SAFE-DMAB-CKD's reading (the lower of clearance and eGFR)
    # Known hypocalcemia: C-SAFE-HYPOCA owns the calcium (one calcium order per screen).
    no_kidney, no_calcium = predose_labs_missing(record, settings)
    recent_kidney, recent_calcium = not no_kidney, not no_calcium
    findings = []
    for draft, agent in ordered(record, ("zoledronic_acid", "denosumab")):
        if agent == "zoledronic_acid" and (reading.below(settings.egfr_zoledronate_min)
                                           or record.condition_hits("acute_kidney_injury")):
            continue  # contraindicated (C-SAFE-RENAL, critical): no labs before a dose not to be given
        # Denosumab below 30: C-SAFE-DMAB-CKD's PROLIA24 plan orders the calcium (one calcium order per screen).
        need_calcium = not recent_calcium and not (agent == "denosumab"
                                                   and dmab_reading.below(settings.egfr_denosumab_ckd))
        if recent_kidney and not need_calcium:
            continue
        if label_stop(record, today, settings, draft, agent):
            continue  # another card stops this draft: no labs before a dose not to be given now
        # An eGFR reported only as a bound ("<60") is a recent result, but no value the label's
        # limit can be read against (clinical review: the card said there was none at all).
        bound = None if recent_kidney else record.lab(EGFR_UPPER_BOUND, settings.predose_lab_days / DAYS_PER_MONTH)
        kidney_label = f"{'exact ' if bound else ''}kidney function (creatinine / eGFR)"
        missing = [label for label, need in ((kidney_label, not recent_kidney),
                                             ("serum calcium", need_calcium)) if need]  # one or both
        older = [record.lab("creatinine"), record.lab("egfr")] if not recent_kidney else []
        older += [record.lab("calcium")] if need_calcium else []
        on_file = [f"{lab.fact()} (older than {settings.predose_lab_days} days)" for lab in older if lab]
        if bound:
            on_file.append(f"{bound.fact()} (reported as a bound: exact value unknown)")
        if agent == "denosumab" and dmab_reading.may_be_below(settings.egfr_denosumab_ckd):
            # "<35" leaves the Prolia boxed warning's 30 open (review: nothing said so).
            on_file.append(f"{dmab_reading.label} may be below {settings.egfr_denosumab_ckd:g}: then denosumab needs a "
                           "CKD-MBD work-up with nephrology first (Prolia boxed warning, 2024)")
        findings.append(Finding(
            "C-SAFE-PREDOSE-LABS",
            facts=(draft_fact(draft, agent),
                   f"No {' and no '.join(missing)} in the last {settings.predose_lab_days} days", *on_file),
            variables={"drug": drug_title(agent), "drug_name": drug_label(agent), "missing": " or ".join(missing),
                       "days": str(settings.predose_lab_days)},
            suggestions=(), extra_suggestions=(Suggestion(
                f"Order {' and '.join(missing)} before the {drug_label(agent)} dose",
                predose_lab_actions(kidney=not recent_kidney, calcium=need_calcium), True),),
            source_url=t.label_url(agent)))
    return findings


ANABOLIC_AGENTS = ("teriparatide", "abaloparatide", "romosozumab")


def _dup_finding(a: str, b: str, facts: tuple[str, ...], situation: str, **extra) -> Finding:
    return Finding("C-DUP-ANABOLIC", facts=facts,
                   variables={"drug_a": drug_label(a), "drug_b": drug_label(b), "situation": situation}, **extra)


@rule(*ORDERS, cards=("C-DUP-ANABOLIC",))
def duplicate_anabolic_order(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-DUP-ANABOLIC (warning), second-pass 3: an anabolic agent ordered while a
    different one is active or also being ordered (teriparatide + abaloparatide, either +
    romosozumab). No label or guideline combines two anabolic agents (Forteo, Tymlos,
    Evenity labels; AACE20). Switching is fine once the old order is stopped. Suggests
    removing the new draft."""
    findings = []
    drafted = ordered(record, ANABOLIC_AGENTS)
    for draft, agent in drafted:
        active = [e for e in record.active_agents(t.ANABOLIC_CLASSES) if e.agent != agent]
        others = [(d, a) for d, a in [(d, a) for d in record.drafts for a in d.agents if a in ANABOLIC_AGENTS]
                  if d is not draft and a != agent]
        if not active and not others:
            continue
        other = active[0].agent if active else others[0][1]
        facts = (draft_fact(draft, agent), *(f"{drug_title(e.agent)} active since {e.start or 'an unknown date'}"
                                             for e in active), *(draft_fact(d, a) for d, a in others))
        findings.append(_dup_finding(agent, other, facts,
                                     f"{drug_title(agent)} is being ordered while {drug_label(other)} is active or "
                                     "being ordered.",
                                     suggestions=("remove",) if draft.reference else (),
                                     delete_draft=draft.reference or None))
    return findings


@rule("patient-view")
def duplicate_anabolic_active(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-DUP-ANABOLIC (warning) on patient-view: two different anabolic agents active at
    once (second-pass 3). No order to delete: the card asks to keep one."""
    active = record.active_agents(t.ANABOLIC_CLASSES)
    if len({e.agent for e in active}) < 2:
        return []
    a, b = active[0], next(e for e in active if e.agent != active[0].agent)
    facts = tuple(f"{drug_title(e.agent)} active since {e.start or 'an unknown date'}"
                  + (f", last dose {e.last_dose}" if e.dose_count else "") for e in (a, b))
    return [_dup_finding(a.agent, b.agent, facts,
                         f"The patient is on {drug_label(a.agent)} and {drug_label(b.agent)} at the same time.",
                         suggestions=())]
