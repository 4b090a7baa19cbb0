"""Treatment selection (brief section 3, card family a).

Implemented: TX-0/TX-1/TX-1a/TX-2 -> C-TX-BP.
To write here: TX-3 C-TX-DMAB-ALT (use bp_contraindications), TX-4
C-TX-ANABOLIC (assessment.risk == VERY_HIGH), SEC-1 C-SECONDARY-EVAL.
The engine keeps at most one drug-start card (anabolic > denosumab-alt > BP).
"""

from __future__ import annotations

import datetime as dt

from cds_service.fhir import terminology as t
from cds_service.record import AgentExposure, PatientRecord, add_months, within_months
from cds_service.rules.base import Finding, rule
from cds_service.rules.diagnosis import ADULT, HIGH, assess
from cds_service.rules.settings import ClinicalSettings

# Seed 000 (and Fosamax label) administration instructions, used as patientInstruction.
ORAL_BP_INSTRUCTIONS = (
    "Take on waking, with a full glass (6-8 oz) of plain water only, at least 30 minutes before "
    "the first food, drink or other medicine of the day. Stay upright (sitting or standing) for at "
    "least 30 minutes afterwards and until after the first food of the day."
)


def current_osteoporosis_therapy(record: PatientRecord) -> list[AgentExposure]:
    """TX-0: active osteoporosis drugs (active request/statement, or a
    clinician-given dose still within its dosing interval). Oncology products
    (Xgeva, Zometa) count: they are antiresorptive exposure."""
    return record.active_agents(t.OSTEOPOROSIS_DRUG_CLASSES)


def in_drug_holiday(record: PatientRecord, settings: ClinicalSettings) -> bool:
    """TX-0 / HOLIDAY-1: a finished BP course long enough to be a holiday
    (>= bp_holiday_years oral, >= zoledronate_holiday_doses IV), not ended by
    a new fracture or BMD loss (T-score drop >= holiday_bmd_loss_t) since."""
    if current_osteoporosis_therapy(record):
        return False
    ended: dt.date | None = None
    for e in record.exposures(t.BISPHOSPHONATE_CLASSES):
        long_enough = (e.exposure_months >= settings.bp_holiday_years * 12 if e.drug_class == t.ORAL_BP
                       else e.dose_count >= settings.zoledronate_holiday_doses)
        end = e.stopped or e.last_dose
        if long_enough and end:
            ended = max(ended, end) if ended else end
    if ended is None:
        return False
    if any(f.date and f.date > ended for f in record.fractures):
        return False
    before = {b.site: b for b in record.t_scores() if b.date and b.date <= ended}
    for b in record.t_scores():
        if b.date and b.date > ended and b.site in before and before[b.site].value - b.value >= settings.holiday_bmd_loss_t:
            return False
    return True


def bp_contraindications(record: PatientRecord, settings: ClinicalSettings) -> list[str]:
    """TX-3 reasons an oral bisphosphonate should not be started, as facts.
    Only actual values count: an unknown eGFR is not a contraindication."""
    out = []
    egfr = record.lab("egfr", settings.lab_max_age_months)
    if egfr and egfr.value < settings.egfr_alendronate_min:
        out.append(egfr.fact())
    for group, label in (("esophageal", "Esophageal disorder"), ("bariatric", "Bariatric surgery"),
                         ("bp_intolerance", "Bisphosphonate intolerance")):
        hits = record.condition_hits(group, active_only=group != "bariatric")
        if hits:
            out.append(f"{label} ({hits[0].code or 'coded'}) on {hits[0].date or 'an unknown date'}")
    # A stopped oral BP whose stop reason names intolerance / adverse effects.
    for e in record.exposures([t.ORAL_BP]):
        for ev in e.events:
            if ev.status == "stopped" and any(w in ev.status_reason for w in
                                              ("intoler", "adverse", "side effect", "allerg", "reflux",
                                               "dyspeps", "esophag", "oesophag")):
                out.append(f"{e.agent.capitalize()} stopped for intolerance")
                break
    return out


def missing_baseline_labs(record: PatientRecord, settings: ClinicalSettings) -> list[str]:
    """TX-1a / MON-7: baseline labs missing or older than lab_max_age_months."""
    names = {"egfr": "eGFR", "calcium": "serum calcium", "vitamin_d": "25-OH vitamin D"}
    return [label for name, label in names.items() if record.lab(name, settings.lab_max_age_months) is None]


def lab_facts(record: PatientRecord, settings: ClinicalSettings) -> list[str]:
    out = []
    for name in ("egfr", "calcium_corrected", "calcium", "vitamin_d"):
        lab = record.lab(name, settings.lab_max_age_months)
        if lab:
            out.append(lab.fact())
    return out


@rule("patient-view")
def start_bisphosphonate(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-TX-BP (info). TX-1: postmenopausal woman at high (not very high) risk ->
    oral bisphosphonate, alendronate 70 mg weekly first (ACP23 Rec 1a, strong;
    AACE20). TX-2: man >= 50 at high risk -> same (ACP23 Rec 1b, conditional).
    TX-0: not when already on an osteoporosis drug or in a drug holiday.
    TX-1a: missing/stale eGFR, Ca, 25OHD -> still fire, text says get labs first.
    Not when an oral BP is contraindicated (TX-3 -> C-TX-DMAB-ALT) or for VHR (TX-4)."""
    a = assess(record, settings)
    if a.group != ADULT or a.risk != HIGH:
        return []
    if current_osteoporosis_therapy(record) or in_drug_holiday(record, settings):
        return []
    if bp_contraindications(record, settings):
        return []
    if record.female:
        population = "a postmenopausal woman"
        recommendation = ("ACP 2023 Recommendation 1a (strong recommendation, high-certainty evidence): "
                          "bisphosphonates for initial pharmacologic treatment in postmenopausal females "
                          "with primary osteoporosis")
    else:
        population = "a man aged 50 or older"
        recommendation = ("ACP 2023 Recommendation 1b (conditional recommendation, low-certainty evidence): "
                          "bisphosphonates for initial pharmacologic treatment in males with primary osteoporosis")
    missing = missing_baseline_labs(record, settings)
    labs_note = (f"**Before the first dose, obtain baseline labs:** {', '.join(missing)} "
                 f"(missing or older than {settings.lab_max_age_months} months). "
                 "A missing value is not an abnormal one; check kidney function, calcium and vitamin D first."
                 if missing else "Baseline kidney function, calcium and vitamin D are on file (see below).")
    facts = list(a.reasons)
    latest = record.latest_t_scores()
    facts += [b.fact() for b in latest.values() if b.fact() not in " ".join(facts)]
    facts += lab_facts(record, settings)
    return [Finding(
        "C-TX-BP",
        facts=tuple(facts),
        variables={"population": population, "recommendation": recommendation,
                   "labs_note": labs_note, "patient_instruction": ORAL_BP_INSTRUCTIONS},
    )]


__all__ = ["start_bisphosphonate", "current_osteoporosis_therapy", "in_drug_holiday", "bp_contraindications",
           "missing_baseline_labs", "lab_facts", "ORAL_BP_INSTRUCTIONS", "add_months", "within_months"]
