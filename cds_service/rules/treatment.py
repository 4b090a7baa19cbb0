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
from cds_service.record import PatientRecord, add_months, within_months
from cds_service.rules.base import NO_TRIGGER, Finding, Suggestion, cross_ref, rule, trigger_date
from cds_service.rules.diagnosis import (
    ADULT,
    HIGH,
    LOW_FOR_AGE,
    OSTEOPENIA,
    OSTEOPOROSIS,
    VERY_HIGH,
    YOUNG,
    Assessment,
    assess,
    latest_t_scores,
    very_high_risk_reasons,
)
from cds_service.rules.facts import (
    KidneyReading,
    antiresorptive_complications,
    complication_name,
    COMPLICATION,
    GI,
    ORAL_BP_INSTRUCTIONS,
    BpProblem,
    anabolic_course_end,
    course_end_words,
    anabolic_options,
    baseline_lab_orders,
    baseline_labs_due,
    bone_active_therapy,
    bp_contraindications,
    bp_problems,
    ckd_4_5,
    condition_fact,
    current_osteoporosis_therapy,
    in_drug_holiday,
    kidney,
    ckd_mbd_done,
    ckd_mbd_done_facts,
    current_pregnancy,
    kidney_egfr,
    kidney_fact,
    lab_facts,
    low_calcium,
    unexplained_high_calcium,
    long_bp_course,
    missing_baseline_labs,
    months_to_days,
    oral_bp_days,
    very_long_bp_course,
    vitamin_d_deficient,
    vitamin_d_repletion_hold,
)
from cds_service.rules.follow_up import zoledronate_blockers
from cds_service.rules.memo import per_call
from cds_service.rules.orders import (
    ENDOCRINOLOGY,
    PROLIA24_TEXT,
    ckd_mbd_work_up,
    prolia24_suggestion,
    referral_suggestion,
)
from cds_service.rules.settings import ClinicalSettings


@per_call
def _start_candidate(record: PatientRecord, settings: ClinicalSettings) -> Assessment | None:
    """TX-0: adult (postmenopausal woman / man >= 50) at high or very high
    risk, on no bone-active drug, not in a drug holiday that still holds.
    Second-pass 4: systemic estrogen, raloxifene and bazedoxifene are bone-active
    (the monitoring card then says what is on board)."""
    a = assess(record, settings)
    if a.group != ADULT or a.risk not in (HIGH, VERY_HIGH):
        return None
    if bone_active_therapy(record) or in_drug_holiday(record, settings):
        return None
    return a


@per_call
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


def _treatment_status(record: PatientRecord, settings: ClinicalSettings) -> tuple[dict[str, str], list[str]]:
    """What the drug-start cards say is on board: "no osteoporosis treatment", or (review 13) an
    anabolic course that ended within anabolic_followon_months with nothing since. Then the
    card's antiresorptive is the follow-on (brief SAFE-12; ACP23 Rec 3: an anabolic agent
    "followed by a bisphosphonate"; AACE20, ES19), not a first start; later C-ANABOLIC-FOLLOW-ON
    warns instead (and silences these cards). Returns the template's variables and facts."""
    course = anabolic_course_end(record, settings)
    if course is None or (record.today - course[0]).days > months_to_days(settings.anabolic_followon_months):
        return {"drug_status": "no bone drug", "treatment_status": "no osteoporosis treatment"}, []
    end, facts = course
    ended = course_end_words(record, settings, end)[0]
    if ended.startswith("stopped"):  # an interrupted romosozumab course is not "over" (review 14)
        over, what = "romosozumab stopped early, follow-on due", f"the anabolic course {ended}"
    else:
        over, what = "anabolic course over, follow-on due", f"an anabolic course ended on {end}"
    return {"drug_status": over,
            "treatment_status": (f"{what} with no antiresorptive to follow it yet "
                                 "(**follow it now**: ACP 2023 Recommendation 3; AACE 2020)")}, facts


def _facts(record: PatientRecord, settings: ClinicalSettings, first: list[str]) -> tuple[str, ...]:
    facts: list[str] = []
    named = ""  # " | ".join(facts).lower(), kept as facts grow
    for fact in list(first) + [b.fact() for b in latest_t_scores(record).values()] + lab_facts(record, settings):
        # already named (perhaps annotated, e.g. "Recent hip fracture ...") above: say it once
        lowered = fact.lower()
        if lowered not in named:
            named = f"{named} | {lowered}" if facts else lowered
            facts.append(fact)
    return tuple(facts)


def _labs_note(record: PatientRecord, settings: ClinicalSettings, *, parenteral: bool = False) -> str:
    """TX-1a: missing labs never suppress the card; the text asks for them.
    Screen review: a drug-start card must not read "labs on file" beside the
    vitamin D or calcium problem that C-VITD-LOW / the safety cards raise, so
    the note names a deficient 25-OH vitamin D (TX-8: replete before
    zoledronic acid or denosumab, with an oral bisphosphonate when starting)
    and a low calcium (correct before any bone drug: Fosamax, Prolia, Reclast
    labels). With a high calcium (or dialysis / CKD 4-5) the vitamin D note says what
    C-VITD-LOW says (facts.vitamin_d_repletion_hold): find the calcium's cause first (or
    replete with nephrology). parenteral: the card's first choice is an injectable drug."""
    missing = missing_baseline_labs(record, settings)
    notes = []
    if missing:
        notes.append(f"**Before the first dose, obtain baseline labs:** {', '.join(missing)} (missing or older "
                     f"than {settings.lab_max_age_months} months).")
    if vitamin_d_deficient(record, settings):  # "<20" too (review 14)
        hold = vitamin_d_repletion_hold(record, settings)
        if hold and ckd_4_5(record, settings):
            # The vitamin D card's words (C-VITD-LOW): the form of vitamin D belongs to nephrology.
            notes.append("**Vitamin D is deficient:** replete it with nephrology (dialysis or CKD 4-5"
                         + cross_ref("C-VITD-LOW", "; the vitamin D card") + ").")
        elif hold:
            # Review: "replete it when starting" beside C-VITD-LOW's "find the cause before repleting":
            # vitamin D raises a high calcium further (cholecalciferol / ergocalciferol labels:
            # contraindicated in hypercalcemia), so the calcium's cause (PTH) comes first.
            notes.append("**Vitamin D is deficient:** find the high calcium's cause (PTH) before repleting it"
                         + cross_ref("C-VITD-LOW", " (the vitamin D card)") + ".")
        else:
            notes.append(f"**Vitamin D is deficient:** replete it "
                         f"{'before the first dose' if parenteral else 'when starting'}"
                         + cross_ref("C-VITD-LOW", " (the vitamin D card)", " (cholecalciferol 50,000 IU weekly for "
                                                                             "8 weeks, or 6000 IU daily)") + ".")
    if low_calcium(record, settings):
        notes.append("**Calcium is low:** find the cause and correct it before any bone drug.")
    return " ".join(notes)  # nothing missing or abnormal: the labs are in the patient data


def _population(record: PatientRecord) -> str:
    return "a postmenopausal woman" if record.female else "a man aged 50 or older"


def _malignancy_referral(card_id: str, record: PatientRecord, settings: ClinicalSettings,
                         a: Assessment) -> list[Finding]:
    """Review 8 (e76): with an active skeletal malignancy (bone metastases included, the
    `skeletal_malignancy` group) a drug-start card offers no drug: low bone density and
    fractures may come from the malignancy, not the primary osteoporosis ACP 2023 (Rec 1-3,
    brief TX-1..TX-4) covers; teriparatide and abaloparatide are to be avoided there (SAFE-11,
    Forteo/Tymlos labels). The card keeps its id, says why (its `skeletal-malignancy`
    variant) and refers to a bone specialist, to plan with the oncology team. [] when no
    such condition is active. (An any-mechanism fracture beside it is already not a
    probable fragility fracture: record.py.)"""
    hits = record.condition_hits("skeletal_malignancy")
    if not hits:
        return []
    facts = _facts(record, settings, [condition_fact(hits[0], "Bone metastases / skeletal malignancy"),
                                      *a.vhr_reasons, *a.reasons])
    risk_text = "very high fracture risk" if a.risk == VERY_HIGH else "high fracture risk"
    return [Finding(card_id, facts=facts, variant="skeletal-malignancy", suggestions=(),
                    variables={"population": _population(record), "risk_text": risk_text},
                    extra_suggestions=(referral_suggestion(
                        ENDOCRINOLOGY, "Refer to a bone specialist (endocrinology) to plan bone treatment with oncology",
                        "Fracture risk with bone metastases or a skeletal malignancy", True),))]


# One wording for the three drug-start cards' `pregnancy` variant (second-pass 7: about 80 words).
PREGNANCY_ADVICE = (
    "No osteoporosis drug is offered: denosumab and raloxifene are contraindicated in pregnancy (Prolia, Evista "
    "labels); bisphosphonates, romosozumab, teriparatide and abaloparatide are not for use in it (labels). **Defer "
    "drug treatment until after the pregnancy and breastfeeding**; a bone specialist plans it with the obstetric "
    "team (referral below). If the pregnancy has ended or a later test was negative, record it: the card then "
    "gives its usual advice.")


def pregnancy_deferral(card_id: str, record: PatientRecord, settings: ClinicalSettings,
                       a: Assessment) -> list[Finding]:
    """Clinical review 20 (M2): a drug-start card in a current pregnancy (facts.current_pregnancy,
    the reading C-SAFE-PREGNANCY decides on; second-pass 2) offers no drug and does not say
    "consider" one: every osteoporosis drug is out in pregnancy (Prolia and Evista labels:
    contraindicated; Fosamax, Reclast, Evenity, Forteo, Tymlos labels: not for use). The card
    keeps its id and indicator, says to defer drug treatment until after the pregnancy and
    breastfeeding, and refers to a bone specialist (its `pregnancy` variant). [] when no
    pregnancy is current."""
    pregnancy = current_pregnancy(record, settings)
    if not pregnancy:
        return []
    risk_text = "very high fracture risk" if a.risk == VERY_HIGH else "high fracture risk"
    return [Finding(card_id, facts=_facts(record, settings, [*pregnancy, *a.vhr_reasons, *a.reasons]),
                    variant="pregnancy", suggestions=(),
                    variables={"risk_text": risk_text, "pregnancy_advice": PREGNANCY_ADVICE},
                    extra_suggestions=(referral_suggestion(
                        ENDOCRINOLOGY, "Refer to a bone specialist (endocrinology) to plan bone treatment after the "
                        "pregnancy", "Osteoporosis in pregnancy: no osteoporosis drug until after the pregnancy "
                        "and breastfeeding", True),))]


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
    if start is None or bp_problems(record, settings, class_wide=True):
        return []
    a, risk_text, extra = start
    deferred = pregnancy_deferral("C-TX-BP", record, settings, a)
    if deferred:
        return deferred
    malignancy = _malignancy_referral("C-TX-BP", record, settings, a)
    if malignancy:
        return malignancy
    status, course_facts = _treatment_status(record, settings)
    recommendation = "ACP 2023, Recommendation 1a, strong" if record.female else "ACP 2023, Recommendation 1b, conditional"
    reading = kidney(record, settings)
    suggestions = ("alendronate", "risedronate")  # not risedronate-first: that one is for kidney function 30-35
    choice = {"first_choice": "alendronate 70 mg", "risedronate_label": " (alternative)", "once": "",
              "order_note": "The order carries the patient's instructions (on waking, plain water, upright 30 minutes).",
              "suggested": "alendronate 70 mg by mouth once weekly; risedronate 35 mg weekly is an alternative"}
    if reading.below(settings.egfr_alendronate_min):
        # Between 30 and 35: alendronate is not recommended (Fosamax), risedronate is within its label (Actonel).
        # An eGFR reported only as "<35" (not known to be 30 or more): risedronate once an exact eGFR allows it.
        offered = ("is offered instead" if reading.known else
                   f"is offered once an exact eGFR shows {settings.egfr_risedronate_min:g} or more")
        extra = extra + [f"{kidney_fact(reading, settings.egfr_alendronate_min, 'alendronate')}: risedronate, "
                         f"labelled down to {settings.egfr_risedronate_min:g}, {offered}"]
        suggestions = ("risedronate-first",)
        choice = {**choice, "first_choice": "risedronate 35 mg", "risedronate_label": "",
                  "suggested": (f"risedronate 35 mg by mouth once weekly (kidney function below "
                                f"{settings.egfr_alendronate_min:g}: not alendronate)")}
    # An eGFR reported only as a bound that leaves the offered drug's limit open: "<35" for
    # risedronate's 30 (review: it was offered in one click beside "only if an exact eGFR is 30
    # or more"), "<60" / "<45" for alendronate's 35 (review 9: C-SAFE-RENAL then asked for a
    # recheck on the order). No one-click bisphosphonate: the exact eGFR comes first
    # (C-LAB-BASELINE orders it: no bound is a reading).
    open_limit = (settings.egfr_risedronate_min if suggestions == ("risedronate-first",) else
                  settings.egfr_alendronate_min)
    if reading.may_be_below(open_limit):
        suggestions = ()
        choice = {**choice, "order_note": "No order yet: " + cross_ref(
                      "C-LAB-BASELINE", "the baseline-labs card orders the eGFR.", "order an eGFR first."),
                  "once": f" once an exact eGFR is {open_limit:g}+",
                  "suggested": f"{choice['suggested']}, once an exact eGFR shows {open_limit:g} or more"}
    return [Finding(
        "C-TX-BP",
        suggestions=suggestions,
        facts=_facts(record, settings, course_facts + list(a.reasons) + extra),
        variables={"population": _population(record), "risk_text": risk_text, "recommendation": recommendation,
                   **status,
                   # re-review: the summary said "high" beside "very high ... no anabolic agent" in the detail
                   "risk_level": "very high" if a.risk == VERY_HIGH else "high",
                   "labs_note": _labs_note(record, settings), "patient_instruction": ORAL_BP_INSTRUCTIONS,
                   "oral_bp_status": _oral_bp_status(record, reading, reading.below(settings.egfr_alendronate_min),
                                                     settings),
                   **choice},
    )]


def _oral_bp_status(record: PatientRecord, reading: KidneyReading, risedronate_first: bool,
                    settings: ClinicalSettings) -> str:
    """C-TX-BP's "nothing on record against an oral bisphosphonate", or what there is."""
    if low_calcium(record, settings):
        # Review: hypocalcemia is a Fosamax contraindication, so "nothing on record against"
        # was false beside a low calcium (the order itself is withheld by the engine).
        return "a low calcium to correct before an oral bisphosphonate (see below)"
    high = unexplained_high_calcium(record, settings)
    if high:
        # Review 10: not "nothing on record" beside a high calcium. It does not forbid an oral
        # bisphosphonate (no label or brief section 4 rule says so: the order stays), but its
        # cause comes first or alongside: C-SECONDARY-EVAL orders PTH and the panel.
        return (f"a **high calcium** ({high}) to explain before or alongside starting: "
                "hyperparathyroidism (PTH), myeloma" + cross_ref("C-SECONDARY-EVAL", " (secondary-causes card)",
                                                                 " (protein electrophoresis)"))
    if risedronate_first and reading.may_be_below(settings.egfr_risedronate_min):
        return (f"{reading.label}: not alendronate, and risedronate only if an exact eGFR is "
                f"{settings.egfr_risedronate_min:g} or more")
    if risedronate_first:
        return f"kidney function below {settings.egfr_alendronate_min:g}, still within risedronate's label"
    if reading.may_be_below(settings.egfr_alendronate_min):
        return (f"{reading.label}: reported only as a bound that may be below "
                f"{settings.egfr_alendronate_min:g}, to recheck as an exact eGFR before an oral bisphosphonate")
    if reading.recheck_below(settings.egfr_alendronate_min):
        # Clinical review: a stale low value is no reading, but not "nothing".
        return (f"an old kidney function below {settings.egfr_alendronate_min:g} on record, "
                "to recheck before the first dose")
    return "nothing on record against an oral bisphosphonate"


@rule("patient-view")
def start_denosumab_alternative(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-TX-DMAB-ALT (info). TX-3: an oral bisphosphonate is contraindicated or
    not tolerated (kidney function below egfr_risedronate_min (30), the lowest limit
    of the class, by the one kidney reading, coded kidney failure and dialysis
    included; between 30 and 35 C-TX-BP offers risedronate instead, review of the
    second pass: ACP23 Rec 1a, Actonel/Boniva labels; esophageal disorder,
    bariatric surgery, documented intolerance) -> denosumab 60 mg SC every 6
    months with a calcium check (SEED; ACP23 Rec 2a/2b). IV zoledronic acid 5 mg
    yearly is offered as the alternative only when every problem is GI (oral
    route) and kidney function is known to be >= egfr_zoledronate_min (AACE20;
    Reclast label). Same population and TX-0 conditions as C-TX-BP.
    Second-pass 2: below egfr_denosumab_ckd (30) or on dialysis the card carries
    the PROLIA24 plan (CKD-MBD work-up and a nephrology referral) instead of a
    one-click denosumab order. Second-pass 4: after a coded atypical femoral
    fracture or jaw osteonecrosis every antiresorptive is a specialist decision,
    so the card offers a referral, not a drug."""
    start = _antiresorptive_start(record, settings)
    problems = bp_problems(record, settings, class_wide=True) if start else []
    if start is None or not problems:
        return []
    a, risk_text, extra = start
    deferred = pregnancy_deferral("C-TX-DMAB-ALT", record, settings, a)
    if deferred:
        return deferred
    malignancy = _malignancy_referral("C-TX-DMAB-ALT", record, settings, a)
    if malignancy:
        return malignancy
    reading = kidney(record, settings)
    status, course_facts = _treatment_status(record, settings)
    facts = _facts(record, settings, course_facts + [p.fact for p in problems] + list(a.reasons) + extra)
    variables = {"population": _population(record), "risk_text": risk_text, **status,
                 "labs_note": _labs_note(record, settings, parenteral=True), "ckd_note": "",
                 **_vitamin_d_first(record, settings)}
    complications = antiresorptive_complications(record)
    if complications:
        # Review 21: the default text ("Suggested: denosumab ... Never stop it without a follow-on
        # bisphosphonate") stood beside the referral alone. Variant complication: no bisphosphonate
        # (follow_up.zoledronate_blockers and bp_problems both carry the complication; Fosamax, Reclast
        # labels; second-pass 4) and no denosumab start (Prolia label: the same complications; it
        # cannot simply be stopped), as C-ANABOLIC-FOLLOW-ON and C-AR-COMPLICATION say.
        variables["complication"] = complication_name(complications)
        return [Finding("C-TX-DMAB-ALT", facts=facts, variables=variables, variant="complication", suggestions=(),
                        extra_suggestions=(referral_suggestion(
                            ENDOCRINOLOGY, "Refer to a bone specialist (endocrinology) to choose the treatment",
                            "Osteoporosis after an atypical femoral fracture or jaw osteonecrosis", True),))]
    only_gi = all(p.kind == GI for p in problems)
    # Review 21: one list of what stands against zoledronic acid (follow_up.zoledronate_blockers: kidney
    # below 35 or unknown, CKD 4-5 by the lower reading, a low calcium, intolerance, AFF / ONJ), as the
    # denosumab course cards read it.
    zol_blockers = zoledronate_blockers(record, settings)
    zoledronate = only_gi and not zol_blockers
    if zoledronate:
        zol_note = (f"Oral-route problem only, kidney function {settings.egfr_zoledronate_min:g} or more: "
                    "**zoledronic acid 5 mg IV once yearly** is an alternative (AACE 2020).")
    elif reading.below(settings.egfr_zoledronate_min):
        zol_note = f"Zoledronic acid: contraindicated below {settings.egfr_zoledronate_min:g} (Reclast label)."
    elif only_gi and not reading.known:
        zol_note = (f"Zoledronic acid needs kidney function of {settings.egfr_zoledronate_min:g} or more from the "
                    f"last {settings.kidney_lab_max_age_months} months: not offered until it is known.")
    elif only_gi:
        zol_note = f"Zoledronic acid is not offered: {'; '.join(zol_blockers)}."
    else:
        zol_note = "Zoledronic acid is not offered: the intolerance is not known to be limited to the oral route."
    variables["zoledronate_note"] = zol_note
    # Baseline labs missing (C-LAB-BASELINE orders them): no injection yet, and no test ordered
    # twice on one screen (DESIGN "quiet by default"). Calcium and vitamin D must be known and
    # corrected before denosumab or zoledronic acid (Prolia, Reclast labels; TX-8).
    baseline = baseline_lab_orders(record, settings)
    # PROLIA24 (eGFR < 30 mL/min/1.73m2 or dialysis): kidney_egfr, never above kidney() (second-pass 1,
    # review 20: "below 30 for every oral bisphosphonate" beside "the Prolia boxed warning does not
    # apply" with a one-click denosumab, on a clearance of 20 and an eGFR of 38).
    dmab_reading = kidney_egfr(record, settings)
    if dmab_reading.below(settings.egfr_denosumab_ckd):
        variables["ckd_note"] = ("**Kidney function below 30 or dialysis (Prolia boxed warning 2024):** severe hypocalcemia risk: "
                                 "CKD-mineral bone disorder work-up with nephrology before any denosumab.")
        variables["zoledronate_note"] = ""  # below 30 the CKD note speaks; zoledronic acid is out below 35 anyway
        work_up = prolia24_suggestion("CKD-mineral bone disorder work-up and nephrology referral before denosumab",
                                      after_dose=False, done=ckd_mbd_done(record, settings))
        facts = tuple(ckd_mbd_done_facts(record, settings, beside=facts))
        work_up = dataclasses.replace(work_up, actions=tuple(
            a for a in work_up.actions if not (a.resource and _loinc(a.resource) in baseline)))
        return [Finding("C-TX-DMAB-ALT", facts=facts, variables=variables, suggestions=(),
                        extra_suggestions=(work_up,))]
    if baseline:
        facts += ("No injection ordered yet: " + cross_ref(
            "C-LAB-BASELINE", "baseline labs first (see the baseline-labs card)",
            f"order the baseline labs first ({', '.join(baseline_labs_due(record, settings))})"),)
        return [Finding("C-TX-DMAB-ALT", facts=facts, variables=variables, suggestions=())]
    return [Finding("C-TX-DMAB-ALT", facts=facts, variables=variables,
                    suggestions=("denosumab", "zoledronic-acid") if zoledronate else ("denosumab",))]


def _vitamin_d_first(record: PatientRecord, settings: ClinicalSettings) -> dict[str, str]:
    """C-TX-DMAB-ALT's orders with a 25-OH vitamin D below vitamin_d_deficient_ng_ml (20): the
    label and the order itself say the first dose waits for repletion (brief TX-8 and SAFE-5:
    corrected before zoledronic acid or denosumab, hypocalcemia risk; AACE20; Prolia and Reclast
    labels). Still one click: SAFE-5 is a warning, not a veto (second-pass README: C-VITD-LOW at
    warning on the order), and the order is the plan (repletion first, C-VITD-LOW orders it)."""
    if not vitamin_d_deficient(record, settings):
        return {"vitamin_d_first": "", "vitamin_d_label": ""}
    return {"vitamin_d_first": (f" First dose only once 25-OH vitamin D is repleted (it was below "
                                f"{settings.vitamin_d_deficient_ng_ml:g} ng/mL): risk of hypocalcemia."),
            "vitamin_d_label": "; first dose after vitamin D repletion"}


def _loinc(resource) -> str | None:
    codings = ((resource.get("code") or {}).get("coding") or [{}])
    return codings[0].get("code") if codings[0].get("system") == t.LOINC else None


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
    deferred = pregnancy_deferral("C-TX-ANABOLIC", record, settings, a)
    if deferred:
        return deferred
    malignancy = _malignancy_referral("C-TX-ANABOLIC", record, settings, a)
    if malignancy:
        return malignancy
    ckd = _ckd_mbd_referral(record, settings, a)
    if ckd:
        return ckd
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
    problems = bp_problems(record, settings)
    bp_problem_facts = [p.fact for p in problems]
    if any(p.kind == COMPLICATION for p in problems):
        alternatives = ("No antiresorptive alternative is suggested: an atypical femoral fracture or jaw "
                        "osteonecrosis is on record (see below); that choice belongs to a bone specialist.")
    elif bp_problem_facts:
        alternatives = ("Acceptable alternative if an anabolic agent is declined: denosumab 60 mg SC every "
                        "6 months (an oral bisphosphonate is not suitable here, see below).")
        if kidney_egfr(record, settings).below(settings.egfr_denosumab_ckd):
            # Same plan as C-TX-DMAB-ALT / C-SAFE-DMAB-CKD (PROLIA24), so the alternative named
            # here does not contradict the card the order would meet.
            alternatives += " " + PROLIA24_TEXT
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


def _ckd_mbd_referral(record: PatientRecord, settings: ClinicalSettings, a: Assessment) -> list[Finding]:
    """Review 13: C-TX-ANABOLIC in CKD 4-5 or on dialysis (kidney_egfr: coded CKD 4-5, dialysis
    Conditions or Procedures, else eGFR below 30: facts.ckd_4_5; KDIGO stages by GFR).
    There a low T-score or a fracture does not tell osteoporosis from CKD-mineral bone disorder
    (AACE20, ES19; KDIGO 2017 CKD-MBD: in CKD G4-G5D with CKD-MBD abnormalities, treatment
    choices weigh those abnormalities, with consideration of a bone biopsy), and romosozumab
    carries a higher hypocalcemia risk in severe renal impairment or dialysis (EVENITY label).
    The card keeps its id, offers no one-click anabolic order, and carries the CKD-MBD
    labs (the PROLIA24 plan's work-up, with phosphate and ALP) and a CKD-MBD referral;
    labs C-LAB-BASELINE orders on the same screen are left out. [] when kidney function is
    not that low."""
    reading = ckd_4_5(record, settings)
    if not reading:
        return []
    baseline = baseline_lab_orders(record, settings)
    # Review 14: the work-up done recently (labs within 90 days, a referral within 12 months) is not
    # ordered again at every chart open; with all of it done the card still says so, with no order.
    done = ckd_mbd_done(record, settings)
    why = "Very high fracture risk in CKD stage 4-5 or on dialysis: evaluate CKD-mineral bone disorder before any " \
          "osteoporosis drug"
    actions = tuple(act for act in ckd_mbd_work_up(why, done) if not (act.resource and _loinc(act.resource) in baseline))
    if len(done) == len(ckd_mbd_work_up(why)):
        work_up = ("**On record:** the CKD-MBD labs (intact PTH, calcium, phosphate, alkaline phosphatase, 25-OH and "
                   f"1,25-(OH)2 vitamin D, within {settings.predose_lab_days} days) and a referral to nephrology or a "
                   f"bone specialist (within {settings.done_within_months} months): the specialist, reading them "
                   "together, chooses the treatment; nothing is ordered again.")
    else:
        work_up = ("**Suggested:** the CKD-MBD labs (intact PTH, calcium, phosphate, alkaline phosphatase, 25-OH and "
                   "1,25-(OH)2 vitamin D) and a referral to nephrology or a bone specialist with CKD-MBD expertise, "
                   "who chooses the treatment" + ("; those on record recently are not ordered again." if done else "."))
    facts = _facts(record, settings, [f"{'; '.join(reading.facts)} (CKD stage 4-5 or dialysis)",
                                      *a.vhr_reasons, *a.reasons, *ckd_mbd_done_facts(record, settings)])
    return [Finding("C-TX-ANABOLIC", facts=facts, variant="ckd-mbd", suggestions=(),
                    variables={"population": _population(record),
                               "kidney": reading.label, "work_up": work_up,
                               "labs_note": _labs_note(record, settings, parenteral=True)},
                    extra_suggestions=(Suggestion(
                        "CKD-MBD labs and a referral to nephrology or a bone specialist before any osteoporosis drug",
                        actions, True),) if actions else ())]


def _bp_failure(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> bool:
    """C-TX-FAILURE fires (C-HOLIDAY runs only when every active drug is a bisphosphonate)."""
    from cds_service.rules.on_therapy import treatment_failure  # a sibling rule module, read at call time

    return bool(treatment_failure(record, today, settings))


@rule("patient-view")
def consider_drug_holiday(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-HOLIDAY (info). HOLIDAY-1: on a bisphosphonate with oral BP >= 5 years
    cumulative or zoledronic acid >= 3 doses, and no hip/spine fragility
    fracture before or during therapy, no fracture on therapy, most recent
    femoral neck and total hip T-scores > -2.5, not very high risk. Never for
    denosumab (ES19; ECTS21): nor while any non-bisphosphonate osteoporosis
    drug is active. SEED; AACE20; ASBMR 2016 task force (memory).
    A course beyond the longest AACE20 supports even at high risk (oral >=
    bp_review_years, zoledronic acid >= zoledronate_review_doses) asks for a
    duration review whatever the hip T-scores, fractures or risk (issue 14:
    23 years of alendronate drew nothing because no hip T-score was on file)."""
    active = current_osteoporosis_therapy(record)
    if not active or any(e.drug_class not in t.BISPHOSPHONATE_CLASSES for e in active):
        return []
    hips = {}
    for b in record.t_scores(("FN", "TH")):
        if b.date and (b.site not in hips or b.date >= hips[b.site].date):
            hips[b.site] = b
    very_long = very_long_bp_course(record, settings)
    if very_long and _bp_failure(record, today, settings):
        # Clinical review: beside C-TX-FAILURE (a fracture on the bisphosphonate) this card gave the
        # same "change to another agent" advice again; that card asks for the switch and names
        # the course's length.
        return []
    if very_long:
        years = oral_bp_days(record) / 365.25
        length = f"{years:.0f} years" if years >= settings.bp_review_years else "6 or more yearly doses"
        facts = [*very_long, *(b.fact() for b in hips.values())]
        if not hips:
            facts.append("No femoral neck or total hip T-score on file")
        facts += [f.fact() for f in record.fragility_fractures()]
        # At very high risk (a fracture on therapy is one) a holiday is not the answer.
        very_high = very_high_risk_reasons(record, settings)
        choice = ("Risk is very high, so no holiday: change to another agent (an anabolic first, AACE 2020)."
                  if very_high else "Decide with the patient: a drug holiday, or another agent if risk stays high.")
        return [Finding("C-HOLIDAY", facts=tuple(dict.fromkeys((*facts, *very_high))), variables={
            "re_eval_years": f"{settings.dxa_interval_months // 12}",
            "headline": f"Bisphosphonate for {length}: review how long to go on",
            "situation": (f"A bisphosphonate for **{length}**, beyond the {settings.bp_review_years} years oral "
                          f"({settings.zoledronate_review_doses} yearly IV doses) AACE 2020 supports even at high "
                          "risk: going on has no proven benefit, and the rare harms (atypical femoral fracture, "
                          "jaw osteonecrosis) grow with duration. **Review the duration**: reassess fracture risk "
                          f"(DXA with hip T-scores). {choice}"),
        })]
    course = long_bp_course(record, settings)
    if not course:
        return []
    fractures = record.fragility_fractures()
    if any(f.site in (t.HIP, t.VERTEBRAL) for f in fractures):
        return []  # before or during therapy, dated or not
    bp_start = min((e.start for e in record.exposures(t.BISPHOSPHONATE_CLASSES) if e.start), default=None)
    if bp_start is None or any(f.date and f.date >= bp_start for f in record.fractures):
        return []
    # The most recent hip T-scores must be known and above -2.5 (unknown: no card).
    if not hips or any(b.value <= -2.5 for b in hips.values()):
        return []
    if very_high_risk_reasons(record, settings):
        return []
    facts = [*course, *(b.fact() for b in hips.values()),
             f"No hip or spine fragility fracture and no fracture since therapy began ({bp_start})"]
    return [Finding("C-HOLIDAY", facts=tuple(facts), variables={
        "re_eval_years": f"{settings.dxa_interval_months // 12}",
        "headline": "Long bisphosphonate course, moderate risk now: consider a drug holiday",
        "situation": ("A long bisphosphonate course, no hip or spine fragility fracture, no fracture on therapy, "
                      "hip T-scores above -2.5 and risk not very high: a **drug holiday may be considered** "
                      "(AACE 2020). Continuing is reasonable if risk stays high."),
    })]


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
            "osteoporosis (ISCD): look for a secondary cause first; drug treatment is a specialist decision.")
    high = unexplained_high_calcium(record, settings)
    pth = _pth_reading(record, settings) if high else None
    if a.group == ADULT and record.male and a.diagnosis == OSTEOPOROSIS:
        return "Man with osteoporosis", (
            "A man with osteoporosis: secondary causes are common in men, and every man with osteoporosis "
            "should be evaluated for them alongside any treatment (Endocrine Society 2012)."
            + (" " + _high_calcium_text(high, pth) if high else ""))
    # Review 10: a high calcium with low bone density before treatment (on therapy C-MON-ONTX flags
    # it): hyperparathyroidism is a secondary cause (brief SEC-1), PTH a baseline lab (MON-7).
    if high and a.group == ADULT and a.diagnosis in (OSTEOPOROSIS, OSTEOPENIA) and not bone_active_therapy(record):
        what = "osteoporosis" if a.diagnosis == OSTEOPOROSIS else "low bone mass"
        return f"High calcium with {what}", _high_calcium_text(high, pth, what)
    return None


def _high_calcium_text(high: str, pth: tuple[str, bool] | None, what: str = "") -> str:
    """C-SECONDARY-EVAL's high-calcium sentence, one wording for men with osteoporosis and for a
    high calcium with low bone density (review: the two branches said it in different words).
    Primary hyperparathyroidism is a secondary cause of bone loss (brief SEC-1; Endocrine Society
    2012) found with an intact PTH beside the calcium (MON-7 baseline lab); malignancy and myeloma
    are the causes not to miss. Short: the men's card says it beside their own reason (second-pass
    7: an info card's detail about 80 words). `what`: the bone finding named beside it, if any."""
    if pth and pth[1]:
        return (f"A **high calcium** ({high}) with a **high PTH** ({pth[0]}){' and ' + what if what else ''} "
                "points to primary hyperparathyroidism: confirm and manage it.")
    cause = f"reading the PTH on record ({pth[0]}) with it" if pth else "intact PTH first"
    return (f"A **high calcium** ({high}){' with ' + what if what else ''}: find its cause, {cause}; "
            "malignancy and myeloma are not to miss.")


def _pth_reading(record: PatientRecord, settings: ClinicalSettings) -> tuple[str, bool] | None:
    """An intact PTH on record within lab_max_age_months (MON-7's "measured in the last 12
    months"; the panel leaves it out, PANEL_TESTS) as (fact, high). High only by the result's
    own reference range or its interpretation flag: PTH ranges are assay-dependent, and the
    brief sets no limit of its own."""
    lab = record.lab("pth", settings.lab_max_age_months)
    if lab is None:
        return None
    high = (lab.high is not None and lab.value > lab.high) or lab.flag in ("H", "HH", "HU")
    return lab.fact() + (f" (above {lab.high:g} pg/mL)" if lab.high is not None and high else ""), high


# The secondary-cause panel, test by test: (YAML resource of cards/C-SECONDARY-EVAL.yaml, name in
# card text, the result on record within `months` that makes the test done: (date, ref) or None).
# The basic labs first; the -extra panels (beside C-LAB-BASELINE) hold the tests after them.
def _lab_done(*names: str):
    def done(record: PatientRecord, months: int) -> tuple[dt.date, str] | None:
        labs = [lab for lab in (record.lab(n, months) for n in names) if lab and lab.date]
        return max(((lab.date, lab.ref) for lab in labs), default=None)  # type: ignore[misc]
    return done


def _test_done(name: str):
    return lambda record, months: record.test_done(name, months)


PANEL_TESTS = (
    ("calcium", "serum calcium", _lab_done("calcium", "calcium_corrected")),
    ("albumin", "albumin", _lab_done("albumin")),
    ("vitamin-d", "25-OH vitamin D", _lab_done("vitamin_d")),
    ("pth", "PTH", _lab_done("pth")),
    ("creatinine", "creatinine/eGFR", _lab_done("egfr", "creatinine")),
    ("phosphate", "phosphate", _test_done("phosphate")),
    ("alkaline-phosphatase", "alkaline phosphatase", _lab_done("alp")),
    ("blood-count", "blood count", _test_done("blood_count")),
    ("tsh", "TSH", _test_done("tsh")),
    ("protein-electrophoresis", "serum protein electrophoresis", _test_done("protein_electrophoresis")),
    ("celiac", "celiac serology", _test_done("celiac")),
    ("urine-calcium", "24-hour urine calcium", _test_done("urine_calcium")),
    ("testosterone", "testosterone", _test_done("testosterone")),
)
BASIC_PANEL_TESTS = 7  # calcium to ALP: C-LAB-BASELINE orders these when it fires


def panel_tests(key: str) -> tuple[str, ...]:
    """The YAML resources of a panel suggestion key (panel-male, panel-female, ...-extra)."""
    tests = PANEL_TESTS[BASIC_PANEL_TESTS:] if key.endswith("-extra") else PANEL_TESTS
    return tuple(name for name, _, _ in tests if name != "testosterone" or key.startswith("panel-male"))


@rule("patient-view")
def secondary_evaluation(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-SECONDARY-EVAL (info). SEC-1 / DX-4: (i) premenopausal women and men
    < 50 (and women 45-49 of unknown menopausal status) with a Z-score <= -2.0
    or a fragility fracture: look for secondary causes, no drug-start card
    (ISCD via AACE20; the drug rules only treat the adult group); (ii) every man
    with osteoporosis (Endocrine Society 2012 men's guideline, memory, U),
    beside C-TX-BP / C-TX-ANABOLIC (the brief allows both for men >= 50).
    Suggests the secondary-cause lab panel, each test by its LOINC code (calcium,
    albumin, 25-OH vitamin D, eGFR, phosphate, ALP, PTH; CBC, TSH, SPEP, celiac
    serology, urine calcium, testosterone: not in brief section 8, confirmed in
    public LOINC mappings, cards/C-SECONDARY-EVAL.yaml).

    Screen decision (DESIGN "quiet by default": no two cards order the same
    test): when C-LAB-BASELINE fires too, it owns the basic labs (eGFR,
    calcium, albumin, 25-OH vitamin D, phosphate, ALP, PTH) and this card's
    panel leaves them out (keys panel-male-extra / panel-female-extra).

    Quiet by default (second-pass 7: an info card fires only when something is
    to be done now): a panel test with a result on record within
    lab_max_age_months is left out of the panel (each read by its LOINC code,
    PANEL_TESTS), and with every test of the panel on record the card does not
    fire."""
    found = secondary_eval_reason(record, settings)
    if found is None:
        return []
    subject, reason = found
    months = settings.lab_max_age_months
    facts = list(assess(record, settings).reasons)
    for name in ("calcium", "albumin", "vitamin_d", "pth", "egfr"):
        lab = record.lab(name, months)
        if lab:
            facts.append(lab.fact())
    if record.long_term_corticosteroid:
        facts.append("Long-term systemic glucocorticoid use on record")
    key = "panel-male" if record.male else "panel-female"
    baseline = bool(baseline_labs_due(record, settings))
    if baseline:
        key += "-extra"
    wanted = panel_tests(key)
    done = {name: (label, when) for name, label, read in PANEL_TESTS if name in wanted
            for when in [read(record, months)] if when}
    if len(done) == len(wanted):
        return []  # the whole panel is on record: nothing to order now
    # New data that wakes a quieted card: as before, not a test result that shortens the panel.
    trigger = trigger_date(Finding("C-SECONDARY-EVAL", facts=tuple(facts)), today) or NO_TRIGGER
    if done:
        facts.append(f"On record in the last {months} months, left out of the panel: "
                     + ", ".join(f"{label} ({when[0]})" for label, when in done.values()))
    not_done = f" not on record in the last {months} months (those on record are listed below)" if done else ""
    if baseline:
        # Without C-LAB-BASELINE on the screen (quieted, held back) the basic tests it would order
        # are named here: the panel below leaves them out.
        basic = ", ".join(label for _, label, read in PANEL_TESTS[:BASIC_PANEL_TESTS] if not read(record, months))
        panel_note = cross_ref("C-LAB-BASELINE", "The baseline-labs card orders the basic labs",
                               f"Order the basic labs too ({basic}): this panel leaves them out"
                               ) + f"; this panel holds the other tests{not_done}."
    elif done:
        panel_note = f"The panel holds the tests{not_done}."
    else:
        panel_note = f"No test of the panel is on record in the last {months} months."
    return [Finding("C-SECONDARY-EVAL", facts=tuple(dict.fromkeys(facts)),
                    variables={"reason": reason, "subject": subject, "panel_note": panel_note,
                               "max_age": str(months)},
                    suggestions=(key,), left_out=tuple(done), trigger=trigger)]


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
    "panel_tests",
    "secondary_eval_reason",
    "secondary_evaluation",
    "start_anabolic",
    "start_bisphosphonate",
    "start_denosumab_alternative",
    "within_months",
]
