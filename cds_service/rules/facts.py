"""Facts several rules need, read once from the PatientRecord (DESIGN "no
circle inside rules/"): kidney function, current therapy, course dates, lab
freshness, oral-bisphosphonate problems, open anabolic options, pregnancy,
glucocorticoid exposure, injurious falls. No cards here; rule modules import
this one, never each other.

Every fact keeps the brief's rule: a missing or stale value is unknown, never
normal and never abnormal.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

from cds_service.fhir import terminology as t
from collections.abc import Iterable, Sequence

from cds_service.record import (
    EGFR_UPPER_BOUND,
    KIDNEY_CUTOFFS,
    AgentExposure,
    ConditionHit,
    DraftOrder,
    Lab,
    MedEvent,
    PatientRecord,
    months_between,
    within_months,
    written_beside,
)
from cds_service.rules.diagnosis import OSTEOPENIA, OSTEOPOROSIS, assess
from cds_service.rules.memo import per_call
from cds_service.rules.settings import ClinicalSettings

DAYS_PER_MONTH = 30.4375

# Seed 000 (and Fosamax label) administration instructions, used as patientInstruction.
ORAL_BP_INSTRUCTIONS = (
    "Take on waking, with a full glass (6-8 oz) of plain water only, at least 30 minutes before "
    "the first food, drink or other medicine of the day. Stay upright (sitting or standing) for at "
    "least 30 minutes afterwards and until after the first food of the day."
)


def months_to_days(months: float) -> int:
    return round(months * DAYS_PER_MONTH)


def _date(value: dt.date | None) -> str:
    return value.isoformat() if value else "an unknown date"


def condition_fact(hit: ConditionHit, label: str) -> str:
    return f"{label} ({hit.code or 'coded'}) on {_date(hit.date)}"


def mi_date_unknown(hit: ConditionHit) -> bool:
    """An old / history-of MI code dated only by its recordedDate: the MI's own date is not on
    record (t.OLD_MI_CODES; review 10 M4, a problem-list entry read as a recent MI). An onset age,
    range or date string, or an abatement, bounds it (record.EventWindow): not unknown."""
    return hit.recorded_only and hit.code in t.OLD_MI_CODES and hit.window is None


def cv_undated(hit: ConditionHit) -> bool:
    """An MI or stroke with no date at all (no onset[x], abatement or recordedDate) whose
    clinicalStatus is active or absent: it may be this month's (review 15: I21.4 or I63.9 so gave no
    C-SAFE-ROMO-CV and a one-click romosozumab). EVENITY boxed warning, SAFE-8: read as an MI of
    unknown date. An inactive, resolved or in-remission one says the event is over, as a dated one
    long ago: left as before (no card); an entered-in-error one is never read."""
    return hit.date is None and hit.window is None and hit.active


def cv_date_unknown(hit: ConditionHit) -> bool:
    """The MI's or stroke's own date is not on record: an old-MI code dated only by its
    recordedDate (mi_date_unknown) or an event with no date at all (cv_undated)."""
    return mi_date_unknown(hit) or cv_undated(hit)


def cv_latest(hit: ConditionHit) -> dt.date | None:
    """The latest day the MI or stroke can have happened: its EventWindow's last day when its
    record bounds it without an onset day (a partial date, an onset period, age, age range or
    date string, its abatement, its recordedDate), else its date. The latest, so that an event
    that may be within the year counts as recent (EVENITY: do not start within 12 months of an
    MI or stroke)."""
    return hit.window.latest if hit.window else hit.date


def cv_fact(hit: ConditionHit, label: str) -> str:
    """condition_fact, with the bounds read when the event's day is not on record."""
    w = hit.window
    if w is None and hit.recorded_only and hit.date:  # it began on or before its recordedDate
        return f"{label} ({hit.code or 'coded'}), no onset on record: on or before {hit.date} (recorded)"
    if w is None:
        return condition_fact(hit, label)
    span = f"between {w.earliest} and {w.latest}" if w.earliest else f"on or before {w.latest}"
    return f"{label} ({hit.code or 'coded'}), {w.written}: {span}"


def cv_possibly_recent(hits: Iterable[ConditionHit], record: PatientRecord, settings: ClinicalSettings) -> bool:
    """Every MI or stroke of cv_hits only may fall within mi_stroke_window_months: its record bounds
    its date (EventWindow) and its first possible day is before the window or unbounded (an onset
    age, a range, an abatement alone). C-SAFE-ROMO-CV then says "possibly within" (review 14: "in
    the past 12 months" for an MI at age 71, 2024-01-01 to 2024-12-31). Dated or wholly in: False."""
    hits = list(hits)
    return bool(hits) and all(cv_bounded_only(h, record, settings) for h in hits)


def cv_bounded_only(hit: ConditionHit, record: PatientRecord, settings: ClinicalSettings) -> bool:
    """cv_possibly_recent for one event: its first possible day is before the window or unbounded.
    An event dated by its recordedDate alone began on or before it (review 15: an I21.4 recorded
    100 days ago read "in the past 12 months")."""
    if hit.window is not None:
        return not within_months(hit.window.earliest, record.today, settings.mi_stroke_window_months)
    return hit.recorded_only and hit.date is not None and not cv_date_unknown(hit)


def cv_hits(record: PatientRecord, settings: ClinicalSettings, since: dt.date | None = None) -> list[ConditionHit]:
    """MI or stroke within mi_stroke_window_months by its latest possible day (cv_latest; a
    resolved MI is still a recent MI), or on/after `since` when given (by its earliest day: an
    MI of unknown date or of unknown earliest day never counts as "during"): per group the
    first dated event, else the first of unknown date (cv_date_unknown: an old MI dated by its
    recordedDate alone, or an active MI or stroke with no date at all). One of unknown date is
    left out when one of its group with its own date is on record at any time: the history code
    names that MI (review 12: I25.2 recorded last month beside I21.4 of 600 days
    ago read as an MI of unknown date, a critical card). One reading for C-SAFE-ROMO-CV and
    C-TX-ANABOLIC's romosozumab."""
    out = []
    for group in ("mi", "stroke"):
        every = record.condition_hits(group, active_only=False)
        hits = [h for h in every if cv_undated(h)
                or within_months(cv_latest(h), record.today, settings.mi_stroke_window_months)]
        if any(map(cv_date_unknown, hits)) and any(cv_latest(h) and not cv_date_unknown(h) for h in every):
            hits = [h for h in hits if not cv_date_unknown(h)]
        if since is not None:
            hits = [h for h in hits if not cv_date_unknown(h)
                    and (first := h.window.earliest if h.window else h.date) and first >= since]
        out += sorted(hits, key=cv_date_unknown)[:1]
    return out


# ---------------------------------------------------------------------------
# Draft orders (order hooks)
# ---------------------------------------------------------------------------

def drug_label(agent: str) -> str:
    return {"zoledronic_acid": "zoledronic acid"}.get(agent, agent.replace("_", " "))


def drug_title(agent: str) -> str:
    text = drug_label(agent)
    return text[0].upper() + text[1:]


def draft_fact(draft: DraftOrder, agent: str) -> str:
    return f"Draft order: {drug_label(agent)} ({draft.reference or 'draft without id'})"


def ordered(record: PatientRecord, agents: Iterable[str]) -> list[tuple[DraftOrder, str]]:
    """(draft, agent) for the judged medication drafts (selected on order-select, all on
    order-sign) naming one of `agents`, oncology products left out."""
    wanted = set(agents)
    out = []
    for draft in record.judged_drafts:
        if draft.kind != "medication" or draft.oncology:
            continue
        for agent in draft.agents:
            if agent in wanted:
                out.append((draft, agent))
                break
    return out


# ---------------------------------------------------------------------------
# Kidney function: one reading for every rule (second-pass 1)
# ---------------------------------------------------------------------------

FAILURE, SEVERE, MEASURED, UNKNOWN = "failure", "severe", "measured", "unknown"


@dataclasses.dataclass(frozen=True)
class KidneyReading:
    """Kidney function as the drug labels need it. `band`: FAILURE (dialysis,
    coded CKD 5 / ESRD, or a value below kidney_failure_egfr), SEVERE (coded
    CKD 4, or a value 15-29), MEASURED (a value of 30 or more), UNKNOWN
    (nothing coded, no value within kidney_lab_max_age_months).

    `bound` ("<" or "<="): the lab reported an upper bound ("eGFR <30"), not a value.
    It is known below every limit at or above it, so "<30" is at least SEVERE and "<15"
    FAILURE. A bound above egfr_risedronate_min ("<35", "<60") is no reading (UNKNOWN:
    not known whether risedronate's 30 is met) but still below alendronate's and
    zoledronic acid's 35 when it says so (review: "<35" offered alendronate)."""

    band: str
    value: float | None      # mL/min (CrCl) or mL/min/1.73m2 (eGFR); None when coded only or unknown
    kind: str                # "CrCl" / "eGFR" / "" (no value)
    facts: tuple[str, ...]   # what the reading rests on, for "Patient data used"
    dialysis: bool
    coded: bool              # a coded kidney failure / CKD 4 / dialysis decided the band
    # UNKNOWN only: the latest value on file, older than kidney_lab_max_age_months (value,
    # date). Not a reading (an old value is unknown now), but an old LOW value asks for a
    # recheck rather than silence (issue 14).
    last_value: float | None = None
    last_date: dt.date | None = None
    bound: str = ""          # "<" / "<=": `value` (or `last_value`) is an upper bound as reported

    @property
    def known(self) -> bool:
        return self.band != UNKNOWN

    def recheck_below(self, limit: float) -> bool:
        """Unknown now, and the last value on file (too old to use) was below `limit`."""
        return self.band == UNKNOWN and self.value is None and _under(self.last_value, limit, self.bound)

    def may_be_below(self, limit: float) -> bool:
        """Unknown, but a recent upper bound leaves `limit` open ("eGFR <35" for risedronate's 30)."""
        return self.band == UNKNOWN and self.value is not None and not self.below(limit)

    def below(self, limit: float) -> bool:
        """True when kidney function is known to be below `limit` (mL/min). Coded kidney
        failure or dialysis reads as below 15, coded CKD 4 as below 30, whatever the last
        lab says (second-pass 1); an unknown reading is never below anything."""
        if self.band == FAILURE and self.coded:
            return limit >= 15
        if self.band == SEVERE and self.coded:
            return limit >= 30 or _under(self.value, limit, self.bound)
        return _under(self.value, limit, self.bound)

    @property
    def label(self) -> str:
        """Short phrase for card text, e.g. "dialysis", "creatinine clearance 28 mL/min"."""
        if self.dialysis:
            return "dialysis"
        if self.coded:
            return "CKD 5 / end-stage kidney disease" if self.band == FAILURE else "CKD stage 4"
        if self.value is None:
            return "kidney function unknown"
        unit = "mL/min" if self.kind == "CrCl" else "mL/min/1.73m2"
        return f"{'creatinine clearance' if self.kind == 'CrCl' else 'eGFR'} {self.bound}{written_beside(self.value, 0, KIDNEY_CUTOFFS)} {unit}"


def _under(value: float | None, limit: float, bound: str) -> bool:
    """`value` below `limit`. An upper bound "<v" / "<=v" (`bound`) is below every limit at or
    above v (a lab's "<=30" is read as below 30 too: at the reporting limit the value cannot be
    told from one below it)."""
    return value is not None and (value <= limit if bound else value < limit)


@per_call
def cockcroft_gault(record: PatientRecord, settings: ClinicalSettings, *,
                    any_age: bool = False) -> tuple[float, str, dt.date | None] | None:
    """Creatinine clearance (mL/min), recent (any age with `any_age`: only for a recheck
    prompt): the lab's reported one (lab-creatinine-clearance: Cockcroft-Gault, or measured
    on 24 h urine) or the service's own Cockcroft-Gault, the newer of the two, as the reading
    takes the latest value (second-pass 1); on the same day the lab's (a measured clearance is
    what Cockcroft-Gault estimates, and a reported one used that draw). A clearance reported
    as a bound ("<30") is no value. The bisphosphonate labels give their limits in CrCl."""
    months = None if any_age else settings.kidney_lab_max_age_months
    computed = _computed_clearance(record, months)
    reported = record.lab("crcl", months)
    if reported is None or reported.comparator.startswith("<"):
        return computed
    if computed is None or computed[2] is None or (reported.date is not None and reported.date >= computed[2]):
        return reported.value, reported.fact(), reported.date
    return computed


def _computed_clearance(record: PatientRecord, months: int | None) -> tuple[float, str, dt.date | None] | None:
    """Cockcroft-Gault, when creatinine, weight, age and sex are all on file within `months`:
    ((140 - age) x weight kg) / (72 x creatinine mg/dL), x 0.85 for women."""
    creatinine = record.lab("creatinine", months)
    weight = record.lab("weight", months)
    # Fails closed (adversarial review 13): the kidney limits warn below a clearance, so an age or
    # sex that is not known for sure takes the value giving the lower estimate: the oldest of the
    # birthDates the Patient's copies disagree on, and the women's factor unless male on every copy.
    # Unknown they had left the clearance, and with no eGFR every renal card, silent.
    ages = [a for a in (record.age, record.oldest_conflicting_age) if a is not None]
    age = max(ages) if ages else None
    if creatinine is None or weight is None or age is None or creatinine.value <= 0:
        return None
    male = record.male and not record.sex_conflict
    crcl = round((140 - age) * weight.value / (72 * creatinine.value) * (1.0 if male else 0.85))
    age_text = f"age {age}" if age == record.age else f"age {age} (the oldest of the birth dates on record)"
    sex_text = ("male" if male else "female" if record.female and not record.sex_conflict else
                "sex not known for sure: the women's factor, the lower estimate")
    fact = f"Creatinine clearance {crcl} mL/min (Cockcroft-Gault: {creatinine.fact()}, {weight.fact()}, {age_text}, {sex_text})"
    return crcl, fact, creatinine.date


@per_call
def kidney(record: PatientRecord, settings: ClinicalSettings) -> KidneyReading:
    """The kidney reading of the drug label limits (second-pass 1), strongest first:
    coded kidney failure / dialysis (Conditions, or a dialysis Procedure within
    kidney_lab_max_age_months) or CKD 4; then creatinine clearance by Cockcroft-Gault;
    then eGFR. The latest value within kidney_lab_max_age_months counts (a newer eGFR
    beats an older creatinine); older or absent is unknown. It sets the bisphosphonate label
    limits (written in creatinine clearance); what is written on eGFR or CKD stages reads
    kidney_egfr / ckd_4_5, which never reads higher than this one (review 20)."""
    return _kidney(record, settings, egfr_first=False)


@per_call
def kidney_egfr(record: PatientRecord, settings: ClinicalSettings) -> KidneyReading:
    """The reading of the rules written on eGFR or CKD stages, not creatinine clearance: the
    PROLIA24 boxed warning (eGFR < 30 mL/min/1.73m2 or dialysis: C-SAFE-DMAB-CKD, the plan on
    C-TX-DMAB-ALT, C-SAFE-RENAL's denosumab advice, C-DMAB-DUE/OVERDUE) and CKD stages 4-5
    (ckd_4_5: C-TX-ANABOLIC's CKD-MBD referral, C-SAFE-RENAL's anabolic-ckd and ckd-stage,
    C-SUPP-CAVD, C-VITD-LOW, C-GIOP). Fail-closed (second-pass 1, "one reading for every
    rule"; review 20): kidney() itself unless it took a creatinine clearance over an eGFR
    on record in kidney_lab_max_age_months, then the LOWER of the two. Review 13 had read
    the eGFR first (a clearance of 22 beside eGFR 52 sent denosumab to the CKD-MBD work-up);
    review 20 found the other side of it: clearance 20 beside eGFR 38 gave C-TX-DMAB-ALT
    "below 30 for every oral bisphosphonate" and, on the same screen, "the Prolia boxed
    warning does not apply" with a one-click denosumab, and a denosumab draft no
    C-SAFE-DMAB-CKD. The contract's one reading governs; where the Prolia label's eGFR is
    the higher value, the lower one still governs the warning (never "does not apply" beside
    "below 30"). Review 14's case, eGFR 25 beside a clearance of 47, stays below 30 here."""
    reading = kidney(record, settings)
    # The two readings differ only where kidney() took a clearance over an eGFR on record
    # (kidney() is read on nearly every call, so this one is then free).
    if reading.kind != "CrCl" or record.lab("egfr", settings.kidney_lab_max_age_months) is None:
        return reading
    egfr = _kidney(record, settings, egfr_first=True)
    if egfr.value is not None and reading.value is not None and (
            egfr.value < reading.value or (egfr.value == reading.value and egfr.bound)):
        return egfr
    return reading


def ckd_4_5(record: PatientRecord, settings: ClinicalSettings) -> KidneyReading | None:
    """kidney_egfr when it is CKD stage 4-5 or dialysis (coded, or the lower of clearance and
    eGFR below 30: second-pass 1, review 20), else None: the
    CKD-stage decisions, calcium and vitamin D agreed with nephrology (second-pass 1 last bullet;
    KDIGO 2017 CKD-MBD). Review 14: they read kidney() (clearance first) while C-TX-ANABOLIC and
    the PROLIA24 rules read the eGFR, so eGFR 25 with a clearance of 47 got "CKD-MBD work-up
    before any bone drug" beside a one-click vitamin D3 50,000 IU."""
    reading = kidney_egfr(record, settings)
    return reading if reading.band in (FAILURE, SEVERE) else None


def _kidney(record: PatientRecord, settings: ClinicalSettings, *, egfr_first: bool) -> KidneyReading:
    months = settings.kidney_lab_max_age_months
    facts: list[str] = []
    dialysis = [h for h in record.condition_hits("dialysis")
                if not h.ref.startswith("Procedure/") or within_months(h.date, record.today, months)]
    failure = record.condition_hits("kidney_failure")
    ckd4 = record.condition_hits("ckd_4")
    for hits, label in ((dialysis, "Dialysis"), (failure, "Kidney failure (CKD 5 / end-stage)"), (ckd4, "CKD stage 4")):
        if hits:
            latest = max(hits, key=lambda h: h.date or dt.date.min)
            facts.append(condition_fact(latest, label))

    value: float | None = None
    kind = ""
    egfr = record.lab("egfr", months)
    crcl = cockcroft_gault(record, settings)
    if crcl and (egfr is None or (not egfr_first and (egfr.date is None or (crcl[2] and crcl[2] >= egfr.date)))):
        value, kind = crcl[0], "CrCl"
        facts.append(crcl[1])
        if egfr:  # shown, but the labels' limits are creatinine clearance
            # Review 20: a lower clearance is also kidney_egfr's reading, so "the labels" (the
            # bisphosphonates') is not the reason on the Prolia cards that show this fact.
            why = ("not used: the creatinine clearance is the lower reading and governs" if crcl[0] <= egfr.value else
                   "not used: the drug labels set their limits in creatinine clearance")
            if crcl[0] > egfr.value and _under(egfr.value, 30, egfr.comparator if egfr.comparator.startswith("<")
                                               else ""):
                # Review 21: "not used" beside the CKD 4-5 decisions this eGFR sets (kidney_egfr, ckd_4_5).
                why = ("not used for the drug labels' limits, set in creatinine clearance; it sets the CKD stage "
                       "(4-5)")
            facts.append(f"{egfr.fact()} ({why})")
    elif egfr:
        value, kind = egfr.value, "eGFR"
        facts.append(egfr.fact())
    bound = egfr.comparator if kind == "eGFR" and egfr and egfr.comparator.startswith("<") else ""
    under_failure = _under(value, settings.kidney_failure_egfr, bound)
    # "eGFR <35": known below 35 only. It replaces the reading above only when it contradicts
    # it (the reading at or above the bound, and not newer): no reading then, but below
    # alendronate's and zoledronic acid's limit. A lower value fits the bound and says more
    # (clinical review: eGFR 25, then "<60", had offered alendronate).
    above = record.lab(EGFR_UPPER_BOUND, months)
    reading_date = crcl[2] if kind == "CrCl" else egfr.date if egfr else None
    if above and not (dialysis or failure or ckd4) and (value is None or (value >= above.value and (
            reading_date is None or (above.date is not None and above.date >= reading_date)))):
        note = f"{above.fact()} (reported as a bound: below {above.value:g}, exact value unknown)"
        return KidneyReading(UNKNOWN, above.value, "eGFR", (note,), False, False, bound=above.comparator)

    if dialysis or failure:
        band, coded = FAILURE, True
    elif ckd4:
        band, coded = (FAILURE, False) if under_failure else (SEVERE, True)
    elif value is None:
        band, coded = UNKNOWN, False
        last = _last_kidney_value(record, settings)
        low = last is not None and last[0] < settings.egfr_alendronate_min
        recheck = f"; it was below {settings.egfr_alendronate_min:g} then: recheck it" if low else ""
        stale = [lab for lab in (record.lab("egfr"), record.lab("creatinine")) if lab]
        facts += [f"{lab.fact()} (older than {months} months: kidney function unknown{recheck})" for lab in stale]
        if last is not None:
            return KidneyReading(band, None, "", tuple(facts), False, False, last[0], last[1], bound=last[2])
    else:
        band = FAILURE if under_failure else SEVERE if _under(value, 30, bound) else MEASURED
        coded = False
    return KidneyReading(band, value, kind, tuple(facts), bool(dialysis), coded, bound=bound)


def _last_kidney_value(record: PatientRecord, settings: ClinicalSettings) -> tuple[float, dt.date | None, str] | None:
    """The kidney value the reading would take with no age limit (the newer of CrCl and eGFR),
    with the eGFR's comparator when it is an upper bound."""
    egfr = record.lab("egfr")
    crcl = cockcroft_gault(record, settings, any_age=True)
    if crcl and (egfr is None or egfr.date is None or (crcl[2] and crcl[2] >= egfr.date)):
        return crcl[0], crcl[2], ""
    return (egfr.value, egfr.date, egfr.comparator if egfr.comparator.startswith("<") else "") if egfr else None


def kidney_fact(reading: KidneyReading, limit: float, drug: str) -> str:
    """The reading as one fact with the label limit it falls under."""
    why = ""
    if reading.coded:
        why = "coded kidney failure or dialysis counts as " if reading.band == FAILURE else "coded CKD stage 4 counts as "
    return f"{'; '.join(reading.facts)} ({why}below {limit:g} for {drug})"


# Kidney bands, least severe first (KidneyReading.band; UNKNOWN is no band).
_KIDNEY_BANDS = (MEASURED, SEVERE, FAILURE)


def kidney_band_tokens(reading: KidneyReading) -> tuple[str, ...]:
    """Finding.trigger_codes for a kidney card: its band and every milder one ("kidney:measured",
    "kidney:severe", ...), so a quieted card comes back when kidney function falls into a worse band
    (an eGFR from 33 to 25 on the day of the feedback: "kidney:severe" is new), and not when it
    improves or stays within its band (nothing new). Unknown: none."""
    if reading.band not in _KIDNEY_BANDS:
        return ()
    return tuple(f"kidney:{band}" for band in _KIDNEY_BANDS[:_KIDNEY_BANDS.index(reading.band) + 1])


# ---------------------------------------------------------------------------
# Labs
# ---------------------------------------------------------------------------

def calcium(record: PatientRecord, months: float) -> Lab | None:
    """The most recent calcium within `months`, albumin-corrected when that same draw
    has a paired albumin (an older corrected value never outranks a newer measured one)."""
    measured = record.lab("calcium", months)
    corrected = record.lab("calcium_corrected", months)
    if corrected and (measured is None or (corrected.date and measured.date and corrected.date >= measured.date)):
        return corrected
    return measured


def coded_hypercalcemia(record: PatientRecord, settings: ClinicalSettings) -> list[ConditionHit]:
    """Active coded hypercalcemia not outdated by a newer measured calcium within
    lab_max_age_months (review 10: E83.52 coded 700 days ago outweighed a normal calcium of
    20 days ago). A newer value that is itself high is high_calcium's; an undated code stands."""
    hits = record.condition_hits("hypercalcemia")
    ca = calcium(record, settings.lab_max_age_months) if hits else None
    if ca is None or ca.date is None:
        return hits
    return [h for h in hits if h.date is None or h.date >= ca.date]


@per_call
def vitamin_d_repletion_hold(record: PatientRecord, settings: ClinicalSettings) -> str | None:
    """Why no one-click vitamin D (or calcium) order may be offered, as a fact, or None. Dialysis or CKD 4-5: the form and dose of vitamin D belong to nephrology
    (second-pass 1: no generic cholecalciferol order; KDIGO 2017 CKD-MBD). A calcium above
    the upper limit or coded hypercalcemia: find its cause (PTH) first; vitamin D raises
    calcium further (ergocalciferol / cholecalciferol labels: contraindicated in
    hypercalcemia)."""
    reading = ckd_4_5(record, settings)
    if reading:
        return (f"Kidney function severely reduced ({reading.label}): calcium and the form of vitamin D are agreed "
                "with nephrology (CKD-mineral bone disorder)")
    ca = calcium(record, settings.lab_max_age_months)
    hits = coded_hypercalcemia(record, settings)
    if (ca and ca.value > settings.calcium_upper_mg_dl) or hits:
        what = ca.fact() if ca and ca.value > settings.calcium_upper_mg_dl else condition_fact(hits[0], "Hypercalcemia")
        return f"{what}: a high calcium, find its cause (PTH) before giving vitamin D"
    return None


def vitamin_d_hold_note(record: PatientRecord, settings: ClinicalSettings) -> str | None:
    """C-VITD-LOW's text when vitamin_d_repletion_hold holds the order (its `held` variant; review
    13: the summary said "no vitamin D order suggested" while the detail still prescribed 50,000 IU
    weekly). None when nothing holds it."""
    if not vitamin_d_repletion_hold(record, settings):
        return None
    if ckd_4_5(record, settings):
        return ("**Kidney function severely reduced (dialysis or CKD 4-5):** vitamin D is repleted with nephrology, "
                "who choose the form (nutritional or active vitamin D) and the dose, with calcium, phosphate and PTH "
                "read together (KDIGO 2017 CKD-MBD); no vitamin D order is suggested here.")
    return ("**Calcium is high:** find its cause (PTH first) before giving vitamin D, which raises calcium further; "
            "no vitamin D order is suggested here.")


def high_calcium(record: PatientRecord, settings: ClinicalSettings, months: float) -> str | None:
    """A measured calcium above the upper limit within `months`, as a fact: the latest (corrected)
    calcium above calcium_upper_mg_dl, or an ionized calcium above the result's own upper limit
    (ionized_calcium_upper_mmol_l when it gives none) with no newer normal total calcium. The
    ionized reading mirrors _low_ionized_calcium (clinical re-review: an ionized calcium of 1.45
    mmol/L passed a teriparatide order, SAFE-11 / second-pass 2). None when neither."""
    ca = calcium(record, months)
    if ca and ca.value > settings.calcium_upper_mg_dl:
        return f"{ca.fact()} (above {settings.calcium_upper_mg_dl:g} mg/dL)"
    ion = record.lab("calcium_ionized", months)
    if ion is None or (ca and ca.date and ion.date and ca.date > ion.date):
        return None
    limit = ion.high if ion.high is not None else settings.ionized_calcium_upper_mmol_l
    if ion.value <= limit:
        return None
    source = "the lab's upper limit" if ion.high is not None else "usual upper limit"
    return f"{ion.fact()} (above {limit:g} mmol/L, {source})"


def unexplained_high_calcium(record: PatientRecord, settings: ClinicalSettings) -> str | None:
    """A high calcium that needs a cause before (or alongside) starting bone treatment, as a fact:
    a measured calcium above the upper limit within lab_max_age_months (high_calcium) or an active
    coded hypercalcemia, with no hyperparathyroidism or skeletal malignancy coded to explain it.
    Hyperparathyroidism is a secondary cause of osteoporosis (brief SEC-1; PTH is a MON-7
    baseline lab); malignancy and myeloma are the causes not to miss. Review 10: C-TX-BP said
    "nothing on record against an oral bisphosphonate" beside a calcium of 11.2 mg/dL, and no
    card asked why it was high."""
    # Not hypervitaminosis D or sarcoidosis (review 12): the code does not show the calcium came
    # from it (most sarcoidosis has none), and the work-up starts with PTH either way.
    if any(record.condition_hits(g) for g in ("hyperparathyroidism", "skeletal_malignancy")):
        return None
    high = high_calcium(record, settings, settings.lab_max_age_months)
    if high:
        return high
    hits = coded_hypercalcemia(record, settings)
    return condition_fact(hits[0], "Hypercalcemia") if hits else None


@per_call
def low_calcium(record: PatientRecord, settings: ClinicalSettings, months: float | None = None) -> str | None:
    """SAFE-4 trigger as a fact: (corrected) calcium below the lower limit within `months`
    (default calcium_max_age_months), or an active hypocalcemia Condition that no newer calcium
    measurement outdates (coded_hypocalcemia). None when neither."""
    months = settings.calcium_max_age_months if months is None else months
    ca = calcium(record, months)
    if ca and ca.value < settings.calcium_lower_mg_dl:
        return f"{ca.fact()} (below {settings.calcium_lower_mg_dl:g} mg/dL)"
    ionized = _low_ionized_calcium(record, settings, months, ca)
    if ionized:
        return ionized
    hits = coded_hypocalcemia(record, settings, months)
    if hits:
        h = hits[0]
        recorded = f" (recorded {_date(h.noted)})" if h.noted and h.date and h.noted != h.date else ""
        return condition_fact(h, HYPOCALCEMIA) + recorded
    return None


HYPOCALCEMIA = "Hypocalcemia"  # low_calcium's label for a coded hypocalcemia (calcium_beside_code reads it)


def _calcium_readings(record: PatientRecord, months: float) -> list[Lab]:
    """The latest total (albumin-corrected when paired) and ionized calcium within `months`, dated."""
    return [lab for lab in (calcium(record, months), record.lab("calcium_ionized", months)) if lab and lab.date]


def _not_low(lab: Lab, settings: ClinicalSettings) -> bool:
    if lab.name == "calcium_ionized":
        return lab.value >= (lab.low if lab.low is not None else settings.ionized_calcium_lower_mmol_l)
    return lab.value >= settings.calcium_lower_mg_dl


def coded_hypocalcemia(record: PatientRecord, settings: ClinicalSettings, months: float) -> list[ConditionHit]:
    """Active coded hypocalcemia that still says the patient is hypocalcemic now: not outdated by
    a calcium measured (total, corrected for albumin when paired, or ionized) within `months` after
    the code was last dated (the later of onset and recordedDate) and not low. Review 20 (M4):
    E83.51 five years old read as current beside a normal calcium of 83 days ago (critical
    C-SAFE-HYPOCA, "calcium is low" on C-SUPP-CAVD). Second-pass 2 (C-SAFE-HYPOCA: "or coded
    hypocalcemia") reads as hypocalcemia now: a newer measured value wins, as coded_hypercalcemia's
    does. Fail closed: an undated code, or one with no calcium measured since, stands."""
    hits = record.condition_hits("hypocalcemia")
    if not hits:
        return hits
    newest = max((lab.date for lab in _calcium_readings(record, months) if _not_low(lab, settings)), default=None)
    if newest is None:
        return hits
    return [h for h in hits if (h.noted or h.date) is None or (h.noted or h.date) >= newest]  # type: ignore[operator]


def hypocalcemia_code_facts(record: PatientRecord, settings: ClinicalSettings, low: str | None) -> list[str]:
    """The calcium weighed against a coded hypocalcemia, as facts to list beside low_calcium's
    (review 20: the card did not show it). When `low` is the code: the calcium measured within
    calcium_max_age_months (none newer, or the code would not stand). When nothing is low: an
    active code that a newer normal calcium outdates, with that calcium. [] otherwise."""
    months = settings.calcium_max_age_months
    if low and low.startswith(f"{HYPOCALCEMIA} ("):
        hits = coded_hypocalcemia(record, settings, months)
        day = (hits[0].noted or hits[0].date) if hits else None
        when = "the hypocalcemia code is undated" if day is None else "{} the hypocalcemia code"
        return [f"{lab.fact()} ({when.format('the same day as' if lab.date == day else 'older than')})"
                for lab in _calcium_readings(record, months)]
    if low:
        return []
    hits = record.condition_hits("hypocalcemia")
    standing = coded_hypocalcemia(record, settings, months) if hits else hits
    outdated = [h for h in hits if h not in standing]
    newer = max((lab for lab in _calcium_readings(record, months) if _not_low(lab, settings)),
                key=lambda lab: lab.date, default=None)  # type: ignore[arg-type, return-value]
    if not outdated or newer is None:
        return []
    return [f"{condition_fact(outdated[0], HYPOCALCEMIA)} on the problem list: not current, a newer calcium is "
            f"not low ({newer.fact()})"]


def _low_ionized_calcium(record: PatientRecord, settings: ClinicalSettings, months: float,
                         total: Lab | None) -> str | None:
    """Review 8 (e72): an ionized calcium (LOINC 1995-0, brief 8.2; mmol/L) below the result's
    own reference-range lower limit, or ionized_calcium_lower_mmol_l (1.12) when it gives none,
    is hypocalcemia for SAFE-4 (labels: correct hypocalcemia first), unless a newer total or
    corrected calcium is normal. As a fact, or None."""
    ion = record.lab("calcium_ionized", months)
    if ion is None:
        return None
    limit = ion.low if ion.low is not None else settings.ionized_calcium_lower_mmol_l
    if ion.value >= limit:
        return None
    if total and total.date and ion.date and total.date > ion.date:
        return None  # a newer total calcium, not low (low_calcium checked it first), stands
    source = "the lab's lower limit" if ion.low is not None else "usual lower limit"
    return f"{ion.fact()} (below {limit:g} mmol/L, {source})"


@per_call
def predose_labs_missing(record: PatientRecord, settings: ClinicalSettings) -> tuple[bool, bool]:
    """(kidney function missing, calcium missing) within predose_lab_days before a zoledronic
    acid or denosumab dose (second-pass 2, C-SAFE-PREDOSE-LABS). Coded kidney failure or
    dialysis is a known kidney function; a known low calcium is not "missing" (C-SAFE-HYPOCA
    owns it)."""
    months = settings.predose_lab_days / DAYS_PER_MONTH
    reading = kidney(record, settings)
    recent_kidney = bool(reading.coded or any(record.lab(n, months) for n in ("egfr", "creatinine")))
    # Review 8: an ionized calcium is a calcium on file (e72 read "no serum calcium" beside one).
    recent_calcium = bool(calcium(record, months) or record.lab("calcium_ionized", months)
                          or low_calcium(record, settings))
    return not recent_kidney, not recent_calcium


@per_call
def missing_baseline_labs(record: PatientRecord, settings: ClinicalSettings) -> list[str]:
    """TX-1a / MON-7: baseline labs missing or older than lab_max_age_months. Kidney
    function counts as known when the kidney reading is (coded failure, CrCl or eGFR)."""
    out = []
    if not kidney(record, settings).known:
        out.append("eGFR")
    for name, label in (("calcium", "serum calcium"), ("vitamin_d", "25-OH vitamin D")):
        if record.lab(name, settings.lab_max_age_months) is None:
            out.append(label)
    return out


def abnormal_then(lab: Lab, settings: ClinicalSettings) -> str:
    """Why an old value is worth a recheck ("" when it was normal): a known-bad result older
    than its window is unknown now, but prompts a recheck rather than vanishing (issue 14)."""
    if lab.name == "egfr" and lab.value < settings.egfr_alendronate_min:
        return f"below {settings.egfr_alendronate_min:g} then"
    if lab.name in ("calcium", "calcium_corrected") and lab.value < settings.calcium_lower_mg_dl:
        return f"below {settings.calcium_lower_mg_dl:g} mg/dL then"
    if lab.name in ("calcium", "calcium_corrected") and lab.value > settings.calcium_upper_mg_dl:
        return f"above {settings.calcium_upper_mg_dl:g} mg/dL then"
    if lab.name == "vitamin_d" and vitamin_d_below(lab, settings.vitamin_d_deficient_ng_ml):
        return f"below {settings.vitamin_d_deficient_ng_ml:g} ng/mL then"
    return ""


def vitamin_d_below(lab: Lab, cut: float) -> bool:
    """A 25-OH vitamin D below `cut` ng/mL: its value is, or the lab reported it only as "<X"
    with X at or below the cut ("<20" is below 20: deficient, brief TX-8; AACE20). Review 14:
    the bound was read as its number, so "<20 ng/mL" was called insufficient and "<30" drew no
    card. A ">X" bound reads as X, as before. The bound to 0.1 ng/mL: "<50 nmol/L" (20.03 ng/mL)
    is the same cut-off in the other unit. Review 15: the SI cut-offs are 50 and 75 nmol/L
    (cut x 2.5) and the record converts by / 2.496 to 0.01 ng/mL, so "<75 nmol/L" arrives as
    30.05 and was not below 30: a bound up to the SI cut-off, so converted, is at the cut."""
    return lab.value < cut or (lab.comparator == "<" and (round(lab.value, 1) <= cut
                                                           or lab.value <= round(cut * 2.5 / 2.496, 2)))


@per_call
def vitamin_d_level(record: PatientRecord, settings: ClinicalSettings) -> tuple[Lab, str] | None:
    """The one reading of the latest 25-OH vitamin D within lab_max_age_months (TX-8, AACE20):
    (lab, "deficient") below vitamin_d_deficient_ng_ml (20), (lab, "insufficient") below
    vitamin_d_target_ng_ml (30), else None; a "<X" bound by vitamin_d_below. No value is unknown."""
    lab = record.lab("vitamin_d", settings.lab_max_age_months)
    if lab is None:
        return None
    if vitamin_d_below(lab, settings.vitamin_d_deficient_ng_ml):
        return lab, "deficient"
    if vitamin_d_below(lab, settings.vitamin_d_target_ng_ml):
        return lab, "insufficient"
    return None


def vitamin_d_deficient(record: PatientRecord, settings: ClinicalSettings) -> Lab | None:
    """The latest 25-OH vitamin D within lab_max_age_months when vitamin_d_level calls it deficient."""
    level = vitamin_d_level(record, settings)
    return level[0] if level and level[1] == "deficient" else None


@per_call
def lab_facts(record: PatientRecord, settings: ClinicalSettings) -> list[str]:
    out = list(kidney(record, settings).facts)
    for name in ("calcium_corrected", "calcium", "vitamin_d"):
        lab = record.lab(name, settings.lab_max_age_months)
        if lab:
            out.append(lab.fact())
    return out


# ---------------------------------------------------------------------------
# Therapy on board
# ---------------------------------------------------------------------------

@per_call
def current_osteoporosis_therapy(record: PatientRecord) -> list[AgentExposure]:
    """Active osteoporosis drugs (active request/statement, or a clinician-given dose
    still within its dosing interval). Oncology products (Xgeva, Zometa) count: they are
    antiresorptive exposure."""
    return record.active_agents(t.OSTEOPOROSIS_DRUG_CLASSES)


@per_call
def therapy_under_way(record: PatientRecord, settings: ClinicalSettings) -> list[AgentExposure]:
    """current_osteoporosis_therapy plus a denosumab course whose dose is due or overdue
    (on_board): the drug decision is C-DMAB-DUE / C-DMAB-OVERDUE's, as the engine leaves it to
    them over the drug-start cards (review 10: C-GIOP offered alendronate beside them)."""
    out = current_osteoporosis_therapy(record)
    return out + [e for e in on_board(record, settings, {t.DENOSUMAB}) if e not in out]


@per_call
def bone_active_therapy(record: PatientRecord) -> list[AgentExposure]:
    """TX-0 as second-pass 4 widens it: osteoporosis drugs plus systemic estrogen (raloxifene
    and bazedoxifene are SERMs, already osteoporosis drugs). No drug-start card beside them."""
    return record.active_agents(t.BONE_ACTIVE_CLASSES)


def therapy_fact(e: AgentExposure) -> str:
    fact = f"On {e.agent.replace('_', ' ')} since {_date(e.start)}"
    if e.last_dose and e.drug_class in (t.IV_BP, t.DENOSUMAB, t.ROMOSOZUMAB):
        fact += f", last dose on {e.last_dose}"
    return fact


def last_given(e: AgentExposure, product_days: int | None = None) -> dt.date | None:
    """The last dose actually given: the latest administration or statement date, else
    the latest `completed` order (a completed single-dose order is one dose given). An
    active order not yet given is not a dose. `product_days`: only the doses of the product
    with that interval (MedEvent.interval_days: IV ibandronate's, not the tablets')."""
    events = e.events if product_days is None else [ev for ev in e.events if ev.interval_days == product_days]
    doses = [ev.dose_date for ev in events if ev.dose_date and ev.resource_type != "MedicationRequest"]
    doses += [ev.end or ev.start for ev in events if ev.resource_type == "MedicationRequest"
              and ev.status == "completed" and (ev.end or ev.start)]
    return max(doses) if doses else None  # type: ignore[type-var]


def course_start(e: AgentExposure, gap_days: int = 548) -> dt.date | None:
    """Start of the current course of an agent: the first event after the last explicit
    stop, or after a gap of more than `gap_days` (18 months) between consecutive events.
    Renewal orders of the same drug do not restart the course."""
    dated = sorted(((ev.start or ev.dose_date, ev) for ev in e.events if ev.start or ev.dose_date),
                   key=lambda pair: pair[0])
    start = None
    previous = None
    for day, ev in dated:
        if start is None or (previous and (day - previous).days > gap_days):
            start = day
        previous = day
        if ev.status == "stopped" and ev.resource_type == "MedicationRequest":
            start, previous = None, None  # the next event starts a new course
    return start


@per_call
def bone_indication(record: PatientRecord, settings: ClinicalSettings) -> list[str]:
    """Why calcium / vitamin D matter for this patient (TX-7 population), as facts:
    osteoporosis, osteopenia, a fragility fracture or an osteoporosis drug. Empty: no
    bone indication on record."""
    a = assess(record, settings)
    why: list[str] = []
    if a.diagnosis in (OSTEOPOROSIS, OSTEOPENIA):
        why += [f"{a.diagnosis.capitalize()}: {r}" for r in a.reasons[:3]]
    why += [f.fact() for f in record.fragility_fractures() if f.fact() not in " ".join(why)]
    drugs = [e for e in record.active_agents(t.OSTEOPOROSIS_DRUG_CLASSES)]
    why += [f"On {e.agent.replace('_', ' ')} since {_date(e.start)}" for e in drugs]
    return why


# ---------------------------------------------------------------------------
# Oral bisphosphonate problems (TX-3)
# ---------------------------------------------------------------------------

RENAL, GI, INTOLERANCE, COMPLICATION = "renal", "gi", "intolerance", "complication"
_GI_WORDS = ("reflux", "dyspeps", "heartburn", "esophag", "oesophag", "gastr", "swallow", "nausea", "abdominal")
_INTOLERANCE_WORDS = ("intoler", "adverse", "side effect", "allerg") + _GI_WORDS


@dataclasses.dataclass(frozen=True)
class BpProblem:
    kind: str   # RENAL / GI / INTOLERANCE / COMPLICATION
    fact: str


@per_call
def antiresorptive_complications(record: PatientRecord) -> list[str]:
    """Coded atypical femoral fracture or osteonecrosis of the jaw (any status: a past
    one still counts against re-exposure). Second-pass 4; LABEL, AACE20."""
    out = []
    for group, label in (("atypical_femoral_fracture", "Atypical femoral fracture"),
                         ("osteonecrosis_jaw", "Osteonecrosis of the jaw")):
        hits = record.condition_hits(group, active_only=False)
        if hits:
            out.append(condition_fact(max(hits, key=lambda h: h.date or dt.date.min), label))
    return out


def complication_name(complications: list[str]) -> str:
    """The complication a card names (antiresorptive_complications' facts): an atypical
    femoral fracture before jaw osteonecrosis."""
    return "atypical femoral fracture" if any("femoral" in c for c in complications) else "osteonecrosis of the jaw"


@per_call
def bp_problems(record: PatientRecord, settings: ClinicalSettings, *,
                class_wide: bool = False) -> list[BpProblem]:
    """TX-3: why an oral bisphosphonate should not be started. Kidney function from the
    one kidney reading (coded kidney failure or dialysis counts; unknown does not).
    The kidney limit is alendronate's (35, Fosamax label), or with `class_wide` the
    lowest of the class (30: risedronate and ibandronate, Actonel/Boniva labels): the
    review showed that between 30 and 35 a first-line oral bisphosphonate is still
    within its label (ACP 2023 Rec 1a), so denosumab is not the only choice there."""
    out = []
    reading = kidney(record, settings)
    # Review 13: "below 30 for risedronate or ibandronate" read as if alendronate were still open.
    limit, drug = ((settings.egfr_risedronate_min,
                    f"every oral bisphosphonate: {settings.egfr_alendronate_min:g} is alendronate's label limit, "
                    f"{settings.egfr_risedronate_min:g} risedronate's and ibandronate's") if class_wide
                   else (settings.egfr_alendronate_min, "alendronate"))
    if reading.below(limit):
        out.append(BpProblem(RENAL, kidney_fact(reading, limit, drug)))
    else:
        stage = ckd_mbd_before_bisphosphonate(record, settings)
        if stage:
            out.append(BpProblem(RENAL, stage))
    for group, label in (("esophageal", "Esophageal disorder"), ("bariatric", "Bariatric surgery")):
        hits = record.condition_hits(group, active_only=group != "bariatric")
        if hits:
            out.append(BpProblem(GI, f"{label} ({hits[0].code or 'coded'}) on {_date(hits[0].date)}"))
    hits = record.condition_hits("bp_intolerance")
    if hits:  # not known to be GI only: may be class-wide (e.g. allergy)
        out.append(BpProblem(INTOLERANCE, f"Bisphosphonate intolerance ({hits[0].code or 'coded'}) on "
                                          f"{_date(hits[0].date)}"))
    # A stopped oral BP whose stop reason names intolerance / adverse effects.
    for e in record.exposures([t.ORAL_BP]):
        for ev in e.events:
            if ev.status == "stopped" and any(w in ev.status_reason for w in _INTOLERANCE_WORDS):
                gi = any(w in ev.status_reason for w in _GI_WORDS) and "allerg" not in ev.status_reason
                out.append(BpProblem(GI if gi else INTOLERANCE,
                                     f"{e.agent.capitalize()} stopped for {'upper-GI ' if gi else ''}intolerance"
                                     f" ({_date(ev.end or ev.start)})"))
                break
    out += [BpProblem(COMPLICATION, fact) for fact in antiresorptive_complications(record)]
    return out


def ckd_mbd_before_bisphosphonate(record: PatientRecord, settings: ClinicalSettings) -> str | None:
    """Review 21: CKD stage 4-5 by the lower of clearance and eGFR (ckd_4_5) while the clearance
    itself (kidney(), the labels' reading) is within a bisphosphonate's label: a fact, else None.
    Second-pass 1 ("one reading for every rule", C-TX-BP named) and the order the choice would
    meet: a bisphosphonate drafted there gets C-SAFE-RENAL's ckd-stage warning (KDIGO 2017 4.3.4,
    AACE20: the CKD-mineral bone disorder work-up first), and C-GIOP, C-TX-ANABOLIC, C-SUPP-CAVD
    and C-VITD-LOW on the same screen already read CKD 4-5. eGFR 25 beside a clearance of 47 had
    C-TX-BP's one-click alendronate ("nothing on record against an oral bisphosphonate") beside
    C-SUPP-CAVD's "agree calcium and vitamin D with nephrology". bp_problems and
    follow_up.zoledronate_blockers read it, so no card offers a bisphosphonate there."""
    stage = ckd_4_5(record, settings)
    if stage is None:
        return None
    clearance = kidney(record, settings)
    return (f"{'; '.join(stage.facts)} (CKD stage {'5' if stage.band == FAILURE else '4'} by eGFR, the lower reading: "
            f"a CKD-mineral bone disorder work-up comes before any bisphosphonate, KDIGO 2017; {clearance.label} "
            "is within the label limits)")


def alendronate_not_offered(record: PatientRecord, settings: ClinicalSettings) -> list[str]:
    """Why a one-click alendronate 70 mg order is not offered, as facts ([] when it may be): TX-3's
    problems at alendronate's own kidney limit (bp_problems: kidney, esophagus, bariatric surgery,
    intolerance, antiresorptive complications), and an eGFR known only as a bound that may be below
    that limit (C-TX-BP's rule: the exact eGFR first), a low calcium and a current pregnancy
    (C-SAFE-HYPOCA, C-SAFE-PREGNANCY: the engine would withhold the order anyway,
    withhold_vetoed_orders; named here so the card text does not promise it)."""
    out = bp_contraindications(record, settings)
    reading = kidney(record, settings)
    if not out and reading.may_be_below(settings.egfr_alendronate_min):
        out.append(f"{reading.label}: reported only as a bound that may be below "
                   f"{settings.egfr_alendronate_min:g}; an exact eGFR first")
    low = low_calcium(record, settings)
    if low:
        out.append(f"{low}: correct it first")
    return out + current_pregnancy(record, settings)


def bp_contraindications(record: PatientRecord, settings: ClinicalSettings) -> list[str]:
    """TX-3 reasons (as facts) an oral bisphosphonate should not be started."""
    return [p.fact for p in bp_problems(record, settings)]


# ---------------------------------------------------------------------------
# Courses: denosumab timing and stop, anabolic course end, bisphosphonate holiday
# ---------------------------------------------------------------------------

NOT_DUE, DUE, OVERDUE = "not_due", "due", "overdue"


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
        completed = [ev for ev in self.exposure.events if ev.resource_type == "MedicationRequest"
                     and ev.status == "completed" and ev.start == self.last_dose]
        if self.from_administration:
            first = f"Last denosumab dose on {self.last_dose} ({self.days_since} days ago)"
        elif completed:
            first = (f"Last denosumab dose on {self.last_dose} ({self.days_since} days ago): the single-dose order "
                     f"of that date is completed ({completed[-1].ref})")
        else:
            first = (f"Denosumab last ordered on {self.last_dose} ({self.days_since} days ago); no administration "
                     "on record, so the order date is taken as the last dose date")
        return [first, f"6 months after the last dose: {self.due}; end of the grace period: {self.grace_end}"]


@per_call
def denosumab_timing(record: PatientRecord, settings: ClinicalSettings) -> DmabTiming | None:
    """Where the patient is in the 6-monthly denosumab cycle, or None when there is no
    osteoporosis denosumab with a known last dose (oncology-only denosumab, Xgeva, is dosed
    monthly by oncology: not judged here). See follow_up's docstring for the day counts."""
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


def on_board(record: PatientRecord, settings: ClinicalSettings, classes: Iterable[str]) -> list[AgentExposure]:
    """Drugs of `classes` the patient is on: the active ones, plus denosumab whose next
    dose is due or overdue with no explicit stop. A lapsing denosumab course is still under
    way (its effect is wearing off, and C-DMAB-DUE/OVERDUE plan the next dose), so cards
    about a patient "on denosumab" (pregnancy, jaw osteonecrosis, atypical femoral
    fracture: second-pass 2 and 4) must not fall silent the day the dose falls due."""
    wanted = set(classes)
    out = [e for e in record.active_agents(wanted) if not e.oncology_only]
    dmab = record.medications.get("denosumab")
    if t.DENOSUMAB in wanted and dmab and dmab not in out and not dmab.oncology_only:
        timing = denosumab_timing(record, settings)
        if timing and timing.phase in (DUE, OVERDUE) and denosumab_stop_order(record) is None:
            out.append(dmab)
    return out


_STOP_WORDS = ("stopped", "discontinu", "stop ", "ceased", "withdrawn", "cancel")


@per_call
def denosumab_stop_order(record: PatientRecord) -> MedEvent | None:
    """SAFE-14 as second-pass 3 corrects it: an EXPLICIT stop. The newest denosumab order
    is `stopped` or `cancelled` (or its statusReason says stopped / discontinued) and no
    order is active, on hold or newer. A `completed` order is one dose given, never a stop:
    EHRs close each single-dose denosumab order as completed (the brief counted completed
    as stopped; the review showed that fires on patients on schedule). A course that simply
    lapsed is C-DMAB-OVERDUE's job."""
    e = record.medications.get("denosumab")
    requests = [ev for ev in (e.events if e else ()) if ev.resource_type == "MedicationRequest"]
    requests += [ev for ev in record.cancelled_orders if ev.agent == "denosumab"]
    if not requests or any(ev.status in ("active", "on-hold") for ev in requests):
        return None

    def explicit(ev: MedEvent) -> bool:
        if any(w in ev.status_reason for w in ("duplicate", "error", "entered in error")):
            return False  # an order withdrawn as a duplicate or an error is no decision about the drug
        return ev.status in ("stopped", "cancelled") or any(w in ev.status_reason for w in _STOP_WORDS)

    # Same day: the dose given beats a cancelled twin (review: a duplicate order entered and
    # cancelled beside the completed one of that day read as a stop; EHRs do that daily).
    newest = max(requests, key=lambda ev: (ev.start or dt.date.min, not explicit(ev)))
    if not explicit(newest):
        return None
    # A dose given after the stop date the order carries (its end): the course went on. A
    # standing order has no stop date but its end, so without one this cannot be told.
    if e and newest.end and any(ev.dose_date and ev.dose_date > newest.end and ev.resource_type != "MedicationRequest"
                                for ev in e.events):
        return None
    return newest


def bisphosphonate_since(record: PatientRecord, since: dt.date | None) -> list[str]:
    """Facts for bisphosphonates given or started after `since` (any status the record
    keeps, oncology zoledronate included: it is antiresorptive exposure, brief 8.6), plus
    any bisphosphonate active or planned now."""
    out = []
    for e in record.exposures(t.BISPHOSPHONATE_CLASSES):
        later = [d for d in (ev.dose_date or ev.start for ev in e.events) if d and since and d > since]
        if later:
            verb = "given" if e.drug_class == t.IV_BP else "started"
            out.append(f"{e.agent.replace('_', ' ').capitalize()} {verb} on {max(later)}")
        elif e.active:
            out.append(f"{e.agent.replace('_', ' ').capitalize()} active (since {_date(e.start)})")
    return out


@dataclasses.dataclass(frozen=True)
class RomoCourse:
    doses: int                # monthly doses had so far
    counted: bool             # from administrations (True) or from months prescribed or taken
    start: dt.date | None
    last: dt.date | None      # last dose given (counted), else the end of the months on record
    fact: str


def _one_dose(ev: MedEvent) -> bool:
    """An administration, or a statement of one date (not a period): one dose given."""
    return ev.resource_type == "MedicationAdministration" or (
        ev.resource_type == "MedicationStatement" and ev.end is None and ev.dose_date is not None)


@per_call
def romosozumab_course(record: PatientRecord) -> RomoCourse | None:
    """The romosozumab course, one reading for SAFE-9 (C-SAFE-ROMO-LIMIT), SAFE-12
    (C-ANABOLIC-FOLLOW-ON) and TX-4 (review cv8: a finished 12-month course on a statement or
    an order ended the course for one and was 1 or 11.96 doses for the other). Doses are the
    administrations and single-date statements (brief: clinician-given drug); with none on
    file, each month prescribed or taken (an order's or a statement's period, active ones to
    today) stands for one monthly dose (Evenity: 210 mg once a month), a month begun more
    than a week counting as a dose: a completed 12-month period (364 days) is 12 doses."""
    e = record.medications.get("romosozumab")
    if not e:
        return None
    given = sorted({ev.dose_date for ev in e.events if ev.dose_date and _one_dose(ev)})  # type: ignore[type-var]
    if given:
        return RomoCourse(len(given), True, given[0], given[-1],
                          f"Romosozumab: {len(given)} monthly doses given since {given[0]}, last on {given[-1]}")
    # With no administration on record, a completed order of one dose is a dose given on its date
    # (second-pass 3: EHRs close each single-dose order as completed; record._exposure counts them
    # so). Review 14 chart 07c: five such orders had no course here ("about 0 months"), and twelve
    # drew no C-SAFE-ROMO-LIMIT on a 13th order.
    orders = e.single_orders
    months = e.exposure_months
    doses = max(1, math.ceil(months - 0.25)) if e.exposure_days else 0
    if orders and len(orders) >= doses:
        return RomoCourse(len(orders), True, orders[0], orders[-1],
                          f"Romosozumab: {len(orders)} monthly doses ordered and completed since {orders[0]}, "
                          f"last on {orders[-1]}")
    if not doses:
        return None
    verb = "taken" if all(ev.resource_type == "MedicationStatement" for ev in e.events) else "prescribed"
    return RomoCourse(doses, False, e.start, None if e.active else e.stopped,
                      f"Romosozumab {verb} for {months:.1f} months since {_date(e.start)} "
                      f"(no administrations on record: about {doses} monthly doses)")


def romosozumab_order_at_limit(record: PatientRecord,
                               settings: ClinicalSettings) -> tuple[RomoCourse, bool] | None:
    """SAFE-9 on patient-view (C-SAFE-ROMO-LIMIT): the romosozumab course past romo_max_doses (12)
    monthly doses while still on board, or at 12 with an order (or statement) still active, which
    invites the next dose (a 13th, beyond the EVENITY label's 12): (the course, whether an order or
    statement is still active); None otherwise. Review 16 (chart
    e28c): 12 doses given, the order active, last dose 30 days ago drew nothing until a 13th was on
    record. A finished order with the 12th dose recent is no invitation (the follow-on cards time
    the antiresorptive). C-ANABOLIC-FOLLOW-ON steps aside for this: the card asks to stop the order
    and offers the follow-on."""
    course = romosozumab_course(record)
    e = record.medications.get("romosozumab")
    if not course or not e or not e.active or course.doses < settings.romo_max_doses:
        return None
    ordered = any(ev.resource_type != "MedicationAdministration" and ev.status in ("active", "on-hold")
                  and (ev.end is None or ev.end >= record.today) for ev in e.events)
    return (course, ordered) if ordered or course.doses > settings.romo_max_doses else None


@per_call
def anabolic_course_end(record: PatientRecord, settings: ClinicalSettings) -> tuple[dt.date, list[str]] | None:
    """SAFE-12: when the anabolic course finished, with facts; None while any anabolic is
    still running or no course is known to have finished. Finished = teriparatide /
    abaloparatide stopped or completed (end date from the order's bounds/supply, else its
    date), romosozumab at romo_max_doses doses (end = last dose) or stopped earlier."""
    ends: list[tuple[dt.date, str]] = []
    for e in record.exposures(t.ANABOLIC_CLASSES):
        romo = romosozumab_course(record) if e.drug_class == t.ROMOSOZUMAB else None
        if romo and romo.doses >= settings.romo_max_doses and romo.last:
            ends.append((romo.last, f"Romosozumab: {romo.doses} monthly doses given, the last on {romo.last}"
                         if romo.counted else romo.fact))
        elif e.active:
            return None  # an anabolic course is still under way
        elif romo and e.stopped:
            # Fewer than 12 doses, stopped or lapsed: an interrupted course, not one "completed"
            # (EVENITY: 12 monthly doses; review 14 chart 07c).
            ends.append((e.stopped, f"Romosozumab stopped after {'' if romo.counted else 'about '}{romo.doses} of "
                                    f"{settings.romo_max_doses} monthly doses ({_span(romo.start, romo.last, e)})"))
        elif e.stopped:
            ends.append((e.stopped, f"{e.agent.capitalize()} {e.status} on {e.stopped} ({_span(e.start, None, e)})"))
    if not ends:
        return None
    return max(d for d, _ in ends), [f for _, f in sorted(ends)]


def course_end_words(record: PatientRecord, settings: ClinicalSettings, end: dt.date) -> tuple[str, str]:
    """How the follow-on cards (C-ANABOLIC-FOLLOW-ON, C-TX-BP / C-TX-DMAB-ALT's follow-on status)
    name the anabolic course anabolic_course_end dates `end`: (what became of it, what the days
    count from). A romosozumab course ends at its 12th dose and `end` is that dose (review 13:
    "ended <date>" read as a course that ran to that date); one of fewer doses, stopped or lapsed,
    was interrupted, not "over" (EVENITY: 12 monthly doses; review 14 chart 07c)."""
    romo = romosozumab_course(record)
    if romo and romo.counted and romo.last == end:
        if romo.doses >= settings.romo_max_doses:
            return f"complete ({romo.doses} romosozumab doses, last dose on {end})", "the last romosozumab dose"
        return (f"stopped after {romo.doses} of {settings.romo_max_doses} romosozumab doses (last on {end})",
                "the last romosozumab dose")
    return f"ended {end}", "the anabolic course ended"


def _span(start: dt.date | None, last: dt.date | None, e: AgentExposure) -> str:
    """"started <date>, [last dose on <date>,] about N months": from the first to the last dose when
    doses are dated, else the exposure on record; no months when none is (review 14: completed
    single-dose orders read "about 0 months")."""
    text = f"started {_date(start)}"
    if last and start:
        return f"{text}, last dose on {last}, about {months_between(start, last):.0f} months"
    return f"{text}, about {e.exposure_months:.0f} months" if e.exposure_days else text


def _min_days(years: float) -> int:
    """Shortest number of days that is `years` calendar years (5 years is at least 1826
    days: it always holds a 29 February)."""
    return int(years * 365.25)


@per_call
def oral_bp_days(record: PatientRecord) -> int:
    """Cumulative oral bisphosphonate exposure across agents (alendronate -> risedronate
    switches add up; overlaps merged), in days."""
    return round(record.class_exposure_months(t.ORAL_BP) * DAYS_PER_MONTH)


@per_call
def long_bp_course(record: PatientRecord, settings: ClinicalSettings) -> list[str]:
    """HOLIDAY-1 / TX-0 course length: oral BP >= bp_holiday_years cumulative, or
    zoledronic acid >= zoledronate_holiday_doses doses. Facts, [] if neither."""
    out = []
    days = oral_bp_days(record)
    if days and days >= _min_days(settings.bp_holiday_years):
        oral = record.exposures([t.ORAL_BP])
        agents = ", ".join(f"{e.agent} since {_date(e.start)}" for e in oral)
        out.append(f"Oral bisphosphonate for {days / 365.25:.1f} years in total ({agents})")
    for e in record.exposures([t.IV_BP]):
        if not e.oncology_only and e.dose_count >= settings.zoledronate_holiday_doses:
            out.append(f"Zoledronic acid: {e.dose_count} doses, last on {_date(e.last_dose)}")
    return out


@per_call
def very_long_bp_course(record: PatientRecord, settings: ClinicalSettings) -> list[str]:
    """HOLIDAY-1 duration review: oral BP >= bp_review_years cumulative, or zoledronic acid
    >= zoledronate_review_doses doses (the longest courses AACE20 supports even at high
    risk). Facts, [] if neither."""
    out = []
    days = oral_bp_days(record)
    if days and days >= _min_days(settings.bp_review_years):
        out.append(f"Oral bisphosphonate for {days / 365.25:.1f} years in total, "
                   f"beyond {settings.bp_review_years} years")
    for e in record.exposures([t.IV_BP]):
        if not e.oncology_only and e.dose_count >= settings.zoledronate_review_doses:
            out.append(f"Zoledronic acid: {e.dose_count} doses, beyond {settings.zoledronate_review_doses}")
    return out


@per_call
def in_drug_holiday(record: PatientRecord, settings: ClinicalSettings) -> bool:
    """TX-0 / HOLIDAY-1: a finished BP course long enough to be a holiday, not ended by a
    new fracture or BMD loss (T-score drop >= holiday_bmd_loss_t) since."""
    if current_osteoporosis_therapy(record) or not long_bp_course(record, settings):
        return False
    ends = [e.stopped or e.last_dose for e in record.exposures(t.BISPHOSPHONATE_CLASSES)]
    ended = max((d for d in ends if d), default=None)
    if ended is None:
        return False
    if any(f.date and f.date > ended for f in record.fractures):
        return False
    before = {b.site: b for b in record.t_scores() if b.date and b.date <= ended}
    for b in record.t_scores():
        if b.date and b.date > ended and b.site in before and before[b.site].value - b.value >= settings.holiday_bmd_loss_t:
            return False
    return True


# The LOINC codes C-LAB-BASELINE orders (cards/C-LAB-BASELINE.yaml): per missing lab, and the
# bone panel it always adds (phosphate, alkaline phosphatase, intact PTH).
BASELINE_LAB_LOINC = {"eGFR": "98979-8", "serum calcium": "17861-6", "25-OH vitamin D": "62292-8"}
BASELINE_PANEL_LOINC = ("2777-1", "6768-6", "2731-8")


# The CKD-MBD work-up's orders (rules.orders: ckd_mbd_work_up, prolia24_actions) by code: the lab's
# name, and for a test read only as done on a date (record.TEST_DONE_SETS) the words of its fact.
CKD_MBD_LABS = (("2731-8", "pth", ""), ("62292-8", "vitamin_d", ""), ("17861-6", "calcium", ""), ("6768-6", "alp", ""),
                ("1649-3", "calcitriol", "1,25-dihydroxyvitamin D"), ("2777-1", "phosphate", "Serum phosphate"))
NEPHROLOGY_REFERRAL = "306286007"


@per_call
def ckd_mbd_done(record: PatientRecord, settings: ClinicalSettings) -> dict[str, str]:
    """Review 14 (second-pass 7: a card suggests only what is to be done now): the CKD-MBD work-up
    already on record, code -> fact. A lab within predose_lab_days (90: the window the pre-dose
    labs use, C-SAFE-PREDOSE-LABS); a nephrology referral within done_within_months (12, the
    care-done window of the info cards). The work-up leaves these out; the card names them."""
    months = settings.predose_lab_days / DAYS_PER_MONTH
    done: dict[str, str] = {}
    for code, name, words in CKD_MBD_LABS:
        if words:
            when = record.test_done(name, months)
            fact = f"{words} on {when[0]}" if when else None
        else:
            lab = calcium(record, months) if name == "calcium" else record.lab(name, months)
            fact = lab.fact() if lab else None
        if fact:
            done[code] = fact
    referral = record.care_done((t.NEPHROLOGY_CARE,), settings.done_within_months)
    if referral:
        done[NEPHROLOGY_REFERRAL] = referral[-1].fact()
    return done


def ckd_mbd_done_facts(record: PatientRecord, settings: ClinicalSettings, beside: Sequence[str] = ()) -> list[str]:
    """ckd_mbd_done as the card's facts: what of the CKD-MBD work-up is on record recently. With
    `beside` (the card's other facts): those facts, a lab among them noted in its place, then the
    rest of the work-up (review 16: C-TX-DMAB-ALT listed its 25-OH vitamin D and calcium twice)."""
    notes = {fact: f"{fact} (recent: not ordered again)" for fact in ckd_mbd_done(record, settings).values()}
    return [notes.pop(fact, fact) for fact in beside] + list(notes.values())


@per_call
def baseline_lab_orders(record: PatientRecord, settings: ClinicalSettings) -> set[str]:
    """LOINC codes C-LAB-BASELINE will order on this screen (empty when it does not fire):
    other cards leave these out so no test is suggested twice."""
    missing = baseline_labs_due(record, settings)
    if not missing:
        return set()
    return {BASELINE_LAB_LOINC[m] for m in missing if m in BASELINE_LAB_LOINC} | set(BASELINE_PANEL_LOINC)


@per_call
def baseline_labs_due(record: PatientRecord, settings: ClinicalSettings) -> list[str]:
    """MON-7 / TX-1a: the missing or stale baseline labs when C-LAB-BASELINE fires
    (treatment indicated, not on bone-active therapy or in a holiday), else []."""
    a = assess(record, settings)
    if not a.treatable:
        return []
    # A denosumab course whose dose is due or overdue is treatment under way, not a start
    # (review: "before starting treatment" beside C-DMAB-OVERDUE; its dose carries the labs).
    if bone_active_therapy(record) or on_board(record, settings, {t.DENOSUMAB}) or in_drug_holiday(record, settings):
        return []
    return missing_baseline_labs(record, settings)


@per_call
def unexplained_alp(record: PatientRecord, settings: ClinicalSettings) -> str | None:
    """A raised alkaline phosphatase (above the result's reference range, flagged high, or
    above alp_upper_u_l when neither is given) with no explanation on record: no liver
    disease and no fracture within recent_fracture_months (a healing fracture raises it).
    Paget disease and bone metastases are contraindications in their own right."""
    alp = record.lab("alp", settings.lab_max_age_months)
    if alp is None:
        return None
    upper = alp.high if alp.high is not None else settings.alp_upper_u_l
    if not (alp.value > upper or alp.flag in ("H", "HH", "HU")):
        return None
    if record.condition_hits("liver_disease"):
        return None
    if any(f.date and months_between(f.date, record.today) <= settings.recent_fracture_months
           for f in record.fractures):
        return None
    return f"{alp.fact()} (above {upper:g} U/L, no liver disease or recent fracture to explain it)"


# ---------------------------------------------------------------------------
# Anabolic agents open to this patient (TX-4)
# ---------------------------------------------------------------------------

def pth_months_used(record: PatientRecord) -> float:
    """SAFE-10's lifetime reading, one for C-SAFE-PTH-LIMIT and C-TX-ANABOLIC: cumulative
    teriparatide + abaloparatide months (both agents, overlaps merged), to the tenth of a month
    the cards quote. Review: a course written as 24 calendar months (2021-11-30 to 2023-11-30)
    is 730 days, 23.98 months of DAYS_PER_MONTH; read unrounded it was under the 24-month limit,
    so C-TX-ANABOLIC offered teriparatide again (and an order would have passed)."""
    return round(record.class_exposure_months(t.PTH_ANALOG), 1)


def pth_course_facts(record: PatientRecord, months: float) -> list[str]:
    """Each PTH-analog course on record and the cumulative months (C-SAFE-PTH-LIMIT's facts)."""
    facts = [f"{drug_title(e.agent)}: {e.exposure_months:.1f} months since "
             f"{e.start.isoformat() if e.start else 'an unknown date'}" for e in record.exposures([t.PTH_ANALOG])]
    facts.append(f"Cumulative teriparatide + abaloparatide exposure {months:.1f} months")
    return facts


# (group, label, active only). A skeletal malignancy or bone metastases counts in remission or
# resolved too (Forteo/Tymlos labels: "bone metastases or a history of skeletal malignancies";
# clinical re-review), as prior skeletal radiation does.
PTH_CONTRA_GROUPS = (("paget", "Paget disease of bone", True),
                     ("skeletal_malignancy", "Skeletal malignancy or bone metastases", False),
                     ("skeletal_radiation", "Prior skeletal radiation", False), ("hypercalcemia", "Hypercalcemia", True),
                     ("hyperparathyroidism", "Hyperparathyroidism", True))


@per_call
def anabolic_options(record: PatientRecord, settings: ClinicalSettings) -> tuple[list[str], list[str]]:
    """TX-4: (anabolic agents that may be suggested, facts on those left out).
    Teriparatide/abaloparatide: not with a SAFE-11 condition or a measured calcium above
    the upper limit or an unexplained raised alkaline phosphatase, nor after the 24-month
    lifetime course (SAFE-10). Romosozumab:
    postmenopausal women only (label), not after MI or stroke within
    mi_stroke_window_months (SAFE-8), not after 12 doses (SAFE-9), not with low calcium.
    Once an anabolic course has ended and no antiresorptive was given since, the next step
    is an antiresorptive (ACP23 Rec 3), not a second anabolic course: nothing is offered."""
    options: list[str] = []
    excluded: list[str] = []
    course = anabolic_course_end(record, settings)
    followed = course is not None and any(
        e.active or any((ev.dose_date or ev.start or dt.date.min) >= course[0] for ev in e.events)
        for e in record.exposures(t.ANTIRESORPTIVE_CLASSES))
    if course is not None and not followed:
        end, course_facts = course
        excluded += course_facts
        excluded.append(f"No anabolic agent suggested: the anabolic course ended on {end}; follow it with an "
                        "antiresorptive (ACP 2023 Rec 3), a second anabolic course is a specialist decision")
        return options, excluded
    pth_block = [f"{label} ({hits[0].code or 'coded'})" for group, label, active_only in PTH_CONTRA_GROUPS
                 if (hits := record.condition_hits(group, active_only=active_only))]
    high = high_calcium(record, settings, settings.lab_max_age_months)
    if high:
        pth_block.append(high)
    alp = unexplained_alp(record, settings)  # review: C-SAFE-ANABOLIC-CONTRA warns on it at signing
    if alp:
        pth_block.append(alp)
    pth_months = pth_months_used(record)
    if pth_block:
        excluded.append(f"Teriparatide/abaloparatide not suggested: {'; '.join(pth_block)}")
    elif pth_months >= settings.pth_max_months:
        # Review: the earlier course must show in "Patient data used" beside the reason.
        excluded += pth_course_facts(record, pth_months)[:-1]
        excluded.append(f"Teriparatide/abaloparatide not suggested: {pth_months:.0f} months used "
                        f"(lifetime limit {settings.pth_max_months} months)")
    else:
        options += ["teriparatide", "abaloparatide"]
    romo = romosozumab_course(record)
    cv = sorted(cv_hits(record, settings), key=cv_date_unknown)  # a dated event first
    low_ca = low_calcium(record, settings)
    if not record.female or record.male_on_record:
        excluded.append("Romosozumab not suggested: approved only for postmenopausal women")
    elif cv and cv_undated(cv[0]):
        kind = "myocardial infarction" if cv[0].group == "mi" else "stroke"
        excluded.append(f"Romosozumab not suggested: {kind} ({cv[0].code}) on record with no date: confirm it was "
                        f"more than {settings.mi_stroke_window_months} months ago (boxed warning)")
    elif cv and mi_date_unknown(cv[0]):
        excluded.append(f"Romosozumab not suggested: myocardial infarction ({cv[0].code}) on record without its "
                        f"date (recorded on {cv[0].date}): confirm it was more than "
                        f"{settings.mi_stroke_window_months} months ago (boxed warning)")
    elif cv:
        kind = "Myocardial infarction" if cv[0].group == "mi" else "Stroke"
        within = "may be within" if cv[0].window or cv[0].recorded_only else "within"  # its day not on record
        excluded.append(f"Romosozumab not suggested: {cv_fact(cv[0], kind)} "
                        f"({within} {settings.mi_stroke_window_months} months; boxed warning)")
    elif romo and romo.doses >= settings.romo_max_doses:
        excluded.append(f"Romosozumab not suggested: {romo.doses} doses already had "
                        f"(limit {settings.romo_max_doses})")
    elif low_ca:
        excluded.append(f"Romosozumab not suggested: {low_ca} (correct hypocalcemia first; Evenity label)")
    else:
        options.append("romosozumab")
    return options, excluded


# ---------------------------------------------------------------------------
# Pregnancy (second-pass 2)
# ---------------------------------------------------------------------------

@per_call
def current_pregnancy(record: PatientRecord, settings: ClinicalSettings) -> list[str]:
    """Facts showing a current pregnancy, [] when none is known: an active pregnancy
    Condition with onset within pregnancy_months (undated counts), or a positive pregnancy
    test within pregnancy_months, in either case with no later negative test and no coded
    end of pregnancy (delivery, loss, termination) since. hCG in a man is not a pregnancy.
    A pregnancy Condition that is resolved or inactive, or abated on a past day, ends that
    pregnancy too (second-pass 2, "current pregnancy"; review 16 e38: Synthea records each
    pregnancy as a resolved Condition, and a positive hCG of the pregnancy delivered 2 months
    ago made an alendronate order critical): on its abatement day, or when it gives none, on
    its onset (it ended after it began; a positive test since may be a new pregnancy and
    stands). A later positive test is a new pregnancy."""
    months = settings.pregnancy_months
    today = record.today
    ends = [h.date for h in record.condition_hits("pregnancy_ended", active_only=False) if h.date]
    current = []
    for hit in record.condition_hits("pregnancy", active_only=False):
        if hit.abated is not None and hit.abated <= today:
            ends.append(hit.abated)
        elif not hit.active:
            if hit.date:
                ends.append(hit.date)
        else:
            current.append(hit)
    tests = [x for x in record.pregnancy_tests if x.positive is not None and within_months(x.date, today, months)]
    negatives = [x.date for x in tests if x.positive is False and x.date]

    def still(day: dt.date | None) -> bool:
        later = ends + negatives
        return day is None or not any(d >= day for d in later)

    out = []
    for hit in current:
        if (hit.date is None or within_months(hit.date, today, months)) and still(hit.date):
            out.append(condition_fact(hit, "Pregnancy"))
            break
    if record.sex != "male":
        positive = [x for x in tests if x.positive and still(x.date)]
        if positive:
            out.append(f"Positive pregnancy test on {_date(positive[-1].date)} ({positive[-1].ref})")
    return out


# ---------------------------------------------------------------------------
# Glucocorticoids (second-pass 5)
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class GlucocorticoidUse:
    days: int | None             # on it this many days (None: coded long-term use, start unknown)
    mg_day: float | None         # prednisone-equivalent mg/day; None: dose not readable
    facts: tuple[str, ...]


def glucocorticoid_mg_text(mg: float, settings: ClinicalSettings) -> str:
    """A prednisone-equivalent dose as a clinician writes it: one decimal at most (dexamethasone
    4 mg is "26.7", not "26.6667"), kept on its side of ACR22's 2.5 and 7.5 mg/day cut-offs."""
    cuts = tuple((c, inclusive) for c in (settings.giop_min_mg_day, settings.giop_high_mg_day)
                 for inclusive in (False, True))
    text = written_beside(mg, 1, cuts)
    return text[:-2] if text.endswith(".0") else text


@per_call
def glucocorticoid_use(record: PatientRecord, settings: ClinicalSettings) -> GlucocorticoidUse | None:
    """Current systemic glucocorticoid use of at least long_term_corticosteroid_days (3
    months), with its prednisone-equivalent dose from the latest active order or statement
    (record.glucocorticoid_daily_mg). A coded long-term steroid use (Z79.52) with no
    readable medication counts with an unknown dose. None when neither."""
    e = record.medications.get("corticosteroid")
    if e and e.active:
        start = course_start(e) or e.start
        days = (record.today - start).days if start else None
        if days is not None and days >= settings.long_term_corticosteroid_days:
            current = [ev for ev in e.events if ev.status in ("active", "on-hold")]
            latest = max(current, key=lambda ev: ev.start or dt.date.min) if current else None
            mg = latest.daily_mg if latest else None
            dose = (f"{glucocorticoid_mg_text(mg, settings)} mg/day prednisone-equivalent" if mg is not None
                    else "dose not readable from the order")
            return GlucocorticoidUse(days, mg, (
                f"Systemic glucocorticoid since {start} ({days} days), {dose} ({(latest or e.events[-1]).ref})",))
    hits = record.condition_hits("long_term_steroids")
    if hits:
        return GlucocorticoidUse(None, None, (condition_fact(hits[0], "Long-term systemic steroid use") +
                                              " (dose not on record)",))
    return None


__all__ = [
    "ORAL_BP_INSTRUCTIONS", "drug_label", "drug_title", "draft_fact", "ordered", "KidneyReading", "kidney", "ckd_4_5", "kidney_fact", "cockcroft_gault", "calcium", "low_calcium",
    "vitamin_d_repletion_hold", "vitamin_d_below", "vitamin_d_level", "vitamin_d_deficient", "predose_labs_missing", "missing_baseline_labs", "lab_facts", "bone_indication", "current_osteoporosis_therapy", "therapy_under_way", "mi_date_unknown", "cv_undated", "cv_date_unknown", "cv_bounded_only", "cv_possibly_recent", "cv_hits", "cv_latest", "cv_fact", "bone_active_therapy", "therapy_fact",
    "last_given", "course_start", "BpProblem", "bp_problems", "bp_contraindications", "ckd_mbd_before_bisphosphonate", "antiresorptive_complications",
    "DmabTiming", "denosumab_timing", "denosumab_stop_order", "bisphosphonate_since", "anabolic_course_end", "course_end_words",
    "abnormal_then", "oral_bp_days", "long_bp_course", "very_long_bp_course", "in_drug_holiday", "baseline_labs_due",
    "baseline_lab_orders", "ckd_mbd_done", "ckd_mbd_done_facts", "anabolic_options", "current_pregnancy", "on_board", "unexplained_alp",
    "GlucocorticoidUse", "glucocorticoid_use", "months_to_days",
    "condition_fact", "FAILURE", "SEVERE", "MEASURED", "UNKNOWN", "RENAL", "GI", "INTOLERANCE", "COMPLICATION",
    "NOT_DUE", "DUE", "OVERDUE",
]
