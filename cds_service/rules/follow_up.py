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

import dataclasses
import datetime as dt

from cds_service.fhir import terminology as t
from cds_service.record import AgentExposure, MedEvent, PatientRecord
from cds_service.rules.base import Finding, rule
from cds_service.rules.settings import ClinicalSettings
from cds_service.rules.treatment import ORAL_BP_INSTRUCTIONS, bp_contraindications

DAYS_PER_MONTH = 30.4375
NOT_DUE, DUE, OVERDUE = "not_due", "due", "overdue"


def months_to_days(months: float) -> int:
    return round(months * DAYS_PER_MONTH)


def _name(agent: str) -> str:
    return agent.replace("_", " ")


def _when(event: MedEvent) -> dt.date | None:
    return event.dose_date or event.start


# ---------------------------------------------------------------------------
# Denosumab timing
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class DmabTiming:
    exposure: AgentExposure
    last_dose: dt.date
    from_administration: bool   # False: no administration/statement, the order date stands in
    days_since: int
    due: dt.date                # last dose + interval
    grace_end: dt.date          # last day still "due"
    phase: str                  # NOT_DUE / DUE / OVERDUE

    def facts(self) -> list[str]:
        if self.from_administration:
            first = f"Last denosumab dose on {self.last_dose} ({self.days_since} days ago)"
        else:
            first = (f"Denosumab last ordered on {self.last_dose} ({self.days_since} days ago); no administration "
                     "on record, so the order date is taken as the last dose date")
        return [first, f"6 months after the last dose: {self.due}; end of the grace period: {self.grace_end}"]


def denosumab_timing(record: PatientRecord, settings: ClinicalSettings) -> DmabTiming | None:
    """Where the patient is in the 6-monthly denosumab cycle, or None when
    there is no osteoporosis denosumab with a known last dose (oncology-only
    denosumab, Xgeva, is dosed monthly by oncology: not judged here)."""
    e = record.medications.get("denosumab")
    if e is None or e.oncology_only or e.last_dose is None:
        return None
    interval = months_to_days(settings.dmab_interval_months)
    grace = settings.dmab_grace_weeks * 7
    days = (record.today - e.last_dose).days
    phase = NOT_DUE if days < interval else DUE if days <= interval + grace else OVERDUE
    from_admin = any(ev.resource_type != "MedicationRequest" and ev.dose_date == e.last_dose for ev in e.events)
    return DmabTiming(e, e.last_dose, from_admin, days, e.last_dose + dt.timedelta(days=interval),
                      e.last_dose + dt.timedelta(days=interval + grace), phase)


def denosumab_stopped(e: AgentExposure) -> MedEvent | None:
    """SAFE-14: the latest denosumab MedicationRequest is stopped/completed and
    none is active or on hold. Returns that request."""
    requests = [ev for ev in e.events if ev.resource_type == "MedicationRequest"]
    if not requests or any(ev.status in ("active", "on-hold") for ev in requests):
        return None
    latest = max(requests, key=lambda ev: ev.end or ev.start or dt.date.min)
    return latest if latest.status in ("stopped", "completed") else None


def bisphosphonate_since(record: PatientRecord, since: dt.date | None) -> list[str]:
    """Facts for bisphosphonates given or started after `since` (any status
    the record keeps, oncology zoledronate included: it is antiresorptive
    exposure, brief 8.6), plus any bisphosphonate active or planned now."""
    out = []
    for e in record.exposures(t.BISPHOSPHONATE_CLASSES):
        later = [d for d in (_when(ev) for ev in e.events) if d and since and d > since]
        if later:
            verb = "given" if e.drug_class == t.IV_BP else "started"
            out.append(f"{_name(e.agent).capitalize()} {verb} on {max(later)}")
        elif e.active:
            out.append(f"{_name(e.agent).capitalize()} active (since {e.start or 'an unknown date'})")
    return out


def _later_denosumab_order(timing: DmabTiming) -> MedEvent | None:
    """A denosumab order written after the last administration (next dose already ordered)."""
    if not timing.from_administration:
        return None
    later = [ev for ev in timing.exposure.events if ev.resource_type == "MedicationRequest"
             and ev.status in ("active", "on-hold") and ev.start and ev.start > timing.last_dose]
    return max(later, key=lambda ev: ev.start) if later else None  # type: ignore[arg-type, return-value]


# ---------------------------------------------------------------------------
# Suggestion choice shared by the cards
# ---------------------------------------------------------------------------

def _egfr_below(record: PatientRecord, settings: ClinicalSettings, limit: float) -> str | None:
    egfr = record.lab("egfr", settings.lab_max_age_months)
    return egfr.fact() if egfr and egfr.value < limit else None


def denosumab_key(record: PatientRecord, settings: ClinicalSettings, facts: list[str]) -> str:
    """MON-8 (LABEL): with eGFR < 30, check calcium before each denosumab dose."""
    low = _egfr_below(record, settings, settings.egfr_denosumab_ckd)
    if low:
        facts.append(f"{low}: check serum calcium before the denosumab dose (MON-8); severe hypocalcemia "
                     "risk in advanced kidney disease, consider specialist input (SAFE-6)")
        return "denosumab-with-calcium-check"
    return "denosumab"


def zoledronate_blockers(record: PatientRecord, settings: ClinicalSettings) -> list[str]:
    """Why IV zoledronic acid should not be suggested (SAFE-3, SAFE-4, intolerance).
    Only actual values count: an unknown eGFR blocks nothing."""
    out = []
    low = _egfr_below(record, settings, settings.egfr_zoledronate_min)
    if low:
        out.append(low)
    ca = record.lab("calcium_corrected", settings.calcium_max_age_months) or record.lab(
        "calcium", settings.calcium_max_age_months)
    if ca and ca.value < settings.calcium_lower_mg_dl:
        out.append(ca.fact())
    for group in ("hypocalcemia", "bp_intolerance"):
        hits = record.condition_hits(group)
        if hits:
            out.append(f"{group.replace('_', ' ').capitalize()} on the problem list ({hits[0].code or 'coded'})")
    return out


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
    latest MedicationRequest authoredOn. Quiet when: the denosumab order is
    stopped/completed (C-DMAB-STOP speaks), a bisphosphonate was given since
    the last dose or is active (transition done), or a new denosumab order was written
    after the last administration (next dose already ordered).
    Suggests the next 60 mg SC dose, with a calcium check if eGFR < 30 (MON-8)."""
    timing = denosumab_timing(record, settings)
    if timing is None or timing.phase != DUE:
        return []
    if denosumab_stopped(timing.exposure) or bisphosphonate_since(record, timing.last_dose):
        return []
    if _later_denosumab_order(timing):
        return []
    facts = timing.facts()
    key = denosumab_key(record, settings, facts)
    return [Finding("C-DMAB-DUE", facts=tuple(facts),
                    variables={"last_dose": timing.last_dose.isoformat(), "grace_end": timing.grace_end.isoformat()},
                    suggestions=(key,))]


@rule("patient-view")
def denosumab_overdue(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-DMAB-OVERDUE (critical), brief SAFE-13; ES20/ECTS21 ("alternative
    antiresorptive treatment should be initiated 6 months after the final
    denosumab injection"), AACE20, seed. Last denosumab dose 212 days or more
    ago (more than 6 months + 4 weeks, see the module docstring) and no
    bisphosphonate given or started after it: bone loss and multiple vertebral
    fractures rebound after denosumab wears off. Fires whether or not the
    order was stopped. Suggestions (at most one): denosumab now, or
    zoledronic acid 5 mg IV, or alendronate 70 mg weekly (each only when not
    contraindicated on record)."""
    timing = denosumab_timing(record, settings)
    if timing is None or timing.phase != OVERDUE:
        return []
    if bisphosphonate_since(record, timing.last_dose):
        return []
    facts = timing.facts()
    stopped = denosumab_stopped(timing.exposure)
    if stopped:
        facts.append(f"Denosumab order {stopped.status} ({stopped.ref})")
    pending = [ev for ev in timing.exposure.events if ev.resource_type == "MedicationRequest"
               and ev.status in ("active", "on-hold") and ev.start and ev.start > timing.last_dose]
    if pending and timing.from_administration:
        facts.append(f"A denosumab order dated {max(ev.start for ev in pending if ev.start)} is on file "
                     "but no dose was given after it")
    facts.append("No bisphosphonate given since the last denosumab dose")
    keys = [denosumab_key(record, settings, facts)] + bisphosphonate_keys(record, settings, facts)
    return [Finding("C-DMAB-OVERDUE", facts=tuple(facts),
                    variables={"last_dose": timing.last_dose.isoformat(), "days_since": str(timing.days_since),
                               "patient_instruction": ORAL_BP_INSTRUCTIONS},
                    suggestions=tuple(keys))]


@rule("patient-view")
def denosumab_stop(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-DMAB-STOP (warning), brief SAFE-14; ECTS21, ES19/ES20, AACE20.
    The denosumab MedicationRequest is stopped or completed (the latest one,
    none active) and no bisphosphonate was started after the last dose or is
    active/planned: do not stop denosumab without a follow-on bisphosphonate
    (zoledronic acid 6 months after the last dose, or oral alendronate).
    Not when C-DMAB-OVERDUE fires (it carries the same transition). Caveat
    for review: EHRs that close each single-dose order as "completed" will
    look like a stop; the brief counts completed as stopped."""
    e = record.medications.get("denosumab")
    if e is None or e.oncology_only:
        return []
    stopped = denosumab_stopped(e)
    if stopped is None:
        return []
    timing = denosumab_timing(record, settings)
    if timing and timing.phase == OVERDUE:
        return []
    if bisphosphonate_since(record, e.last_dose):
        return []
    facts = [f"Denosumab order {stopped.status} ({stopped.ref}, dated {stopped.start or 'an unknown date'})"]
    if timing:
        facts += timing.facts()
        zol_day = max(timing.due, today)
    else:
        facts.append("Last denosumab dose date unknown")
        zol_day = today
    facts.append("No bisphosphonate started or planned after denosumab")
    keys = bisphosphonate_keys(record, settings, facts, zoledronate_key="zoledronic-acid-scheduled")
    return [Finding("C-DMAB-STOP", facts=tuple(facts),
                    variables={"zoledronate_date": zol_day.isoformat(), "patient_instruction": ORAL_BP_INSTRUCTIONS},
                    suggestions=tuple(keys))]


def anabolic_course_end(record: PatientRecord, settings: ClinicalSettings) -> tuple[dt.date, list[str]] | None:
    """SAFE-12: when the anabolic course finished, with facts; None while any
    anabolic is still running or no course is known to have finished.
    Finished = teriparatide/abaloparatide stopped or completed (end date from
    the order's bounds/supply, else its date), romosozumab at romo_max_doses
    doses (end = last dose) or stopped earlier."""
    ends: list[tuple[dt.date, str]] = []
    for e in record.exposures(t.ANABOLIC_CLASSES):
        if e.drug_class == t.ROMOSOZUMAB and e.dose_count >= settings.romo_max_doses and e.last_dose:
            ends.append((e.last_dose, f"Romosozumab: {e.dose_count} monthly doses given, the last on {e.last_dose}"))
        elif e.active:
            return None  # an anabolic course is still under way
        elif e.stopped:
            ends.append((e.stopped, f"{_name(e.agent).capitalize()} {e.status} on {e.stopped} "
                                    f"(started {e.start or 'an unknown date'}, about {e.exposure_months:.0f} months)"))
    if not ends:
        return None
    return max(d for d, _ in ends), [f for _, f in sorted(ends)]


@rule("patient-view")
def anabolic_follow_on(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-ANABOLIC-FOLLOW-ON (warning), brief SAFE-12; ACP23 Rec 3 ("followed
    by a bisphosphonate"), AACE20, ES19. The anabolic course finished more
    than anabolic_followon_months (3 months = 91 days) ago and no
    antiresorptive (bisphosphonate, denosumab, raloxifene) is active or was
    started after it. At 91 days or less: quiet, there is still time.
    Suggestions (at most one): alendronate 70 mg weekly, denosumab 60 mg."""
    course = anabolic_course_end(record, settings)
    if course is None:
        return []
    end, facts = course
    days = (today - end).days
    if days <= months_to_days(settings.anabolic_followon_months):
        return []
    for e in record.exposures(t.ANTIRESORPTIVE_CLASSES):
        if e.active or any((_when(ev) or dt.date.min) >= end for ev in e.events):
            return []
    facts = facts + [f"{days} days since the anabolic course ended; no antiresorptive started since"]
    keys = []
    oral = bp_contraindications(record, settings)
    if oral:
        facts.append(f"Oral alendronate not suggested: {'; '.join(oral)}")
    else:
        keys.append("alendronate")  # ACP23 Rec 3 names a bisphosphonate first
    keys.append(denosumab_key(record, settings, facts))
    return [Finding("C-ANABOLIC-FOLLOW-ON", facts=tuple(facts),
                    variables={"end_date": end.isoformat(), "patient_instruction": ORAL_BP_INSTRUCTIONS},
                    suggestions=tuple(keys))]


__all__ = ["denosumab_due", "denosumab_overdue", "denosumab_stop", "anabolic_follow_on", "denosumab_timing",
           "denosumab_stopped", "bisphosphonate_since", "anabolic_course_end", "months_to_days",
           "DUE", "OVERDUE", "NOT_DUE"]
