"""Treatment selection (brief section 3, card family a).

Rules (patient-view): TX-0/TX-1/TX-1a/TX-2 -> C-TX-BP; TX-3 -> C-TX-DMAB-ALT;
TX-4 -> C-TX-ANABOLIC; HOLIDAY-1 -> C-HOLIDAY; SEC-1 / DX-4 -> C-SECONDARY-EVAL.
The drug-start rules exclude each other by themselves (very high risk ->
anabolic; oral BP contraindicated -> denosumab; else BP); the engine also
keeps at most one drug-start card (anabolic > denosumab-alt > BP).
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from cds_service.fhir import terminology as t
from cds_service.record import AgentExposure, PatientRecord, add_months, within_months
from cds_service.rules.base import Finding, rule
from cds_service.rules.diagnosis import (
    ADULT,
    HIGH,
    LOW_FOR_AGE,
    OSTEOPOROSIS,
    VERY_HIGH,
    YOUNG,
    Assessment,
    assess,
    very_high_risk_reasons,
)
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


def _min_days(years: float) -> int:
    """Shortest number of days that is `years` calendar years (5 years is at
    least 1826 days: it always holds a 29 February)."""
    return int(years * 365.25)


def oral_bp_days(record: PatientRecord) -> int:
    """Cumulative oral bisphosphonate exposure across agents (alendronate ->
    risedronate switches add up; overlaps merged), in days."""
    return round(record.class_exposure_months(t.ORAL_BP) * 30.4375)


def long_bp_course(record: PatientRecord, settings: ClinicalSettings) -> list[str]:
    """HOLIDAY-1 / TX-0 course length: oral BP >= bp_holiday_years cumulative,
    or zoledronic acid >= zoledronate_holiday_doses doses. Facts, [] if neither."""
    out = []
    days = oral_bp_days(record)
    if days and days >= _min_days(settings.bp_holiday_years):
        oral = record.exposures([t.ORAL_BP])
        agents = ", ".join(f"{e.agent} since {e.start or 'an unknown date'}" for e in oral)
        out.append(f"Oral bisphosphonate for {days / 365.25:.1f} years in total ({agents})")
    for e in record.exposures([t.IV_BP]):
        if not e.oncology_only and e.dose_count >= settings.zoledronate_holiday_doses:
            out.append(f"Zoledronic acid: {e.dose_count} doses, last on {e.last_dose or 'an unknown date'}")
    return out


def in_drug_holiday(record: PatientRecord, settings: ClinicalSettings) -> bool:
    """TX-0 / HOLIDAY-1: a finished BP course long enough to be a holiday
    (>= bp_holiday_years oral, >= zoledronate_holiday_doses IV), not ended by
    a new fracture or BMD loss (T-score drop >= holiday_bmd_loss_t) since."""
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


# Kinds of reasons not to start an oral bisphosphonate (TX-3). Only "gi"
# (oral-route) problems leave IV zoledronic acid open.
RENAL, GI, INTOLERANCE = "renal", "gi", "intolerance"
_GI_WORDS = ("reflux", "dyspeps", "heartburn", "esophag", "oesophag", "gastr", "swallow", "nausea", "abdominal")
_INTOLERANCE_WORDS = ("intoler", "adverse", "side effect", "allerg") + _GI_WORDS


@dataclasses.dataclass(frozen=True)
class BpProblem:
    kind: str   # RENAL / GI / INTOLERANCE
    fact: str


def bp_problems(record: PatientRecord, settings: ClinicalSettings) -> list[BpProblem]:
    """TX-3: why an oral bisphosphonate should not be started. Only actual
    values count: an unknown eGFR is not a contraindication."""
    out = []
    egfr = record.lab("egfr", settings.lab_max_age_months)
    if egfr and egfr.value < settings.egfr_alendronate_min:
        out.append(BpProblem(RENAL, f"{egfr.fact()} (below {settings.egfr_alendronate_min:g}: "
                                    "alendronate not recommended)"))
    for group, label in (("esophageal", "Esophageal disorder"), ("bariatric", "Bariatric surgery")):
        hits = record.condition_hits(group, active_only=group != "bariatric")
        if hits:
            out.append(BpProblem(GI, f"{label} ({hits[0].code or 'coded'}) on {hits[0].date or 'an unknown date'}"))
    hits = record.condition_hits("bp_intolerance")
    if hits:  # not known to be GI only: may be class-wide (e.g. allergy)
        out.append(BpProblem(INTOLERANCE, f"Bisphosphonate intolerance ({hits[0].code or 'coded'}) on "
                                          f"{hits[0].date or 'an unknown date'}"))
    # A stopped oral BP whose stop reason names intolerance / adverse effects.
    for e in record.exposures([t.ORAL_BP]):
        for ev in e.events:
            if ev.status == "stopped" and any(w in ev.status_reason for w in _INTOLERANCE_WORDS):
                gi = any(w in ev.status_reason for w in _GI_WORDS) and "allerg" not in ev.status_reason
                when = ev.end or ev.start
                out.append(BpProblem(GI if gi else INTOLERANCE,
                                     f"{e.agent.capitalize()} stopped for {'upper-GI ' if gi else ''}intolerance"
                                     f" ({when or 'date unknown'})"))
                break
    return out


def bp_contraindications(record: PatientRecord, settings: ClinicalSettings) -> list[str]:
    """TX-3 reasons (as facts) an oral bisphosphonate should not be started."""
    return [p.fact for p in bp_problems(record, settings)]


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


# --- who may get a drug-start card --------------------------------------------

PTH_CONTRA_GROUPS = (("paget", "Paget disease of bone"), ("skeletal_malignancy", "Skeletal malignancy or bone metastases"),
                     ("skeletal_radiation", "Prior skeletal radiation"), ("hypercalcemia", "Hypercalcemia"),
                     ("hyperparathyroidism", "Hyperparathyroidism"))


def anabolic_options(record: PatientRecord, settings: ClinicalSettings) -> tuple[list[str], list[str]]:
    """TX-4: (anabolic agents that may be suggested, facts on those left out).
    Teriparatide/abaloparatide: not with a SAFE-11 condition (or a measured
    calcium above the upper limit), nor after the 24-month lifetime course
    (SAFE-10). Romosozumab: postmenopausal women only (label), not after MI or
    stroke within mi_stroke_window_months (SAFE-8), not after 12 doses (SAFE-9).

    Screen decision (ACP23 Rec 3 "followed by a bisphosphonate"; SAFE-12):
    once an anabolic course has ended (follow_up.anabolic_course_end) and no
    antiresorptive was given since, the next step is an antiresorptive, not another anabolic course (a second
    anabolic course is a specialist decision). No anabolic agent is offered
    then, so the antiresorptive start card carries the follow-on in the
    3-month window before C-ANABOLIC-FOLLOW-ON fires; after it, that course
    card silences the drug-start cards (engine.COURSE_CARDS)."""
    options: list[str] = []
    excluded: list[str] = []
    from cds_service.rules.follow_up import (
        anabolic_course_end,  # follow_up imports this module
    )

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
    pth_block = [f"{label} ({hits[0].code or 'coded'})" for group, label in PTH_CONTRA_GROUPS
                 if (hits := record.condition_hits(group))]
    ca = record.lab("calcium_corrected", settings.lab_max_age_months) or record.lab("calcium", settings.lab_max_age_months)
    if ca and ca.value > settings.calcium_upper_mg_dl:
        pth_block.append(ca.fact())
    pth_months = record.class_exposure_months(t.PTH_ANALOG)
    if pth_block:
        excluded.append(f"Teriparatide/abaloparatide not suggested: {'; '.join(pth_block)}")
    elif pth_months >= settings.pth_max_months:
        excluded.append(f"Teriparatide/abaloparatide not suggested: {pth_months:.0f} months already used "
                        f"(lifetime limit {settings.pth_max_months} months)")
    else:
        options += ["teriparatide", "abaloparatide"]
    romo = record.medications.get("romosozumab")
    cv = [h for g in ("mi", "stroke") for h in record.condition_hits(g, active_only=False,
                                                                    within_months_=settings.mi_stroke_window_months)]
    if not record.female:
        excluded.append("Romosozumab not suggested: approved only for postmenopausal women")
    elif cv:
        kind = "Myocardial infarction" if cv[0].group == "mi" else "Stroke"
        excluded.append(f"Romosozumab not suggested: {kind} ({cv[0].code or 'coded'}) on {cv[0].date} "
                        f"(within {settings.mi_stroke_window_months} months; boxed warning)")
    elif romo and romo.dose_count >= settings.romo_max_doses:
        excluded.append(f"Romosozumab not suggested: {romo.dose_count} doses already given "
                        f"(limit {settings.romo_max_doses})")
    else:
        options.append("romosozumab")
    return options, excluded


def _start_candidate(record: PatientRecord, settings: ClinicalSettings) -> Assessment | None:
    """TX-0: adult (postmenopausal woman / man >= 50) at high or very high
    risk, on no osteoporosis drug, not in a drug holiday that still holds."""
    a = assess(record, settings)
    if a.group != ADULT or a.risk not in (HIGH, VERY_HIGH):
        return None
    if current_osteoporosis_therapy(record) or in_drug_holiday(record, settings):
        return None
    return a


def _antiresorptive_start(record: PatientRecord, settings: ClinicalSettings) -> tuple[Assessment, str, list[str]] | None:
    """TX-1/2/3 apply at high risk, and at very high risk only when no anabolic
    agent can be suggested (TX-4 otherwise). Returns (assessment, risk text,
    extra facts)."""
    a = _start_candidate(record, settings)
    if a is None:
        return None
    if a.risk == HIGH:
        return a, "high (not very high) fracture risk", []
    options, excluded = anabolic_options(record, settings)
    if options:
        return None
    return a, "very high fracture risk, but no anabolic agent can be suggested (see below)", list(a.vhr_reasons) + excluded


def _facts(record: PatientRecord, settings: ClinicalSettings, first: list[str]) -> tuple[str, ...]:
    facts: list[str] = []
    for fact in list(first) + [b.fact() for b in record.latest_t_scores().values()] + lab_facts(record, settings):
        # already named (perhaps annotated, e.g. "Recent hip fracture ...") above: say it once
        if fact.lower() not in " | ".join(facts).lower():
            facts.append(fact)
    return tuple(facts)


def _labs_note(record: PatientRecord, settings: ClinicalSettings, *, parenteral: bool = False) -> str:
    """TX-1a: missing labs never suppress the card; the text asks for them.
    Screen review: a drug-start card must not read "labs on file" beside the
    vitamin D or calcium problem that C-VITD-LOW / the safety cards raise, so
    the note names a deficient 25-OH vitamin D (TX-8: replete before
    zoledronic acid or denosumab, with an oral bisphosphonate when starting)
    and a low calcium (correct before any bone drug: Fosamax, Prolia, Reclast
    labels). parenteral: the card's first choice is an injectable drug."""
    missing = missing_baseline_labs(record, settings)
    if not missing:
        note = "Baseline kidney function, calcium and vitamin D are on file (see below)."
    else:
        note = (f"**Before the first dose, obtain baseline labs:** {', '.join(missing)} "
                f"(missing or older than {settings.lab_max_age_months} months). "
                "A missing value is not an abnormal one; check kidney function, calcium and vitamin D first.")
    vit_d = record.lab("vitamin_d", settings.lab_max_age_months)
    if vit_d and vit_d.value < settings.vitamin_d_deficient_ng_ml:
        when = "before the first dose" if parenteral else "when starting"
        note += (f" **Vitamin D is deficient** ({vit_d.fact()}): replete it {when} (see the vitamin D card); "
                 "it must be corrected before zoledronic acid or denosumab.")
    ca = record.lab("calcium_corrected", settings.calcium_max_age_months) or record.lab(
        "calcium", settings.calcium_max_age_months)
    if ca and ca.value < settings.calcium_lower_mg_dl:
        note += (f" **Calcium is low** ({ca.fact()}, below {settings.calcium_lower_mg_dl:g} mg/dL): "
                 "find the cause and correct it before starting any bone drug.")
    return note


def _population(record: PatientRecord) -> str:
    return "a postmenopausal woman" if record.female else "a man aged 50 or older"


@rule("patient-view")
def start_bisphosphonate(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-TX-BP (info). TX-1: postmenopausal woman at high (not very high) risk ->
    oral bisphosphonate, alendronate 70 mg weekly first (ACP23 Rec 1a, strong;
    AACE20). TX-2: man >= 50 at high risk -> same (ACP23 Rec 1b, conditional).
    TX-0: not when already on an osteoporosis drug or in a drug holiday.
    TX-1a: missing/stale eGFR, Ca, 25OHD -> still fire, text says get labs first.
    Not when an oral BP is contraindicated (TX-3 -> C-TX-DMAB-ALT) or for VHR
    (TX-4 -> C-TX-ANABOLIC), unless no anabolic agent can be suggested."""
    start = _antiresorptive_start(record, settings)
    if start is None or bp_problems(record, settings):
        return []
    a, risk_text, extra = start
    if record.female:
        recommendation = ("ACP 2023 Recommendation 1a (strong recommendation, high-certainty evidence): "
                          "bisphosphonates for initial pharmacologic treatment in postmenopausal females "
                          "with primary osteoporosis")
    else:
        recommendation = ("ACP 2023 Recommendation 1b (conditional recommendation, low-certainty evidence): "
                          "bisphosphonates for initial pharmacologic treatment in males with primary osteoporosis")
    return [Finding(
        "C-TX-BP",
        facts=_facts(record, settings, list(a.reasons) + extra),
        variables={"population": _population(record), "risk_text": risk_text, "recommendation": recommendation,
                   "labs_note": _labs_note(record, settings), "patient_instruction": ORAL_BP_INSTRUCTIONS},
    )]


@rule("patient-view")
def start_denosumab_alternative(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-TX-DMAB-ALT (info). TX-3: an oral bisphosphonate is contraindicated or
    not tolerated (eGFR < egfr_alendronate_min, esophageal disorder, bariatric
    surgery, documented intolerance) -> denosumab 60 mg SC every 6 months with a
    calcium check (SEED; ACP23 Rec 2a/2b). IV zoledronic acid 5 mg yearly is
    offered as the alternative only when every problem is GI (oral route) and a
    measured eGFR >= egfr_zoledronate_min (AACE20; Reclast label). Same
    population and TX-0 conditions as C-TX-BP."""
    start = _antiresorptive_start(record, settings)
    problems = bp_problems(record, settings) if start else []
    if start is None or not problems:
        return []
    a, risk_text, extra = start
    egfr = record.lab("egfr", settings.lab_max_age_months)
    only_gi = all(p.kind == GI for p in problems)
    zoledronate = only_gi and egfr is not None and egfr.value >= settings.egfr_zoledronate_min
    if zoledronate:
        zol_note = (f"Because the problem is with the oral route only and eGFR is at least "
                    f"{settings.egfr_zoledronate_min:g}, **zoledronic acid 5 mg IV once yearly** is an alternative "
                    "(AACE 2020): hydrate well, check calcium and eGFR before each infusion.")
    elif only_gi:
        zol_note = (f"Zoledronic acid 5 mg IV yearly would be an alternative for an oral-route problem, but it needs "
                    f"a measured eGFR of at least {settings.egfr_zoledronate_min:g} (none in the last "
                    f"{settings.lab_max_age_months} months): it is not offered until kidney function is known.")
    elif any(p.kind == RENAL for p in problems):
        zol_note = (f"Zoledronic acid is not offered: eGFR is below {settings.egfr_zoledronate_min:g}, "
                    "where it is contraindicated (Reclast label).")
    else:
        zol_note = ("Zoledronic acid is not offered: the documented bisphosphonate intolerance is not known to be "
                    "limited to the oral route.")
    ckd_note = ""
    if egfr is not None and egfr.value < settings.egfr_denosumab_ckd:
        ckd_note = (f"**eGFR below {settings.egfr_denosumab_ckd:g}:** denosumab carries a high risk of severe "
                    "hypocalcemia in advanced kidney disease; check calcium (and PTH) before each dose and involve "
                    "a specialist (Prolia label).")
    return [Finding(
        "C-TX-DMAB-ALT",
        facts=_facts(record, settings, [p.fact for p in problems] + list(a.reasons) + extra),
        variables={"population": _population(record), "risk_text": risk_text,
                   "labs_note": _labs_note(record, settings, parenteral=True), "zoledronate_note": zol_note,
                   "ckd_note": ckd_note},
        suggestions=("denosumab", "zoledronic-acid") if zoledronate else ("denosumab",),
    )]


@rule("patient-view")
def start_anabolic(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-TX-ANABOLIC (warning). TX-4: very high risk (brief 2.2; AACE20 + SEED)
    -> anabolic agent first, then an antiresorptive: teriparatide 20 mcg SC
    daily, abaloparatide 80 mcg SC daily, or romosozumab 210 mg SC monthly x 12
    (women only; not after MI/stroke within 12 months). ACP23 Rec 3; AACE20;
    ES19/ES20. Oral/IV bisphosphonate or denosumab are named as acceptable
    alternatives in the text; no separate C-TX-BP card (engine keeps one
    drug-start card). TX-0 as for C-TX-BP."""
    a = _start_candidate(record, settings)
    if a is None or a.risk != VERY_HIGH:
        return []
    options, excluded = anabolic_options(record, settings)
    if not options:
        return []  # an antiresorptive card fires instead (see _antiresorptive_start)
    names = {"teriparatide": "teriparatide 20 mcg SC daily", "abaloparatide": "abaloparatide 80 mcg SC daily",
             "romosozumab": "romosozumab 210 mg SC monthly for 12 doses"}
    if record.female:
        recommendation = ("ACP 2023 Recommendation 3: romosozumab (moderate-certainty evidence) or teriparatide "
                          "(low-certainty evidence), followed by a bisphosphonate, in females with primary "
                          "osteoporosis at very high fracture risk; AACE 2020 and Endocrine Society 2019/2020 "
                          "also advise an anabolic agent first at very high risk")
    else:
        recommendation = ("AACE 2020 and Endocrine Society 2019 advise an anabolic agent first at very high risk "
                          "(in men: teriparatide or abaloparatide only; ACP 2023 Recommendation 3 covers females); "
                          "a specialist opinion is reasonable")
    bp_problem_facts = bp_contraindications(record, settings)
    if bp_problem_facts:
        alternatives = ("Acceptable alternative if an anabolic agent is declined: denosumab 60 mg SC every "
                        "6 months (an oral bisphosphonate is not suitable here, see below).")
        egfr = record.lab("egfr", settings.lab_max_age_months)
        if egfr is not None and egfr.value < settings.egfr_denosumab_ckd:
            # Same caution as C-TX-DMAB-ALT / C-SAFE-DMAB-CKD (SAFE-6), so the alternative named
            # here does not contradict the card the order would meet.
            alternatives += (f" With eGFR below {settings.egfr_denosumab_ckd:g}, denosumab carries a high risk of "
                             "severe hypocalcemia: check calcium and PTH before each dose and involve a specialist "
                             "(Prolia label).")
    else:
        alternatives = ("Acceptable alternatives if an anabolic agent is declined or not available: an oral "
                        "bisphosphonate (alendronate 70 mg weekly), IV zoledronic acid 5 mg yearly, or denosumab "
                        "60 mg SC every 6 months.")
    return [Finding(
        "C-TX-ANABOLIC",
        facts=_facts(record, settings, list(a.vhr_reasons) + list(a.reasons) + excluded + bp_problem_facts),
        variables={"population": _population(record), "options_text": "; ".join(names[o] for o in options),
                   "recommendation": recommendation, "alternatives": alternatives,
                   "labs_note": _labs_note(record, settings, parenteral=True)},
        suggestions=tuple(options),
    )]


@rule("patient-view")
def consider_drug_holiday(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-HOLIDAY (info). HOLIDAY-1: on a bisphosphonate with oral BP >= 5 years
    cumulative or zoledronic acid >= 3 doses, and no hip/spine fragility
    fracture before or during therapy, no fracture on therapy, most recent
    femoral neck and total hip T-scores > -2.5, not very high risk. Never for
    denosumab (ES19; ECTS21): nor while any non-bisphosphonate osteoporosis
    drug is active. SEED; AACE20; ASBMR 2016 task force (memory)."""
    active = current_osteoporosis_therapy(record)
    if not active or any(e.drug_class not in t.BISPHOSPHONATE_CLASSES for e in active):
        return []
    course = long_bp_course(record, settings)
    if not course:
        return []
    fractures = record.fragility_fractures()
    if any(f.site in (t.HIP, t.VERTEBRAL) for f in fractures):
        return []  # before or during therapy, dated or not
    bp_start = min((e.start for e in record.exposures(t.BISPHOSPHONATE_CLASSES) if e.start), default=None)
    if bp_start is None or any(f.date and f.date >= bp_start for f in record.fractures):
        return []
    hips = {}
    for b in record.t_scores(("FN", "TH")):
        if b.date and (b.site not in hips or b.date >= hips[b.site].date):
            hips[b.site] = b
    # The most recent hip T-scores must be known and above -2.5 (unknown: no card).
    if not hips or any(b.value <= -2.5 for b in hips.values()):
        return []
    if very_high_risk_reasons(record, settings):
        return []
    facts = [*course, *(b.fact() for b in hips.values()),
             f"No hip or spine fragility fracture and no fracture since therapy began ({bp_start})"]
    return [Finding("C-HOLIDAY", facts=tuple(facts),
                    variables={"re_eval_years": f"{settings.dxa_interval_months // 12}"})]


def secondary_eval_reason(record: PatientRecord, settings: ClinicalSettings) -> tuple[str, str] | None:
    """SEC-1 / DX-4: (summary subject, detail reason) when C-SECONDARY-EVAL
    applies, else None. Shared with monitoring.baseline_labs, which leaves the
    secondary-cause tests to this card when both fire."""
    a = assess(record, settings)
    if a.group == YOUNG and a.diagnosis in (LOW_FOR_AGE, OSTEOPOROSIS):
        who = "a premenopausal woman" if record.female else "a man under 50"
        if record.female and record.menopausal_status != "premenopausal":
            who = "a woman aged 45-49 whose menopausal status is not recorded (treated as premenopausal)"
        finding = ("a fragility fracture" if a.diagnosis == OSTEOPOROSIS
                   else "bone density below the expected range for age (Z-score -2.0 or lower)")
        subject = ("Premenopausal woman" if record.female else "Man under 50") + (
            " with a fragility fracture" if a.diagnosis == OSTEOPOROSIS else " with low bone density for age")
        return subject, (
            f"This patient is {who} with {finding}. At this age T-scores and FRAX do not classify "
            "osteoporosis (ISCD, AACE 2020): look for a secondary cause first. Drug treatment in this group "
            "is a specialist decision, so no drug is suggested here.")
    if a.group == ADULT and record.male and a.diagnosis == OSTEOPOROSIS:
        return "Man with osteoporosis", (
            "This patient is a man with osteoporosis. Secondary causes are common in men and every man with "
            "osteoporosis should be evaluated for them (Endocrine Society 2012 guideline on osteoporosis "
            "in men), alongside any treatment: the two cards do not exclude each other (brief SEC-1, TX-2).")
    return None


@rule("patient-view")
def secondary_evaluation(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-SECONDARY-EVAL (info). SEC-1 / DX-4: (i) premenopausal women and men
    < 50 (and women 45-49 of unknown menopausal status) with a Z-score <= -2.0
    or a fragility fracture: look for secondary causes, no drug-start card
    (ISCD via AACE20; the drug rules only treat the adult group); (ii) every man
    with osteoporosis (Endocrine Society 2012 men's guideline, memory, U),
    beside C-TX-BP / C-TX-ANABOLIC (the brief allows both for men >= 50).
    Suggests the secondary-cause lab panel, coded by LOINC where the project
    has the code (calcium, albumin, 25-OH vitamin D, eGFR, phosphate, ALP,
    PTH) and by name for the rest (CBC, TSH, SPEP, celiac serology, urine
    calcium, testosterone: not in brief section 8).

    Screen decision (DESIGN "quiet by default": no two cards order the same
    test): when C-LAB-BASELINE fires too, it owns the basic labs (eGFR,
    calcium, albumin, 25-OH vitamin D, phosphate, ALP, PTH) and this card's
    panel leaves them out (keys panel-male-extra / panel-female-extra)."""
    found = secondary_eval_reason(record, settings)
    if found is None:
        return []
    subject, reason = found
    facts = list(assess(record, settings).reasons)
    for name in ("calcium", "albumin", "vitamin_d", "pth", "egfr"):
        lab = record.lab(name, settings.lab_max_age_months)
        if lab:
            facts.append(lab.fact())
    if record.long_term_corticosteroid:
        facts.append("Long-term systemic glucocorticoid use on record")
    from cds_service.rules.monitoring import (
        baseline_labs_due,  # monitoring imports this module
    )

    key = "panel-male" if record.male else "panel-female"
    if baseline_labs_due(record, settings):
        key += "-extra"
        panel_note = ("Calcium, albumin, 25-OH vitamin D, kidney function, phosphate, alkaline phosphatase and PTH "
                      "are ordered from the baseline-labs card, so the panel here holds the other tests.")
    else:
        panel_note = "Drop the tests already done recently."
    return [Finding("C-SECONDARY-EVAL", facts=tuple(dict.fromkeys(facts)),
                    variables={"reason": reason, "subject": subject, "panel_note": panel_note},
                    suggestions=(key,))]


__all__ = [
    "ORAL_BP_INSTRUCTIONS",
    "BpProblem",
    "add_months",
    "anabolic_options",
    "bp_contraindications",
    "bp_problems",
    "consider_drug_holiday",
    "current_osteoporosis_therapy",
    "in_drug_holiday",
    "lab_facts",
    "long_bp_course",
    "missing_baseline_labs",
    "oral_bp_days",
    "secondary_eval_reason",
    "secondary_evaluation",
    "start_anabolic",
    "start_bisphosphonate",
    "start_denosumab_alternative",
    "within_months",
]
